//! `tms-bench ddi`: Linux devices polling the hawkBit DDI API with nothing
//! to do, beside Android terminals' contacts with nothing to do and the
//! ceiling of the stack (`/healthz`), all under the same load generator in
//! the same run. The DDI poll's target: at least half of `/healthz`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::fleet_bench::{
    Phase, bench_database, bench_server, contacts, error_kind, healthz, http_client, postgres_backend,
    print_phases,
};

/// `tms-bench ddi`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DdiArgs {
    /// Linux devices (and as many Android terminals beside them)
    #[arg(long, default_value_t = 100_000)]
    pub devices: u64,
    /// Devices calling at once (and /healthz callers)
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Length of each timed phase
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// sqlite or postgres
    #[arg(long = "backend", value_name = "BACKEND", default_value = "sqlite", value_parser = postgres_backend, action = clap::ArgAction::Set)]
    pub postgres: bool,
}

/// A seeded Linux device: (controller id, TargetToken).
type LinuxDevice = (String, String);

fn seed_linux(server: &crate::TestServer, devices: u64) -> Vec<LinuxDevice> {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.csv");
    let out = server
        .command()
        .args(["fleet", "seed", "--linux", "--terminals", &devices.to_string(), "--models", "LINUX"])
        .args(["--merchants", "100", "--locations-per-merchant", "10"])
        .args(["--token-seed", &format!("ddi-{}", rand::random::<u64>())])
        .arg("--tokens")
        .arg(&tokens)
        .output()
        .expect("run fleet seed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(&tokens)
        .expect("tokens file")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let parts: Vec<&str> = line.split(',').collect();
            (parts[5].to_owned(), parts[1].to_owned())
        })
        .collect()
}

/// Polls by `concurrency` workers, each owning a slice of the devices: every
/// device once (`seconds` = None) or round after round until the time is up.
/// A poll that offers something counts as an error: nothing is deployed.
async fn polls(
    base: &str,
    http: &reqwest::Client,
    devices: &[LinuxDevice],
    concurrency: usize,
    seconds: Option<u64>,
) -> Phase {
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let per = devices.len().div_ceil(concurrency.max(1)).max(1);
    let started = Instant::now();
    let tasks: Vec<_> = devices
        .chunks(per)
        .map(|slice| {
            let requests: Vec<(reqwest::Url, String)> = slice
                .iter()
                .map(|(controller, token)| {
                    let url = format!("{base}/DEFAULT/controller/v1/{controller}");
                    (reqwest::Url::parse(&url).expect("a URL"), format!("TargetToken {token}"))
                })
                .collect();
            let http = http.clone();
            tokio::spawn(async move {
                let mut phase = Phase::default();
                'rounds: loop {
                    for (url, authorization) in &requests {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break 'rounds;
                        }
                        let at = Instant::now();
                        match http.get(url.clone()).header("authorization", authorization).send().await {
                            Ok(r) if r.status() == 200 => {
                                let body = r.bytes().await.unwrap_or_default();
                                phase.latencies_us.push(at.elapsed().as_micros() as u64);
                                if body.windows(14).any(|w| w == b"deploymentBase") {
                                    *phase.errors.entry("offered".into()).or_default() += 1;
                                }
                            }
                            Ok(r) => *phase.errors.entry(r.status().as_str().to_owned()).or_default() += 1,
                            Err(e) => *phase.errors.entry(error_kind(&e)).or_default() += 1,
                        }
                    }
                    if deadline.is_none() {
                        break;
                    }
                }
                phase
            })
        })
        .collect();
    let mut total = Phase::default();
    for t in tasks {
        total.merge(t.await.expect("poll task"));
    }
    total.elapsed = started.elapsed().as_secs_f64();
    total
}

pub async fn run(args: DdiArgs) {
    let backend = if args.postgres { "postgres" } else { "sqlite" };
    let db = bench_database(args.postgres);
    let server = bench_server(&db).start().await;
    server.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let trusted = std::sync::Arc::new(answer_keys(&server).await);
    eprintln!("seeding {} Linux devices and {} Android terminals…", args.devices, args.devices);
    let linux = seed_linux(&server, args.devices);
    let android = seed_fleet(&server, args.devices, 100, 10, "A920");
    let http = http_client(args.concurrency);
    let base = server.base_url.clone();
    let rss = || server.rss_bytes();
    let mut phases: Vec<Value> = Vec::new();

    eprintln!("ceiling: /healthz for {} s…", args.seconds);
    let mut ceiling = healthz(&base, &http, args.concurrency, args.seconds).await;
    let ceiling_rate = ceiling.rate();
    phases.push(ceiling.report("healthz", None, rss()));

    eprintln!("DDI: every device polls once, from cold…");
    let mut cold = polls(&base, &http, &linux, args.concurrency, None).await;
    phases.push(cold.report("ddi_first_poll", Some(ceiling_rate), rss()));
    eprintln!("DDI: polls with nothing to do for {} s…", args.seconds);
    let mut steady = polls(&base, &http, &linux, args.concurrency, Some(args.seconds)).await;
    phases.push(steady.report("ddi_steady_state", Some(ceiling_rate), rss()));

    eprintln!("Android: every terminal once, then contacts with nothing to do for {} s…", args.seconds);
    let (android, _) = contacts(&base, &http, android, args.concurrency, None, None, trusted.clone()).await;
    let (_, mut contact) =
        contacts(&base, &http, android, args.concurrency, Some(args.seconds), None, trusted).await;
    phases.push(contact.report("android_steady_state", Some(ceiling_rate), rss()));

    let report = json!({
        "benchmark": "ddi",
        "backend": backend,
        "devices": args.devices,
        "concurrency": args.concurrency,
        "server_rss_mib": rss().map(|r| r as f64 / 1048576.0),
        "phases": phases,
    });
    println!("{report}");
    eprintln!();
    eprintln!(
        "ddi, {backend}, {} Linux devices and {} Android terminals, {} calling at once",
        args.devices, args.devices, args.concurrency
    );
    print_phases(&report["phases"]);
    eprintln!("  server RSS {:.0} MiB", report["server_rss_mib"].as_f64().unwrap_or(0.0));
}
