//! The rules of a rollout, pure: its states, what each command does from
//! each state, and when the supervisor moves a running rollout on.
//!
//! A rollout moves a deployment through stages (1 % → 10 % → 100 %). The
//! server stores the state and applies these decisions with conditional
//! updates; nothing here touches a database or a clock.

use std::fmt;
use std::str::FromStr;

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RolloutStatus {
    /// Terminals of the stages reached are offered the release; the
    /// supervisor watches failures and successes.
    Running,
    /// The current stage succeeded; the next waits for a person's approval.
    WaitingApproval,
    /// Stopped by a person or by failures past the limit; may resume.
    Paused,
    /// Stopped for good (no resume); may still be rolled back.
    Halted,
    /// Every stage done.
    Completed,
    /// Replaced by a deployment pinning the previous release: final.
    RolledBack,
}

impl RolloutStatus {
    pub const ALL: [RolloutStatus; 6] = [
        RolloutStatus::Running,
        RolloutStatus::WaitingApproval,
        RolloutStatus::Paused,
        RolloutStatus::Halted,
        RolloutStatus::Completed,
        RolloutStatus::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::WaitingApproval => "waiting_approval",
            RolloutStatus::Paused => "paused",
            RolloutStatus::Halted => "halted",
            RolloutStatus::Completed => "completed",
            RolloutStatus::RolledBack => "rolled_back",
        }
    }

    /// Whether its deployment delivers: a paused, halted or rolled-back
    /// rollout offers its release to no one.
    pub fn delivers(self) -> bool {
        matches!(self, RolloutStatus::Running | RolloutStatus::WaitingApproval | RolloutStatus::Completed)
    }

    /// The states a halt ends (cancelling the deployment, withdrawing the
    /// release), as the transition table has them.
    pub fn halt_sources() -> impl Iterator<Item = RolloutStatus> {
        RolloutStatus::ALL.into_iter().filter(|status| {
            on_command(Position { status: *status, stage: 0 }, RolloutCommand::Halt, 1).is_some()
        })
    }

    /// Whether a command can still move it. Only a rollback leaves
    /// `completed` and `halted`; nothing leaves `rolled_back`.
    pub fn is_final(self) -> bool {
        self == RolloutStatus::RolledBack
    }
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RolloutStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<RolloutStatus, String> {
        RolloutStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a rollout status"))
    }
}

/// What a person asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolloutCommand {
    Pause,
    Resume,
    Halt,
    /// The next stage, when waiting for approval.
    Approve,
    /// A deployment pinning the previous release for the terminals reached.
    Rollback,
}

impl RolloutCommand {
    pub const ALL: [RolloutCommand; 5] = [
        RolloutCommand::Pause,
        RolloutCommand::Resume,
        RolloutCommand::Halt,
        RolloutCommand::Approve,
        RolloutCommand::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutCommand::Pause => "pause",
            RolloutCommand::Resume => "resume",
            RolloutCommand::Halt => "halt",
            RolloutCommand::Approve => "approve",
            RolloutCommand::Rollback => "rollback",
        }
    }

    /// The past participle, for "a paused rollout cannot be resumed".
    pub fn done(self) -> &'static str {
        match self {
            RolloutCommand::Pause => "paused",
            RolloutCommand::Resume => "resumed",
            RolloutCommand::Halt => "halted",
            RolloutCommand::Approve => "approved",
            RolloutCommand::Rollback => "rolled back",
        }
    }
}

impl FromStr for RolloutCommand {
    type Err = String;

    fn from_str(s: &str) -> Result<RolloutCommand, String> {
        RolloutCommand::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            let all: Vec<&str> = RolloutCommand::ALL.iter().map(|c| c.as_str()).collect();
            format!("one of {}", all.join(", "))
        })
    }
}

/// A rollout's position: its state and the index of the current stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub status: RolloutStatus,
    pub stage: usize,
}

