//! `tms-bench fleet`: a simulated fleet against the real server, and the
//! ceiling of the stack (`/healthz` under the same load generator) measured
//! in the same run. Scenarios: (d) a morning storm from cold — every terminal
//! calls once, many at a time; (a) steady state, nothing to do; (b) a release
//! rolled out to 10 % then 100 % while the fleet calls; (c) a parameter change
//! on 1,000 locations. (a), (b) and (c) run for `--seconds` each, the
//! simulated terminals calling in turn; every answer of (b) is checked
//! against the stage (whose success bar is low, as not every terminal of it
//! calls within the time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tms_packages::contact::in_stage;
use tms_signing::PublicKey;

use crate::fixtures::*;
use crate::terminal::SimTerminal;
use crate::{ServerBuilder, TestDatabase};

const APP: &str = "eu.ccv.salespoint";

/// `tms-bench fleet`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Registered and activated terminals
    #[arg(long, default_value_t = 1_000_000)]
    pub terminals: u64,
    #[arg(long, default_value_t = 1_000)]
    pub merchants: u32,
    #[arg(long, default_value_t = 10)]
    pub locations_per_merchant: u32,
    /// Simulated terminals calling at once (and /healthz callers)
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Simulated terminals calling at once in the morning storm
    #[arg(long, default_value_t = 256)]
    pub storm_concurrency: usize,
    /// Length of each timed phase
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// sqlite or postgres
    #[arg(long = "backend", value_name = "BACKEND", default_value = "sqlite", value_parser = postgres_backend, action = clap::ArgAction::Set)]
    pub postgres: bool,
    /// Terminals send a health report (battery, network, printer, uptime) with every contact
    #[arg(long)]
    pub health: bool,
}

/// `--backend`: whether it names PostgreSQL.
pub fn postgres_backend(text: &str) -> Result<bool, String> {
    match text {
        "sqlite" => Ok(false),
        "postgres" => Ok(true),
        _ => Err("sqlite or postgres".into()),
    }
}

/// Latencies and outcomes of one phase.
#[derive(Debug, Default)]
pub(crate) struct Phase {
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) elapsed: f64,
    offered: u64,
    outside_stage: u64,
    parameter_updates: u64,
}

impl Phase {
    pub(crate) fn merge(&mut self, other: Phase) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.offered += other.offered;
        self.outside_stage += other.outside_stage;
        self.parameter_updates += other.parameter_updates;
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }

    pub(crate) fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.max(1e-9)
    }

    pub(crate) fn report(&mut self, name: &str, ceiling: Option<f64>, rss: Option<u64>) -> Value {
        self.latencies_us.sort_unstable();
        json!({
            "phase": name,
            "requests": self.latencies_us.len(),
            "seconds": self.elapsed,
            "requests_per_second": self.rate(),
            "ratio_to_healthz": ceiling.map(|c| self.rate() / c),
            "p50_ms": self.percentile(0.50),
            "p90_ms": self.percentile(0.90),
            "p99_ms": self.percentile(0.99),
            "errors": self.errors,
            "offered_release": self.offered,
            "offered_outside_stage": self.outside_stage,
            "parameter_updates": self.parameter_updates,
            "server_rss_mib": rss.map(|r| r as f64 / 1048576.0),
        })
    }
}

/// What a simulated terminal checks in every answer of a rollout phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StageCheck {
    deployment: i64,
    rollout: i64,
    stage_bp: u32,
}

pub(crate) fn http_client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// /healthz as fast as `concurrency` callers can, for `seconds`.
pub(crate) async fn healthz(base: &str, http: &reqwest::Client, concurrency: usize, seconds: u64) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let http = http.clone();
            let url = reqwest::Url::parse(&format!("{base}/healthz")).expect("a server URL");
            tokio::spawn(async move {
                let mut phase = Phase::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match http.get(url.clone()).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            phase.latencies_us.push(t.elapsed().as_micros() as u64);
                        }
                        Ok(r) => *phase.errors.entry(r.status().as_str().to_owned()).or_default() += 1,
                        Err(e) => *phase.errors.entry(error_kind(&e)).or_default() += 1,
                    }
                }
                phase
            })
        })
        .collect();
    let mut total = Phase::default();
    for t in tasks {
        total.merge(t.await.expect("healthz task"));
    }
    total.elapsed = started.elapsed().as_secs_f64();
    total
}

