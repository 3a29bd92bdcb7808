//! Prometheus metrics: request counts and latency histograms by route, method
//! and status, and database pool use.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::db::PoolUse;

/// Upper bounds (seconds) of the latency buckets: fine-grained below 10 ms,
/// where the terminal contact path is meant to live.
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
}

/// Blob collection's figures, since the process started.
#[derive(Debug, Default, Clone, Copy)]
struct BlobCollection {
    orphans: usize,
    deleted: u64,
    deleted_bytes: u64,
    last_pass_unix: i64,
}

/// The missing-terminal pass's figures (-1: no pass yet).
#[derive(Debug, Clone, Copy)]
struct MissingTerminals {
    missing: i64,
    went_missing: u64,
    came_back: u64,
}

impl Default for MissingTerminals {
    fn default() -> Self {
        MissingTerminals { missing: -1, went_missing: 0, came_back: 0 }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    requests: std::sync::Arc<Mutex<HashMap<SeriesKey, Series>>>,
    blob_collection: std::sync::Arc<Mutex<BlobCollection>>,
    missing: std::sync::Arc<Mutex<MissingTerminals>>,
}

impl Metrics {
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = BUCKETS.iter().position(|le| seconds <= *le).unwrap_or(BUCKETS.len());
        let key = SeriesKey { route: route.to_owned(), method: method.to_owned(), status };
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let series = requests.entry(key).or_default();
        series.count += 1;
        series.sum_seconds += seconds;
        series.buckets[slot] += 1;
    }

    /// A pass of blob collection.
    pub fn record_blob_collection(&self, pass: &crate::blob_gc::Collection) {
        let mut figures = self.blob_collection.lock().unwrap_or_else(|p| p.into_inner());
        figures.orphans = pass.orphans.len();
        figures.deleted += pass.deleted as u64;
        figures.deleted_bytes += pass.deleted_bytes;
        figures.last_pass_unix = crate::time::unix_now();
    }

    /// A pass of the missing-terminal check.
    pub fn record_missing_pass(&self, pass: &crate::devices::missing::Pass) {
        let mut figures = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        figures.missing = pass.missing as i64;
        figures.went_missing += pass.now_missing.len() as u64;
        figures.came_back += pass.back.len() as u64;
    }

    /// The Prometheus text exposition of everything measured so far.
    pub fn render(&self, pool: PoolUse) -> String {
        let mut series: Vec<(SeriesKey, Series)> = {
            let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            requests.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        series.sort_by(|a, b| a.0.cmp(&b.0));

        let mut out = String::new();
        out.push_str("# HELP tms_http_requests_total HTTP requests handled, by route, method and status.\n");
        out.push_str("# TYPE tms_http_requests_total counter\n");
        for (key, s) in &series {
            let _ = writeln!(out, "tms_http_requests_total{{{}}} {}", labels(key), s.count);
        }
        out.push_str("# HELP tms_http_request_duration_seconds Time to answer HTTP requests.\n");
        out.push_str("# TYPE tms_http_request_duration_seconds histogram\n");
        for (key, s) in &series {
            let labels = labels(key);
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i];
                let _ = writeln!(
                    out,
                    "tms_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ =
                writeln!(out, "tms_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "tms_http_request_duration_seconds_sum{{{labels}}} {}", s.sum_seconds);
            let _ = writeln!(out, "tms_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        for (name, help, value) in [
            ("tms_db_pool_connections", "Open database connections.", pool.connections),
            ("tms_db_pool_idle_connections", "Open database connections not in use.", pool.idle),
            ("tms_db_pool_in_use_connections", "Database connections in use.", pool.connections - pool.idle),
            ("tms_db_pool_max_connections", "Most database connections the pool opens.", pool.max),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let blobs = *self.blob_collection.lock().unwrap_or_else(|p| p.into_inner());
        let missing = *self.missing.lock().unwrap_or_else(|p| p.into_inner());
        for (name, kind, help, value) in [
            (
                "tms_blob_orphans",
                "gauge",
                "Blobs no row names, waiting for their grace period.",
                blobs.orphans as i64,
            ),
            (
                "tms_blob_gc_deleted_total",
                "counter",
                "Orphan blobs deleted by blob collection.",
                blobs.deleted as i64,
            ),
            (
                "tms_blob_gc_deleted_bytes_total",
                "counter",
                "Bytes of the orphan blobs deleted.",
                blobs.deleted_bytes as i64,
            ),
            (
                "tms_blob_gc_last_pass_timestamp_seconds",
                "gauge",
                "When blob collection last ran (0: not yet).",
                blobs.last_pass_unix,
            ),
            (
                "tms_terminals_missing",
                "gauge",
                "Active terminals not heard from for longer than their threshold (-1: not counted yet).",
                missing.missing,
            ),
            (
                "tms_terminals_went_missing_total",
                "counter",
                "Terminals this process found missing.",
                missing.went_missing as i64,
            ),
            (
                "tms_terminals_came_back_total",
                "counter",
                "Missing terminals this process saw come back.",
                missing.came_back as i64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}

fn labels(key: &SeriesKey) -> String {
    format!("route=\"{}\",method=\"{}\",status=\"{}\"", escape(&key.route), escape(&key.method), key.status)
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let m = Metrics::default();
        m.observe_request("/healthz", "GET", 200, Duration::from_micros(300));
        m.observe_request("/healthz", "GET", 200, Duration::from_millis(3));
        m.observe_request("/healthz", "GET", 200, Duration::from_secs(20));
        let text = m.render(PoolUse { connections: 2, idle: 1, max: 16 });
        let labels = r#"route="/healthz",method="GET",status="200""#;
        assert!(text.contains(&format!("tms_http_requests_total{{{labels}}} 3")), "{text}");
        assert!(text.contains(&format!(r#"_bucket{{{labels},le="0.0005"}} 1"#)), "{text}");
        assert!(text.contains(&format!(r#"_bucket{{{labels},le="0.005"}} 2"#)), "{text}");
        assert!(text.contains(&format!(r#"_bucket{{{labels},le="10"}} 2"#)), "{text}");
        assert!(text.contains(&format!(r#"_bucket{{{labels},le="+Inf"}} 3"#)), "{text}");
        assert!(text.contains("tms_db_pool_in_use_connections 1"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let key = SeriesKey { route: "a\"b\\c".into(), method: "GET".into(), status: 404 };
        assert_eq!(labels(&key), r#"route="a\"b\\c",method="GET",status="404""#);
    }
}