/// The transition table of the commands: where `command` takes a rollout at
/// `from` with `stage_count` stages, or `None` when the state refuses it.
pub fn on_command(from: Position, command: RolloutCommand, stage_count: usize) -> Option<Position> {
    use RolloutCommand as C;
    use RolloutStatus as S;
    let to = |status| Some(Position { status, stage: from.stage });
    match (command, from.status) {
        (C::Pause, S::Running | S::WaitingApproval) => to(S::Paused),
        (C::Resume, S::Paused) => to(S::Running),
        (C::Halt, S::Running | S::WaitingApproval | S::Paused) => to(S::Halted),
        (C::Approve, S::WaitingApproval) if from.stage + 1 >= stage_count => to(S::Completed),
        (C::Approve, S::WaitingApproval) => Some(Position { status: S::Running, stage: from.stage + 1 }),
        (C::Rollback, S::Running | S::WaitingApproval | S::Paused | S::Halted | S::Completed) => {
            to(S::RolledBack)
        }
        _ => None,
    }
}

/// How many failures pause a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureLimit {
    /// More than this many failed terminals.
    Count(u64),
    /// More than this share (basis points) of the terminals in the stages reached.
    ShareBp(u32),
}

impl FailureLimit {
    /// The most failures tolerated among `devices` terminals.
    pub fn tolerated(self, devices: u64) -> f64 {
        match self {
            FailureLimit::Count(n) => n as f64,
            FailureLimit::ShareBp(bp) => devices as f64 * f64::from(bp) / 10_000.0,
        }
    }
}

/// What the terminals of the stages reached have reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Terminals in the stages reached.
    pub devices: u64,
    /// Of those, the ones the release fits (model, firmware, not withdrawn).
    pub compatible: u64,
    pub installed: u64,
    pub failed: u64,
    /// The release was withdrawn since the rollout started.
    pub release_withdrawn: bool,
}

/// A rollout's rules, as its creator set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub stage_count: usize,
    /// Share of the compatible terminals that must have installed for a
    /// stage to succeed, in basis points.
    pub success_bp: u32,
    pub max_failures: FailureLimit,
    /// Failures already seen when a person resumed the rollout.
    pub failures_forgiven: u64,
    /// Move to the next stage without waiting for approval.
    pub auto_advance: bool,
}

/// What the supervisor does with a running rollout after a tally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    /// Nothing yet.
    Stay,
    /// Failures (beyond those forgiven) past the limit.
    Pause { failed: u64 },
    /// The release was withdrawn: no terminal may get it any more, and a
    /// stage with no one to offer it to must not look like a success.
    Halt,
    /// The stage succeeded: on to the next, to approval, or done.
    Move(Position),
}

/// The supervisor's decision for a rollout at `at`. Only a running
/// rollout moves; failures past the limit win over success.
pub fn evaluate(at: Position, rules: &Rules, tally: &Tally) -> Evaluation {
    if at.status != RolloutStatus::Running {
        return Evaluation::Stay;
    }
    if tally.release_withdrawn {
        return Evaluation::Halt;
    }
    let failed = tally.failed.saturating_sub(rules.failures_forgiven);
    if failed as f64 > rules.max_failures.tolerated(tally.devices) {
        return Evaluation::Pause { failed };
    }
    let succeeded = tally.compatible == 0
        || tally.installed as f64 >= tally.compatible as f64 * f64::from(rules.success_bp) / 10_000.0;
    if !succeeded {
        return Evaluation::Stay;
    }
    let next = at.stage + 1;
    Evaluation::Move(if next >= rules.stage_count {
        Position { status: RolloutStatus::Completed, stage: at.stage }
    } else if rules.auto_advance {
        Position { status: RolloutStatus::Running, stage: next }
    } else {
        Position { status: RolloutStatus::WaitingApproval, stage: at.stage }
    })
}

/// What a rollback pins, per terminal model: for each model the rolled-back
/// release runs on, the highest lower release (not withdrawn) that lists
/// the model, and below it, while the one chosen needs a firmware, the next
/// that needs less, so a terminal with an older firmware still finds one.
/// The planner then gives each terminal the highest of these that fits it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RollbackPlan {
    /// Releases to pin, lowest version code first (the last pinned is the
    /// newest deployment, which wins where it fits).
    pub releases: Vec<i64>,
    /// Models of the rolled-back release with no earlier release: their
    /// terminals stay on it.
    pub uncovered_models: Vec<String>,
}

