use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::{MotoServer, TestDatabase};

/// Path of a binary of this workspace, built next to the test binary
/// (`target/debug/`). The test command builds them first (`cargo build --bins`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // A test binary lives in target/<profile>/deps/, a benchmark binary in
    // target/<profile>/ itself.
    let profile_dir = exe.parent().expect("binary folder");
    let dir = if profile_dir.ends_with("deps") {
        profile_dir.parent().expect("target/<profile>/")
    } else {
        profile_dir
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} does not exist: build the binaries first (cargo build --bins), or run scripts/test",
        path.display()
    );
    path
}

/// How to start a server for a test.
#[derive(Default)]
pub struct ServerBuilder {
    env: Vec<(String, String)>,
    args: Vec<String>,
    cwd: Option<PathBuf>,
}

impl ServerBuilder {
    pub fn new() -> ServerBuilder {
        ServerBuilder::default()
    }

    pub fn database(self, db: &TestDatabase) -> ServerBuilder {
        self.env("TMS_DATABASE_URL", &db.url)
    }

    /// Blobs in the bucket of a running S3-compatible server.
    pub fn s3(self, s3: &MotoServer) -> ServerBuilder {
        self.env("TMS_OBJECT_STORE_URL", &format!("s3://{}", s3.bucket))
            .env("TMS_S3_ENDPOINT", &s3.endpoint)
            .env("TMS_S3_ALLOW_HTTP", "true")
            .env("TMS_S3_ACCESS_KEY_ID", "tms-test")
            .env("TMS_S3_SECRET_ACCESS_KEY", "tms-test-secret")
    }

    pub fn env(mut self, key: &str, value: &str) -> ServerBuilder {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn arg(mut self, arg: &str) -> ServerBuilder {
        self.args.push(arg.to_owned());
        self
    }

    /// Run with this working directory and no data-dir setting, as an operator
    /// running the bare binary would.
    pub fn zero_config_in(mut self, cwd: PathBuf) -> ServerBuilder {
        self.cwd = Some(cwd);
        self
    }

    pub async fn start(self) -> TestServer {
        let temp = tempfile::Builder::new().prefix("tms-server-").tempdir().expect("temp dir");
        let data_dir = match &self.cwd {
            Some(cwd) => cwd.join("tms-data"),
            None => temp.path().join("data"),
        };
        let mut cmd = Command::new(binary("tms-server"));
        // The test decides every setting: nothing leaks in from the caller's shell.
        for (key, _) in std::env::vars() {
            if key.starts_with("TMS_") {
                cmd.env_remove(key);
            }
        }
        match &self.cwd {
            Some(cwd) => {
                cmd.current_dir(cwd);
            }
            None => {
                cmd.env("TMS_DATA_DIR", &data_dir);
            }
        }
        cmd.args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn tms-server");
        let mut settings = self.env.clone();
        if self.cwd.is_none() {
            settings.push(("TMS_DATA_DIR".into(), data_dir.display().to_string()));
        }

        let logs = Arc::new(Mutex::new(Vec::new()));
        let (listening_tx, listening_rx) = oneshot::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(collect_logs(stdout, logs.clone(), Some(listening_tx)));
        tokio::spawn(collect_logs(stderr, logs.clone(), None));

        let addr = match tokio::time::timeout(Duration::from_secs(60), listening_rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let status = child.try_wait().ok().flatten();
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "tms-server did not start (exit: {status:?}); its output:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        TestServer {
            child,
            settings,
            base_url: format!("http://{addr}"),
            data_dir,
            _temp: temp,
            logs,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
        }
    }
}

/// Keeps every output line, and reports the address from the start-up line.
async fn collect_logs(
    stream: impl tokio::io::AsyncRead + Unpin,
    logs: Arc<Mutex<Vec<String>>>,
    mut listening: Option<oneshot::Sender<String>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
            && event["message"] == "tms-server listening"
            && let Some(addr) = event["listen"].as_str()
            && let Some(tx) = listening.take()
        {
            let _ = tx.send(addr.to_owned());
        }
        logs.lock().unwrap().push(line);
    }
}

