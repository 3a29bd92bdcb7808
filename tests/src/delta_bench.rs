//! `tms-bench delta`: how small deltas are on realistic pairs of versions,
//! and what building one costs (time, peak memory).
//!
//! Two pairs, made here so the figures can be reproduced anywhere:
//! - **an APK-like archive**: many entries, each compressed on its own as in
//!   a zip (so a changed entry changes all its compressed bytes), where a
//!   new version changes a share of the entries and adds a few;
//! - **a firmware-like image**: a large image in which one region is
//!   rewritten and a few blocks shift.

use std::time::Instant;

use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct DeltaArgs {
    /// Size of the APK-like archive, in MiB
    #[arg(long, default_value_t = 64)]
    pub apk_mib: usize,
    /// Share of the archive's entries a new version changes, in percent
    #[arg(long, default_value_t = 10)]
    pub changed_percent: usize,
    /// Size of the firmware-like image, in MiB
    #[arg(long, default_value_t = 256)]
    pub firmware_mib: usize,
    /// zstd level the deltas are built at
    #[arg(long, default_value_t = tms_delta::DEFAULT_LEVEL)]
    pub level: i32,
}

/// Bytes that do not compress (a xorshift stream), like compressed content.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// An archive of entries of 16 to 256 KiB; `version` decides which entries
/// differ: entry `i` changes in version 2 when `i % (100 / changed) == 0`.
fn apk_like(total: usize, changed_percent: usize, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(total + (1 << 20));
    let every = (100 / changed_percent.clamp(1, 100)).max(1);
    let mut i = 0u64;
    while out.len() < total {
        let size = 16 * 1024 + (i as usize * 7919 % (240 * 1024));
        let changed = version > 1 && (i as usize).is_multiple_of(every);
        let seed = if changed { i * 1000 + version } else { i * 1000 };
        out.extend_from_slice(format!("PK\x03\x04entry-{i:06}.dex;size={size};").as_bytes());
        out.extend_from_slice(&noise(size, seed));
        i += 1;
    }
    if version > 1 {
        // A new version adds a few entries too.
        for j in 0..4 {
            out.extend_from_slice(format!("PK\x03\x04added-{j}.so;").as_bytes());
            out.extend_from_slice(&noise(64 * 1024, 9_000_000 + j));
        }
    }
    out
}

/// An image of `total` bytes: version 2 rewrites 2 % of it in one region
/// and inserts 4 KiB early on, shifting everything after.
fn firmware_like(total: usize, version: u64) -> Vec<u8> {
    let mut image = noise(total, 42);
    if version > 1 {
        let region = total / 50;
        let start = total / 3;
        image[start..start + region].copy_from_slice(&noise(region, 43));
        let at = total / 10;
        let inserted = noise(4096, 44);
        image.splice(at..at, inserted);
    }
    image
}

/// The process's peak resident memory so far (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Builds and applies one delta; prints and returns its figures.
fn measure(name: &str, base: &[u8], target: &[u8], level: i32) -> serde_json::Value {
    let before = peak_rss().unwrap_or(0);
    let started = Instant::now();
    let mut delta = Vec::new();
    tms_delta::build(base, &mut &target[..], target.len() as u64, level, &mut delta).expect("a delta");
    let build_secs = started.elapsed().as_secs_f64();
    let after = peak_rss().unwrap_or(0);
    let started = Instant::now();
    let mut back = Vec::with_capacity(target.len());
    tms_delta::apply(base, &mut &delta[..], &mut back).expect("the delta applies");
    let apply_secs = started.elapsed().as_secs_f64();
    assert!(back == target, "{name}: the delta gives back the target");
    let ratio = delta.len() as f64 / target.len() as f64;
    eprintln!(
        "{name:<10} full {:>8.1} MiB  delta {:>7.2} MiB ({:>5.1} % of full)  build {:>6.2} s ({:>6.1} MiB/s)  apply {:>5.2} s  peak RSS {:>7.1} MiB (bound {:.0} MiB)",
        mib(target.len() as u64),
        mib(delta.len() as u64),
        ratio * 100.0,
        build_secs,
        mib(target.len() as u64) / build_secs,
        apply_secs,
        mib(after.max(before)),
        mib(tms_delta::build_memory_bound(base.len() as u64, target.len() as u64)),
    );
    json!({
        "pair": name, "full_bytes": target.len(), "delta_bytes": delta.len(), "delta_share": ratio,
        "build_secs": build_secs, "apply_secs": apply_secs, "peak_rss_bytes": after.max(before),
    })
}

pub async fn run(args: DeltaArgs) {
    eprintln!(
        "tms-bench delta: level {}, {} % of the archive's entries changed",
        args.level, args.changed_percent
    );
    let (base, target) = (
        apk_like(args.apk_mib << 20, args.changed_percent, 1),
        apk_like(args.apk_mib << 20, args.changed_percent, 2),
    );
    let apk = measure("apk", &base, &target, args.level);
    drop((base, target));
    let (base, target) =
        (firmware_like(args.firmware_mib << 20, 1), firmware_like(args.firmware_mib << 20, 2));
    let firmware = measure("firmware", &base, &target, args.level);
    println!("{}", json!({"bench": "delta", "level": args.level, "pairs": [apk, firmware]}));
}
