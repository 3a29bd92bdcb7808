//! Rollouts: a deployment moved through stages (1 % → 10 % → …). A device's
//! stage follows from a hash of (rollout, device), so a stage is one number:
//! raising it is one write whatever the fleet's size. The supervisor (every
//! server process runs one; conditional updates make them agree) advances a
//! stage that succeeded and pauses a rollout whose failures pass its limit.

pub mod attempts;
pub mod counts;
pub mod deployments;
pub mod preview;

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::contact::{ALL_BP, DeviceFacts, Target, bucket, compatibility_of};
use tms_packages::rollouts::{
    Evaluation, FailureLimit, Position, RolloutCommand, RolloutStatus, Rules, StatusReason, on_command,
    rollback_plan,
};
use tms_packages::wire::contact::TerminalState;
use tms_packages::wire::deployments::{
    CreateDeploymentRequest, DeploymentView, RolloutView, StageStats, StartRolloutRequest,
};

use self::deployments::{DeploymentRow, NewDeployment, SHIPPERS};
use crate::accounts::access::Actor;
use crate::contact::changes;
use crate::db::schema::deployments as deployment_rows;
use crate::db::schema::{apps, deployment_actions, device_inventory, devices, releases, rollouts};
use crate::db::{DbConnection, DbError, audit};
use crate::error::{Error, ErrorCode};
use crate::time::{now, rfc3339};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rollouts)]
pub struct RolloutRow {
    pub id: i64,
    pub deployment_id: i64,
    pub stages: String,
    pub current_stage: i32,
    pub success_bp: i32,
    pub max_failures: i32,
    pub max_failures_is_bp: bool,
    pub failures_forgiven: i32,
    pub auto_advance: bool,
    pub status: String,
    pub status_reason: Option<String>,
    pub rollback_deployment_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub reached_devices: Option<i64>,
    /// [`StatusReason`] as JSON.
    pub status_reason_code: Option<String>,
}

impl RolloutRow {
    /// Why it stands where it does, when a reason was kept in words any
    /// language can say (rollouts moved before that have the English only).
    pub fn reason(&self) -> Option<StatusReason> {
        self.status_reason_code.as_deref().and_then(|json| serde_json::from_str(json).ok())
    }

    pub fn stages_bp(&self) -> Vec<u32> {
        self.stages.split(',').filter_map(|s| s.parse().ok()).collect()
    }

    pub fn current_bp(&self) -> u32 {
        self.stages_bp().get(self.current_stage as usize).copied().unwrap_or(0)
    }

    /// Its state and stage, as the rules see them. A status the rules do
    /// not know (written by a newer server) reads as paused: nothing is
    /// offered and nothing moves it on its own.
    pub fn position(&self) -> Position {
        Position {
            status: self.status.parse().unwrap_or(RolloutStatus::Paused),
            stage: self.current_stage.max(0) as usize,
        }
    }

    /// Whether its deployment delivers: a paused, halted or rolled-back
    /// rollout offers its release to no one.
    pub fn delivers(&self) -> bool {
        self.position().status.delivers()
    }

    fn rules(&self) -> Rules {
        Rules {
            stage_count: self.stages_bp().len(),
            success_bp: self.success_bp.max(0) as u32,
            max_failures: if self.max_failures_is_bp {
                FailureLimit::ShareBp(self.max_failures.max(0) as u32)
            } else {
                FailureLimit::Count(self.max_failures.max(0) as u64)
            },
            failures_forgiven: self.failures_forgiven.max(0) as u64,
            auto_advance: self.auto_advance,
        }
    }

    fn max_failures_text(&self) -> String {
        if self.max_failures_is_bp {
            format!("{}%", f64::from(self.max_failures) / 100.0)
        } else {
            self.max_failures.to_string()
        }
    }
}

