//! The TMS contact, as pure rules: what a terminal reports, which
//! deployment decides each app for it (targets, precedence, rollout stages,
//! compatibility), and the signed answers terminals verify.
//!
//! The server's contact endpoint (issue 7) builds on these; they are here, in
//! the pure crate, so they can be tested exhaustively without a database.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tms_signing::{PrivateKey, PublicKey, Sha256Digest, to_canonical_json};

/// An app a terminal reports as installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledApp {
    pub app_id: String,
    pub version: String,
    pub version_code: u64,
    pub sha256: String,
}

/// Rollout stages are expressed in basis points: 10,000 is everyone.
pub const ALL_BP: u32 = 10_000;

/// A device's position in a rollout: a deterministic hash of (rollout,
/// device) into 0..10,000. A device is in a stage of `percent_bp` when its
/// bucket is below it, so raising a stage only adds devices, a device never
/// flips out, and devices registered later follow the same rule.
pub fn bucket(rollout_id: i64, device_id: i64) -> u32 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&rollout_id.to_be_bytes());
    bytes[8..].copy_from_slice(&device_id.to_be_bytes());
    let digest = Sha256Digest::of(&bytes);
    let first = u64::from_be_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"));
    (first % u64::from(ALL_BP)) as u32
}

pub fn in_stage(rollout_id: i64, device_id: i64, percent_bp: u32) -> bool {
    bucket(rollout_id, device_id) < percent_bp.min(ALL_BP)
}

/// Compares firmware versions the way people read them: dot- or
/// dash-separated parts, numbers numerically, other parts as text
/// (`PayDroid_8.1.10` > `PayDroid_8.1.9`).
pub fn compare_firmware(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<String> { s.split(['.', '-', '_']).map(str::to_owned).collect() };
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(n), Ok(m)) => n.cmp(&m),
            _ => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

/// What a terminal is, for deciding what it should run.
#[derive(Debug, Clone)]
pub struct DeviceFacts {
    pub device_id: i64,
    pub merchant_id: i64,
    pub location_id: i64,
    pub model: String,
    pub firmware: String,
    /// Installed apps by app id: (version, version code).
    pub installed: BTreeMap<String, (semver::Version, u64)>,
}

/// A release a deployment may offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub release_id: i64,
    pub app_id: String,
    pub version: semver::Version,
    pub version_code: u64,
    pub models: Vec<String>,
    pub min_firmware: Option<String>,
    pub withdrawn: bool,
}

/// Who a deployment is for. Precedence (most specific first): devices,
/// location, merchant, everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Everyone,
    Merchant(i64),
    Location(i64),
    Devices(BTreeSet<i64>),
}

impl Target {
    pub fn precedence(&self) -> u8 {
        match self {
            Target::Everyone => 0,
            Target::Merchant(_) => 1,
            Target::Location(_) => 2,
            Target::Devices(_) => 3,
        }
    }

