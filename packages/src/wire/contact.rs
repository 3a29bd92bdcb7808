//! The TMS contact: what a terminal reports, what the server answers, and
//! the feedback a terminal sends about each change it applies.

use std::collections::BTreeMap;

use serde_json::Value;
use tms_signing::Sha256Digest;

use crate::contact::{ActionType, ChangeKind};
use crate::releases::ReleaseManifest;

wire! {
    /// An app as the terminal has it installed.
    pub struct InstalledApp {
        pub app_id: String,
        pub version: String,
        pub version_code: u64,
        /// sha256 of the installed package, hex.
        pub sha256: String,
    }

    /// What a terminal has: the part of its report its target is compared
    /// with. Its digest ([`TerminalState::digest`]) is the sha256 of its
    /// canonical JSON with the apps sorted by app id.
    pub struct TerminalState {
        pub model: String,
        pub firmware: String,
        /// sha256 of the firmware image the terminal runs, hex, when it
        /// knows it: a firmware delta is offered only against exactly that
        /// image. Left out of the digest when absent, so terminals that do
        /// not report it keep their digests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub firmware_sha256: Option<String>,
        pub apps: Vec<InstalledApp>,
        /// The parameter version (`g.m.l.d`) last applied, per app id.
        #[serde(default)]
        pub parameters: BTreeMap<String, String>,
        /// The acquirer parameter version held, per acquirer id.
        #[serde(default)]
        pub acquirers: BTreeMap<String, u64>,
    }

    /// `POST /api/v1/terminal/contact`.
    pub struct ContactRequest {
        pub state: TerminalState,
        /// [`TerminalState::digest`] of `state`, hex.
        pub digest: String,
        #[serde(default)]
        pub wifi: bool,
        /// IANA name, e.g. `Europe/Amsterdam` (recorded for support).
        #[serde(default)]
        pub time_zone: String,
        /// The terminal's current offset from UTC, daylight saving included:
        /// maintenance windows are in the terminal's local time.
        #[serde(default)]
        pub utc_offset_minutes: i32,
        #[serde(default)]
        pub free_storage_bytes: u64,
        /// How the terminal is doing (kept as its latest, for support).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub health: Option<TerminalHealth>,
    }

    /// A terminal's health at a contact; every field optional.
    #[derive(Default)]
    pub struct TerminalHealth {
        /// 0 to 100.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub battery_percent: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub charging: Option<bool>,
        /// `wifi`, `mobile`, `ethernet` or `none`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub network: Option<String>,
        /// Signal strength, 0 to 100.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub signal_percent: Option<u8>,
        /// `ok`, `paper_out`, `error` or `absent`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub printer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub uptime_secs: Option<u64>,
    }

    /// An answer signed by a server key (see `/.well-known/tms/answer-keys`).
    /// Terminals refuse one that is expired, issued before one they already
    /// accepted, or not signed by a key they trust.
    pub struct SignedAnswer {
        /// A [`ContactBody`].
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        pub body: Value,
        /// Unix seconds.
        pub issued_at: i64,
        pub expires_at: i64,
        pub key_id: String,
        /// ed25519 over the canonical JSON of
        /// `{body, issued_at, expires_at, key_id}`, hex.
        pub signature: String,
    }

    /// The answer to a contact.
    pub struct ContactAnswer {
        /// `in_sync`: nothing to do (the body carries only the target's digest,
        /// which equals the terminal's own); `changes`: the body lists them.
        pub status: String,
        /// When to call again. Not signed (it differs per terminal by jitter);
        /// a terminal keeps it within its own bounds and the answer's expiry.
        pub next_contact_secs: u64,
        pub answer: SignedAnswer,
    }

    /// What the server signs. Empty lists are left out, so the answer of a
    /// terminal in sync is `{"target_digest": …}` alone, shared by every
    /// terminal with the same target.
    #[derive(Default)]
    pub struct ContactBody {
        /// The digest the terminal's state has once it applied every change
        /// in this answer.
        pub target_digest: String,
        /// The terminal and the state (its digest) the changes were computed
        /// for: a terminal refuses an answer meant for another, or for a
        /// state it no longer has (a replay of an older answer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub device_id: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub state_digest: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub apps: Vec<AppInstruction>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub firmware: Option<AppInstruction>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub parameters: Vec<ParameterUpdate>,
        /// Acquirers whose parameter session is due (the terminal holds another
        /// version than the acquirer's current one).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub acquirer_sessions: Vec<String>,
        /// Commands from support or the merchant, oldest first: carry out
        /// each once (by id), then report its result. Sent again at every
        /// contact until reported, expired or cancelled.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub commands: Vec<crate::wire::commands::CommandInstruction>,
    }

    /// Install, update or remove one app (or flash firmware).
    pub struct AppInstruction {
        pub app_id: String,
        pub change: ChangeKind,
        /// Quote it in feedback.
        pub deployment_id: i64,
        pub action: ActionType,
        /// Download only over wifi.
        pub wifi_only: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub release: Option<ReleaseOffer>,
    }

    /// The release to fetch, with what the terminal needs to check it.
    pub struct ReleaseOffer {
        pub release_id: i64,
        pub version: String,
        pub version_code: u64,
        pub size: u64,
        pub sha256: String,
        /// The manifest the publisher signed, its signature (hex) and key id.
        pub manifest: ReleaseManifest,
        pub signature: String,
        pub key_id: String,
        /// Relative to the server; HTTP Range is supported.
        pub download_path: String,
        /// A smaller download, when the server has a delta from exactly the
        /// artifact this terminal runs (matched by its sha256): apply it to
        /// the installed artifact, check the result's sha256 against
        /// `manifest`, and download `download_path` instead when anything
        /// does not match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub delta: Option<DeltaOffer>,
    }

    /// A delta from one artifact to the release's.
    pub struct DeltaOffer {
        /// The artifact it applies to: what the terminal runs.
        pub base_sha256: String,
        pub sha256: String,
        pub size: u64,
        /// Relative to the server; HTTP Range is supported.
        pub download_path: String,
    }

    /// New parameters for one app.
    pub struct ParameterUpdate {
        pub app_id: String,
        /// The version to report once applied.
        pub version: String,
        /// The whole set (the terminal held none, or one the server no longer
        /// knows); otherwise only the keys that changed.
        pub full: bool,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        pub changed: BTreeMap<String, Value>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub removed: Vec<String>,
    }

    /// `POST /api/v1/terminal/feedback`: how one change is going.
    pub struct FeedbackRequest {
        pub deployment_id: i64,
        pub app_id: String,
        /// `downloading`, `downloaded`, `installing`, `installed`, `failed` or
        /// `postponed` (the app is mid-transaction).
        pub status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub progress_percent: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<String>,
        /// How the release came: `delta` (the offer's delta, applied and
        /// checked) or `full` (the artifact, also after a delta that did
        /// not apply).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub download: Option<String>,
    }
}