/// A running `tms-server` process, killed when dropped.
pub struct TestServer {
    child: Child,
    /// The TMS_* settings it runs with, for operator commands on its data.
    settings: Vec<(String, String)>,
    pub base_url: String,
    pub data_dir: PathBuf,
    _temp: TempDir,
    logs: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::Client,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request reaches the server")
    }

    /// GET and decode a JSON body, with the status.
    pub async fn get_json(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let res = self.get(path).await;
        let status = res.status();
        let body = res.json().await.expect("JSON body");
        (status, body)
    }

    /// Sends a JSON request (with a bearer token when given) and returns the
    /// status and the JSON body (`null` when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let method_was_head = method == reqwest::Method::HEAD;
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let res = request.send().await.expect("request reaches the server");
        let status = res.status();
        let text = res.text().await.expect("body");
        let json = if text.is_empty() || method_was_head {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, json)
    }

    /// Runs `tms-server` with this server's settings (database, data dir).
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(binary("tms-server"));
        for (key, _) in std::env::vars() {
            if key.starts_with("TMS_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.settings.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Creates an operator on the server host, as `tms-server operator create` does.
    pub fn create_operator(&self, email: &str, role: &str, password: &str) {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["operator", "create", "--email", email, "--role", role, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tms-server operator create");
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "operator create failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The server's master key file (the data directory's, as the
    /// server's default).
    pub fn master_key_file(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    /// The server's master keys, read from its key file.
    pub fn master_keys(&self) -> tms_server::secrets::MasterKeys {
        tms_server::secrets::MasterKeys::open(&self.master_key_file()).expect("the server's master key file")
    }

    /// Moves the clock of a server started with `TMS_ADJUSTABLE_CLOCK=true`
    /// forward (as an operator admin): tests drive time rather than wait.
    pub async fn advance_clock(&self, operator_admin: &str, secs: u64) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/test/clock",
                Some(operator_admin),
                Some(serde_json::json!({"advance_secs": secs})),
            )
            .await;
        assert_eq!(
            status, 200,
            "the clock did not move (start the server with TMS_ADJUSTABLE_CLOCK=true): {body}"
        );
    }

    /// Logs in and returns the session token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login of {email}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// The e-mails written to the outbox, oldest first, as raw text.
    pub fn outbox(&self) -> Vec<String> {
        self.outbox_files("eml")
    }

    /// The outbox's files with this extension, oldest first.
    fn outbox_files(&self, extension: &str) -> Vec<String> {
        let dir = self.data_dir.join("outbox");
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == extension))
                .collect(),
            Err(_) => return Vec::new(),
        };
        paths.sort();
        paths.iter().map(|p| std::fs::read_to_string(p).expect("read outbox mail")).collect()
    }

    /// The activation token in the newest outbox e-mail to `to`, read from
    /// the plain copy the server writes beside each message, as a person
    /// would: the link is whole there.
    pub fn activation_token_for(&self, to: &str) -> String {
        let mail = self
            .outbox_files("txt")
            .into_iter()
            .rev()
            .find(|m| m.lines().next().is_some_and(|l| l == format!("To: {to}")))
            .unwrap_or_else(|| panic!("no e-mail to {to} in the outbox"));
        let start = mail.find("token=").expect("activation link") + "token=".len();
        mail[start..].chars().take_while(|c| c.is_ascii_hexdigit()).collect()
    }

    /// Everything the server has printed so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Resident memory of the server process, in bytes (Linux).
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_of(self.pid())
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("server is running")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(mut self) -> ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits within 30 s of SIGTERM")
            .expect("wait for server")
    }
}

/// Runs the `tms` CLI against `server` with its own credentials file; returns
/// (exit code, stdout, stderr).
pub fn run_tms(
    server: &TestServer,
    credentials: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(binary("tms"))
        .args(["--server", &server.base_url])
        .args(args)
        .env_remove("TMS_SERVER")
        .env_remove("TMS_TOKEN")
        .env("TMS_CREDENTIALS_FILE", credentials)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tms");
    if let Some(input) = stdin {
        writeln!(child.stdin.take().expect("stdin"), "{input}").expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("tms output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Resident memory of a process, in bytes (Linux).
pub fn rss_of(pid: u32) -> Option<u64> {
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

/// Logs the `tms` CLI in as `email` into `credentials` (the password on
/// standard input), asserting it succeeded.
pub fn login_tms(server: &TestServer, credentials: &std::path::Path, email: &str, password: &str) {
    let (code, _, err) =
        run_tms(server, credentials, &["login", "--email", email, "--password-stdin"], Some(password));
    assert_eq!(code, 0, "tms login as {email}: {err}");
}