pub(crate) fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

/// Contacts by `concurrency` workers, each owning a slice of the fleet: every
/// terminal once (`seconds` = None) or round after round until the time is up.
/// Each applies what it gets and reports feedback, as a terminal would.
pub(crate) async fn contacts(
    base: &str,
    http: &reqwest::Client,
    fleet: Vec<SimTerminal>,
    concurrency: usize,
    seconds: Option<u64>,
    check: Option<StageCheck>,
    trusted: Arc<Vec<PublicKey>>,
) -> (Vec<SimTerminal>, Phase) {
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let per = fleet.len().div_ceil(concurrency.max(1)).max(1);
    // Moved into slices of their own (split_off would leave every slice the
    // capacity of the whole fleet).
    let mut slices: Vec<Vec<SimTerminal>> = Vec::new();
    for (i, t) in fleet.into_iter().enumerate() {
        if i % per == 0 {
            slices.push(Vec::with_capacity(per));
        }
        slices.last_mut().expect("a slice").push(t);
    }
    let verified = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = slices
        .into_iter()
        .map(|mut slice| {
            let (http, base, trusted, verified) =
                (http.clone(), base.to_owned(), trusted.clone(), verified.clone());
            let contact_url =
                reqwest::Url::parse(&format!("{base}/api/v1/terminal/contact")).expect("a server URL");
            tokio::spawn(async move {
                let mut phase = Phase::default();
                'rounds: loop {
                    for t in slice.iter_mut() {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break 'rounds;
                        }
                        let at = Instant::now();
                        let outcome = t.contact_lean(&http, &contact_url).await;
                        let us = at.elapsed().as_micros() as u64;
                        match outcome {
                            Ok(lean) => {
                                let body = &lean.body;
                                phase.latencies_us.push(us);
                                // The reference verification on a sample (it costs the
                                // client CPU the server shares).
                                if verified.fetch_add(1, Ordering::Relaxed) % 100 == 0
                                    && let Err(e) = t.accept(&lean.signed(), &trusted)
                                {
                                    *phase.errors.entry(format!("answer_{e:?}")).or_default() += 1;
                                }
                                for change in &body.apps {
                                    if let Some(c) = check
                                        && change.deployment_id == c.deployment
                                    {
                                        phase.offered += 1;
                                        if !in_stage(c.rollout, t.device_id, c.stage_bp) {
                                            phase.outside_stage += 1;
                                        }
                                    }
                                }
                                phase.parameter_updates += body.parameters.len() as u64;
                                if lean.status == "changes" {
                                    t.apply(&http, &base, body).await;
                                }
                            }
                            Err((status, body)) => {
                                let code = body["error"]["code"].as_str().unwrap_or("unknown").to_owned();
                                *phase.errors.entry(format!("{status} {code}")).or_default() += 1;
                            }
                        }
                    }
                    if deadline.is_none() {
                        break;
                    }
                }
                (slice, phase)
            })
        })
        .collect();
    let mut fleet = Vec::new();
    let mut total = Phase::default();
    for t in tasks {
        let (slice, phase) = t.await.expect("contact task");
        fleet.extend(slice);
        total.merge(phase);
    }
    total.elapsed = started.elapsed().as_secs_f64();
    (fleet, total)
}

fn database_mib(db: &TestDatabase) -> Option<f64> {
    use diesel::RunQueryDsl;
    if db.url.starts_with("postgres") {
        #[derive(diesel::QueryableByName)]
        struct Size {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            bytes: i64,
        }
        let pool = db.pool();
        let mut conn = pool.get().ok()?;
        let size: Size = diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes")
            .get_result(&mut *conn)
            .ok()?;
        Some(size.bytes as f64 / 1048576.0)
    } else {
        let path = db.url.trim_start_matches("sqlite://");
        let size = |p: String| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Some((size(path.to_owned()) + size(format!("{path}-wal"))) as f64 / 1048576.0)
    }
}

/// The database a load benchmark runs on: a fresh SQLite file, or a
/// database of its own on the PostgreSQL at `TMS_TEST_POSTGRES_URL`.
pub fn bench_database(postgres: bool) -> TestDatabase {
    if postgres {
        TestDatabase::postgres().expect("PostgreSQL at TMS_TEST_POSTGRES_URL")
    } else {
        TestDatabase::sqlite()
    }
}