    pub fn matches(&self, device: &DeviceFacts) -> bool {
        match self {
            Target::Everyone => true,
            Target::Merchant(m) => *m == device.merchant_id,
            Target::Location(l) => *l == device.location_id,
            Target::Devices(ids) => ids.contains(&device.device_id),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    Forced,
    Soft,
    DownloadOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Release(Candidate),
    /// Remove the app.
    Removal {
        app_id: String,
    },
}

impl Payload {
    pub fn app_id(&self) -> &str {
        match self {
            Payload::Release(c) => &c.app_id,
            Payload::Removal { app_id } => app_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: i64,
    pub payload: Payload,
    pub target: Target,
    pub action: ActionType,
    /// Order of creation: at equal precedence the newest wins.
    pub sequence: i64,
    /// A rollback: the release is offered even if the device runs a higher one.
    pub pinned: bool,
    /// (rollout id, current stage in basis points), when staged.
    pub rollout: Option<(i64, u32)>,
}

/// Why a deployment did not decide an app for a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Skip {
    NotTargeted,
    NotInStage { bucket: u32, stage_bp: u32 },
    Outranked { by_deployment: i64 },
    ModelIncompatible { model: String },
    FirmwareTooOld { needs: String, has: String },
    Withdrawn,
    NotHigher { installed: String },
}

/// What the device should do about one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Change {
    Install { release_id: i64, action: ActionType },
    Update { release_id: i64, action: ActionType },
    Remove,
}

/// The decision for one app, with the reasons for every deployment considered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppPlan {
    pub app_id: String,
    /// The deployment that decides, if any.
    pub deployment_id: Option<i64>,
    /// What to do; `None` when the device already has what it should.
    pub change: Option<Change>,
    pub skipped: Vec<(i64, Skip)>,
}

fn compatibility(device: &DeviceFacts, c: &Candidate) -> Option<Skip> {
    if c.withdrawn {
        return Some(Skip::Withdrawn);
    }
    if !c.models.iter().any(|m| m.eq_ignore_ascii_case(&device.model)) {
        return Some(Skip::ModelIncompatible { model: device.model.clone() });
    }
    if let Some(min) = &c.min_firmware
        && compare_firmware(&device.firmware, min) == Ordering::Less
    {
        return Some(Skip::FirmwareTooOld { needs: min.clone(), has: device.firmware.clone() });
    }
    None
}

/// Decides every app some deployment speaks about, for one device.
///
/// Deployments that target the device (and whose rollout stage includes it)
/// are tried by precedence, then newest first; the first whose release fits
/// the device decides. A release never goes to an incompatible device, a
/// withdrawn release is never offered, and a lower version than installed
/// only comes with a pinned deployment (a rollback).
pub fn plan(device: &DeviceFacts, deployments: &[Deployment]) -> Vec<AppPlan> {
    let mut by_app: BTreeMap<&str, Vec<&Deployment>> = BTreeMap::new();
    for d in deployments {
        by_app.entry(d.payload.app_id()).or_default().push(d);
    }
    let mut out = Vec::new();
    for (app_id, mut ds) in by_app {
        ds.sort_by(|a, b| {
            b.target.precedence().cmp(&a.target.precedence()).then(b.sequence.cmp(&a.sequence))
        });
        let mut plan =
            AppPlan { app_id: app_id.to_owned(), deployment_id: None, change: None, skipped: Vec::new() };
        for d in ds {
            if let Some(decided) = plan.deployment_id {
                plan.skipped.push((d.id, Skip::Outranked { by_deployment: decided }));
                continue;
            }
            if !d.target.matches(device) {
                plan.skipped.push((d.id, Skip::NotTargeted));
                continue;
            }
            if let Some((rollout, stage)) = d.rollout
                && !in_stage(rollout, device.device_id, stage)
            {
                plan.skipped.push((
                    d.id,
                    Skip::NotInStage { bucket: bucket(rollout, device.device_id), stage_bp: stage },
                ));
                continue;
            }
            let installed = device.installed.get(app_id);
            match &d.payload {
                Payload::Removal { .. } => {
                    plan.deployment_id = Some(d.id);
                    plan.change = installed.map(|_| Change::Remove);
                }
                Payload::Release(c) => {
                    if let Some(skip) = compatibility(device, c) {
                        plan.skipped.push((d.id, skip));
                        continue;
                    }
                    match installed {
                        None => {
                            plan.deployment_id = Some(d.id);
                            plan.change =
                                Some(Change::Install { release_id: c.release_id, action: d.action });
                        }
                        Some((v, code)) if *v == c.version && *code == c.version_code => {
                            plan.deployment_id = Some(d.id);
                        }
                        Some((v, _)) if *v > c.version && !d.pinned => {
                            plan.skipped.push((d.id, Skip::NotHigher { installed: v.to_string() }));
                        }
                        Some(_) => {
                            plan.deployment_id = Some(d.id);
                            plan.change = Some(Change::Update { release_id: c.release_id, action: d.action });
                        }
                    }
                }
            }
        }
        out.push(plan);
    }
    out
}

/// A signed answer: the body, when it was issued and until when it holds.
/// Terminals refuse one that is expired, older than one they already
/// accepted (a replay or a rollback), or not signed by a server key they trust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedAnswer {
    pub body: Value,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    pub key_id: String,
    /// ed25519 over the canonical JSON of {body, issued_at, expires_at, key_id}, hex.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    NotCanonical,
    UnknownKey,
    BadSignature,
    Expired,
    /// Issued before an answer the terminal already accepted.
    Stale,
    /// Issued in the future beyond the tolerated clock skew.
    FromTheFuture,
}