/// The ways a terminal fetches a release, as it reports them.
pub const DOWNLOAD_WAYS: [&str; 2] = ["delta", "full"];

/// The statuses a terminal reports, and which of them end an action.
pub const ACTION_STATUSES: [&str; 6] =
    ["downloading", "downloaded", "installing", "installed", "failed", "postponed"];

pub fn is_final_status(status: &str) -> bool {
    matches!(status, "installed" | "failed")
}

/// The state with its fields in canonical order (sorted by name, as are
/// the maps' keys): serde_json writes it as its canonical JSON directly,
/// without building a `Value` — every contact computes this.
#[derive(serde::Serialize)]
struct CanonicalState<'a> {
    acquirers: &'a BTreeMap<String, u64>,
    apps: Vec<CanonicalApp<'a>>,
    firmware: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    firmware_sha256: Option<&'a str>,
    model: &'a str,
    parameters: &'a BTreeMap<String, String>,
}

#[derive(serde::Serialize)]
struct CanonicalApp<'a> {
    app_id: &'a str,
    sha256: &'a str,
    version: &'a str,
    version_code: u64,
}

impl TerminalState {
    /// The state's digest: sha256 over its canonical JSON, apps sorted by id.
    pub fn digest(&self) -> String {
        let mut apps: Vec<CanonicalApp<'_>> = self
            .apps
            .iter()
            .map(|a| CanonicalApp {
                app_id: &a.app_id,
                sha256: &a.sha256,
                version: &a.version,
                version_code: a.version_code,
            })
            .collect();
        apps.sort_by(|a, b| a.app_id.cmp(b.app_id));
        let canonical = CanonicalState {
            acquirers: &self.acquirers,
            apps,
            firmware: &self.firmware,
            firmware_sha256: self.firmware_sha256.as_deref(),
            model: &self.model,
            parameters: &self.parameters,
        };
        let bytes = serde_json::to_vec(&canonical).expect("a terminal state is plain data");
        Sha256Digest::of(&bytes).to_hex()
    }
}

