//! `tms-bench`: benchmarks that print figures (never timed tests). Build in
//! release mode first: `cargo build --release --bins`.
//!
//! `tms-bench export --rows 1000000 [--backend sqlite|postgres]` seeds a
//! merchant's terminal with that many transactions through the terminal API,
//! then streams the CSV export and reports how much the server's resident
//! memory grew while it did (the target: under 64 MiB for a million rows).
//!
//! `tms-bench artifact --mib 1024 [--backend sqlite|postgres]` publishes and
//! then downloads an artifact of that size, and reports both throughputs, the
//! machine's single-core sha256 speed measured in the same run, and the
//! server's memory growth (targets: publishing at 60 % or more of the sha256
//! speed; under 64 MiB of growth).
//!
//! `tms-bench portal [--terminals 200] [--transactions 1000000] [--backend …]`
//! seeds a merchant and reports every portal page's server time (see
//! `tms_e2e::portal_bench`; the target: under 50 ms).
//!
//! `tms-bench delta [--apk-mib 64] [--changed-percent 10] [--firmware-mib 256]
//! [--level 15]` builds and applies deltas between two versions of an
//! APK-like archive and of a firmware-like image (see
//! `tms_e2e::delta_bench`) and reports each delta's share of the full
//! artifact, build time and peak memory.
//!
//! `tms-bench console [--terminals 1000000] [--backend …]` seeds a fleet
//! that reported its state, starts a rollout to everyone at 10 % and
//! reports the operator console's page times (see `tms_e2e::console_bench`;
//! the target: under 100 ms).
//!
//! `tms-bench fleet --terminals 1000000 [--concurrency 64] [--storm-concurrency 256]
//! [--seconds 30] [--merchants 1000 --locations-per-merchant 10] [--backend …]`
//! seeds a fleet and drives it through the scenarios of the contact (see
//! `tms_e2e::fleet_bench`), with `/healthz` under the same load as the ceiling.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::json;
use tms_e2e::fixtures::*;
use tms_e2e::fleet_bench::postgres_backend;
use tms_e2e::{ServerBuilder, TestDatabase, rss_of};

const BATCH: usize = 1000;

/// Benchmarks of the TMS that print figures (never timed tests): one JSON
/// line on stdout, a short table on stderr. Build in release mode first:
/// `cargo build --release --bins`.
#[derive(Parser)]
#[command(name = "tms-bench", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Seed a terminal with transactions, then stream the CSV export and report the server's
    /// memory growth (target: under 64 MiB for a million rows)
    Export {
        /// Transactions to seed
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// sqlite or postgres
        #[arg(long = "backend", value_name = "BACKEND", default_value = "sqlite", value_parser = postgres_backend, action = clap::ArgAction::Set)]
        postgres: bool,
    },
    /// Publish then download an artifact; report both throughputs against one core's sha256
    /// speed, and the server's memory growth
    Artifact {
        /// Artifact size in MiB
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// sqlite or postgres
        #[arg(long = "backend", value_name = "BACKEND", default_value = "sqlite", value_parser = postgres_backend, action = clap::ArgAction::Set)]
        postgres: bool,
    },
    /// Seed a fleet and drive simulated terminals through the contact's scenarios (storm,
    /// steady state, rollout at 10 % and 100 %, a parameter change), with /healthz under the
    /// same load as the ceiling
    Fleet(tms_e2e::fleet_bench::FleetArgs),
    /// Seed a merchant with many terminals and transactions, sign in as a browser does, and
    /// report each portal page's server time (p50, p99; target: under 50 ms)
    Portal(tms_e2e::portal_bench::PortalArgs),
    /// Build and apply deltas between two versions of an APK-like archive and of a
    /// firmware-like image; report each delta's share of the full artifact, build time and
    /// peak memory
    Delta(tms_e2e::delta_bench::DeltaArgs),
    /// Seed a fleet that reported its state, start a rollout to everyone, and report the
    /// operator console's page times (p50, p99; target: under 100 ms)
    Console(tms_e2e::console_bench::ConsoleArgs),
    /// Seed Linux devices and Android terminals; report DDI polls and contacts with nothing to
    /// do beside /healthz under the same load (target for the DDI poll: at least 50 %)
    Ddi(tms_e2e::ddi_bench::DdiArgs),
}

struct Args {
    artifact: bool,
    rows: usize,
    mib: u64,
    postgres: bool,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match Cli::parse().bench {
        Bench::Fleet(args) => return tms_e2e::fleet_bench::run(args).await,
        Bench::Portal(args) => return tms_e2e::portal_bench::run(args).await,
        Bench::Delta(args) => return tms_e2e::delta_bench::run(args).await,
        Bench::Console(args) => return tms_e2e::console_bench::run(args).await,
        Bench::Ddi(args) => return tms_e2e::ddi_bench::run(args).await,
        Bench::Export { rows, postgres } => Args { artifact: false, rows, mib: 0, postgres },
        Bench::Artifact { mib, postgres } => Args { artifact: true, rows: 0, mib, postgres },
    };
    let db = tms_e2e::fleet_bench::bench_database(args.postgres);
    if args.artifact {
        return artifact_bench(&args, &db).await;
    }
    // The load generator is one address standing for a whole fleet.
    let server = ServerBuilder::new()
        .database(&db)
        .env("TMS_LOG_LEVEL", "warn,tms_server::http=info")
        .env("TMS_MAX_CONNECTIONS_PER_ADDRESS", "1000000")
        .start()
        .await;
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

/// Samples a process's resident memory until stopped; returns the peak.
struct RssSampler {
    peak: Arc<AtomicU64>,
    running: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(rss_of(pid).unwrap_or(0)));
        let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = {
            let (peak, running) = (peak.clone(), running.clone());
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_of(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        RssSampler { peak, running, task }
    }

    async fn stop(self) -> u64 {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

async fn artifact_bench(args: &Args, db: &TestDatabase) {
    use base64::Engine;
    use tms_packages::releases::{ReleaseManifest, SignedManifest};
    use tms_signing::PrivateKey;

    let size = args.mib * 1024 * 1024;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("artifact.bin");
    eprintln!("writing a {} MiB artifact…", args.mib);
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&path).expect("create artifact"),
        );
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..args.mib {
            for word in block.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            file.write_all(&block).expect("write artifact");
        }
        file.flush().expect("flush artifact");
    }