pub fn for_deployment(conn: &mut DbConnection, deployment_id: i64) -> Result<Option<RolloutRow>, DbError> {
    Ok(rollouts::table
        .filter(rollouts::deployment_id.eq(deployment_id))
        .select(RolloutRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn for_deployments(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<RolloutRow>, DbError> {
    Ok(rollouts::table
        .filter(rollouts::deployment_id.eq_any(ids))
        .select(RolloutRow::as_select())
        .load(conn)?)
}

fn percent_to_bp(field: &str, p: f64) -> Result<u32, Error> {
    if !(p.is_finite() && p > 0.0 && p <= 100.0) {
        return Err(Error::invalid(field, format!("{p}: a percentage is above 0 and at most 100")));
    }
    Ok((p * 100.0).round() as u32)
}

/// `3` (a count) or `2%` (of the devices in the stages reached).
fn parse_max_failures(text: &str) -> Result<(i32, bool), Error> {
    let text = text.trim();
    match text.strip_suffix('%') {
        Some(p) => {
            let p: f64 = p.trim().parse().map_err(|_| Error::invalid("max_failures", "write 3 or 2%"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(Error::invalid("max_failures", "a percentage is between 0 and 100"));
            }
            Ok(((p * 100.0).round() as i32, true))
        }
        None => {
            let n: i32 = text.parse().map_err(|_| Error::invalid("max_failures", "write 3 or 2%"))?;
            if n < 0 {
                return Err(Error::invalid("max_failures", "a count is 0 or more"));
            }
            Ok((n, false))
        }
    }
}

/// A rollout's rules as stored: stages and success threshold in basis
/// points, and the failure limit (a count, or basis points).
struct StoredRules {
    stages: Vec<u32>,
    success_bp: u32,
    max_failures: i32,
    max_failures_is_bp: bool,
}

fn rules_of(request: &StartRolloutRequest) -> Result<StoredRules, Error> {
    let stages: Vec<u32> =
        request.stages.iter().map(|p| percent_to_bp("stages", *p)).collect::<Result<_, _>>()?;
    if stages.is_empty() || stages.windows(2).any(|w| w[0] >= w[1]) || stages.last() != Some(&ALL_BP) {
        return Err(Error::invalid("stages", "stages rise and end at 100, e.g. 1,10,50,100"));
    }
    let success_bp = percent_to_bp("success_percent", request.success_percent)?;
    let (max_failures, max_failures_is_bp) = parse_max_failures(&request.max_failures)?;
    Ok(StoredRules { stages, success_bp, max_failures, max_failures_is_bp })
}

/// A reason as the rollout keeps it.
pub fn stored(reason: &StatusReason) -> String {
    serde_json::to_string(reason).expect("reasons serialise")
}

/// Checks a rollout's rules without saving anything (for a preview).
pub fn check_rules(request: &StartRolloutRequest) -> Result<(), Error> {
    rules_of(request).map(|_| ())
}

/// Creates a deployment and, with `rollout`, starts its rollout: the
/// deployment is held until then, so no terminal gets it unstaged, and the
/// rollout's rules are checked before anything is saved.
pub fn create_staged(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &CreateDeploymentRequest,
    rollout: Option<&StartRolloutRequest>,
) -> Result<DeploymentView, Error> {
    let Some(rollout) = rollout else { return deployments::create(conn, actor, request) };
    rules_of(rollout)?;
    let held = CreateDeploymentRequest { hold: true, ..request.clone() };
    let created = deployments::create(conn, actor, &held)?;
    start(conn, actor, created.id, rollout)?;
    deployments::show(conn, actor, created.id)
}

pub fn start(
    conn: &mut DbConnection,
    actor: &Actor,
    deployment_id: i64,
    request: &StartRolloutRequest,
) -> Result<RolloutView, Error> {
    actor.require_operator(SHIPPERS)?;
    let StoredRules { stages, success_bp, max_failures, max_failures_is_bp: is_bp } = rules_of(request)?;
    let started = crate::db::write_tx(conn, |conn| {
        let deployment = deployments::find(conn, deployment_id)?;
        if deployment.origin == "store" {
            return Err(Error::new(
                ErrorCode::RolloutState,
                "a merchant's store request is not rolled out: it goes to the terminals the merchant chose",
            ));
        }
        if !matches!(deployment.status.as_str(), "active" | "held") || deployment.rollback_of.is_some() {
            return Err(Error::new(ErrorCode::RolloutState, "this deployment cannot be rolled out"));
        }
        if for_deployment(conn, deployment_id)?.is_some() {
            return Err(Error::new(ErrorCode::RolloutState, "this deployment already has a rollout"));
        }
        let at = now();
        diesel::insert_into(rollouts::table)
            .values((
                rollouts::deployment_id.eq(deployment_id),
                rollouts::stages.eq(stages.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
                rollouts::current_stage.eq(0),
                rollouts::success_bp.eq(success_bp as i32),
                rollouts::max_failures.eq(max_failures),
                rollouts::max_failures_is_bp.eq(is_bp),
                rollouts::auto_advance.eq(request.auto_advance),
                rollouts::status.eq("running"),
                rollouts::created_at.eq(at),
                rollouts::updated_at.eq(at),
            ))
            .execute(conn)
            .map_err(|e| match DbError::from(e) {
                e if e.is_unique_violation() => {
                    Error::new(ErrorCode::RolloutState, "this deployment already has a rollout")
                }
                e => e.into(),
            })?;
        if deployment.status == "held" {
            diesel::update(deployment_rows::table.find(deployment_id))
                .set(deployment_rows::status.eq("active"))
                .execute(conn)?;
        }
        audit::record(
            conn,
            &actor.audit(
                "rollout.start",
                &format!("deployment:{deployment_id}"),
                None,
                &json!({"stages": request.stages, "success_percent": request.success_percent,
                        "max_failures": request.max_failures, "auto_advance": request.auto_advance}),
            ),
        )?;
        let scopes = deployment.scopes(conn)?;
        changes::record(conn, &scopes)?;
        let rollout = for_deployment(conn, deployment_id)?.expect("just inserted");
        Ok::<_, Error>((deployment, rollout))
    });
    let (deployment, rollout) = started?;
    // Its first stage's size, for the failure reports to weigh a share
    // limit against from the first one on.
    let reached = tally(conn, &deployment, &rollout)?.devices;
    remember_reached(conn, rollout.id, reached)?;
    view(conn, &deployment, &rollout, false)
}

/// Carries out what a person asks of a rollout, as the transition table
/// allows ([`on_command`]).
pub fn command(
    conn: &mut DbConnection,
    actor: &Actor,
    deployment_id: i64,
    command: RolloutCommand,
) -> Result<RolloutView, Error> {
    actor.require_operator(SHIPPERS)?;
    crate::db::write_tx(conn, |conn| {
        let deployment = deployments::find(conn, deployment_id)?;
        let rollout = for_deployment(conn, deployment_id)?.ok_or_else(|| Error::not_found("rollout"))?;
        let Some(to) = on_command(rollout.position(), command, rollout.stages_bp().len()) else {
            return Err(Error::new(
                ErrorCode::RolloutState,
                format!("a {} rollout cannot be {}", rollout.status.replace('_', " "), command.done()),
            ));
        };
        let mut rollback = None;
        let reason = match command {
            RolloutCommand::Pause => Some(StatusReason::Paused { by: actor.email.clone() }),
            RolloutCommand::Halt => Some(StatusReason::Halted { by: actor.email.clone() }),
            RolloutCommand::Resume => {
                // Judged on failures from now on: those that paused it were seen.
                let failed = tally(conn, &deployment, &rollout)?.failed as i32;
                diesel::update(rollouts::table.find(rollout.id))
                    .set(rollouts::failures_forgiven.eq(failed))
                    .execute(conn)?;
                None
            }
            RolloutCommand::Approve => None,
            RolloutCommand::Rollback => {
                let (id, left) = create_rollback(conn, actor, &deployment, &rollout)?;
                rollback = Some(id);
                let (stay, models, version) = match left {
                    Some((n, models, version)) => (Some(n), models, Some(version)),
                    None => (None, Vec::new(), None),
                };
                Some(StatusReason::RolledBack { by: actor.email.clone(), stay, models, version })
            }
        };
        let (status, stage) = (to.status.as_str(), to.stage as i32);
        // Conditional: the supervisor of another process may have moved it
        // since it was read (PostgreSQL runs at read committed).
        let moved = diesel::update(
            rollouts::table
                .find(rollout.id)
                .filter(rollouts::status.eq(&rollout.status))
                .filter(rollouts::current_stage.eq(rollout.current_stage)),
        )
        .set((
            rollouts::status.eq(status),
            rollouts::current_stage.eq(stage),
            rollouts::status_reason.eq(reason.as_ref().map(StatusReason::english)),
            rollouts::status_reason_code.eq(reason.as_ref().map(stored)),
            rollouts::rollback_deployment_id.eq(rollback.or(rollout.rollback_deployment_id)),
            rollouts::updated_at.eq(now()),
        ))
        .execute(conn)?;
        if moved == 0 {
            return Err(Error::new(
                ErrorCode::RolloutState,
                "the rollout changed while this was asked: look at its status and ask again",
            ));
        }
        if to.status == RolloutStatus::Paused {
            crate::webhooks::enqueue(
                conn,
                "rollout.paused",
                None,
                json!({"deployment_id": deployment_id, "automatic": false, "by": actor.email, "stage": stage}),
            )?;
        }
        audit::record(
            conn,
            &actor.audit(
                &format!("rollout.{}", command.as_str()),
                &format!("deployment:{deployment_id}"),
                None,
                &json!({"from": rollout.status, "to": status, "stage": stage, "rollback_deployment": rollback}),
            ),
        )?;
        let scopes = deployment.scopes(conn)?;
        changes::record(conn, &scopes)?;
        let rollout = for_deployment(conn, deployment_id)?.expect("exists");
        view(conn, &deployment, &rollout, false)
    })
}

/// Deployments pinning, per terminal model, the highest earlier release
/// that fits ([`rollback_plan`]), for the devices the rollout reached (same
/// target, same buckets, same stage); the planner gives each terminal the
/// highest of them it fits. Returns the newest rollback deployment and what
/// the rollback leaves behind: the reached terminals, on the rolled-back
/// release, of models no earlier release lists.
/// Terminals a rollback leaves where they are: how many, their models (no
/// earlier release runs on them), and the version they stay on.
type LeftOn = (u64, Vec<String>, String);

fn create_rollback(
    conn: &mut DbConnection,
    actor: &Actor,
    deployment: &DeploymentRow,
    rollout: &RolloutRow,
) -> Result<(i64, Option<LeftOn>), Error> {
    let Some(release_id) = deployment.release_id else {
        return Err(Error::new(ErrorCode::RolloutState, "an app removal cannot be rolled back"));
    };
    let rolled_back = deployments::candidate(
        &releases::table.find(release_id).select(crate::releases::ReleaseRow::as_select()).first(conn)?,
    )?;
    let earlier: Vec<tms_packages::contact::Candidate> = releases::table
        .filter(releases::app_id.eq(&deployment.app_id))
        .filter(releases::version_code.lt(rolled_back.version_code as i64))
        .filter(releases::withdrawn_at.is_null())
        .select(crate::releases::ReleaseRow::as_select())
        .load(conn)?
        .iter()
        .map(deployments::candidate)
        .collect::<Result<_, _>>()?;
    let plan = rollback_plan(&rolled_back, &earlier);
    if plan.releases.is_empty() {
        return Err(Error::new(
            ErrorCode::NoPreviousRelease,
            "no earlier release of this app to roll back to",
        ));
    }
    let devices: Vec<i64> = if deployment.target_kind == "devices" {
        deployments::device_list(conn, deployment.id)?
    } else {
        Vec::new()
    };
    diesel::update(deployment_rows::table.find(deployment.id))
        .set(deployment_rows::status.eq("cancelled"))
        .execute(conn)?;
    let mut newest = 0;
    // Lowest first: the last, newest at equal precedence, wins where it fits.
    for release in &plan.releases {
        newest = deployments::insert(
            conn,
            actor,
            NewDeployment {
                app_id: &deployment.app_id,
                release_id: Some(*release),
                target_kind: &deployment.target_kind,
                target_id: deployment.target_id,
                devices: &devices,
                action: deployment.action(),
                pinned: true,
                starts_at: now(),
                expires_at: None,
                window: None,
                wifi_only: false,
                status: "active",
                rollback_of: Some(deployment.id),
                scope: Some((rollout.id, rollout.current_bp())),
                origin: "operator",
                merchant_id: None,
                retry: deployment.retry_policy(),
                max_postpones: deployment.max_postpones(),
                // A rollback does not wait for a device's confirmation.
                confirmation_required: false,
            },
        )?;
    }
    let left = if plan.uncovered_models.is_empty() {
        None
    } else {
        let stages = rollout.stages_bp();
        let reached = rollout.current_stage.max(0) as usize;
        let in_reached_stage = |device_id: i64| {
            let b = bucket(rollout.id, device_id);
            stages.iter().position(|bp| b < *bp).is_some_and(|stage| stage <= reached)
        };
        let mut left = 0u64;
        let target = deployments::ParsedTarget::of(conn, deployment)?;
        each_targeted(conn, &deployment.app_id, &target, in_reached_stage, |device| {
            let uncovered = plan.uncovered_models.iter().any(|m| m.eq_ignore_ascii_case(device.model));
            if uncovered && device.installed_code == Some(rolled_back.version_code) {
                left += 1;
            }
        })?;
        Some((left, plan.uncovered_models.clone(), rolled_back.version.to_string()))
    };
    Ok((newest, left))
}

/// A device a deployment targets, with what the rollout needs of it.
struct Targeted<'a> {
    device_id: i64,
    model: &'a str,
    firmware: Option<&'a str>,
    /// The version code of the deployment's app it last reported.
    installed_code: Option<u64>,
}

/// What the tally needs of a reported state; serde skips the rest unparsed
/// (a rollout to everyone reads every terminal's state on each pass).
#[derive(serde::Deserialize)]
struct ReportedVersions<'a> {
    #[serde(borrow)]
    firmware: Cow<'a, str>,
    #[serde(borrow)]
    apps: Vec<ReportedApp<'a>>,
}

#[derive(serde::Deserialize)]
struct ReportedApp<'a> {
    #[serde(borrow)]
    app_id: Cow<'a, str>,
    version_code: u64,
}

/// Visits the devices a deployment targets, one row at a time (a million
/// reported states are not held at once). Only devices `wanted` keeps (by
/// id) have their reported state parsed: the supervisor counts the stages
/// reached, and parsing a million states every pass for a 1 % stage would
/// cost seconds.
fn each_targeted(
    conn: &mut DbConnection,
    app_id: &str,
    target: &deployments::ParsedTarget,
    wanted: impl Fn(i64) -> bool,
    mut visit: impl FnMut(Targeted<'_>),
) -> Result<(), DbError> {
    let mut query = devices::table
        .left_join(device_inventory::table)
        .filter(devices::status.eq("active"))
        .select((
            devices::id,
            devices::merchant_id,
            devices::location_id,
            devices::model,
            device_inventory::state_json.nullable(),
        ))
        .into_boxed();
    let mut group: Option<Target> = None;
    match (target.kind, target.id) {
        ("merchant", Some(id)) => query = query.filter(devices::merchant_id.eq(id)),
        ("location", Some(id)) => query = query.filter(devices::location_id.eq(id)),
        ("devices", _) => query = query.filter(devices::id.eq_any(target.devices.clone())),
        ("group", Some(id)) => group = Some(deployments::group_target(conn, id)?),
        _ => {}
    }
    type Row = (i64, i64, i64, String, Option<String>);
    for row in query.load_iter::<Row, diesel::connection::DefaultLoadingMode>(conn)? {
        let (id, merchant, location, model, state) = row?;
        if !wanted(id) {
            continue;
        }
        let (firmware, installed_code): (Option<Cow<'_, str>>, Option<u64>) = match &group {
            // A group's filter may look at anything the terminal reported.
            Some(target) => {
                let state: Option<TerminalState> =
                    state.as_deref().and_then(|s| serde_json::from_str(s).ok());
                let facts = DeviceFacts {
                    device_id: id,
                    merchant_id: merchant,
                    location_id: location,
                    model: state.as_ref().map_or(model.clone(), |s| s.model.clone()),
                    firmware: state.as_ref().map_or(String::new(), |s| s.firmware.clone()),
                    installed: state
                        .as_ref()
                        .map(|s| {
                            s.apps
                                .iter()
                                .map(|a| (a.app_id.clone(), (a.version.clone(), a.version_code)))
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                if !target.matches(&facts) {
                    continue;
                }
                let code = state
                    .as_ref()
                    .and_then(|s| s.apps.iter().find(|a| a.app_id == app_id).map(|a| a.version_code));
                (state.map(|s| Cow::Owned(s.firmware)), code)
            }
            None => {
                let versions: Option<ReportedVersions<'_>> =
                    state.as_deref().and_then(|s| serde_json::from_str(s).ok());
                let code = versions
                    .as_ref()
                    .and_then(|v| v.apps.iter().find(|a| a.app_id == app_id).map(|a| a.version_code));
                (versions.map(|v| v.firmware), code)
            }
        };
        visit(Targeted { device_id: id, model: &model, firmware: firmware.as_deref(), installed_code });
    }
    Ok(())
}

/// Where a terminal stands with a deployment, as the tally reads it.
struct Standing {
    status: String,
    attempts: i32,
    for_good: bool,
}

/// Counts per stage, plus what the supervisor decides on.
struct Tally {
    stages: Vec<StageStats>,
    /// In the stages reached: devices the release fits, installed, failed.
    compatible: u64,
    installed: u64,
    failed: u64,
    devices: u64,
    release_withdrawn: bool,
}

fn tally(
    conn: &mut DbConnection,
    deployment: &DeploymentRow,
    rollout: &RolloutRow,
) -> Result<Tally, DbError> {
    let stages = rollout.stages_bp();
    let reached = rollout.current_stage.max(0) as usize;
    // The release, as the planner sees it: what fits a terminal here is
    // what the planner would offer it.
    let candidate = match deployment.release_id {
        Some(id) => Some(deployments::candidate(
            &releases::table.find(id).select(crate::releases::ReleaseRow::as_select()).first(conn)?,
        )?),
        None => None,
    };
    // The operator's releases of store and private apps only update them:
    // terminals without the app are never offered it, so they do not count.
    let visibility: String = apps::table.find(&deployment.app_id).select(apps::visibility).first(conn)?;
    let update_only = candidate.as_ref().is_some_and(|c| !c.firmware) && visibility != "system";
    // Where each terminal stands. An install that failed because the
    // release was withdrawn is not the terminal's failure: it counts as no
    // report at all.
    let statuses: HashMap<i64, Standing> = deployment_actions::table
        .filter(deployment_actions::deployment_id.eq(deployment.id))
        .select((
            deployment_actions::device_id,
            deployment_actions::status,
            deployment_actions::error_code,
            deployment_actions::attempts,
            deployment_actions::failed_for_good,
        ))
        .load::<(i64, String, Option<String>, i32, bool)>(conn)?
        .into_iter()
        .filter(|(_, status, code, _, _)| {
            !(status == "failed" && code.as_deref() == Some(ErrorCode::ReleaseWithdrawn.as_str()))
        })
        .map(|(device, status, _, attempts, for_good)| (device, Standing { status, attempts, for_good }))
        .collect();
    let mut out = Tally {
        stages: stages
            .iter()
            .take(reached + 1)
            .enumerate()
            .map(|(i, bp)| StageStats {
                stage: i as u32,
                percent: f64::from(*bp) / 100.0,
                devices: 0,
                pending: 0,
                in_progress: 0,
                installed: 0,
                failed: 0,
                timed_out: 0,
                failed_for_good: 0,
                postponed: 0,
            })
            .collect(),
        compatible: 0,
        installed: 0,
        failed: 0,
        devices: 0,
        release_withdrawn: candidate.as_ref().is_some_and(|c| c.withdrawn),
    };
    let release_code: Option<u64> = candidate.as_ref().map(|c| c.version_code);
    let stage_of = |device_id: i64| {
        let b = bucket(rollout.id, device_id);
        stages.iter().position(|bp| b < *bp).filter(|stage| *stage <= reached)
    };
    let target = deployments::ParsedTarget::of(conn, deployment)?;
    each_targeted(
        conn,
        &deployment.app_id,
        &target,
        |id| stage_of(id).is_some(),
        |device| {
            if update_only && device.installed_code.is_none() && !statuses.contains_key(&device.device_id) {
                return;
            }
            let Some(stage) = stage_of(device.device_id) else { return };
            let s = &mut out.stages[stage];
            s.devices += 1;
            out.devices += 1;
            let fits = candidate.as_ref().is_none_or(|c| {
                compatibility_of(device.model, device.firmware.unwrap_or_default(), c).is_none()
            });
            if fits {
                out.compatible += 1;
            }
            let already = match (&release_code, &device.installed_code) {
                (Some(code), Some(has)) => has >= code,
                _ => false,
            };
            match statuses.get(&device.device_id) {
                // Reported installed, or runs it (or a higher one) already.
                Some(standing) if standing.status == "installed" => {
                    s.installed += 1;
                    out.installed += 1;
                }
                _ if already => {
                    s.installed += 1;
                    out.installed += 1;
                }
                // Failed at least once and not installed since: a failure,
                // whether it waits for a retry, retries or gave up.
                Some(standing) if standing.attempts > 0 => {
                    s.failed += 1;
                    out.failed += 1;
                    s.timed_out += u64::from(standing.status == "timed_out");
                    s.failed_for_good += u64::from(standing.for_good);
                }
                None => s.pending += 1,
                Some(standing) => match standing.status.as_str() {
                    "offered" => s.pending += 1,
                    "postponed" => s.postponed += 1,
                    // A failure not counted (an old withdrawn-release report) waits.
                    "failed" | "timed_out" => s.pending += 1,
                    _ => s.in_progress += 1,
                },
            }
        },
    )?;
    Ok(out)
}

pub fn view(
    conn: &mut DbConnection,
    deployment: &DeploymentRow,
    rollout: &RolloutRow,
    with_stats: bool,
) -> Result<RolloutView, Error> {
    let stages = rollout.stages_bp();
    Ok(RolloutView {
        id: rollout.id,
        deployment_id: rollout.deployment_id,
        status: rollout.status.clone(),
        status_reason: rollout.status_reason.clone(),
        status_reason_detail: rollout.reason(),
        stages: stages.iter().map(|bp| f64::from(*bp) / 100.0).collect(),
        current_stage: rollout.current_stage as u32,
        current_percent: f64::from(rollout.current_bp()) / 100.0,
        success_percent: f64::from(rollout.success_bp) / 100.0,
        max_failures: rollout.max_failures_text(),
        auto_advance: rollout.auto_advance,
        stage_stats: if with_stats { tally(conn, deployment, rollout)?.stages } else { Vec::new() },
        rollback_deployment_id: rollout.rollback_deployment_id,
        updated_at: rfc3339(rollout.updated_at),
    })
}

/// Where a rollout stands. A read: it changes nothing (the supervisor and
/// the commands move rollouts on).
pub fn status(conn: &mut DbConnection, actor: &Actor, deployment_id: i64) -> Result<RolloutView, Error> {
    actor.require_operator(deployments::READERS)?;
    let deployment = deployments::find(conn, deployment_id)?;
    let rollout = for_deployment(conn, deployment_id)?.ok_or_else(|| Error::not_found("rollout"))?;
    view(conn, &deployment, &rollout, true)
}

/// Where a rollout stands with its latest count (at most a pass of the
/// supervisor old while it runs, a minute while paused), and when that count
/// was taken: what a page shows without counting every targeted terminal
/// while it waits. A rollout never counted yet is counted now.
pub fn status_counted(
    conn: &mut DbConnection,
    actor: &Actor,
    deployment_id: i64,
) -> Result<(RolloutView, NaiveDateTime), Error> {
    actor.require_operator(deployments::READERS)?;
    let deployment = deployments::find(conn, deployment_id)?;
    let rollout = for_deployment(conn, deployment_id)?.ok_or_else(|| Error::not_found("rollout"))?;
    let mut view = view(conn, &deployment, &rollout, false)?;
    let counted_at = match counts::latest(conn, &rollout)? {
        Some((at, stages)) => {
            view.stage_stats = stages;
            at
        }
        None => {
            view.stage_stats = counts::count(conn, &deployment, &rollout)?;
            now()
        }
    };
    Ok((view, counted_at))
}

/// Applies the rollout's rules once: failures past the limit pause it; a
/// stage that reached its success threshold advances (or waits for approval).
pub fn evaluate(
    conn: &mut DbConnection,
    rollout_id: i64,
    action_timeout: chrono::Duration,
) -> Result<(), Error> {
    let rollout: RolloutRow = rollouts::table.find(rollout_id).select(RolloutRow::as_select()).first(conn)?;
    let at = rollout.position();
    if at.status != RolloutStatus::Running {
        return Ok(());
    }
    let deployment = deployments::find(conn, rollout.deployment_id)?;
    attempts::expire_overdue(conn, Some(deployment.id), action_timeout)?;
    let t = tally(conn, &deployment, &rollout)?;
    counts::record(conn, rollout.id, &t.stages, now())?;
    if rollout.reached_devices != Some(t.devices as i64) {
        remember_reached(conn, rollout.id, t.devices)?;
    }
    let counts = tms_packages::rollouts::Tally {
        devices: t.devices,
        compatible: t.compatible,
        installed: t.installed,
        failed: t.failed,
        release_withdrawn: t.release_withdrawn,
    };
    let (to, reason) = match tms_packages::rollouts::evaluate(at, &rollout.rules(), &counts) {
        Evaluation::Stay => return Ok(()),
        Evaluation::Halt => {
            (Position { status: RolloutStatus::Halted, ..at }, Some(StatusReason::ReleaseWithdrawn))
        }
        Evaluation::Pause { failed } => (
            Position { status: RolloutStatus::Paused, ..at },
            Some(StatusReason::FailureLimit { failed, limit: rollout.max_failures_text() }),
        ),
        Evaluation::Move(to) if to.status == RolloutStatus::WaitingApproval => {
            (to, Some(StatusReason::StageSucceeded))
        }
        Evaluation::Move(to) => (to, None),
    };
    let (status, stage) = (to.status.as_str(), to.stage as i32);
    let moved = crate::db::write_tx(conn, |conn| {
        // Conditional: of several processes evaluating at once, one moves it.
        let moved = diesel::update(
            rollouts::table
                .find(rollout.id)
                .filter(rollouts::status.eq("running"))
                .filter(rollouts::current_stage.eq(rollout.current_stage)),
        )
        .set((
            rollouts::status.eq(status),
            rollouts::current_stage.eq(stage),
            rollouts::status_reason.eq(reason.as_ref().map(StatusReason::english)),
            rollouts::status_reason_code.eq(reason.as_ref().map(stored)),
            rollouts::updated_at.eq(now()),
        ))
        .execute(conn)?;
        if moved == 1 {
            audit::record(
                conn,
                &crate::db::audit::NewAuditEvent::now(
                    "system",
                    "rollout.evaluate",
                    &format!("deployment:{}", deployment.id),
                    &json!({"to": status, "stage": stage, "reason": reason,
                            "installed": t.installed, "failed": t.failed, "compatible": t.compatible}),
                ),
            )?;
            if to.status == RolloutStatus::Paused {
                crate::webhooks::enqueue(
                    conn,
                    "rollout.paused",
                    None,
                    json!({"deployment_id": deployment.id, "automatic": true, "reason": reason, "stage": stage,
                           "failed": t.failed, "installed": t.installed}),
                )?;
            }
            let scopes = deployment.scopes(conn)?;
            changes::record(conn, &scopes)?;
        }
        Ok::<_, Error>(moved == 1)
    })?;
    // A stage reached more terminals: count them now, so a failure report
    // weighs against the new stage's size at once.
    if moved && to.stage != at.stage {
        let rollout: RolloutRow =
            rollouts::table.find(rollout_id).select(RolloutRow::as_select()).first(conn)?;
        let t = tally(conn, &deployment, &rollout)?;
        counts::record(conn, rollout.id, &t.stages, now())?;
        remember_reached(conn, rollout.id, t.devices)?;
    }
    Ok(())
}

fn remember_reached(conn: &mut DbConnection, rollout_id: i64, devices: u64) -> Result<(), DbError> {
    crate::db::write_tx(conn, |conn| {
        diesel::update(rollouts::table.find(rollout_id))
            .set(rollouts::reached_devices.eq(devices.min(i64::MAX as u64) as i64))
            .execute(conn)
    })?;
    Ok(())
}

/// Applies a rollout's rules now, as the supervisor's next pass would (a
/// release engineer who does not want to wait for it), and says where it
/// stands after.
pub fn evaluate_now(
    conn: &mut DbConnection,
    actor: &Actor,
    deployment_id: i64,
    action_timeout: chrono::Duration,
) -> Result<RolloutView, Error> {
    actor.require_operator(SHIPPERS)?;
    let deployment = deployments::find(conn, deployment_id)?;
    let rollout = for_deployment(conn, deployment_id)?.ok_or_else(|| Error::not_found("rollout"))?;
    let was_running = rollout.position().status == RolloutStatus::Running;
    evaluate(conn, rollout.id, action_timeout)?;
    let rollout = for_deployment(conn, deployment_id)?.ok_or_else(|| Error::not_found("rollout"))?;
    let mut view = view(conn, &deployment, &rollout, false)?;
    // A running rollout was counted just now by its evaluation; any other
    // is counted here, as asked.
    view.stage_stats = match counts::latest(conn, &rollout)? {
        Some((_, stages)) if was_running => stages,
        _ => counts::count(conn, &deployment, &rollout)?,
    };
    Ok(view)
}

/// After a terminal reported a failure about `deployment_id`: applies its
/// rollout's rules at once when its failures may have crossed the limit,
/// checked with one count of the failed terminals (an indexed count)
/// against the limit; a share is of the terminals in the stages reached
/// as the last evaluation counted them (`reached_devices`, counted again
/// whenever a stage moves). Only when that count is unknown does a share
/// limit need the full tally, taken when `share_check` (the caller spaces
/// them out). Says whether the rollout changed.
pub fn evaluate_after_failure(
    conn: &mut DbConnection,
    deployment_id: i64,
    action_timeout: chrono::Duration,
    share_check: bool,
) -> Result<bool, Error> {
    let Some(rollout) = for_deployment(conn, deployment_id)? else { return Ok(false) };
    if rollout.position().status != RolloutStatus::Running {
        return Ok(false);
    }
    let rules = rollout.rules();
    let reached = match rules.max_failures {
        FailureLimit::Count(_) => Some(0),
        FailureLimit::ShareBp(_) => rollout.reached_devices.map(|n| n.max(0) as u64),
    };
    let may_cross = match reached {
        Some(devices) => {
            let failed = attempts::failed_count(conn, deployment_id)?;
            failed.saturating_sub(rules.failures_forgiven) as f64 > rules.max_failures.tolerated(devices)
        }
        None => share_check,
    };
    if !may_cross {
        return Ok(false);
    }
    evaluate(conn, rollout.id, action_timeout)?;
    let after = for_deployment(conn, deployment_id)?.map(|r| r.position());
    Ok(after != Some(rollout.position()))
}

/// One pass: silent terminals time out (in every deployment, staged or
/// not), then every running rollout is evaluated.
pub fn supervise(conn: &mut DbConnection, action_timeout: chrono::Duration) -> Result<(), Error> {
    // A thousand at a time; a bound, for a pass must end.
    for _ in 0..100 {
        if attempts::expire_overdue(conn, None, action_timeout)? == 0 {
            break;
        }
    }
    let running: Vec<i64> =
        rollouts::table.filter(rollouts::status.eq("running")).select(rollouts::id).load(conn)?;
    for id in running {
        evaluate(conn, id, action_timeout)?;
    }
    counts::count_idle(conn)?;
    Ok(())
}
