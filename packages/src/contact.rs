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
use tms_signing::{PrivateKey, PublicKey, Sha256Digest, write_canonical_json, write_json_string};

pub use crate::wire::contact::SignedAnswer;

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
    // The numbers decide (a vendor prefix such as `PayDroid_` aside), a
    // missing component counting as zero ("10" is "10.0.0"), then the text.
    let numbers = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let (na, nb) = (numbers(a), numbers(b));
    for i in 0..na.len().max(nb.len()) {
        match na.get(i).unwrap_or(&0).cmp(nb.get(i).unwrap_or(&0)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    // Versions of digits and dots alone are equal once their numbers are.
    let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    if numeric(a) && numeric(b) {
        return Ordering::Equal;
    }
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
    /// Installed apps by app id: (version name, version code). Android's
    /// version code is what orders versions; the name is for people.
    pub installed: BTreeMap<String, (String, u64)>,
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
    /// A firmware image: compared with the firmware the terminal reports,
    /// not with an installed app.
    pub firmware: bool,
}

/// Who a deployment is for. Precedence (most specific first): a list of
/// devices, a device group, a location, a merchant, everyone.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Everyone,
    Merchant(i64),
    Location(i64),
    /// A device group: its static members, or its filter (a dynamic group).
    Group {
        id: i64,
        members: BTreeSet<i64>,
        filter: Option<DeviceFilter>,
    },
    Devices(BTreeSet<i64>),
}

impl Target {
    pub fn precedence(&self) -> u8 {
        match self {
            Target::Everyone => 0,
            Target::Merchant(_) => 1,
            Target::Location(_) => 2,
            Target::Group { .. } => 3,
            Target::Devices(_) => 4,
        }
    }

    pub fn precedence_name(&self) -> &'static str {
        match self {
            Target::Everyone => "everyone",
            Target::Merchant(_) => "merchant",
            Target::Location(_) => "location",
            Target::Group { .. } => "group",
            Target::Devices(_) => "devices",
        }
    }

    pub fn matches(&self, device: &DeviceFacts) -> bool {
        match self {
            Target::Everyone => true,
            Target::Merchant(m) => *m == device.merchant_id,
            Target::Location(l) => *l == device.location_id,
            Target::Group { members, filter, .. } => match filter {
                Some(f) => f.matches(device),
                None => members.contains(&device.device_id),
            },
            Target::Devices(ids) => ids.contains(&device.device_id),
        }
    }
}

/// A dynamic group's rule: clauses joined by `and`, each `field op value`.
/// Fields: `model`, `firmware`, `merchant`, `location`, `app:<app id>`
/// (its installed version code, or `none`); operators `=`, `!=`, `<`, `<=`,
/// `>`, `>=`. Example: `model=A920 and firmware<12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFilter {
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub field: Field,
    pub op: Op,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Model,
    Firmware,
    Merchant,
    Location,
    App(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
        }
    }
}

impl std::str::FromStr for DeviceFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut clauses = Vec::new();
        for raw in s.split(" and ").map(str::trim) {
            if raw.is_empty() {
                return Err(format!("{s:?}: an empty clause (write `field op value and …`)"));
            }
            let at = raw
                .find(['=', '!', '<', '>'])
                .ok_or_else(|| format!("{raw:?}: no operator (one of = != < <= > >=)"))?;
            let (name, rest) = raw.split_at(at);
            let (op, value) =
                [("!=", Op::Ne), ("<=", Op::Le), (">=", Op::Ge), ("=", Op::Eq), ("<", Op::Lt), (">", Op::Gt)]
                    .iter()
                    .find_map(|(text, op)| rest.strip_prefix(text).map(|v| (*op, v.trim())))
                    .ok_or_else(|| format!("{raw:?}: unknown operator"))?;
            let name = name.trim();
            let field = match name {
                "model" => Field::Model,
                "firmware" => Field::Firmware,
                "merchant" => Field::Merchant,
                "location" => Field::Location,
                _ => match name.strip_prefix("app:") {
                    Some(app) if !app.is_empty() => Field::App(app.to_owned()),
                    _ => {
                        return Err(format!(
                            "{name:?}: unknown field (model, firmware, merchant, location, app:<app id>)"
                        ));
                    }
                },
            };
            if value.is_empty() {
                return Err(format!("{raw:?}: no value"));
            }
            match &field {
                Field::Merchant | Field::Location if value.parse::<i64>().is_err() => {
                    return Err(format!("{raw:?}: {name} takes an id"));
                }
                Field::App(_) if value != "none" && value.parse::<u64>().is_err() => {
                    return Err(format!("{raw:?}: an app is compared by version code (a number) or `none`"));
                }
                Field::Model if !matches!(op, Op::Eq | Op::Ne) => {
                    return Err(format!("{raw:?}: a model is compared with = or !="));
                }
                _ => {}
            }
            clauses.push(Clause { field, op, value: value.to_owned() });
        }
        Ok(DeviceFilter { clauses })
    }
}