fn answer_bytes(body: &Value, issued_at: i64, expires_at: i64, key_id: &str) -> Result<Vec<u8>, AnswerError> {
    to_canonical_json(&serde_json::json!({"body": body, "issued_at": issued_at, "expires_at": expires_at, "key_id": key_id}))
        .map_err(|_| AnswerError::NotCanonical)
}

pub fn sign_answer(
    body: Value,
    issued_at: i64,
    ttl_secs: i64,
    key: &PrivateKey,
) -> Result<SignedAnswer, AnswerError> {
    let key_id = key.public_key().key_id();
    let expires_at = issued_at + ttl_secs;
    let signature = hex::encode(key.sign(&answer_bytes(&body, issued_at, expires_at, &key_id)?));
    Ok(SignedAnswer { body, issued_at, expires_at, key_id, signature })
}

/// The reference verification a terminal runs on an answer.
pub fn verify_answer(
    answer: &SignedAnswer,
    trusted: &[PublicKey],
    now: i64,
    last_accepted_issued_at: Option<i64>,
    max_skew_secs: i64,
) -> Result<(), AnswerError> {
    let key = trusted.iter().find(|k| k.key_id() == answer.key_id).ok_or(AnswerError::UnknownKey)?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&answer.signature, &mut signature).map_err(|_| AnswerError::BadSignature)?;
    key.verify_strict(
        &answer_bytes(&answer.body, answer.issued_at, answer.expires_at, &answer.key_id)?,
        &signature,
    )
    .map_err(|_| AnswerError::BadSignature)?;
    if now >= answer.expires_at {
        return Err(AnswerError::Expired);
    }
    if answer.issued_at > now + max_skew_secs {
        return Err(AnswerError::FromTheFuture);
    }
    if last_accepted_issued_at.is_some_and(|last| answer.issued_at < last) {
        return Err(AnswerError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn device(id: i64) -> DeviceFacts {
        DeviceFacts {
            device_id: id,
            merchant_id: 1,
            location_id: 10,
            model: "A920".into(),
            firmware: "PayDroid_8.1.10".into(),
            installed: BTreeMap::from([(
                "eu.ccv.salespoint".to_owned(),
                (semver::Version::new(4, 1, 0), 410),
            )]),
        }
    }

    fn release(id: i64, version: (u64, u64, u64), code: u64) -> Candidate {
        Candidate {
            release_id: id,
            app_id: "eu.ccv.salespoint".into(),
            version: semver::Version::new(version.0, version.1, version.2),
            version_code: code,
            models: vec!["A920".into(), "A80".into()],
            min_firmware: Some("PayDroid_8.1.9".into()),
            withdrawn: false,
        }
    }

    fn deployment(id: i64, c: Candidate, target: Target, sequence: i64) -> Deployment {
        Deployment {
            id,
            payload: Payload::Release(c),
            target,
            action: ActionType::Soft,
            sequence,
            pinned: false,
            rollout: None,
        }
    }

    #[test]
    fn stages_hold_their_fraction_and_only_grow() {
        let devices = 10_000;
        for stage_bp in [100u32, 1_000, 5_000, 10_000] {
            let members = (0..devices).filter(|d| in_stage(42, *d, stage_bp)).count();
            let fraction_bp = members as f64 * 10_000.0 / devices as f64;
            assert!(
                (fraction_bp - f64::from(stage_bp)).abs() <= 100.0,
                "stage {stage_bp}: {members} members"
            );
        }
        for d in 0..2_000 {
            // Monotonic: in a lower stage implies in every higher one.
            let first = (1..=100).map(|p| p * 100).find(|bp| in_stage(7, d, *bp)).unwrap_or(u32::MAX);
            assert!((1..=100).map(|p| p * 100).filter(|bp| *bp >= first).all(|bp| in_stage(7, d, bp)));
        }
        assert_ne!(bucket(1, 5), bucket(2, 5), "rollouts draw independent samples (almost surely)");
    }

    #[test]
    fn firmware_versions_compare_numerically() {
        assert_eq!(compare_firmware("PayDroid_8.1.10", "PayDroid_8.1.9"), Ordering::Greater);
        assert_eq!(compare_firmware("12.0", "9.9"), Ordering::Greater);
        assert_eq!(compare_firmware("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(compare_firmware("A", "A"), Ordering::Equal);
    }

    #[test]
    fn precedence_then_newest_decides() {
        let dev = device(5);
        let everyone = deployment(1, release(100, (4, 2, 0), 420), Target::Everyone, 1);
        let location = deployment(2, release(101, (4, 3, 0), 430), Target::Location(10), 2);
        let newer_everyone = deployment(3, release(102, (4, 4, 0), 440), Target::Everyone, 3);
        let plan = plan(&dev, &[everyone, location, newer_everyone]);
        assert_eq!(plan[0].deployment_id, Some(2));
        assert_eq!(plan[0].change, Some(Change::Update { release_id: 101, action: ActionType::Soft }));
        assert!(plan[0].skipped.contains(&(3, Skip::Outranked { by_deployment: 2 })));
    }

    #[test]
    fn incompatible_withdrawn_and_lower_releases_are_never_offered() {
        let dev = device(5);
        let mut other_model = release(100, (5, 0, 0), 500);
        other_model.models = vec!["A35".into()];
        let mut newer_firmware = release(101, (5, 0, 0), 500);
        newer_firmware.min_firmware = Some("PayDroid_9".into());
        let mut withdrawn = release(102, (5, 0, 0), 500);
        withdrawn.withdrawn = true;
        let lower = release(103, (4, 0, 0), 400);
        for (c, skip) in [
            (other_model, Skip::ModelIncompatible { model: "A920".into() }),
            (
                newer_firmware,
                Skip::FirmwareTooOld { needs: "PayDroid_9".into(), has: "PayDroid_8.1.10".into() },
            ),
            (withdrawn, Skip::Withdrawn),
            (lower.clone(), Skip::NotHigher { installed: "4.1.0".into() }),
        ] {
            let p = plan(&dev, &[deployment(1, c, Target::Everyone, 1)]);
            assert_eq!(p[0].change, None);
            assert_eq!(p[0].skipped, vec![(1, skip)]);
        }
        // A pinned deployment (a rollback) may go lower.
        let mut rollback = deployment(2, lower, Target::Everyone, 2);
        rollback.pinned = true;
        assert_eq!(
            plan(&dev, &[rollback])[0].change,
            Some(Change::Update { release_id: 103, action: ActionType::Soft })
        );
    }

    #[test]
    fn stages_and_targets_filter_devices() {
        let mut staged = deployment(1, release(100, (4, 2, 0), 420), Target::Merchant(1), 1);
        staged.rollout = Some((9, 1_000));
        let reached: usize = (0..10_000)
            .filter(|d| plan(&device(*d), std::slice::from_ref(&staged))[0].change.is_some())
            .count();
        assert!((900..=1_100).contains(&reached), "{reached}");
        let elsewhere = deployment(2, release(100, (4, 2, 0), 420), Target::Merchant(2), 1);
        assert_eq!(plan(&device(1), &[elsewhere])[0].skipped, vec![(2, Skip::NotTargeted)]);
        let up_to_date = deployment(3, release(100, (4, 1, 0), 410), Target::Everyone, 1);
        let p = plan(&device(1), &[up_to_date]);
        assert_eq!((p[0].deployment_id, p[0].change.clone()), (Some(3), None));
    }

    #[test]
    fn answers_are_refused_when_tampered_expired_replayed_or_unknown() {
        let key = PrivateKey::generate();
        let trusted = [key.public_key()];
        let answer = sign_answer(json!({"apps": [], "next_contact_secs": 300}), 1_000, 600, &key).unwrap();
        assert_eq!(verify_answer(&answer, &trusted, 1_100, None, 60), Ok(()));
        let mut tampered = answer.clone();
        tampered.body["next_contact_secs"] = json!(30);
        assert_eq!(verify_answer(&tampered, &trusted, 1_100, None, 60), Err(AnswerError::BadSignature));
        let mut extended = answer.clone();
        extended.expires_at += 10_000;
        assert_eq!(verify_answer(&extended, &trusted, 1_100, None, 60), Err(AnswerError::BadSignature));
        assert_eq!(verify_answer(&answer, &trusted, 1_600, None, 60), Err(AnswerError::Expired));
        assert_eq!(verify_answer(&answer, &trusted, 1_100, Some(1_050), 60), Err(AnswerError::Stale));
        assert_eq!(verify_answer(&answer, &trusted, 900, None, 60), Err(AnswerError::FromTheFuture));
        assert_eq!(
            verify_answer(&answer, &[PrivateKey::generate().public_key()], 1_100, None, 60),
            Err(AnswerError::UnknownKey)
        );
    }
}