pub fn rollback_plan(
    rolled_back: &crate::contact::Candidate,
    earlier: &[crate::contact::Candidate],
) -> RollbackPlan {
    use crate::contact::compare_firmware;
    let mut lower: Vec<&crate::contact::Candidate> = earlier
        .iter()
        .filter(|c| {
            c.app_id == rolled_back.app_id && c.version_code < rolled_back.version_code && !c.withdrawn
        })
        .collect();
    lower.sort_by_key(|c| std::cmp::Reverse(c.version_code));
    let mut chosen: Vec<&crate::contact::Candidate> = Vec::new();
    let mut uncovered_models = Vec::new();
    for model in &rolled_back.models {
        let mut for_model = lower.iter().filter(|c| c.models.iter().any(|m| m.eq_ignore_ascii_case(model)));
        let Some(first) = for_model.next() else {
            uncovered_models.push(model.clone());
            continue;
        };
        chosen.push(first);
        let mut needs = first.min_firmware.clone();
        for c in for_model {
            let Some(current) = &needs else { break };
            let less = c.min_firmware.as_ref().is_none_or(|m| compare_firmware(m, current).is_lt());
            if less {
                chosen.push(c);
                needs = c.min_firmware.clone();
            }
        }
    }
    chosen.sort_by_key(|c| c.version_code);
    chosen.dedup_by_key(|c| c.release_id);
    RollbackPlan { releases: chosen.into_iter().map(|c| c.release_id).collect(), uncovered_models }
}

/// How a deployment treats a terminal whose install failed (or timed
/// out): offered again after each delay in turn, then no more. The default,
/// `0,1h,6h,24h`: at its next contact, then after an hour, six hours and a
/// day; a fifth failure is for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Seconds to wait after the n-th failed attempt before offering again.
    pub delays_secs: Vec<u32>,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { delays_secs: vec![0, 3_600, 6 * 3_600, 24 * 3_600] }
    }
}

/// Postponements a terminal may make before one counts as a failure.
pub const DEFAULT_MAX_POSTPONES: u32 = 10;

/// The most retries a deployment may set.
pub const MAX_RETRIES: usize = 20;

impl RetryPolicy {
    /// After `attempts` failed attempts (this one included): seconds until
    /// the next offer, or `None` when that was the last.
    pub fn after_failure(&self, attempts: u32) -> Option<u32> {
        self.delays_secs.get(attempts.max(1) as usize - 1).copied()
    }

    /// As stored: seconds, comma-separated (empty: no retry).
    pub fn to_stored(&self) -> String {
        self.delays_secs.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    }

    pub fn from_stored(text: &str) -> RetryPolicy {
        RetryPolicy { delays_secs: text.split(',').filter_map(|s| s.trim().parse().ok()).collect() }
    }

    /// `0,1h,6h,24h` (seconds, or with `s`, `m`, `h`, `d`), or `none` for
    /// no retry at all.
    pub fn parse(text: &str) -> Result<RetryPolicy, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(RetryPolicy { delays_secs: Vec::new() });
        }
        let delays_secs = text
            .split(',')
            .map(|part| {
                parse_delay(part.trim()).ok_or_else(|| format!("{part:?}: write delays like 0,1h,6h,24h"))
            })
            .collect::<Result<Vec<u32>, String>>()?;
        if delays_secs.len() > MAX_RETRIES {
            return Err(format!("at most {MAX_RETRIES} retries"));
        }
        Ok(RetryPolicy { delays_secs })
    }

    /// As `parse` reads it: `0,1h,6h,24h`, or `none`.
    pub fn to_text(&self) -> String {
        if self.delays_secs.is_empty() {
            return "none".to_owned();
        }
        self.delays_secs.iter().map(|s| delay_text(*s)).collect::<Vec<_>>().join(",")
    }
}

