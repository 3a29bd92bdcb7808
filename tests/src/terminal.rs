//! A simulated payment terminal: it reports its state, applies the answer
//! (installs, parameters, acquirer sessions) and reports feedback, as the
//! payment app would. Tests and the fleet benchmark drive these.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use tms_packages::contact::{AnswerError, verify_contact_answer};
use tms_packages::wire::contact::{
    ContactAnswer, ContactBody, ContactRequest, FeedbackRequest, InstalledApp, ReleaseOffer, TerminalState,
};
use tms_signing::PublicKey;
use tms_signing::Sha256Digest;

#[derive(Debug, Clone)]
pub struct SimTerminal {
    pub device_id: i64,
    pub token: String,
    pub merchant_id: i64,
    pub location_id: i64,
    pub state: TerminalState,
    pub utc_offset_minutes: i32,
    /// Sent with each contact when set.
    pub health: Option<tms_packages::wire::contact::TerminalHealth>,
    /// Reported with each contact [default: 1 GiB].
    pub free_storage_bytes: u64,
    /// The issue time of the last answer accepted (answers never go back).
    pub last_issued_at: Option<i64>,
    /// The last request body and the state it was made from: a load
    /// generator should not spend the CPU it shares with the server on
    /// serialising the same request again.
    request_cache: RequestCache,
}

/// What a request is made from besides its constant fields: the state, the
/// health and the free storage.
type RequestKey = (TerminalState, Option<tms_packages::wire::contact::TerminalHealth>, u64);
type RequestCache = std::sync::Arc<std::sync::Mutex<Option<(RequestKey, Vec<u8>)>>>;

/// Reads the tokens file `tms-server fleet seed` writes.
pub fn load_fleet(path: &Path) -> Vec<SimTerminal> {
    std::fs::read_to_string(path)
        .expect("tokens file")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let parts: Vec<&str> = line.split(',').collect();
            SimTerminal::new(
                parts[0].parse().expect("device id"),
                parts[1],
                (parts[3].parse().expect("merchant id"), parts[4].parse().expect("location id")),
                parts[2],
            )
        })
        .collect()
}

/// The feedback endpoint of a server, parsed once per thread and server.
fn feedback_url(base_url: &str) -> reqwest::Url {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, reqwest::Url)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((base, url)) if base == base_url => url.clone(),
        _ => {
            let url =
                reqwest::Url::parse(&format!("{base_url}/api/v1/terminal/feedback")).expect("a server URL");
            *last = Some((base_url.to_owned(), url.clone()));
            url
        }
    })
}

/// A contact's answer read for the load generator (see [`SimTerminal::contact_lean`]).
pub struct Lean {
    pub status: String,
    pub body: ContactBody,
    bytes: bytes::Bytes,
}

impl Lean {
    /// The whole answer, signature and all, to verify.
    pub fn signed(&self) -> ContactAnswer {
        serde_json::from_slice(&self.bytes).expect("a contact answer")
    }
}

/// What a contact returned (short-lived: its size does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Answer(ContactAnswer, ContactBody),
    Refused(u16, Value),
}

impl SimTerminal {
    pub fn new(
        device_id: i64,
        token: &str,
        (merchant_id, location_id): (i64, i64),
        model: &str,
    ) -> SimTerminal {
        SimTerminal {
            device_id,
            token: token.to_owned(),
            merchant_id,
            location_id,
            state: TerminalState {
                model: model.to_owned(),
                firmware: "9.0.0".into(),
                firmware_sha256: None,
                apps: Vec::new(),
                parameters: Default::default(),
                acquirers: Default::default(),
            },
            utc_offset_minutes: 60,
            health: None,
            free_storage_bytes: 1 << 30,
            last_issued_at: None,
            request_cache: Default::default(),
        }
    }

    pub fn with_app(mut self, app_id: &str, version: &str, code: u64, sha256: &str) -> SimTerminal {
        self.install(app_id, version, code, sha256);
        self
    }

    pub fn install(&mut self, app_id: &str, version: &str, code: u64, sha256: &str) {
        self.state.apps.retain(|a| a.app_id != app_id);
        self.state.apps.push(InstalledApp {
            app_id: app_id.into(),
            version: version.into(),
            version_code: code,
            sha256: sha256.into(),
        });
    }