impl TerminalHealth {
    /// The first field out of its range, with why: the contact is refused
    /// rather than a wrong value shown to support.
    pub fn invalid_field(&self) -> Option<(&'static str, &'static str)> {
        if self.battery_percent.is_some_and(|b| b > 100) {
            return Some(("health.battery_percent", "from 0 to 100"));
        }
        if self.signal_percent.is_some_and(|s| s > 100) {
            return Some(("health.signal_percent", "from 0 to 100"));
        }
        if self.network.as_deref().is_some_and(|n| !["wifi", "mobile", "ethernet", "none"].contains(&n)) {
            return Some(("health.network", "wifi, mobile, ethernet or none"));
        }
        if self.printer.as_deref().is_some_and(|p| !["ok", "paper_out", "error", "absent"].contains(&p)) {
            return Some(("health.printer", "ok, paper_out, error or absent"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use tms_signing::to_canonical_json;

    use super::*;

    fn app(id: &str, code: u64) -> InstalledApp {
        InstalledApp {
            app_id: id.into(),
            version: format!("1.{code}"),
            version_code: code,
            sha256: "ab".into(),
        }
    }

    #[test]
    fn the_digest_is_that_of_the_canonical_json() {
        let state = TerminalState {
            model: "A920 \"pro\" é".into(),
            firmware: "PayDroid_9.0\n".into(),
            firmware_sha256: Some("cd".into()),
            apps: vec![app("z.app", 7), app("a.app", 1)],
            parameters: BTreeMap::from([
                ("tms.terminal".into(), "1.2.3.4".into()),
                ("b".into(), "0.0.0.1".into()),
            ]),
            acquirers: BTreeMap::from([("ccv".into(), 12), ("adyen".into(), 3)]),
        };
        let mut sorted = state.clone();
        sorted.apps.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        let canonical = to_canonical_json(&serde_json::to_value(&sorted).unwrap()).unwrap();
        assert_eq!(state.digest(), Sha256Digest::of(&canonical).to_hex());
    }

    #[test]
    fn the_digest_ignores_app_order_and_sees_every_field() {
        let a = TerminalState {
            model: "A920".into(),
            firmware: "8.1".into(),
            firmware_sha256: None,
            apps: vec![app("a", 1), app("b", 2)],
            parameters: BTreeMap::from([("tms.terminal".into(), "1.0.0.0".into())]),
            acquirers: BTreeMap::new(),
        };
        let mut b = a.clone();
        b.apps.reverse();
        assert_eq!(a.digest(), b.digest());
        b.parameters.insert("tms.terminal".into(), "1.0.1.0".into());
        assert_ne!(a.digest(), b.digest());
        let mut c = a.clone();
        c.acquirers.insert("acq".into(), 3);
        assert_ne!(a.digest(), c.digest());
        let mut d = a.clone();
        d.firmware_sha256 = Some("cd".into());
        assert_ne!(a.digest(), d.digest());
    }

    #[test]
    fn a_state_without_a_firmware_sha256_keeps_the_digest_it_had() {
        // The digest terminals computed before the field existed.
        let state = TerminalState {
            model: "A920".into(),
            firmware: "8.1".into(),
            firmware_sha256: None,
            apps: vec![app("a", 1)],
            parameters: BTreeMap::new(),
            acquirers: BTreeMap::new(),
        };
        let before = r#"{"acquirers":{},"apps":[{"app_id":"a","sha256":"ab","version":"1.1","version_code":1}],"firmware":"8.1","model":"A920","parameters":{}}"#;
        assert_eq!(state.digest(), Sha256Digest::of(before.as_bytes()).to_hex());
    }
}