fn parse_delay(text: &str) -> Option<u32> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u32 = digits.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    // Thirty days at most between two offers.
    n.checked_mul(unit).filter(|s| *s <= 30 * 86_400)
}

fn delay_text(secs: u32) -> String {
    match secs {
        0 => "0".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What ended a terminal's attempt without an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setback {
    /// It reported `failed`.
    Failed,
    /// It said nothing before the deadline.
    TimedOut,
    /// It put the change off (its merchant was busy, say).
    Postponed,
}

/// Where a terminal's action stands after a setback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// A postponement within the deployment's limit: not a failure; the
    /// deadline starts again.
    Wait { postponements: u32 },
    /// A failed attempt: offered again `retry_in_secs` later.
    Retry { attempts: u32, postponements: u32, retry_in_secs: u32 },
    /// The last attempt failed: no more offers of this release.
    GiveUp { attempts: u32, postponements: u32 },
}

impl Settlement {
    /// Whether the setback counts as a failed attempt.
    pub fn is_failure(self) -> bool {
        !matches!(self, Settlement::Wait { .. })
    }
}

/// The rule for a setback: a failure or a timeout is one more failed
/// attempt, retried by the policy; a postponement is not a failure until
/// the terminal has postponed more than `max_postpones` times.
pub fn settle(
    setback: Setback,
    attempts: u32,
    postponements: u32,
    policy: &RetryPolicy,
    max_postpones: u32,
) -> Settlement {
    let postponements = postponements + u32::from(setback == Setback::Postponed);
    if setback == Setback::Postponed && postponements <= max_postpones {
        return Settlement::Wait { postponements };
    }
    let attempts = attempts + 1;
    match policy.after_failure(attempts) {
        Some(retry_in_secs) => Settlement::Retry { attempts, postponements, retry_in_secs },
        None => Settlement::GiveUp { attempts, postponements },
    }
}

/// Seconds a terminal has to finish an offered change before its silence
/// counts as timed out: the configured time to install, plus the download
/// at a slow link's speed (a 100 MiB release at 32 KiB/s adds 53 minutes).
pub fn offer_deadline_secs(base_secs: u64, size_bytes: u64, slow_link_bytes_per_sec: u64) -> u64 {
    base_secs.saturating_add(size_bytes.div_ceil(slow_link_bytes_per_sec.max(1)))
}

/// Why a rollout stands where it does: kept with the rollout so that each
/// reader says it in their own language ([`StatusReason::english`] is the
/// API's `status_reason` text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum StatusReason {
    /// Halted: its release was withdrawn.
    ReleaseWithdrawn,
    /// Halted: its deployment was cancelled.
    DeploymentCancelled,
    /// Paused by the supervisor: `failed` failures against the limit
    /// (a count, or a share such as `2%`).
    FailureLimit { failed: u64, limit: String },
    /// Waiting for approval: the stage reached its success threshold.
    StageSucceeded,
    /// Paused by a person.
    Paused { by: String },
    /// Halted by a person.
    Halted { by: String },
    /// Rolled back by a person; `stay` terminals of `models` had no earlier
    /// release for their model and stay on `version`.
    RolledBack {
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stay: Option<u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        models: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
}