impl std::fmt::Display for DeviceFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            let name = match &c.field {
                Field::Model => "model".to_owned(),
                Field::Firmware => "firmware".to_owned(),
                Field::Merchant => "merchant".to_owned(),
                Field::Location => "location".to_owned(),
                Field::App(a) => format!("app:{a}"),
            };
            let op = match c.op {
                Op::Eq => "=",
                Op::Ne => "!=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
            };
            write!(f, "{name}{op}{}", c.value)?;
        }
        Ok(())
    }
}

impl DeviceFilter {
    pub fn matches(&self, device: &DeviceFacts) -> bool {
        self.clauses.iter().all(|c| {
            let ord = match &c.field {
                Field::Model => {
                    if device.model.eq_ignore_ascii_case(&c.value) {
                        Ordering::Equal
                    } else {
                        Ordering::Less
                    }
                }
                Field::Firmware => compare_firmware(&device.firmware, &c.value),
                Field::Merchant => device.merchant_id.cmp(&c.value.parse().unwrap_or(i64::MIN)),
                Field::Location => device.location_id.cmp(&c.value.parse().unwrap_or(i64::MIN)),
                Field::App(app) => match (device.installed.get(app), c.value.as_str()) {
                    (None, "none") => Ordering::Equal,
                    (Some(_), "none") => Ordering::Greater,
                    (None, _) => return false,
                    (Some((_, code)), v) => code.cmp(&v.parse().unwrap_or(0)),
                },
            };
            c.op.holds(ord)
        })
    }
}

/// A daily maintenance window in the terminal's local time, in minutes after
/// midnight; it may wrap past midnight (`22:00-02:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_min: u32,
    pub end_min: u32,
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
        };
        let bad = || format!("{s:?}: a window is HH:MM-HH:MM in the terminal's local time");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start_min, end_min) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start_min == end_min {
            return Err(format!("{s:?}: the window is empty"));
        }
        Ok(Window { start_min, end_min })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

const DAY_SECS: u32 = 86_400;

impl Window {
    /// Whether the window is open at `local_secs` seconds after local midnight.
    pub fn is_open(&self, local_secs: u32) -> bool {
        let (start, end, t) = (self.start_min * 60, self.end_min * 60, local_secs % DAY_SECS);
        if start < end { (start..end).contains(&t) } else { t >= start || t < end }
    }

    /// Seconds until the window next opens (0 when open) or closes, whichever
    /// changes its state first: when a cached decision stops holding.
    pub fn secs_to_next_edge(&self, local_secs: u32) -> u32 {
        let t = local_secs % DAY_SECS;
        let until = |edge_min: u32| (edge_min * 60 + DAY_SECS - t) % DAY_SECS;
        let (open, close) = (until(self.start_min), until(self.end_min));
        if self.is_open(t) { close.max(1) } else { open.max(1) }
    }
}

/// The terminal's seconds after local midnight at Unix time `now`.
pub fn local_secs_of_day(now: i64, utc_offset_minutes: i32) -> u32 {
    (now + i64::from(utc_offset_minutes) * 60).rem_euclid(i64::from(DAY_SECS)) as u32
}

/// How a terminal applies a change: `forced` now, `soft` when the merchant
/// agrees (or the app is idle), `download_only` fetches it for later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    Forced,
    Soft,
    DownloadOnly,
}

impl ActionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Forced => "forced",
            ActionType::Soft => "soft",
            ActionType::DownloadOnly => "download_only",
        }
    }

    pub fn parse(s: &str) -> Option<ActionType> {
        match s {
            "forced" => Some(ActionType::Forced),
            "soft" => Some(ActionType::Soft),
            "download_only" => Some(ActionType::DownloadOnly),
            _ => None,
        }
    }
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
    /// (bucket seed, current stage in basis points), when staged: the seed is
    /// the rollout's id (a rollback keeps its rollout's seed and stage, so it
    /// reaches exactly the devices the rollout reached).
    pub rollout: Option<(i64, u32)>,
    pub window: Option<Window>,
    pub wifi_only: bool,
    /// A rollback: only terminals running this version code of the app are
    /// taken back; the others follow the other deployments.
    pub rollback_from: Option<u64>,
    pub mode: DeliveryMode,
}

impl Deployment {
    /// Whether the deployment reaches a device: its target holds the device
    /// and its rollout stage, if staged, includes it.
    pub fn reaches(&self, device: &DeviceFacts) -> bool {
        self.target.matches(device)
            && self.rollout.is_none_or(|(r, stage)| in_stage(r, device.device_id, stage))
    }

    /// Whether reaching a device depends on what the device reports (a
    /// dynamic group's filter), not on its registration alone.
    pub fn depends_on_reported_state(&self) -> bool {
        matches!(self.target, Target::Group { filter: Some(_), .. })
    }
}

