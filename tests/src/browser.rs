//! A real Chromium, driven over W3C WebDriver (Debian's `chromedriver`),
//! for the portal's browser tests. Every page a test looks at is saved as a
//! full-page PNG at a desktop and a phone width under
//! `target/screenshots/<test>/`, and the paths are printed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// Widths every page is photographed at: a desktop and a phone.
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    shots: PathBuf,
    shot_count: u32,
}

fn find_program(env: &str, candidates: &[&str]) -> Result<String, String> {
    if let Ok(path) = std::env::var(env) {
        return Ok(path);
    }
    for c in candidates {
        if std::path::Path::new(c).exists() {
            return Ok((*c).to_owned());
        }
        if let Ok(out) = Command::new("which").arg(c).output()
            && out.status.success()
        {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
    }
    Err(format!("none of {candidates:?} found (apt-get install chromium chromium-driver, or set {env})"))
}

impl Browser {
    /// A new headless Chromium whose Accept-Language is `accept_language`;
    /// `None` (test skipped) without Chromium on a developer machine.
    pub async fn start(test: &str, accept_language: &str) -> Option<Browser> {
        let driver = crate::require(
            "Chromium and ChromeDriver (browser tests)",
            find_program("TMS_TEST_CHROMEDRIVER", &["/usr/bin/chromedriver", "chromedriver"]),
        )?;
        let chromium = crate::require(
            "Chromium and ChromeDriver (browser tests)",
            find_program("TMS_TEST_CHROMIUM", &["/usr/bin/chromium", "chromium", "chromium-browser"]),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {driver}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        // A browser that stops answering fails the test within a minute
        // instead of holding the run.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        for attempt in 0.. {
            match http.get(format!("{base}/status")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if attempt > 100 => panic!("chromedriver did not start"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let profile = tempfile::tempdir().expect("profile dir").keep();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.display()),
                    format!("--accept-lang={accept_language}"),
                ],
                "prefs": {"intl.accept_languages": accept_language},
            }
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session JSON");
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {response}"))
            .to_owned();
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots").join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Some(Browser { driver: child, base, session, http, shots, shot_count: 0 })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value =
            request.send().await.expect("WebDriver call").json().await.expect("WebDriver JSON");
        if let Some(error) = response["value"].get("error") {
            panic!("WebDriver {path}: {error}: {}", response["value"]["message"]);
        }
        response["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The element matching `css`; panics (with the page's text) if none.
    pub async fn find(&self, css: &str) -> String {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let response: Value = self
            .http
            .post(&url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .expect("WebDriver call")
            .json()
            .await
            .expect("JSON");
        match response["value"][ELEMENT_KEY].as_str() {
            Some(id) => id.to_owned(),
            None => panic!("no element {css:?} on {}:\n{}", self.url().await, self.body_text().await),
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        let found = self
            .command(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})))
            .await;
        found.as_array().is_some_and(|a| !a.is_empty())
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// Clears a field and types `text` into it, as a user would.
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({}))).await;
        self.command(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text})))
            .await;
    }

    /// Chooses a file in an `<input type=file>` (the driver reads it from disk).
    pub async fn send_file(&self, css: &str, path: &std::path::Path) {
        let id = self.find(css).await;
        let text = path.display().to_string();
        self.command(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text})))
            .await;
    }

    /// Chooses the option of a `<select>` whose value is `value`.
    pub async fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]")).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.command(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let id = self.find(css).await;
        self.command(reqwest::Method::GET, &format!("/element/{id}/attribute/{name}"), None)
            .await
            .as_str()
            .map(str::to_owned)
    }

    /// Runs `script` in the page, as the page's own script would; its result.
    pub async fn script(&self, script: &str) -> Value {
        let url = format!("{}/session/{}/execute/sync", self.base, self.session);
        let response: Value = self
            .http
            .post(&url)
            .json(&json!({"script": script, "args": []}))
            .send()
            .await
            .expect("WebDriver call")
            .json()
            .await
            .expect("JSON");
        response["value"].clone()
    }

    pub async fn body_text(&self) -> String {
        self.script("return document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (a page may still be loading after a click) until the page
    /// shows `needle`; panics with the page's text if it never does.
    pub async fn expect_text(&self, needle: &str) {
        let mut text = String::new();
        for _ in 0..200 {
            text = self.body_text().await;
            if text.contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{needle:?} never appeared on {}:\n{text}", self.url().await);
    }

    /// Waits until the page's first heading is `heading` (read in one
    /// script call, so a page being replaced meanwhile is no error).
    pub async fn expect_heading(&self, heading: &str) {
        let mut seen = Value::Null;
        for _ in 0..200 {
            seen = self.script("const h = document.querySelector('h1'); return h ? h.innerText : null").await;
            if seen.as_str() == Some(heading) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the heading stayed {seen}, not {heading:?}, on {}", self.url().await);
    }

    /// The value of the cookie `name`, as the browser holds it.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let all = self.command(reqwest::Method::GET, "/cookie", None).await;
        all.as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_str())
            .map(str::to_owned)
    }

    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command(reqwest::Method::POST, "/goog/cdp/execute", Some(json!({"cmd": cmd, "params": params})))
            .await
    }

    /// Saves the whole page (not only the window) at the desktop and the
    /// phone width; prints where.
    pub async fn snap(&mut self, name: &str) {
        self.shot_count += 1;
        for (label, (width, height), mobile) in [("desktop", DESKTOP, false), ("phone", PHONE, true)] {
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
            let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
            let full =
                metrics["cssContentSize"]["height"].as_f64().unwrap_or(f64::from(height)).ceil() as u32;
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": full.max(height), "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
            let shot = self
                .cdp("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": false}))
                .await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().expect("screenshot data"))
                .expect("base64 PNG");
            let path = self.shots.join(format!("{:02}-{name}-{label}.png", self.shot_count));
            std::fs::write(&path, png).expect("write screenshot");
            println!("screenshot: {}", path.display());
        }
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({})).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: end the session (closes Chromium), then the driver.
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session
            );
            let _ = stream.write_all(request.as_bytes());
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
