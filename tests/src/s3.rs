use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A bucket of its own on a real S3-compatible server (moto's, from PyPI):
/// on the server `scripts/test` started (`TMS_TEST_S3_ENDPOINT`), or on a
/// private one for tests that need to stop it.
pub struct MotoServer {
    child: Option<Child>,
    pub endpoint: String,
    pub bucket: String,
}

impl MotoServer {
    /// A fresh bucket on the shared server, or on a private one where none
    /// runs; `None` where moto is not installed and this is not CI.
    pub async fn start() -> Option<MotoServer> {
        match std::env::var("TMS_TEST_S3_ENDPOINT") {
            Ok(endpoint) => Some(MotoServer::with_bucket(None, endpoint).await),
            Err(_) => MotoServer::start_private().await,
        }
    }

    /// A server of this test's own (which it may stop). `TMS_TEST_MOTO_SERVER`
    /// names the executable (default `moto_server` on the PATH).
    pub async fn start_private() -> Option<MotoServer> {
        let program = std::env::var("TMS_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
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
        Some(MotoServer::with_bucket(Some(child), format!("http://127.0.0.1:{port}")).await)
    }

    async fn with_bucket(child: Option<Child>, endpoint: String) -> MotoServer {
        let bucket = format!("tms-test-{:08x}", rand::random::<u32>());
        let http = reqwest::Client::new();

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http.put(format!("{endpoint}/{bucket}")).send().await {
                Ok(res) if res.status().is_success() => break,
                Ok(res) => panic!("creating bucket {bucket} on moto: HTTP {}", res.status()),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("moto_server did not come up on {endpoint}: {e}"),
            }
        }
        MotoServer { child, endpoint, bucket }
    }

    /// Stops a private server, as an outage would.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("only a private server (start_private) can be stopped");
        let _ = child.kill().await;
        let _ = child.wait().await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}