/// The server a load benchmark drives: quiet logs, a pool of 16, and no
/// limit on connections per address.
pub(crate) fn bench_server(db: &TestDatabase) -> ServerBuilder {
    ServerBuilder::new()
        .database(db)
        .env("TMS_LOG_LEVEL", "warn,tms_server::http=info,tms_server::http::observe=warn")
        .env("TMS_DB_POOL_SIZE", "16")
        // The load generator is one address standing for a whole fleet.
        .env("TMS_MAX_CONNECTIONS_PER_ADDRESS", "1000000")
}

/// The phases of a report as a table on standard error.
pub(crate) fn print_phases(phases: &Value) {
    eprintln!(
        "  {:<28} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8}  errors",
        "phase", "requests", "req/s", "ratio", "p50 ms", "p90 ms", "p99 ms"
    );
    for p in phases.as_array().expect("phases") {
        eprintln!(
            "  {:<28} {:>9} {:>9.0} {:>7} {:>8.2} {:>8.2} {:>8.2}  {}",
            p["phase"].as_str().unwrap_or(""),
            p["requests"],
            p["requests_per_second"].as_f64().unwrap_or(0.0),
            p["ratio_to_healthz"].as_f64().map_or("—".to_owned(), |r| format!("{:.0} %", r * 100.0)),
            p["p50_ms"].as_f64().unwrap_or(0.0),
            p["p90_ms"].as_f64().unwrap_or(0.0),
            p["p99_ms"].as_f64().unwrap_or(0.0),
            p["errors"],
        );
    }
}