impl StatusReason {
    pub fn code(&self) -> &'static str {
        match self {
            StatusReason::ReleaseWithdrawn => "release_withdrawn",
            StatusReason::DeploymentCancelled => "deployment_cancelled",
            StatusReason::FailureLimit { .. } => "failure_limit",
            StatusReason::StageSucceeded => "stage_succeeded",
            StatusReason::Paused { .. } => "paused",
            StatusReason::Halted { .. } => "halted",
            StatusReason::RolledBack { stay: Some(_), .. } => "rolled_back_partly",
            StatusReason::RolledBack { .. } => "rolled_back",
        }
    }

    /// The values a sentence of [`Self::code`] names, in order.
    pub fn args(&self) -> Vec<String> {
        match self {
            StatusReason::ReleaseWithdrawn
            | StatusReason::DeploymentCancelled
            | StatusReason::StageSucceeded => Vec::new(),
            StatusReason::FailureLimit { failed, limit } => vec![failed.to_string(), limit.clone()],
            StatusReason::Paused { by } | StatusReason::Halted { by } => vec![by.clone()],
            StatusReason::RolledBack { by, stay, models, version } => match stay {
                Some(n) => {
                    vec![by.clone(), n.to_string(), models.join(", "), version.clone().unwrap_or_default()]
                }
                None => vec![by.clone()],
            },
        }
    }

    /// The reason in English, as the API has always given it.
    pub fn english(&self) -> String {
        match self {
            StatusReason::ReleaseWithdrawn => "the release was withdrawn".into(),
            StatusReason::DeploymentCancelled => "its deployment was cancelled".into(),
            StatusReason::FailureLimit { failed, limit } => {
                format!("{failed} failures exceed the limit of {limit}")
            }
            StatusReason::StageSucceeded => "the stage succeeded: approve the next".into(),
            StatusReason::Paused { by } => format!("paused by {by}"),
            StatusReason::Halted { by } => format!("halted by {by}"),
            StatusReason::RolledBack { by, stay: None, .. } => format!("rolled back by {by}"),
            StatusReason::RolledBack { by, stay: Some(n), models, version } => format!(
                "rolled back by {by}; {n} terminals ({}) have no earlier release for their model and stay on {}",
                models.join(", "),
                version.as_deref().unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StatusReason;

    #[test]
    fn a_reason_keeps_its_words_through_storage() {
        let reasons = [
            StatusReason::ReleaseWithdrawn,
            StatusReason::FailureLimit { failed: 3, limit: "2%".into() },
            StatusReason::Paused { by: "re@psp.example".into() },
            StatusReason::RolledBack {
                by: "re@psp.example".into(),
                stay: Some(4),
                models: vec!["A35".into()],
                version: Some("1.1.0".into()),
            },
        ];
        for reason in reasons {
            let stored = serde_json::to_string(&reason).unwrap();
            assert_eq!(serde_json::from_str::<StatusReason>(&stored).unwrap(), reason, "{stored}");
        }
        let limit = StatusReason::FailureLimit { failed: 3, limit: "0".into() };
        assert_eq!(limit.english(), "3 failures exceed the limit of 0");
        assert_eq!((limit.code(), limit.args()), ("failure_limit", vec!["3".to_owned(), "0".to_owned()]));
    }

    use proptest::prelude::*;

    use super::*;

    fn status() -> impl Strategy<Value = RolloutStatus> {
        prop::sample::select(RolloutStatus::ALL.to_vec())
    }

    fn command() -> impl Strategy<Value = RolloutCommand> {
        prop::sample::select(RolloutCommand::ALL.to_vec())
    }

    fn rules() -> impl Strategy<Value = Rules> {
        (
            1usize..6,
            0u32..=10_000,
            prop_oneof![
                (0u64..50).prop_map(FailureLimit::Count),
                (0u32..=10_000).prop_map(FailureLimit::ShareBp)
            ],
            0u64..20,
            any::<bool>(),
        )
            .prop_map(|(stage_count, success_bp, max_failures, failures_forgiven, auto_advance)| {
                Rules { stage_count, success_bp, max_failures, failures_forgiven, auto_advance }
            })
    }

    fn tally() -> impl Strategy<Value = Tally> {
        (0u64..1_000).prop_flat_map(|devices| {
            (0..=devices).prop_flat_map(move |compatible| {
                (0..=compatible).prop_flat_map(move |installed| {
                    (0..=devices - installed, any::<bool>()).prop_map(move |(failed, release_withdrawn)| {
                        Tally { devices, compatible, installed, failed, release_withdrawn }
                    })
                })
            })
        })
    }

    fn release(id: i64, code: u64, models: &[&str], min_firmware: Option<&str>) -> crate::contact::Candidate {
        crate::contact::Candidate {
            release_id: id,
            app_id: "eu.ccv.salespoint".into(),
            version: semver::Version::new(code / 100, code % 100, 0),
            version_code: code,
            models: models.iter().map(|m| m.to_string()).collect(),
            min_firmware: min_firmware.map(str::to_owned),
            withdrawn: false,
            firmware: false,
        }
    }

    #[test]
    fn a_rollback_takes_each_model_back_to_its_own_last_release() {
        // 4.3.0 (A920, A80), 4.4.0 (A920 only), 4.5.0 (A920, A80) rolled back.
        let bad = release(45, 450, &["A920", "A80", "A35"], None);
        let earlier = [release(43, 430, &["A920", "A80"], None), release(44, 440, &["A920"], None)];
        let plan = rollback_plan(&bad, &earlier);
        assert_eq!(plan.releases, vec![43, 44], "4.4.0 for the A920, 4.3.0 for the A80");
        assert_eq!(plan.uncovered_models, vec!["A35".to_owned()]);
        // A withdrawn release is never a rollback target; a firmware need reaches further down.
        let mut withdrawn = release(44, 440, &["A920"], None);
        withdrawn.withdrawn = true;
        let needs = release(42, 420, &["A80"], Some("9.0"));
        let older = release(41, 410, &["A80"], None);
        let plan = rollback_plan(&bad, &[withdrawn, needs, older, release(43, 430, &["A920"], None)]);
        assert_eq!(plan.releases, vec![41, 42, 43]);
    }

    #[test]
    fn names_round_trip() {
        for s in RolloutStatus::ALL {
            assert_eq!(s.as_str().parse::<RolloutStatus>(), Ok(s));
        }
        for c in RolloutCommand::ALL {
            assert_eq!(c.as_str().parse::<RolloutCommand>(), Ok(c));
        }
        assert!("resume_all".parse::<RolloutCommand>().unwrap_err().contains("pause, resume"));
    }

    #[test]
    fn a_halt_ends_a_running_waiting_or_paused_rollout() {
        let sources: Vec<RolloutStatus> = RolloutStatus::halt_sources().collect();
        assert_eq!(sources, [RolloutStatus::Running, RolloutStatus::WaitingApproval, RolloutStatus::Paused]);
    }

    #[test]
    fn the_transition_table() {
        use RolloutCommand as C;
        use RolloutStatus as S;
        let at = |status, stage| Position { status, stage };
        assert_eq!(on_command(at(S::Running, 0), C::Pause, 3), Some(at(S::Paused, 0)));
        assert_eq!(on_command(at(S::Paused, 1), C::Resume, 3), Some(at(S::Running, 1)));
        assert_eq!(on_command(at(S::Running, 1), C::Resume, 3), None);
        assert_eq!(on_command(at(S::WaitingApproval, 0), C::Approve, 3), Some(at(S::Running, 1)));
        assert_eq!(on_command(at(S::WaitingApproval, 2), C::Approve, 3), Some(at(S::Completed, 2)));
        assert_eq!(on_command(at(S::Halted, 1), C::Resume, 3), None, "a halt is for good");
        assert_eq!(on_command(at(S::Completed, 2), C::Rollback, 3), Some(at(S::RolledBack, 2)));
        assert_eq!(on_command(at(S::RolledBack, 2), C::Rollback, 3), None);
    }

    #[test]
    fn retry_delays_read_and_write_alike() {
        let p = RetryPolicy::parse("0, 1h,6h ,24h").unwrap();
        assert_eq!(p, RetryPolicy::default());
        assert_eq!(p.to_text(), "0,1h,6h,1d");
        assert_eq!(RetryPolicy::from_stored(&p.to_stored()), p);
        assert_eq!(RetryPolicy::parse("none").unwrap().delays_secs, Vec::<u32>::new());
        assert_eq!(RetryPolicy::parse("90s,15m").unwrap().to_text(), "90s,15m");
        assert!(RetryPolicy::parse("1w").is_err());
        assert!(RetryPolicy::parse("").is_err());
        assert!(RetryPolicy::parse("31d").is_err(), "thirty days at most");
        assert!(RetryPolicy::parse(&vec!["1h"; MAX_RETRIES + 1].join(",")).is_err());
    }

    #[test]
    fn the_default_retries_at_the_next_contact_then_after_1h_6h_24h_then_stops() {
        let p = RetryPolicy::default();
        let mut attempts = 0;
        let mut waits = Vec::new();
        loop {
            match settle(Setback::Failed, attempts, 0, &p, 3) {
                Settlement::Retry { attempts: a, retry_in_secs, .. } => {
                    waits.push(retry_in_secs);
                    attempts = a;
                }
                Settlement::GiveUp { attempts: a, .. } => {
                    assert_eq!(a, 5, "ten failures are five attempts at most");
                    break;
                }
                Settlement::Wait { .. } => unreachable!("a failure never waits"),
            }
        }
        assert_eq!(waits, [0, 3_600, 21_600, 86_400]);
        assert_eq!(
            settle(Setback::TimedOut, 0, 0, &RetryPolicy::parse("none").unwrap(), 3),
            Settlement::GiveUp { attempts: 1, postponements: 0 }
        );
    }

    #[test]
    fn a_deadline_grows_with_the_download() {
        assert_eq!(offer_deadline_secs(3_600, 0, 32_768), 3_600);
        assert_eq!(offer_deadline_secs(3_600, 100 << 20, 32_768), 3_600 + 3_200);
        assert_eq!(offer_deadline_secs(3_600, 1, 0), 3_601, "a zero speed is read as one byte a second");
    }

    proptest! {
        #[test]
        fn commands_never_leave_a_rolled_back_rollout_nor_skip_stages(
            from in status(), stage in 0usize..5, extra in 1usize..5, c in command(),
        ) {
            let stage_count = stage + extra;
            let to = on_command(Position { status: from, stage }, c, stage_count);
            if from.is_final() {
                prop_assert_eq!(to, None);
            }
            if let Some(to) = to {
                prop_assert!(to.stage == stage || (c == RolloutCommand::Approve && to.stage == stage + 1));
                prop_assert!(to.stage < stage_count);
                prop_assert!(to.status != RolloutStatus::WaitingApproval, "only the supervisor waits for approval");
                prop_assert_eq!(to.status == RolloutStatus::RolledBack, c == RolloutCommand::Rollback);
            }
        }

        #[test]
        fn only_a_running_rollout_is_moved_by_the_supervisor(
            status in status(), stage in 0usize..5, rules in rules(), tally in tally(),
        ) {
            let rules = Rules { stage_count: rules.stage_count.max(stage + 1), ..rules };
            let decision = evaluate(Position { status, stage }, &rules, &tally);
            if status != RolloutStatus::Running {
                prop_assert_eq!(decision, Evaluation::Stay);
            }
        }

        #[test]
        fn failures_past_the_limit_pause_and_success_moves_one_stage(
            stage in 0usize..5, rules in rules(), tally in tally(),
        ) {
            let rules = Rules { stage_count: rules.stage_count.max(stage + 1), ..rules };
            let at = Position { status: RolloutStatus::Running, stage };
            let failed = tally.failed.saturating_sub(rules.failures_forgiven);
            match evaluate(at, &rules, &tally) {
                Evaluation::Halt => prop_assert!(tally.release_withdrawn),
                Evaluation::Pause { failed: reported } => {
                    prop_assert_eq!(reported, failed);
                    prop_assert!(failed as f64 > rules.max_failures.tolerated(tally.devices));
                }
                Evaluation::Move(to) => {
                    prop_assert!(!tally.release_withdrawn);
                    prop_assert!(failed as f64 <= rules.max_failures.tolerated(tally.devices));
                    prop_assert!(to.stage == stage || to.stage == stage + 1);
                    prop_assert!(to.stage < rules.stage_count);
                    let last = stage + 1 == rules.stage_count;
                    prop_assert_eq!(to.status == RolloutStatus::Completed, last);
                    if to.stage == stage + 1 {
                        prop_assert!(rules.auto_advance);
                    }
                }
                Evaluation::Stay => {
                    prop_assert!(!tally.release_withdrawn);
                    prop_assert!(failed as f64 <= rules.max_failures.tolerated(tally.devices));
                    prop_assert!(tally.compatible > 0);
                }
            }
        }

        #[test]
        fn a_rollback_pins_only_lower_releases_of_the_models_and_names_those_left(
            bad_models in prop::sample::subsequence(vec!["A920", "A80", "A35"], 1..=3),
            earlier in prop::collection::vec(
                (1u64..20, prop::sample::subsequence(vec!["A920", "A80", "A35"], 1..=3), any::<bool>()),
                0..6,
            ),
        ) {
            let bad = release(100, 1_000, &bad_models, None);
            let earlier: Vec<crate::contact::Candidate> = earlier
                .iter()
                .enumerate()
                .map(|(i, (code, models, withdrawn))| crate::contact::Candidate {
                    withdrawn: *withdrawn,
                    ..release(i as i64, code * 100, models, None)
                })
                .collect();
            let plan = rollback_plan(&bad, &earlier);
            for id in &plan.releases {
                let c = earlier.iter().find(|c| c.release_id == *id).unwrap();
                prop_assert!(c.version_code < bad.version_code && !c.withdrawn);
            }
            let codes: Vec<u64> = plan.releases.iter().map(|id| earlier.iter().find(|c| c.release_id == *id).unwrap().version_code).collect();
            prop_assert!(codes.windows(2).all(|w| w[0] <= w[1]), "lowest first");
            for model in &bad.models {
                let covered = plan.releases.iter().any(|id| earlier.iter().any(|c| c.release_id == *id && c.models.contains(model)));
                prop_assert_eq!(covered, !plan.uncovered_models.contains(model));
                let possible = earlier
                    .iter()
                    .any(|c| !c.withdrawn && c.version_code < bad.version_code && c.models.contains(model));
                prop_assert_eq!(covered, possible);
            }
        }

        #[test]
        fn setbacks_count_once_each_and_postponing_fails_only_past_the_limit(
            delays in prop::collection::vec(0u32..100_000, 0..6),
            setbacks in prop::collection::vec(prop::sample::select(vec![Setback::Failed, Setback::TimedOut, Setback::Postponed]), 0..30),
            max_postpones in 0u32..5,
        ) {
            let policy = RetryPolicy { delays_secs: delays.clone() };
            let (mut attempts, mut postponements) = (0u32, 0u32);
            for setback in setbacks {
                let before = (attempts, postponements);
                let s = settle(setback, attempts, postponements, &policy, max_postpones);
                match s {
                    Settlement::Wait { postponements: p } => {
                        prop_assert_eq!(setback, Setback::Postponed);
                        prop_assert!(p <= max_postpones);
                        postponements = p;
                    }
                    Settlement::Retry { attempts: a, postponements: p, retry_in_secs } => {
                        prop_assert_eq!(a, before.0 + 1);
                        prop_assert_eq!(Some(retry_in_secs), delays.get(before.0 as usize).copied());
                        (attempts, postponements) = (a, p);
                    }
                    Settlement::GiveUp { attempts: a, postponements: p } => {
                        prop_assert_eq!(a, before.0 + 1);
                        prop_assert_eq!(a as usize, delays.len() + 1, "given up exactly after the last retry");
                        prop_assert!(setback != Setback::Postponed || p > max_postpones);
                        break;
                    }
                }
                prop_assert_eq!(s.is_failure(), setback != Setback::Postponed || postponements > max_postpones);
            }
        }

        #[test]
        fn more_installs_never_undo_a_success(stage in 0usize..5, rules in rules(), tally in tally()) {
            let rules = Rules { stage_count: rules.stage_count.max(stage + 1), ..rules };
            let at = Position { status: RolloutStatus::Running, stage };
            if let Evaluation::Move(to) = evaluate(at, &rules, &tally) {
                let more = Tally { installed: tally.compatible, ..tally };
                prop_assert_eq!(evaluate(at, &rules, &more), Evaluation::Move(to));
            }
        }
    }
}
