//! `tms-bench console`: the operator console's page times at fleet scale.
//! One server seeds the fleet (each terminal having reported the payment
//! app on one of three firmware versions), publishes a release and starts
//! a rollout of it to everyone at 10 %; a second server on the same
//! database then counts the fleet at its start, as a restarted server
//! does, and answers the pages. Each page's server time comes from the
//! answer's `Server-Timing` header (the target: under 100 ms at p99 for
//! the fleet overview, the terminal search and the rollout page).

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::ServerBuilder;
use crate::fixtures::*;
use crate::portal_bench::{get_page, measure_pages, sign_in};

#[derive(Args, Debug, Clone)]
pub struct ConsoleArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub terminals: u64,
    #[arg(long, default_value_t = 1000)]
    pub merchants: u32,
    #[arg(long, default_value_t = 10)]
    pub locations_per_merchant: u32,
    /// Requests per page
    #[arg(long, default_value_t = 100)]
    pub requests: usize,
    /// sqlite or postgres
    #[arg(long = "backend", value_name = "BACKEND", default_value = "sqlite", value_parser = crate::fleet_bench::postgres_backend, action = clap::ArgAction::Set)]
    pub postgres: bool,
}

const TARGET_MS: f64 = 100.0;
const APP: &str = "eu.ccv.payment";

pub async fn run(args: ConsoleArgs) {
    let db = crate::fleet_bench::bench_database(args.postgres);
    let seeder =
        ServerBuilder::new().database(&db).env("TMS_LOG_LEVEL", "warn,tms_server::http=info").start().await;
    seeder.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let op = seeder.login(OPERATOR, OPERATOR_PASSWORD).await;
    let key = app_with_key(&seeder, &op, APP, "app").await;
    publish_release(&seeder, &op, &key, APP, "app", "1.0.0", 100, &["A920", "A80"]).await;
    publish_release(&seeder, &op, &key, APP, "app", "1.1.0", 110, &["A920", "A80"]).await;

    eprintln!("seeding {} terminals that reported {APP} 1.0.0…", args.terminals);
    let started = Instant::now();
    let out = seeder
        .command()
        .args(["fleet", "seed", "--terminals", &args.terminals.to_string()])
        .args(["--merchants", &args.merchants.to_string()])
        .args(["--locations-per-merchant", &args.locations_per_merchant.to_string()])
        .args(["--models", "A920,A80", "--reported-app", &format!("{APP}@1.0.0:100")])
        .arg("--tokens")
        .arg(tempfile::tempdir().expect("temp dir").keep().join("tokens.csv"))
        .output()
        .expect("run fleet seed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seed_secs = started.elapsed().as_secs_f64();
    eprintln!("  {seed_secs:.1} s");

    let (id, _) = rollout_to_everyone(
        &seeder,
        &op,
        APP,
        "1.1.0",
        json!({"stages": [10, 100], "success_percent": 95, "max_failures": "1%", "auto_advance": false}),
    )
    .await;
    // The second server reads the secrets the first sealed: the same master key.
    let keys = tempfile::tempdir().expect("temp dir").keep();
    let master_key = keys.join("master.key");
    std::fs::copy(seeder.master_key_file(), &master_key).expect("copy the master key");
    drop(seeder);

    // A server started on the seeded database counts the fleet at its start.
    let started = Instant::now();
    let server = ServerBuilder::new()
        .database(&db)
        .env("TMS_LOG_LEVEL", "warn,tms_server::http=info")
        .env("TMS_CONSOLE_SUMMARY_SECS", "86400")
        .env("TMS_MASTER_KEY_FILE", &master_key.display().to_string())
        .start()
        .await;
    let session = sign_in(&server, OPERATOR, OPERATOR_PASSWORD).await;
    // The first overview waits for the count if the start's is not done.
    let (status, timing, _, _) = get_page(&server, &session, "/console/".into()).await;
    assert_eq!(status, 200);
    let count_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fleet counted {count_secs:.1} s after the server's start (first overview: {:.0} ms)",
        timing.unwrap_or_default()
    );

    // The seed names serials FLEET-<run>-<n>; the run is on any page of the search.
    let (_, _, _, first) = get_page(&server, &session, "/console/terminals".into()).await;
    let serial = first
        .split("FLEET-")
        .nth(1)
        .and_then(|rest| rest.split('-').next())
        .map(|run| format!("FLEET-{run}-"))
        .expect("a seeded serial on the first page");
    // The rollout page shows the supervisor's latest count: wait for its
    // first pass over the rollout (it counts every targeted terminal).
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let waited = Instant::now();
    loop {
        let (status, history) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout/history")).await;
        assert_eq!(status, 200, "{history}");
        if history["counts"].as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(300), "the supervisor never counted the rollout");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("rollout first counted by the supervisor after {:.1} s", waited.elapsed().as_secs_f64());
    let middle = args.terminals / 2;
    let pages: Vec<(&str, String)> = vec![
        ("fleet overview", "/console/".into()),
        ("search: first page", "/console/terminals".into()),
        ("search: page at the middle", format!("/console/terminals?after={middle}")),
        ("search: one serial", format!("/console/terminals?serial={serial}{middle:08}")),
        ("search: serial prefix", format!("/console/terminals?serial={serial}0005")),
        ("search: merchant name", "/console/terminals?merchant=merchant+500".into()),
        ("search: location id", "/console/terminals?location=5000".into()),
        ("search: model", "/console/terminals?model=A80".into()),
        ("search: firmware", "/console/terminals?firmware=10.0.0".into()),
        ("search: silent 24 h", "/console/terminals?contact=silent_24h".into()),
        ("search: online", "/console/terminals?contact=online".into()),
        ("deployments", "/console/deployments".into()),
        ("rollout at 10 %", format!("/console/deployments/{id}")),
    ];
    eprintln!();
    eprintln!(
        "operator console, {} terminals, {}: server time per page ({} requests each)",
        args.terminals,
        if args.postgres { "postgres" } else { "sqlite" },
        args.requests
    );
    let results = measure_pages(&server, &session, &pages, args.requests, TARGET_MS).await;
    println!(
        "{}",
        json!({
            "benchmark": "console_pages",
            "backend": if args.postgres { "postgres" } else { "sqlite" },
            "terminals": args.terminals,
            "seed_seconds": seed_secs,
            "count_seconds_after_start": count_secs,
            "requests_per_page": args.requests,
            "target_p99_ms": TARGET_MS,
            "pages": results,
        })
    );
}