    // The machine's own single-core sha256 speed, over the same bytes.
    let hashing = Instant::now();
    let (digest, _) = tms_signing::sha256_reader(std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(&path).unwrap(),
    ))
    .unwrap();
    let sha_secs = hashing.elapsed().as_secs_f64();
    let sha_mib_s = args.mib as f64 / sha_secs;

    let server =
        ServerBuilder::new().database(db).env("TMS_LOG_LEVEL", "warn,tms_server::http=info").start().await;
    server.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let key = PrivateKey::generate();
    post(
        &server,
        &op,
        "/api/v1/apps",
        json!({"id": "eu.ccv.bench", "name": "Bench", "kind": "app", "visibility": "system"}),
    )
    .await;
    post(
        &server,
        &op,
        "/api/v1/apps/eu.ccv.bench/keys",
        json!({"name": "bench", "public_key": key.public_key().to_hex()}),
    )
    .await;
    let manifest = SignedManifest::sign(
        ReleaseManifest {
            app_id: "eu.ccv.bench".into(),
            kind: "app".into(),
            version: "1.0.0".into(),
            version_code: 1,
            artifact_sha256: digest.to_hex(),
            artifact_size: size,
            models: vec!["A920".into()],
            min_firmware: None,
            release_notes: String::new(),
            created_at: "2026-11-27T00:00:00Z".into(),
        },
        &key,
    );
    let header = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&manifest).unwrap());

    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = server.rss_bytes().expect("server RSS");
    let sampler = RssSampler::start(server.pid());
    let file = tokio::fs::File::open(&path).await.unwrap();
    let body = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let publishing = Instant::now();
    let res = server
        .http
        .post(server.url("/api/v1/apps/eu.ccv.bench/releases"))
        .bearer_auth(&op)
        .header("x-tms-signed-manifest", header)
        .header("content-length", size)
        .timeout(Duration::from_secs(3600))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status(), 201, "publish failed: {}", res.text().await.unwrap_or_default());
    let publish_secs = publishing.elapsed().as_secs_f64();
    let publish_peak = sampler.stop().await;

    let sampler = RssSampler::start(server.pid());
    let downloading = Instant::now();
    let mut res = server
        .http
        .get(server.url("/api/v1/apps/eu.ccv.bench/releases/1.0.0/artifact"))
        .bearer_auth(&op)
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), 200);
    let mut received = 0u64;
    while let Some(chunk) = res.chunk().await.expect("download body") {
        received += chunk.len() as u64;
    }
    assert_eq!(received, size);
    let download_secs = downloading.elapsed().as_secs_f64();
    let download_peak = sampler.stop().await;

    let publish_mib_s = args.mib as f64 / publish_secs;
    let download_mib_s = args.mib as f64 / download_secs;
    let peak = publish_peak.max(download_peak);
    let growth = peak.saturating_sub(baseline);
    let backend = if args.postgres { "postgres" } else { "sqlite" };
    println!(
        "{}",
        json!({
            "benchmark": "artifact_publish_download",
            "backend": backend,
            "store": "filesystem",
            "artifact_mib": args.mib,
            "sha256_single_core_mib_s": sha_mib_s,
            "publish_mib_s": publish_mib_s,
            "publish_vs_sha256": publish_mib_s / sha_mib_s,
            "download_mib_s": download_mib_s,
            "server_rss_baseline_mib": mib(baseline),
            "server_rss_peak_mib": mib(peak),
            "server_rss_growth_mib": mib(growth),
            "targets_met": publish_mib_s / sha_mib_s >= 0.6 && growth < 64 << 20,
        })
    );
    eprintln!();
    eprintln!("artifact publish and download, {backend}, filesystem store, {} MiB", args.mib);
    eprintln!("  sha256, one core   {sha_mib_s:>8.1} MiB/s");
    eprintln!(
        "  publish            {publish_mib_s:>8.1} MiB/s  ({:.0} % of sha256; target ≥ 60 %)",
        100.0 * publish_mib_s / sha_mib_s
    );
    eprintln!("  download           {download_mib_s:>8.1} MiB/s");
    eprintln!("  server RSS         {:>8.1} MiB before, {:.1} MiB peak", mib(baseline), mib(peak));
    eprintln!(
        "  growth             {:>8.1} MiB  (target < 64 MiB: {})",
        mib(growth),
        if growth < 64 << 20 { "met" } else { "MISSED" }
    );
}