/// How a release deployment relates to what the terminal has installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// Installs where the app is absent, updates where it is older.
    #[default]
    InstallOrUpdate,
    /// The operator's deployment of a store or private app: merchants choose
    /// where those apps go, so it updates them where installed and never
    /// installs them anywhere.
    UpdateOnly,
    /// A merchant's install from the store: brings the app where it is
    /// absent, then steps aside so that later releases come through the
    /// operator's rollouts of the app.
    InstallOnly,
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
    NotOnRolledBackRelease,
    NotInstalled,
    AlreadyInstalled,
    RemovalApplies { by_deployment: i64 },
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotTargeted => write!(f, "not targeted"),
            Skip::NotInStage { bucket, stage_bp } => write!(
                f,
                "not in the rollout stage yet (bucket {:.2} % ≥ stage {:.2} %)",
                f64::from(*bucket) / 100.0,
                f64::from(*stage_bp) / 100.0
            ),
            Skip::Outranked { by_deployment } => write!(f, "outranked by deployment {by_deployment}"),
            Skip::ModelIncompatible { model } => write!(f, "the release does not support model {model}"),
            Skip::FirmwareTooOld { needs, has } => {
                write!(f, "needs firmware {needs}, the terminal has {has}")
            }
            Skip::Withdrawn => write!(f, "the release was withdrawn"),
            Skip::NotHigher { installed } => {
                write!(f, "the terminal already runs a higher version ({installed})")
            }
            Skip::NotOnRolledBackRelease => {
                write!(f, "a rollback, and the terminal does not run the rolled-back release")
            }
            Skip::NotInstalled => {
                write!(
                    f,
                    "a store app the merchant has not installed (merchants add store apps from the store)"
                )
            }
            Skip::AlreadyInstalled => {
                write!(f, "a store install, and the app is installed: its updates come from the operator")
            }
            Skip::RemovalApplies { by_deployment } => {
                write!(
                    f,
                    "a store install, and deployment {by_deployment} removes the app from this terminal"
                )
            }
        }
    }
}

/// What the device should do about one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Change {
    Install {
        release_id: i64,
        action: ActionType,
    },
    Update {
        release_id: i64,
        action: ActionType,
    },
    /// Back to a lower release than installed: only from a rollback.
    Rollback {
        release_id: i64,
        action: ActionType,
    },
    Remove,
}

impl Change {
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::Install { .. } => ChangeKind::Install,
            Change::Update { .. } => ChangeKind::Update,
            Change::Rollback { .. } => ChangeKind::Rollback,
            Change::Remove => ChangeKind::Remove,
        }
    }
}

/// What a terminal is told to do with an app, as the answer says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Install,
    Update,
    /// A downgrade, which only a rollback makes: terminals and support can
    /// tell it from an update.
    Rollback,
    Remove,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Install => "install",
            ChangeKind::Update => "update",
            ChangeKind::Rollback => "rollback",
            ChangeKind::Remove => "remove",
        }
    }
}

/// The decision for one app, with the reasons for every deployment considered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppPlan {
    pub app_id: String,
    /// The deployment that decides, if any.
    pub deployment_id: Option<i64>,
    /// What to do; `None` when the device already has what it should.
    pub change: Option<Change>,
    /// The change waits for the deployment's maintenance window, which opens
    /// in this many seconds.
    pub deferred_secs: Option<u32>,
    pub skipped: Vec<(i64, Skip)>,
}

/// Why a release does not fit a device, if it does not: withdrawn, another
/// model, or firmware older than it needs.
pub fn compatibility(device: &DeviceFacts, c: &Candidate) -> Option<Skip> {
    compatibility_of(&device.model, &device.firmware, c)
}

/// [`compatibility`] from a device's model and firmware alone. An unknown
/// firmware (empty) is older than any minimum: a release that needs a
/// firmware is not offered to a terminal that has not said which it runs.
pub fn compatibility_of(model: &str, firmware: &str, c: &Candidate) -> Option<Skip> {
    if c.withdrawn {
        return Some(Skip::Withdrawn);
    }
    if !c.models.iter().any(|m| m.eq_ignore_ascii_case(model)) {
        return Some(Skip::ModelIncompatible { model: model.to_owned() });
    }
    if let Some(min) = &c.min_firmware
        && compare_firmware(firmware, min) == Ordering::Less
    {
        return Some(Skip::FirmwareTooOld { needs: min.clone(), has: firmware.to_owned() });
    }
    None
}