pub async fn run(args: FleetArgs) {
    let backend = if args.postgres { "postgres" } else { "sqlite" };
    let db = bench_database(args.postgres);
    let server = bench_server(&db).env("TMS_ROLLOUT_CHECK_SECS", "20").start().await;
    server.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let trusted = Arc::new(answer_keys(&server).await);
    let key = app_with_key(&server, &op, APP, "app").await;
    let v1 = publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920", "A80"]).await;
    let sha1 = v1["artifact_sha256"].as_str().expect("sha").to_owned();

    eprintln!("seeding {} terminals…", args.terminals);
    let seeding = Instant::now();
    let fleet: Vec<SimTerminal> =
        seed_fleet(&server, args.terminals, args.merchants, args.locations_per_merchant, "A920,A80")
            .into_iter()
            .map(|t| t.with_app(APP, "1.0.0", 100, &sha1))
            .map(|mut t| {
                if args.health {
                    t.health = Some(tms_packages::wire::contact::TerminalHealth {
                        battery_percent: Some((t.device_id % 101) as u8),
                        charging: Some(t.device_id % 2 == 0),
                        network: Some(if t.device_id % 3 == 0 { "mobile" } else { "wifi" }.into()),
                        signal_percent: Some((t.device_id % 97) as u8),
                        printer: Some("ok".into()),
                        uptime_secs: Some((t.device_id * 7 % 86_400) as u64),
                    });
                }
                t
            })
            .collect();
    let seed_secs = seeding.elapsed().as_secs_f64();
    let rss = || server.rss_bytes();
    let http = http_client(args.storm_concurrency.max(args.concurrency));
    let base = server.base_url.clone();
    let mut phases = Vec::new();

    eprintln!("ceiling: /healthz for {} s…", args.seconds);
    let mut ceiling = healthz(&base, &http, args.concurrency, args.seconds).await;
    let ceiling_rate = ceiling.rate();
    phases.push(ceiling.report("healthz", None, rss()));

    eprintln!("(d) morning storm: every terminal once, {} at a time, from cold…", args.storm_concurrency);
    let (fleet, mut storm) =
        contacts(&base, &http, fleet, args.storm_concurrency, None, None, trusted.clone()).await;
    phases.push(storm.report("d_morning_storm", Some(ceiling_rate), rss()));

    eprintln!("settling: one more round so every terminal is in sync…");
    let (fleet, _) = contacts(&base, &http, fleet, args.concurrency, None, None, trusted.clone()).await;

    eprintln!("(a) steady state for {} s…", args.seconds);
    let (fleet, mut steady) =
        contacts(&base, &http, fleet, args.concurrency, Some(args.seconds), None, trusted.clone()).await;
    phases.push(steady.report("a_steady_state", Some(ceiling_rate), rss()));

    eprintln!("(b) a release rolled out to 10 %, then 100 %…");
    publish_release(&server, &op, &key, APP, "app", "2.0.0", 200, &["A920", "A80"]).await;
    let (status, deployment) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "version": "2.0.0", "target": "everyone", "hold": true}),
    )
    .await;
    assert_eq!(status, 201, "{deployment}");
    let deployment = deployment["id"].as_i64().expect("id");
    let (status, rollout) = post(
        &server,
        &op,
        &format!("/api/v1/deployments/{deployment}/rollout"),
        json!({"stages": [10, 100], "success_percent": 1, "max_failures": "5%", "auto_advance": false}),
    )
    .await;
    assert_eq!(status, 201, "{rollout}");
    let rollout = rollout["id"].as_i64().expect("id");
    let check = StageCheck { deployment, rollout, stage_bp: 1_000 };
    let (fleet, mut stage1) =
        contacts(&base, &http, fleet, args.concurrency, Some(args.seconds), Some(check), trusted.clone())
            .await;
    phases.push(stage1.report("b_rollout_10_percent", Some(ceiling_rate), rss()));
    let approved = Instant::now();
    loop {
        let (status, view) =
            post(&server, &op, &format!("/api/v1/deployments/{deployment}/rollout/approve"), json!({})).await;
        if status == 200 {
            break;
        }
        assert!(approved.elapsed() < Duration::from_secs(300), "stage 1 never succeeded: {view}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let check = StageCheck { stage_bp: 10_000, ..check };
    eprintln!("(b) stage 2 approved: 100 %…");
    let (fleet, mut stage2) =
        contacts(&base, &http, fleet, args.concurrency, Some(args.seconds), Some(check), trusted.clone())
            .await;
    phases.push(stage2.report("b_rollout_100_percent", Some(ceiling_rate), rss()));

    eprintln!("(c) a parameter change on 1,000 locations…");
    let mut locations: Vec<i64> = fleet.iter().map(|t| t.location_id).collect();
    locations.sort_unstable();
    locations.dedup();
    locations.truncate(1_000);
    let changing = Instant::now();
    for (i, location) in locations.iter().enumerate() {
        let (status, body) = post(
            &server,
            &op,
            &format!("/api/v1/parameters/tms.terminal/location/{location}"),
            json!({"set": {"receipt.footer": format!("Merci ! #{i}")}, "reason": "benchmark"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let change_secs = changing.elapsed().as_secs_f64();
    let (_fleet, mut params) =
        contacts(&base, &http, fleet, args.concurrency, Some(args.seconds), None, trusted.clone()).await;
    phases.push(params.report("c_parameters_1000_locations", Some(ceiling_rate), rss()));

    let db_mib = database_mib(&db);
    let report = json!({
        "benchmark": "fleet",
        "backend": backend,
        "terminals": args.terminals,
        "merchants": args.merchants,
        "locations": args.merchants * args.locations_per_merchant,
        "concurrency": args.concurrency,
        "storm_concurrency": args.storm_concurrency,
        "seed_seconds": seed_secs,
        "parameter_change_seconds": change_secs,
        "database_mib": db_mib,
        "server_rss_mib": rss().map(|r| r as f64 / 1048576.0),
        "phases": phases,
    });
    println!("{report}");
    eprintln!();
    eprintln!(
        "fleet, {backend}, {} terminals, {} locations, {} concurrent terminals (storm: {})",
        args.terminals,
        args.merchants * args.locations_per_merchant,
        args.concurrency,
        args.storm_concurrency
    );
    print_phases(&report["phases"]);
    for (name, p) in [("b 10 %", &report["phases"][3]), ("b 100 %", &report["phases"][4])] {
        eprintln!(
            "  rollout {name}: offered to {} terminals, {} outside the stage",
            p["offered_release"], p["offered_outside_stage"]
        );
    }
    eprintln!("  parameter updates received after the change: {}", report["phases"][5]["parameter_updates"]);
    eprintln!(
        "  server RSS {:.0} MiB; database {:.0} MiB; seeding {:.1} s",
        report["server_rss_mib"].as_f64().unwrap_or(0.0),
        db_mib.unwrap_or(0.0),
        seed_secs
    );
}
