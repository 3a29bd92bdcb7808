use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A real S3-compatible server (moto's, from PyPI) with one empty bucket,
/// private to one test and stopped when dropped.
pub struct MotoServer {
    child: Option<Child>,
    pub endpoint: String,
    pub bucket: String,
}

impl MotoServer {
    /// Starts one, or returns `None` where moto is not installed and this is
    /// not CI. `TMS_TEST_MOTO_SERVER` names the executable (default
    /// `moto_server` on the PATH).
    pub async fn start() -> Option<MotoServer> {
        let program =
            std::env::var("TMS_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{program}: {e} (pip install 'moto[server]')"));
        let child = crate::require("S3-compatible server (moto)", child)?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let bucket = format!("tms-test-{:08x}", rand::random::<u32>());
        let http = reqwest::Client::new();

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http.put(format!("{endpoint}/{bucket}")).send().await {
                Ok(res) if res.status().is_success() => break,
                Ok(res) => panic!("creating bucket {bucket} on moto: HTTP {}", res.status()),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("moto_server did not come up on {endpoint}: {e}"),
            }
        }
        Some(MotoServer {
            child: Some(child),
            endpoint,
            bucket,
        })
    }

    /// Stops the server, as an outage would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