/// Decides every app some deployment speaks about, for one device, at
/// `local_secs` after the terminal's local midnight (for windows).
///
/// Deployments that target the device (and whose rollout stage includes it)
/// are tried by precedence, then newest first; the first whose release fits
/// the device decides. A release never goes to an incompatible device, a
/// withdrawn release is never offered, and a lower version than installed
/// only comes with a pinned deployment (a rollback).
pub fn plan(device: &DeviceFacts, deployments: &[&Deployment], local_secs: u32) -> Vec<AppPlan> {
    let mut by_app: BTreeMap<&str, Vec<&Deployment>> = BTreeMap::new();
    for d in deployments {
        by_app.entry(d.payload.app_id()).or_default().push(d);
    }
    let mut out = Vec::new();
    for (app_id, mut ds) in by_app {
        ds.sort_by(|a, b| {
            b.target.precedence().cmp(&a.target.precedence()).then(b.sequence.cmp(&a.sequence))
        });
        // The operator's removal of an app outranks a merchant's store
        // install of it, whatever their targets (else they would take turns).
        let removal = ds
            .iter()
            .find(|d| {
                matches!(d.payload, Payload::Removal { .. })
                    && d.mode != DeliveryMode::InstallOnly
                    && d.reaches(device)
            })
            .map(|d| d.id);
        let mut plan = AppPlan {
            app_id: app_id.to_owned(),
            deployment_id: None,
            change: None,
            deferred_secs: None,
            skipped: Vec::new(),
        };
        for d in ds {
            // A deployment that does not reach the device was never a
            // contender: say so, whatever decided the app.
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
            if let Some(decided) = plan.deployment_id {
                plan.skipped.push((d.id, Skip::Outranked { by_deployment: decided }));
                continue;
            }
            match &d.payload {
                Payload::Removal { .. } => {
                    plan.deployment_id = Some(d.id);
                    plan.change = device.installed.get(app_id).map(|_| Change::Remove);
                }
                Payload::Release(c) => {
                    if let Some(from) = d.rollback_from
                        && device.installed.get(app_id).is_none_or(|(_, code)| *code != from)
                    {
                        plan.skipped.push((d.id, Skip::NotOnRolledBackRelease));
                        continue;
                    }
                    let present = device.installed.contains_key(app_id);
                    match d.mode {
                        DeliveryMode::UpdateOnly if !present && !c.firmware => {
                            plan.skipped.push((d.id, Skip::NotInstalled));
                            continue;
                        }
                        DeliveryMode::InstallOnly if present => {
                            plan.skipped.push((d.id, Skip::AlreadyInstalled));
                            continue;
                        }
                        DeliveryMode::InstallOnly if removal.is_some() => {
                            let by = removal.unwrap_or_default();
                            plan.skipped.push((d.id, Skip::RemovalApplies { by_deployment: by }));
                            continue;
                        }
                        _ => {}
                    }
                    if let Some(skip) = compatibility(device, c) {
                        plan.skipped.push((d.id, skip));
                        continue;
                    }
                    let installed = if c.firmware {
                        let ord = compare_firmware(&device.firmware, &c.version.to_string());
                        Some((device.firmware.clone(), ord))
                    } else {
                        device.installed.get(app_id).map(|(v, code)| (v.clone(), code.cmp(&c.version_code)))
                    };
                    match installed {
                        None => {
                            plan.deployment_id = Some(d.id);
                            plan.change =
                                Some(Change::Install { release_id: c.release_id, action: d.action });
                        }
                        Some((_, Ordering::Equal)) => plan.deployment_id = Some(d.id),
                        Some((v, Ordering::Greater)) if !d.pinned => {
                            plan.skipped.push((d.id, Skip::NotHigher { installed: v }));
                        }
                        Some((_, Ordering::Greater)) => {
                            plan.deployment_id = Some(d.id);
                            plan.change =
                                Some(Change::Rollback { release_id: c.release_id, action: d.action });
                        }
                        Some(_) => {
                            plan.deployment_id = Some(d.id);
                            plan.change = Some(Change::Update { release_id: c.release_id, action: d.action });
                        }
                    }
                }
            }
            if plan.change.is_some()
                && let Some(w) = d.window
                && !w.is_open(local_secs)
            {
                plan.deferred_secs = Some(w.secs_to_next_edge(local_secs));
            }
        }
        out.push(plan);
    }
    out
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
    /// A valid answer, but for another terminal or another state.
    NotForThisTerminal,
}