    pub fn request(&self) -> ContactRequest {
        ContactRequest {
            digest: self.state.digest(),
            state: self.state.clone(),
            wifi: true,
            time_zone: "Europe/Amsterdam".into(),
            utc_offset_minutes: self.utc_offset_minutes,
            free_storage_bytes: self.free_storage_bytes,
            health: self.health.clone(),
        }
    }

    pub async fn contact(&self, http: &reqwest::Client, base_url: &str) -> Outcome {
        let url = reqwest::Url::parse(&format!("{base_url}/api/v1/terminal/contact")).expect("a server URL");
        self.contact_at(http, &url).await
    }

    /// A contact to an endpoint URL parsed once (the load generator should
    /// not spend the CPU it shares with the server parsing it again).
    pub async fn contact_at(&self, http: &reqwest::Client, url: &reqwest::Url) -> Outcome {
        let (status, bytes) = self.send_contact(http, url).await;
        if status != 200 {
            return Outcome::Refused(status, serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        let answer: ContactAnswer = serde_json::from_slice(&bytes).expect("a contact answer");
        let body = ContactBody::deserialize(&answer.answer.body).expect("a contact body");
        Outcome::Answer(answer, body)
    }

    /// A contact whose answer is read straight into its typed body, for the
    /// load generator: the signed answer's `Value` (a tree of maps) is built
    /// only when [`Lean::signed`] is asked for it, to verify a sample.
    pub async fn contact_lean(
        &self,
        http: &reqwest::Client,
        url: &reqwest::Url,
    ) -> Result<Lean, (u16, Value)> {
        #[derive(Deserialize)]
        struct Typed {
            status: String,
            answer: TypedSigned,
        }
        #[derive(Deserialize)]
        struct TypedSigned {
            body: ContactBody,
        }
        let (status, bytes) = self.send_contact(http, url).await;
        if status != 200 {
            return Err((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)));
        }
        let typed: Typed = serde_json::from_slice(&bytes).expect("a contact answer");
        Ok(Lean { status: typed.status, body: typed.answer.body, bytes })
    }

    async fn send_contact(&self, http: &reqwest::Client, url: &reqwest::Url) -> (u16, bytes::Bytes) {
        let body = {
            let mut cache = self.request_cache.lock().expect("not poisoned");
            match &*cache {
                Some(((state, health, free), bytes))
                    if *state == self.state && *health == self.health && *free == self.free_storage_bytes =>
                {
                    bytes.clone()
                }
                _ => {
                    let bytes = serde_json::to_vec(&self.request()).expect("requests serialise");
                    let key = (self.state.clone(), self.health.clone(), self.free_storage_bytes);
                    *cache = Some((key, bytes.clone()));
                    bytes
                }
            }
        };
        let res = http
            .post(url.clone())
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("contact");
        let status = res.status().as_u16();
        (status, res.bytes().await.unwrap_or_default())
    }

    /// The reference verification, then remembers the answer's issue time.
    pub fn accept(&mut self, answer: &ContactAnswer, trusted: &[PublicKey]) -> Result<(), AnswerError> {
        let now = chrono::Utc::now().timestamp();
        // Shared answers are dated up to one step (a minute) ahead.
        verify_contact_answer(
            &answer.answer,
            trusted,
            now,
            self.last_issued_at,
            120,
            self.device_id,
            &self.state.digest(),
        )?;
        self.last_issued_at = Some(answer.answer.issued_at);
        Ok(())
    }

    /// Applies every change of an answer as the payment app would, reporting
    /// `installed` for each app change; acquirer sessions are run.
    pub async fn apply(&mut self, http: &reqwest::Client, base_url: &str, body: &ContactBody) {
        for change in body.apps.iter().chain(body.firmware.iter()) {
            match (&change.release, change.change.as_str()) {
                (_, "remove") => self.state.apps.retain(|a| a.app_id != change.app_id),
                (Some(r), _) if r.manifest.kind == "firmware" => {
                    self.state.firmware = r.version.clone();
                    if self.state.firmware_sha256.is_some() {
                        self.state.firmware_sha256 = Some(r.sha256.clone());
                    }
                }
                (Some(r), _) => {
                    let (app, version, code, sha) =
                        (change.app_id.clone(), r.version.clone(), r.version_code, r.sha256.clone());
                    self.install(&app, &version, code, &sha);
                }
                (None, _) => continue,
            }
            self.feedback(http, base_url, change.deployment_id, &change.app_id, "installed", None).await;
        }
        for p in &body.parameters {
            self.state.parameters.insert(p.app_id.clone(), p.version.clone());
        }
        for acquirer in &body.acquirer_sessions {
            let res = http
                .post(format!("{base_url}/api/v1/terminal/acquirer-sessions/{acquirer}"))
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("acquirer session");
            let v: Value = res.json().await.unwrap_or(Value::Null);
            if let Some(version) = v["parameter_version"].as_u64() {
                self.state.acquirers.insert(acquirer.clone(), version);
            }
        }
    }

    /// Fetches an offered release as the payment app does: the delta when
    /// one is offered and the terminal still has the base it names (its
    /// bytes, `installed`), applied and checked against the sha256 the
    /// publisher signed; the full artifact otherwise, or when the delta
    /// fails to download, to apply or to check. Returns the artifact and
    /// which way it came (`delta` or `full`, as feedback reports it); an
    /// artifact whose sha256 the publisher did not sign is never returned.
    pub async fn fetch_release(
        &self,
        http: &reqwest::Client,
        base_url: &str,
        offer: &ReleaseOffer,
        installed: Option<&[u8]>,
    ) -> Result<(Vec<u8>, &'static str), String> {
        let signed = &offer.manifest.artifact_sha256;
        if let (Some(delta), Some(base)) = (&offer.delta, installed)
            && Sha256Digest::of(base).to_hex() == delta.base_sha256
            && let Ok(patch) = self.download(http, base_url, &delta.download_path).await
            && Sha256Digest::of(&patch).to_hex() == delta.sha256
        {
            let mut rebuilt = Vec::with_capacity(offer.size as usize);
            if tms_delta::apply(base, &mut &patch[..], &mut rebuilt).is_ok()
                && Sha256Digest::of(&rebuilt).to_hex() == *signed
            {
                return Ok((rebuilt, "delta"));
            }
        }
        let full = self.download(http, base_url, &offer.download_path).await?;
        if Sha256Digest::of(&full).to_hex() != *signed {
            return Err(format!("the artifact of {} is not what the publisher signed", offer.version));
        }
        Ok((full, "full"))
    }

    async fn download(&self, http: &reqwest::Client, base_url: &str, path: &str) -> Result<Vec<u8>, String> {
        let res = http
            .get(format!("{base_url}{path}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("{path}: {}", res.status()));
        }
        Ok(res.bytes().await.map_err(|e| e.to_string())?.to_vec())
    }

    /// Reports that a change was installed and which way its download came.
    pub async fn report_installed(
        &self,
        http: &reqwest::Client,
        base_url: &str,
        deployment_id: i64,
        app_id: &str,
        download: &str,
    ) -> u16 {
        let body = FeedbackRequest {
            deployment_id,
            app_id: app_id.to_owned(),
            status: "installed".to_owned(),
            progress_percent: None,
            error_code: None,
            message: None,
            download: Some(download.to_owned()),
        };
        self.send_feedback(http, base_url, &body).await
    }

    async fn send_feedback(&self, http: &reqwest::Client, base_url: &str, body: &FeedbackRequest) -> u16 {
        http.post(feedback_url(base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("feedback")
            .status()
            .as_u16()
    }

    pub async fn feedback(
        &self,
        http: &reqwest::Client,
        base_url: &str,
        deployment_id: i64,
        app_id: &str,
        status: &str,
        error_code: Option<&str>,
    ) -> u16 {
        let body = FeedbackRequest {
            deployment_id,
            app_id: app_id.to_owned(),
            status: status.to_owned(),
            progress_percent: None,
            error_code: error_code.map(str::to_owned),
            message: error_code.map(|_| "simulated failure".to_owned()),
            download: None,
        };
        self.send_feedback(http, base_url, &body).await
    }
}
