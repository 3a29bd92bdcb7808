//! `tms-bench`: benchmarks that print figures (never timed tests).
//!
//! `tms-bench export --rows 1000000 [--backend sqlite|postgres]` seeds a
//! merchant's terminal with that many transactions through the terminal API,
//! then streams the CSV export and reports how much the server's resident
//! memory grew while it did (the target: under 64 MiB for a million rows).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tms_e2e::fixtures::*;
use tms_e2e::{ServerBuilder, TestDatabase};

const BATCH: usize = 1000;

struct Args {
    rows: usize,
    postgres: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("export") => {}
        _ => return Err("usage: tms-bench export [--rows N] [--backend sqlite|postgres]".into()),
    }
    let mut parsed = Args { rows: 1_000_000, postgres: false };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--rows" => {
                parsed.rows = args.next().and_then(|v| v.parse().ok()).ok_or("--rows takes a number")?
            }
            "--backend" => {
                parsed.postgres = match args.next().as_deref() {
                    Some("sqlite") => false,
                    Some("postgres") => true,
                    _ => return Err("--backend takes sqlite or postgres".into()),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(parsed)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let db = if args.postgres {
        TestDatabase::postgres().expect("PostgreSQL at TMS_TEST_POSTGRES_URL")
    } else {
        TestDatabase::sqlite()
    };
    let server =
        ServerBuilder::new().database(&db).env("TMS_LOG_LEVEL", "warn,tms_server::http=info").start().await;
    server.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Bench", "bench@bench.example", &["BENCH000001"]).await;
    let (_, device) = activate_device(
        &server,
        "bench@bench.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "BENCH000001",
        location,
        "Bench",
    )
    .await;
    let device_token = device["device_token"].as_str().expect("device token").to_owned();

    eprintln!("seeding {} transactions through the terminal API…", args.rows);
    let seeding = Instant::now();
    let base = chrono::Utc::now() - chrono::Duration::days(30);
    let mut uploaded = 0;
    while uploaded < args.rows {
        let n = BATCH.min(args.rows - uploaded);
        let batch: Vec<serde_json::Value> = (uploaded..uploaded + n)
            .map(|i| {
                json!({
                    "terminal_tx_id": format!("TX{i:09}"),
                    "occurred_at": (base + chrono::Duration::milliseconds(i as i64 * 2000)).to_rfc3339(),
                    "type": "payment",
                    "amount_minor": 100 + (i % 9000) as i64,
                    "currency": if i % 10 == 0 { "CHF" } else { "EUR" },
                    "acquirer": "CCV",
                    "masked_card": "**** **** **** 4242",
                    "status": if i % 50 == 0 { "failure" } else { "success" },
                    "receipt_printed": i % 3 == 0,
                })
            })
            .collect();
        let (status, body) =
            post(&server, &device_token, "/api/v1/terminal/transactions", json!({"transactions": batch}))
                .await;
        assert_eq!(status, 200, "upload failed: {body}");
        uploaded += n;
    }
    let seed_secs = seeding.elapsed().as_secs_f64();

    // Let the server settle, then take the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.rss_bytes().expect("server RSS");
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pid = server.pid();
    let sampler = {
        let peak = peak.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = rss_of(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let started = Instant::now();
    let mut response = server
        .http
        .get(server.url(&format!("/api/v1/merchants/{merchant_id}/transactions/export")))
        .bearer_auth(&admin)
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .expect("export request");
    assert_eq!(response.status(), 200);
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = response.chunk().await.expect("export body") {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let export_secs = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    sampler.await.ok();
    let peak = peak.load(Ordering::Relaxed);
    let growth = peak.saturating_sub(baseline);
    let rows = lines.saturating_sub(1);
    assert_eq!(rows as usize, args.rows, "every row exported once");

    let backend = if args.postgres { "postgres" } else { "sqlite" };
    let report = json!({
        "benchmark": "transaction_export",
        "backend": backend,
        "rows": rows,
        "bytes": bytes,
        "seed_seconds": seed_secs,
        "export_seconds": export_secs,
        "rows_per_second": rows as f64 / export_secs,
        "server_rss_baseline_mib": mib(baseline),
        "server_rss_peak_mib": mib(peak),
        "server_rss_growth_mib": mib(growth),
        "target_growth_mib": 64,
        "within_target": growth < 64 * 1024 * 1024,
    });
    println!("{report}");
    eprintln!();
    eprintln!("transaction export, {backend}, {rows} rows ({:.1} MiB of CSV)", mib(bytes));
    eprintln!(
        "  seeding            {seed_secs:>8.1} s  ({:.0} rows/s through the terminal API)",
        rows as f64 / seed_secs
    );
    eprintln!("  export             {export_secs:>8.1} s  ({:.0} rows/s)", rows as f64 / export_secs);
    eprintln!("  server RSS         {:>8.1} MiB before, {:.1} MiB peak", mib(baseline), mib(peak));
    eprintln!(
        "  growth             {:>8.1} MiB  (target < 64 MiB: {})",
        mib(growth),
        if growth < 64 << 20 { "met" } else { "MISSED" }
    );
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