/// The canonical JSON of `{"body", "issued_at", "expires_at", "key_id"}`,
/// written around the body rather than copying it into a larger document.
fn answer_bytes(body: &Value, issued_at: i64, expires_at: i64, key_id: &str) -> Result<Vec<u8>, AnswerError> {
    let mut out = Vec::with_capacity(1_024);
    // Keys in canonical (byte) order.
    out.extend_from_slice(br#"{"body":"#);
    write_canonical_json(body, &mut out).map_err(|_| AnswerError::NotCanonical)?;
    finish_answer_bytes(&mut out, issued_at, expires_at, key_id);
    Ok(out)
}

/// The fields after the body, in canonical order, and the closing brace.
fn finish_answer_bytes(out: &mut Vec<u8>, issued_at: i64, expires_at: i64, key_id: &str) {
    use std::io::Write;
    write!(out, r#","expires_at":{expires_at},"issued_at":{issued_at},"key_id":"#).expect("a Vec");
    write_json_string(key_id, out);
    out.push(b'}');
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

/// A signed answer as the JSON it is sent as, from the canonical JSON of its
/// body (which the caller vouches for), without building a [`SignedAnswer`]
/// and serialising the body a second time: the signed message is the
/// canonical JSON of every field but the signature, and the signature's key
/// sorts last, so the answer is that message with the signature added at
/// its end (and is itself canonical).
pub fn signed_answer_json(canonical_body: &[u8], issued_at: i64, ttl_secs: i64, key: &PrivateKey) -> String {
    let key_id = key.public_key().key_id();
    let mut out = Vec::with_capacity(canonical_body.len() + 256);
    out.extend_from_slice(br#"{"body":"#);
    out.extend_from_slice(canonical_body);
    finish_answer_bytes(&mut out, issued_at, issued_at + ttl_secs, &key_id);
    let signature = hex::encode(key.sign(&out));
    out.pop();
    out.extend_from_slice(br#","signature":""#);
    out.extend_from_slice(signature.as_bytes());
    out.extend_from_slice(br#""}"#);
    String::from_utf8(out).expect("JSON written from strings is UTF-8")
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

/// The reference verification of a contact answer: [`verify_answer`], then
/// that it is meant for this terminal in its current state. An answer with
/// changes names the device and the state digest it answers; an answer
/// without (shared by terminals with the same target) carries the
/// terminal's own state digest as its target.
pub fn verify_contact_answer(
    answer: &SignedAnswer,
    trusted: &[PublicKey],
    now: i64,
    last_accepted_issued_at: Option<i64>,
    max_skew_secs: i64,
    device_id: i64,
    own_digest: &str,
) -> Result<crate::wire::contact::ContactBody, AnswerError> {
    verify_answer(answer, trusted, now, last_accepted_issued_at, max_skew_secs)?;
    let body: crate::wire::contact::ContactBody =
        serde_json::from_value(answer.body.clone()).map_err(|_| AnswerError::NotCanonical)?;
    let has_changes = !body.apps.is_empty()
        || body.firmware.is_some()
        || !body.parameters.is_empty()
        || !body.acquirer_sessions.is_empty();
    let meant = match body.device_id {
        Some(id) => id == device_id && body.state_digest.as_deref() == Some(own_digest),
        None => !has_changes && body.target_digest == own_digest,
    };
    if meant { Ok(body) } else { Err(AnswerError::NotForThisTerminal) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tms_signing::to_canonical_json;

    use super::*;

    #[test]
    fn signed_bytes_are_the_canonical_json_of_the_whole_answer() {
        let body = json!({"target_digest": "ab", "device_id": 7, "apps": [{"z": "\"q\u{e9}", "a": null}]});
        let whole =
            json!({"body": body, "issued_at": 1_700_000_000, "expires_at": 1_700_000_600, "key_id": "k\"1"});
        assert_eq!(
            answer_bytes(&body, 1_700_000_000, 1_700_000_600, "k\"1").unwrap(),
            to_canonical_json(&whole).unwrap()
        );
    }

    #[test]
    fn an_answer_written_as_json_is_the_signed_answer() {
        let key = PrivateKey::generate();
        let body = json!({"target_digest": "ab", "device_id": 7, "apps": [{"z": "\"q\u{e9}", "a": null}]});
        let json = signed_answer_json(&to_canonical_json(&body).unwrap(), 1_700_000_000, 600, &key);
        let parsed: SignedAnswer = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, sign_answer(body, 1_700_000_000, 600, &key).unwrap());
        assert_eq!(verify_answer(&parsed, &[key.public_key()], 1_700_000_001, None, 60), Ok(()));
        assert_eq!(json.as_bytes(), to_canonical_json(&serde_json::to_value(&parsed).unwrap()).unwrap());
    }

    fn device(id: i64) -> DeviceFacts {
        DeviceFacts {
            device_id: id,
            merchant_id: 1,
            location_id: 10,
            model: "A920".into(),
            firmware: "PayDroid_8.1.10".into(),
            installed: BTreeMap::from([("eu.ccv.salespoint".to_owned(), ("4.1.0".to_owned(), 410))]),
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
            firmware: false,
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
            window: None,
            wifi_only: false,
            rollback_from: None,
            mode: DeliveryMode::InstallOrUpdate,
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
        assert_eq!(compare_firmware("PayDroid_8.1.10", "9.0.0"), Ordering::Less, "the vendor prefix aside");
        assert_eq!(compare_firmware("PayDroid_9.0.0", "9.0.0"), Ordering::Greater, "equal numbers: the text");
        assert_eq!(compare_firmware("10", "10.0.0"), Ordering::Equal, "a missing component is zero");
        assert_eq!(compare_firmware("10.0.1", "10"), Ordering::Greater);
        assert_eq!(compare_firmware("9", "10.0.0"), Ordering::Less);
    }

    #[test]
    fn precedence_then_newest_decides() {
        let dev = device(5);
        let everyone = deployment(1, release(100, (4, 2, 0), 420), Target::Everyone, 1);
        let location = deployment(2, release(101, (4, 3, 0), 430), Target::Location(10), 2);
        let newer_everyone = deployment(3, release(102, (4, 4, 0), 440), Target::Everyone, 3);
        let plan = plan(&dev, &[&everyone, &location, &newer_everyone], 0);
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
            let p = plan(&dev, &[&deployment(1, c, Target::Everyone, 1)], 0);
            assert_eq!(p[0].change, None);
            assert_eq!(p[0].skipped, vec![(1, skip)]);
        }
        // A pinned deployment (a rollback) may go lower.
        let mut rollback = deployment(2, lower, Target::Everyone, 2);
        rollback.pinned = true;
        rollback.rollback_from = Some(410);
        assert_eq!(
            plan(&dev, &[&rollback], 0)[0].change,
            Some(Change::Rollback { release_id: 103, action: ActionType::Soft })
        );
    }

    #[test]
    fn a_deployment_that_misses_the_device_is_not_targeted_even_when_another_decides() {
        let dev = device(5);
        let for_the_device =
            deployment(8, release(101, (4, 3, 0), 430), Target::Devices(BTreeSet::from([5])), 2);
        let other_group = Target::Group { id: 3, members: BTreeSet::from([6]), filter: None };
        let for_a_group = deployment(7, release(100, (4, 2, 0), 420), other_group, 1);
        let mut outside_stage = deployment(9, release(100, (4, 2, 0), 420), Target::Everyone, 3);
        let rollout = (0..).find(|r| !in_stage(*r, 5, 100)).unwrap();
        outside_stage.rollout = Some((rollout, 100));
        let p = plan(&dev, &[&for_a_group, &for_the_device, &outside_stage], 0);
        assert_eq!(p[0].deployment_id, Some(8));
        assert!(p[0].skipped.contains(&(7, Skip::NotTargeted)), "{:?}", p[0].skipped);
        assert!(
            p[0].skipped.iter().any(|(id, skip)| *id == 9 && matches!(skip, Skip::NotInStage { .. })),
            "{:?}",
            p[0].skipped
        );
    }

    #[test]
    fn stages_and_targets_filter_devices() {
        let mut staged = deployment(1, release(100, (4, 2, 0), 420), Target::Merchant(1), 1);
        staged.rollout = Some((9, 1_000));
        let reached: usize =
            (0..10_000).filter(|d| plan(&device(*d), &[&staged], 0)[0].change.is_some()).count();
        assert!((900..=1_100).contains(&reached), "{reached}");
        let elsewhere = deployment(2, release(100, (4, 2, 0), 420), Target::Merchant(2), 1);
        assert_eq!(plan(&device(1), &[&elsewhere], 0)[0].skipped, vec![(2, Skip::NotTargeted)]);
        let up_to_date = deployment(3, release(100, (4, 1, 0), 410), Target::Everyone, 1);
        let p = plan(&device(1), &[&up_to_date], 0);
        assert_eq!((p[0].deployment_id, p[0].change.clone()), (Some(3), None));
    }

    #[test]
    fn filters_select_devices() {
        let f: DeviceFilter =
            "model=A920 and firmware<PayDroid_9 and app:eu.ccv.salespoint>=400".parse().unwrap();
        assert!(f.matches(&device(1)));
        assert_eq!(f.to_string(), "model=A920 and firmware<PayDroid_9 and app:eu.ccv.salespoint>=400");
        let mut other = device(1);
        other.model = "A35".into();
        assert!(!f.matches(&other));
        assert!("app:x.y=none".parse::<DeviceFilter>().unwrap().matches(&device(1)));
        assert!(!"location!=10".parse::<DeviceFilter>().unwrap().matches(&device(1)));
        for bad in ["", "model", "colour=red", "merchant=abc", "model<A9", "app:x>1.2", "model=A920 and "] {
            assert!(bad.parse::<DeviceFilter>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn windows_defer_changes_until_they_open() {
        let w: Window = "22:00-02:00".parse().unwrap();
        assert_eq!(w.to_string(), "22:00-02:00");
        assert!(w.is_open(23 * 3600) && w.is_open(3600) && !w.is_open(12 * 3600));
        assert_eq!(w.secs_to_next_edge(21 * 3600), 3600);
        assert_eq!(w.secs_to_next_edge(23 * 3600), 3 * 3600);
        assert!("2:00-04:00".parse::<Window>().is_err() && "02:00-02:00".parse::<Window>().is_err());
        assert_eq!(local_secs_of_day(0, -60), 23 * 3600);
        let mut d = deployment(1, release(100, (4, 2, 0), 420), Target::Everyone, 1);
        d.window = Some("02:00-04:00".parse().unwrap());
        let p = plan(&device(1), &[&d], 3600);
        assert_eq!((p[0].deployment_id, p[0].deferred_secs), (Some(1), Some(3600)));
        assert_eq!(plan(&device(1), &[&d], 3 * 3600)[0].deferred_secs, None);
    }

    #[test]
    fn firmware_releases_compare_with_the_reported_firmware() {
        let mut fw = release(200, (9, 0, 0), 900);
        fw.app_id = "firmware.a920".into();
        fw.firmware = true;
        fw.min_firmware = None;
        let mut dev = device(1);
        dev.firmware = "8.1.10".into();
        let d = deployment(1, fw, Target::Everyone, 1);
        assert_eq!(
            plan(&dev, &[&d], 0)[0].change,
            Some(Change::Update { release_id: 200, action: ActionType::Soft })
        );
        dev.firmware = "9.0.0".into();
        assert_eq!(plan(&dev, &[&d], 0)[0].change, None);
    }

    #[test]
    fn store_installs_bring_the_app_and_operator_updates_never_install_a_store_app() {
        let mut dev = device(5);
        dev.installed.clear();
        let mut store = deployment(1, release(100, (1, 0, 0), 100), Target::Devices(BTreeSet::from([5])), 1);
        store.mode = DeliveryMode::InstallOnly;
        let mut rollout = deployment(2, release(200, (2, 0, 0), 200), Target::Everyone, 2);
        rollout.mode = DeliveryMode::UpdateOnly;
        // Absent: the store install decides, the operator's update does not install.
        let p = &plan(&dev, &[&store, &rollout], 0)[0];
        assert_eq!(p.change, Some(Change::Install { release_id: 100, action: ActionType::Soft }));
        let p = &plan(&dev, &[&rollout], 0)[0];
        assert_eq!((p.change.clone(), p.skipped.clone()), (None, vec![(2, Skip::NotInstalled)]));
        // Installed: the store install steps aside and the operator's rollout updates it.
        dev.installed.insert("eu.ccv.salespoint".into(), ("1.0.0".into(), 100));
        let p = &plan(&dev, &[&store, &rollout], 0)[0];
        assert_eq!(p.change, Some(Change::Update { release_id: 200, action: ActionType::Soft }));
        assert_eq!(p.skipped, vec![(1, Skip::AlreadyInstalled)]);
        // The operator removes the app from everyone: removed, and not brought back.
        let removal = Deployment {
            payload: Payload::Removal { app_id: "eu.ccv.salespoint".into() },
            ..deployment(3, release(100, (1, 0, 0), 100), Target::Everyone, 3)
        };
        assert_eq!(plan(&dev, &[&store, &rollout, &removal], 0)[0].change, Some(Change::Remove));
        dev.installed.clear();
        let p = &plan(&dev, &[&store, &rollout, &removal], 0)[0];
        assert_eq!(p.change, None);
        assert_eq!(p.skipped[0], (1, Skip::RemovalApplies { by_deployment: 3 }));
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

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const APPS: [&str; 2] = ["eu.ccv.salespoint", "eu.ccv.tips"];
        const MODELS: [&str; 3] = ["A920", "A80", "A35"];

        fn facts() -> impl Strategy<Value = DeviceFacts> {
            (
                0i64..200,
                1i64..3,
                10i64..13,
                prop::sample::select(MODELS.to_vec()),
                prop::sample::select(vec!["PayDroid_8.1.9", "PayDroid_8.1.10", "9.0.0", ""]),
                prop::collection::btree_map(prop::sample::select(APPS.to_vec()), 1u64..6, 0..=2),
            )
                .prop_map(|(device_id, merchant_id, location_id, model, firmware, installed)| {
                    DeviceFacts {
                        device_id,
                        merchant_id,
                        location_id,
                        model: model.to_owned(),
                        firmware: firmware.to_owned(),
                        installed: installed
                            .into_iter()
                            .map(|(app, code)| (app.to_owned(), (format!("{code}.0.0"), code * 100)))
                            .collect(),
                    }
                })
        }

        fn target() -> impl Strategy<Value = Target> {
            prop_oneof![
                Just(Target::Everyone),
                (1i64..3).prop_map(Target::Merchant),
                (10i64..13).prop_map(Target::Location),
                prop::collection::btree_set(0i64..200, 0..20).prop_map(Target::Devices),
                prop::collection::btree_set(0i64..200, 0..20).prop_map(|members| Target::Group {
                    id: 1,
                    members,
                    filter: None
                }),
            ]
        }

        /// Deployments with distinct ids and sequences, as a snapshot holds them.
        fn deployments() -> impl Strategy<Value = Vec<Deployment>> {
            let one = (
                prop::sample::select(APPS.to_vec()),
                1u64..6,
                prop::sample::subsequence(MODELS.to_vec(), 1..=3),
                prop::option::of(prop::sample::select(vec!["PayDroid_8.1.10", "9.0.0"])),
                any::<bool>(),
                target(),
                any::<bool>(),
                prop::option::of((0i64..5, 0u32..=10_000)),
                prop::sample::select(vec![
                    DeliveryMode::InstallOrUpdate,
                    DeliveryMode::UpdateOnly,
                    DeliveryMode::InstallOnly,
                ]),
                0u8..10,
            );
            prop::collection::vec(one, 0..6).prop_map(|list| {
                list.into_iter()
                    .enumerate()
                    .map(
                        |(
                            i,
                            (app, code, models, min_firmware, withdrawn, target, pinned, rollout, mode, kind),
                        )| {
                            let id = i as i64 + 1;
                            let payload = if kind == 0 {
                                Payload::Removal { app_id: app.to_owned() }
                            } else {
                                Payload::Release(Candidate {
                                    release_id: id * 10,
                                    app_id: app.to_owned(),
                                    version: semver::Version::new(code, 0, 0),
                                    version_code: code * 100,
                                    models: models.into_iter().map(str::to_owned).collect(),
                                    min_firmware: min_firmware.map(str::to_owned),
                                    withdrawn,
                                    firmware: false,
                                })
                            };
                            Deployment {
                                id,
                                payload,
                                target,
                                action: ActionType::Soft,
                                sequence: id,
                                pinned,
                                rollout,
                                window: None,
                                wifi_only: false,
                                rollback_from: pinned.then_some(code * 100 + 100),
                                mode,
                            }
                        },
                    )
                    .collect()
            })
        }

        fn candidate_of(ds: &[Deployment], release_id: i64) -> &Candidate {
            ds.iter()
                .find_map(|d| match &d.payload {
                    Payload::Release(c) if c.release_id == release_id => Some(c),
                    _ => None,
                })
                .expect("plans name releases of the deployments given")
        }

        proptest! {
            #[test]
            fn stage_membership_grows_with_the_percentage_and_never_changes(
                rollout in any::<i64>(), device in any::<i64>(), low in 0u32..=10_000, high in 0u32..=10_000,
            ) {
                let (low, high) = (low.min(high), low.max(high));
                if in_stage(rollout, device, low) {
                    prop_assert!(in_stage(rollout, device, high));
                }
                prop_assert_eq!(in_stage(rollout, device, low), in_stage(rollout, device, low));
                prop_assert!(!in_stage(rollout, device, 0));
                prop_assert!(in_stage(rollout, device, ALL_BP));
            }

            #[test]
            fn the_planner_offers_only_what_fits_and_never_goes_back_unless_told(
                device in facts(), ds in deployments(), local in 0u32..86_400,
            ) {
                let refs: Vec<&Deployment> = ds.iter().collect();
                for p in plan(&device, &refs, local) {
                    let Some(decided) = p.deployment_id else {
                        prop_assert!(p.change.is_none());
                        continue;
                    };
                    let d = ds.iter().find(|d| d.id == decided).unwrap();
                    prop_assert!(d.reaches(&device), "deployment {} decides but does not reach", d.id);
                    let release_id = match &p.change {
                        Some(
                            Change::Install { release_id, .. }
                            | Change::Update { release_id, .. }
                            | Change::Rollback { release_id, .. },
                        ) => *release_id,
                        _ => continue,
                    };
                    let c = candidate_of(&ds, release_id);
                    prop_assert_eq!(compatibility(&device, c), None, "offered an incompatible release");
                    if let Some((_, installed)) = device.installed.get(&p.app_id)
                        && *installed > c.version_code
                    {
                        prop_assert!(d.pinned, "a lower version without a rollback");
                    }
                }
            }

            #[test]
            fn firmware_order_is_a_total_order_where_trailing_zeros_do_not_count(
                a in prop::collection::vec(0u64..20, 1..4),
                b in prop::collection::vec(0u64..20, 1..4),
                zeros in 0usize..3,
            ) {
                let text = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
                let (ta, tb) = (text(&a), text(&b));
                prop_assert_eq!(compare_firmware(&ta, &tb), compare_firmware(&tb, &ta).reverse());
                let padded = format!("{ta}{}", ".0".repeat(zeros));
                prop_assert_eq!(compare_firmware(&padded, &tb), compare_firmware(&ta, &tb));
                prop_assert_eq!(compare_firmware(&ta, &padded), Ordering::Equal);
            }

            #[test]
            fn a_plan_is_a_function_of_its_inputs_alone(
                device in facts(), ds in deployments(), local in 0u32..86_400, rotate in 0usize..6,
            ) {
                let refs: Vec<&Deployment> = ds.iter().collect();
                let first = plan(&device, &refs, local);
                prop_assert_eq!(&first, &plan(&device, &refs, local));
                // The order the deployments come in does not matter either.
                let mut turned = refs.clone();
                if !turned.is_empty() {
                    let n = rotate % turned.len();
                    turned.rotate_left(n);
                }
                prop_assert_eq!(first, plan(&device, &turned, local));
            }
        }
    }
}
