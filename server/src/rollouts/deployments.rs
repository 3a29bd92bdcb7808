//! Deployments (a release or an app removal for a target), device groups,
//! and the in-memory snapshot of what is being delivered that the contact
//! plans with.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::OperatorRole;
use tms_packages::contact::{
    ActionType, Candidate, DeliveryMode, Deployment, DeviceFacts, DeviceFilter, Payload, Target, Window,
};
use tms_packages::wire::contact::ReleaseOffer;
use tms_packages::wire::deployments::*;

use crate::accounts::access::Actor;
use crate::contact::changes::{self, Scope};
use crate::db::schema::{
    apps, deployment_devices, deployments, device_group_members, device_groups, devices, locations,
    merchants, releases,
};
use crate::db::{DbConnection, DbError, audit};
use crate::error::{Error, ErrorCode};
use crate::releases::{ReleaseRow, find_release};
use crate::rollouts::{self, RolloutRow};
use crate::time::parse_time;
use crate::time::{now, rfc3339};
use tms_packages::rollouts::{DEFAULT_MAX_POSTPONES, RetryPolicy, RolloutStatus, StatusReason};

/// Who ships: release engineers and operator admins.
pub const SHIPPERS: &[OperatorRole] = &[OperatorRole::OperatorAdmin, OperatorRole::ReleaseEngineer];
/// Who may look: shippers and support.
pub const READERS: &[OperatorRole] =
    &[OperatorRole::OperatorAdmin, OperatorRole::ReleaseEngineer, OperatorRole::Support];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deployments)]
pub struct DeploymentRow {
    pub id: i64,
    pub app_id: String,
    pub release_id: Option<i64>,
    pub target_kind: String,
    pub target_id: Option<i64>,
    pub action: String,
    pub pinned: bool,
    pub starts_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub window_start_min: Option<i32>,
    pub window_end_min: Option<i32>,
    pub wifi_only: bool,
    pub status: String,
    pub rollback_of: Option<i64>,
    pub scope_seed: Option<i64>,
    pub scope_bp: Option<i32>,
    pub created_at: NaiveDateTime,
    pub created_by: i64,
    pub created_by_email: String,
    pub origin: String,
    pub merchant_id: Option<i64>,
    pub retry_delays: String,
    pub max_postpones: i32,
    pub confirmation_required: bool,
}

impl DeploymentRow {
    /// How it retries a terminal whose install failed.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::from_stored(&self.retry_delays)
    }

    pub fn max_postpones(&self) -> u32 {
        self.max_postpones.max(0) as u32
    }

    pub fn window(&self) -> Option<Window> {
        Some(Window { start_min: self.window_start_min? as u32, end_min: self.window_end_min? as u32 })
    }

    pub fn action(&self) -> ActionType {
        ActionType::parse(&self.action).unwrap_or(ActionType::Soft)
    }

    /// The scopes a change to this deployment touches: the set of
    /// deployments. Every process reloads it, and re-plans each terminal's
    /// target in memory from the state it reports at its next contact, so a
    /// terminal the change does not reach stays on the fast path.
    pub fn scopes(&self, _conn: &mut DbConnection) -> Result<Vec<Scope>, DbError> {
        Ok(vec![Scope::Deployments])
    }
}

/// The devices of a `devices:` target.
pub fn device_list(conn: &mut DbConnection, deployment_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(deployment_devices::table
        .filter(deployment_devices::deployment_id.eq(deployment_id))
        .order(deployment_devices::device_id)
        .select(deployment_devices::device_id)
        .load(conn)?)
}

/// A parsed `target`: kind, id, and the device list of a `devices:` target.
pub(crate) struct ParsedTarget {
    pub kind: &'static str,
    pub id: Option<i64>,
    pub devices: Vec<i64>,
}

impl ParsedTarget {
    /// A saved deployment's target.
    pub fn of(conn: &mut DbConnection, row: &DeploymentRow) -> Result<ParsedTarget, DbError> {
        let kind = match row.target_kind.as_str() {
            "merchant" => "merchant",
            "location" => "location",
            "group" => "group",
            "devices" => "devices",
            _ => "everyone",
        };
        let devices = if kind == "devices" { device_list(conn, row.id)? } else { Vec::new() };
        Ok(ParsedTarget { kind, id: row.target_id, devices })
    }
}

/// Reads `everyone`, `merchant:M`, `location:L`, `group:G` or
/// `devices:D1,D2,…`, checking that what it names exists.
pub(crate) fn parse_target(conn: &mut DbConnection, text: &str) -> Result<ParsedTarget, Error> {
    let bad = |m: String| Error::new(ErrorCode::InvalidTarget, m);
    let text = text.trim();
    if text == "everyone" {
        return Ok(ParsedTarget { kind: "everyone", id: None, devices: Vec::new() });
    }
    let (kind, rest) = text.split_once(':').ok_or_else(|| {
        bad(format!("{text:?}: a target is everyone, merchant:M, location:L, group:G or devices:D1,D2,…"))
    })?;
    let number = |s: &str| s.trim().parse::<i64>().map_err(|_| bad(format!("{s:?} is not an id")));
    match kind {
        "merchant" => {
            let id = number(rest)?;
            let found: i64 = merchants::table.filter(merchants::id.eq(id)).count().get_result(conn)?;
            if found == 0 {
                return Err(bad(format!("no merchant {id}")));
            }
            Ok(ParsedTarget { kind: "merchant", id: Some(id), devices: Vec::new() })
        }
        "location" => {
            let id = number(rest)?;
            let found: i64 = locations::table.filter(locations::id.eq(id)).count().get_result(conn)?;
            if found == 0 {
                return Err(bad(format!("no location {id}")));
            }
            Ok(ParsedTarget { kind: "location", id: Some(id), devices: Vec::new() })
        }
        "group" => {
            let id = number(rest)?;
            let found: i64 =
                device_groups::table.filter(device_groups::id.eq(id)).count().get_result(conn)?;
            if found == 0 {
                return Err(bad(format!("no device group {id}")));
            }
            Ok(ParsedTarget { kind: "group", id: Some(id), devices: Vec::new() })
        }
        "devices" => {
            let ids: BTreeSet<i64> = rest.split(',').map(number).collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Err(bad("name at least one device".into()));
            }
            let list: Vec<i64> = ids.into_iter().collect();
            let found: Vec<i64> =
                devices::table.filter(devices::id.eq_any(&list)).select(devices::id).load(conn)?;
            if let Some(missing) = list.iter().find(|d| !found.contains(d)) {
                return Err(bad(format!("no device {missing}")));
            }
            Ok(ParsedTarget { kind: "devices", id: None, devices: list })
        }
        _ => {
            Err(bad(format!("{kind:?}: a target is everyone, merchant:M, location:L, group:G or devices:…")))
        }
    }
}

pub fn create(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &CreateDeploymentRequest,
) -> Result<DeploymentView, Error> {
    actor.require_operator(SHIPPERS)?;
    let window = request
        .window
        .as_deref()
        .map(str::parse::<Window>)
        .transpose()
        .map_err(|m| Error::invalid("window", m))?;
    let starts_at = match &request.starts_at {
        Some(t) => parse_time("starts_at", t)?,
        None => now(),
    };
    let expires_at = request.expires_at.as_deref().map(|t| parse_time("expires_at", t)).transpose()?;
    if expires_at.is_some_and(|e| e <= starts_at) {
        return Err(Error::invalid("expires_at", "a deployment must expire after it starts"));
    }
    let retry = match &request.retry_delays {
        Some(text) => RetryPolicy::parse(text).map_err(|m| Error::invalid("retry_delays", m))?,
        None => RetryPolicy::default(),
    };
    let max_postpones = request.max_postpones.unwrap_or(DEFAULT_MAX_POSTPONES);
    if max_postpones > 1_000 {
        return Err(Error::invalid("max_postpones", "at most 1000"));
    }
    crate::db::write_tx(conn, |conn| {
        let app: Option<String> =
            apps::table.find(&request.app_id).select(apps::id).first(conn).optional()?;
        if app.is_none() {
            return Err(Error::not_found("app"));
        }
        let release = release_to_deliver(conn, request)?;
        let target = parse_target(conn, &request.target)?;
        let id = insert(
            conn,
            actor,
            NewDeployment {
                app_id: &request.app_id,
                release_id: release.as_ref().map(|r| r.id),
                target_kind: target.kind,
                target_id: target.id,
                devices: &target.devices,
                action: request.action.unwrap_or(ActionType::Soft),
                pinned: false,
                starts_at,
                expires_at,
                window,
                wifi_only: request.wifi_only,
                status: if request.hold { "held" } else { "active" },
                rollback_of: None,
                scope: None,
                origin: "operator",
                merchant_id: None,
                retry,
                max_postpones,
                confirmation_required: request.confirmation_required,
            },
        )?;
        let row = find(conn, id)?;
        audit::record(
            conn,
            &actor.audit(
                "deployment.create",
                &format!("deployment:{id}"),
                None,
                &json!({"app_id": request.app_id, "version": request.version, "remove": request.remove,
                        "target": request.target, "action": row.action, "held": request.hold,
                        "retry_delays": row.retry_delays, "max_postpones": row.max_postpones}),
            ),
        )?;
        let scopes = row.scopes(conn)?;
        changes::record(conn, &scopes)?;
        view(conn, &row, false)
    })
}

/// The release a request delivers (none for a removal), refused when it
/// is unknown or withdrawn.
pub(crate) fn release_to_deliver(
    conn: &mut DbConnection,
    request: &CreateDeploymentRequest,
) -> Result<Option<ReleaseRow>, Error> {
    match (&request.version, request.remove) {
        (Some(_), true) => Err(Error::invalid("version", "a removal names no version")),
        (None, false) => Err(Error::invalid("version", "name the release to deliver, or ask for a removal")),
        (Some(v), false) => {
            let r = find_release(conn, &request.app_id, v)?;
            if r.withdrawn_at.is_some() {
                return Err(Error::new(ErrorCode::Conflict, "this release was withdrawn"));
            }
            Ok(Some(r))
        }
        (None, true) => Ok(None),
    }
}

pub struct NewDeployment<'a> {
    pub app_id: &'a str,
    pub release_id: Option<i64>,
    pub target_kind: &'a str,
    pub target_id: Option<i64>,
    pub devices: &'a [i64],
    pub action: ActionType,
    pub pinned: bool,
    pub starts_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub window: Option<Window>,
    pub wifi_only: bool,
    pub status: &'a str,
    pub rollback_of: Option<i64>,
    /// (bucket seed, basis points) of a rollback.
    pub scope: Option<(i64, u32)>,
    /// `operator`, or `store` for a merchant's request.
    pub origin: &'a str,
    pub merchant_id: Option<i64>,
    pub retry: RetryPolicy,
    pub max_postpones: u32,
    /// A DDI device confirms the action before it is delivered.
    pub confirmation_required: bool,
}

pub fn insert(conn: &mut DbConnection, actor: &Actor, d: NewDeployment<'_>) -> Result<i64, Error> {
    let values = (
        deployments::app_id.eq(d.app_id),
        deployments::release_id.eq(d.release_id),
        deployments::target_kind.eq(d.target_kind),
        deployments::target_id.eq(d.target_id),
        deployments::action.eq(d.action.as_str()),
        deployments::pinned.eq(d.pinned),
        deployments::starts_at.eq(d.starts_at),
        deployments::expires_at.eq(d.expires_at),
        deployments::window_start_min.eq(d.window.map(|w| w.start_min as i32)),
        deployments::window_end_min.eq(d.window.map(|w| w.end_min as i32)),
        deployments::wifi_only.eq(d.wifi_only),
        deployments::status.eq(d.status),
        deployments::rollback_of.eq(d.rollback_of),
        deployments::scope_seed.eq(d.scope.map(|s| s.0)),
        deployments::scope_bp.eq(d.scope.map(|s| s.1 as i32)),
        deployments::created_at.eq(now()),
        deployments::created_by.eq(actor.user_id),
        deployments::created_by_email.eq(&actor.email),
        deployments::origin.eq(d.origin),
        deployments::merchant_id.eq(d.merchant_id),
        deployments::retry_delays.eq(d.retry.to_stored()),
        deployments::max_postpones.eq(d.max_postpones.min(i32::MAX as u32) as i32),
        deployments::confirmation_required.eq(d.confirmation_required),
    );
    let insert = diesel::insert_into(deployments::table).values(values);
    let id: i64 = crate::per_backend!(conn, |c| insert.returning(deployments::id).get_result(c))?;
    for device in d.devices {
        diesel::insert_into(deployment_devices::table)
            .values((deployment_devices::deployment_id.eq(id), deployment_devices::device_id.eq(device)))
            .execute(conn)?;
    }
    Ok(id)
}

pub fn find(conn: &mut DbConnection, id: i64) -> Result<DeploymentRow, Error> {
    deployments::table
        .find(id)
        .select(DeploymentRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("deployment"))
}

fn target_text(conn: &mut DbConnection, row: &DeploymentRow) -> Result<String, DbError> {
    Ok(match (row.target_kind.as_str(), row.target_id) {
        ("devices", _) => {
            let ids = device_list(conn, row.id)?;
            format!("devices:{}", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
        }
        (kind, Some(id)) => format!("{kind}:{id}"),
        (kind, None) => kind.to_owned(),
    })
}

pub fn view(conn: &mut DbConnection, row: &DeploymentRow, with_stats: bool) -> Result<DeploymentView, Error> {
    let version: Option<String> = match row.release_id {
        Some(id) => Some(releases::table.find(id).select(releases::version).first(conn)?),
        None => None,
    };
    let rollout = match rollouts::for_deployment(conn, row.id)? {
        Some(r) => Some(rollouts::view(conn, row, &r, with_stats)?),
        None => None,
    };
    Ok(DeploymentView {
        id: row.id,
        app_id: row.app_id.clone(),
        kind: if row.release_id.is_some() { "release" } else { "removal" }.to_owned(),
        release_id: row.release_id,
        version,
        target: target_text(conn, row)?,
        action: row.action(),
        pinned: row.pinned,
        starts_at: rfc3339(row.starts_at),
        expires_at: row.expires_at.map(rfc3339),
        window: row.window().map(|w| w.to_string()),
        wifi_only: row.wifi_only,
        retry_delays: row.retry_policy().to_text(),
        max_postpones: row.max_postpones(),
        confirmation_required: row.confirmation_required,
        status: row.status.clone(),
        created_at: rfc3339(row.created_at),
        created_by: row.created_by_email.clone(),
        rollback_of: row.rollback_of,
        origin: row.origin.clone(),
        merchant_id: row.merchant_id,
        rollout,
    })
}

pub fn show(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<DeploymentView, Error> {
    actor.require_operator(READERS)?;
    let row = find(conn, id)?;
    view(conn, &row, false)
}

pub fn list(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: Option<&str>,
) -> Result<Vec<DeploymentView>, Error> {
    actor.require_operator(READERS)?;
    let mut query =
        deployments::table.select(DeploymentRow::as_select()).order(deployments::id.desc()).into_boxed();
    if let Some(app) = app_id {
        query = query.filter(deployments::app_id.eq(app.to_owned()));
    }
    let rows = query.limit(500).load(conn)?;
    rows.iter().map(|r| view(conn, r, false)).collect()
}

/// Stops delivering; terminals that already have the release keep it.
pub fn cancel(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<DeploymentView, Error> {
    actor.require_operator(SHIPPERS)?;
    crate::db::write_tx(conn, |conn| {
        let row = find(conn, id)?;
        if row.status == "cancelled" {
            return Err(Error::new(ErrorCode::Conflict, "this deployment is already cancelled"));
        }
        if matches!(row.status.as_str(), "superseded" | "completed") {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("this store request is {}: nothing is left to deliver", row.status),
            ));
        }
        diesel::update(deployments::table.find(id)).set(deployments::status.eq("cancelled")).execute(conn)?;
        diesel::update(
            crate::db::schema::rollouts::table
                .filter(crate::db::schema::rollouts::deployment_id.eq(id))
                .filter(
                    crate::db::schema::rollouts::status
                        .eq_any(RolloutStatus::halt_sources().map(RolloutStatus::as_str)),
                ),
        )
        .set((
            crate::db::schema::rollouts::status.eq(RolloutStatus::Halted.as_str()),
            crate::db::schema::rollouts::status_reason.eq(StatusReason::DeploymentCancelled.english()),
            crate::db::schema::rollouts::status_reason_code
                .eq(crate::rollouts::stored(&StatusReason::DeploymentCancelled)),
            crate::db::schema::rollouts::updated_at.eq(now()),
        ))
        .execute(conn)?;
        audit::record(
            conn,
            &actor.audit("deployment.cancel", &format!("deployment:{id}"), None, &json!({})),
        )?;
        let scopes = row.scopes(conn)?;
        changes::record(conn, &scopes)?;
        let row = find(conn, id)?;
        view(conn, &row, false)
    })
}

// ---- device groups ----

fn group_view(
    conn: &mut DbConnection,
    row: (i64, String, Option<String>, NaiveDateTime),
) -> Result<DeviceGroupView, DbError> {
    let (id, name, filter, created_at) = row;
    let members = if filter.is_none() {
        device_group_members::table
            .filter(device_group_members::group_id.eq(id))
            .order(device_group_members::device_id)
            .select(device_group_members::device_id)
            .load(conn)?
    } else {
        Vec::new()
    };
    Ok(DeviceGroupView {
        id,
        name,
        filter,
        devices: members,
        terminals: None,
        created_at: rfc3339(created_at),
    })
}

fn group_row(
    conn: &mut DbConnection,
    id: i64,
) -> Result<(i64, String, Option<String>, NaiveDateTime), Error> {
    device_groups::table
        .find(id)
        .select((device_groups::id, device_groups::name, device_groups::filter, device_groups::created_at))
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("device group"))
}

pub fn create_group(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &CreateDeviceGroupRequest,
) -> Result<DeviceGroupView, Error> {
    actor.require_operator(SHIPPERS)?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::invalid("name", "a group's name is 1 to 100 characters"));
    }
    let filter = match (&request.filter, request.devices.is_empty()) {
        (Some(f), true) => {
            Some(f.parse::<DeviceFilter>().map_err(|m| Error::invalid("filter", m))?.to_string())
        }
        (None, false) => None,
        _ => return Err(Error::invalid("filter", "a group has either a filter or a list of devices")),
    };
    crate::db::write_tx(conn, |conn| {
        let taken: i64 =
            device_groups::table.filter(device_groups::name.eq(name)).count().get_result(conn)?;
        if taken > 0 {
            return Err(Error::new(ErrorCode::Conflict, format!("a device group named {name:?} exists")));
        }
        let insert = diesel::insert_into(device_groups::table).values((
            device_groups::name.eq(name),
            device_groups::filter.eq(&filter),
            device_groups::created_at.eq(now()),
            device_groups::created_by.eq(actor.user_id),
        ));
        let id: i64 = crate::per_backend!(conn, |c| insert.returning(device_groups::id).get_result(c))
            .map_err(|e| match DbError::from(e) {
                e if e.is_unique_violation() => {
                    Error::new(ErrorCode::Conflict, format!("a device group named {name:?} exists"))
                }
                e => e.into(),
            })?;
        let wanted: BTreeSet<i64> = request.devices.iter().copied().collect();
        let list: Vec<i64> = wanted.into_iter().collect();
        let found: Vec<i64> =
            devices::table.filter(devices::id.eq_any(&list)).select(devices::id).load(conn)?;
        if let Some(missing) = list.iter().find(|d| !found.contains(d)) {
            return Err(Error::invalid("devices", format!("no device {missing}")));
        }
        for device in &list {
            diesel::insert_into(device_group_members::table)
                .values((device_group_members::group_id.eq(id), device_group_members::device_id.eq(device)))
                .execute(conn)?;
        }
        audit::record(
            conn,
            &actor.audit(
                "device_group.create",
                &format!("device_group:{id}"),
                None,
                &json!({"name": name, "filter": filter, "devices": list.len()}),
            ),
        )?;
        let row = group_row(conn, id)?;
        Ok(group_view(conn, row)?)
    })
}

pub fn list_groups(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<DeviceGroupView>, Error> {
    actor.require_operator(READERS)?;
    let rows: Vec<(i64, String, Option<String>, NaiveDateTime)> = device_groups::table
        .order(device_groups::id)
        .select((device_groups::id, device_groups::name, device_groups::filter, device_groups::created_at))
        .load(conn)?;
    Ok(rows.into_iter().map(|r| group_view(conn, r)).collect::<Result<_, _>>()?)
}

pub fn show_group(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<DeviceGroupView, Error> {
    actor.require_operator(READERS)?;
    let row = group_row(conn, id)?;
    let mut view = group_view(conn, row)?;
    view.terminals = Some(crate::rollouts::preview::group_size(conn, actor, id)?);
    Ok(view)
}

/// Refused while a deployment that is not cancelled targets the group.
pub fn delete_group(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<(), Error> {
    actor.require_operator(SHIPPERS)?;
    crate::db::write_tx(conn, |conn| {
        group_row(conn, id)?;
        let used: Vec<i64> = deployments::table
            .filter(deployments::target_kind.eq("group"))
            .filter(deployments::target_id.eq(id))
            .filter(deployments::status.ne("cancelled"))
            .select(deployments::id)
            .load(conn)?;
        if let Some(d) = used.first() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("deployment {d} targets this group: cancel it first"),
            ));
        }
        diesel::delete(device_group_members::table.filter(device_group_members::group_id.eq(id)))
            .execute(conn)?;
        diesel::delete(device_groups::table.find(id)).execute(conn)?;
        audit::record(
            conn,
            &actor.audit("device_group.delete", &format!("device_group:{id}"), None, &json!({})),
        )?;
        Ok(())
    })
}

// ---- the snapshot the contact plans with ----

pub use tms_packages::targets::{Delivery, Snapshot};

pub fn offer(release: &ReleaseRow) -> ReleaseOffer {
    let view = release.view();
    ReleaseOffer {
        release_id: release.id,
        version: release.version.clone(),
        version_code: release.version_code as u64,
        size: release.artifact_size as u64,
        sha256: release.artifact_sha256.clone(),
        manifest: view.manifest,
        signature: view.signature,
        key_id: release.key_id.clone(),
        download_path: format!("/api/v1/terminal/artifacts/{}", release.artifact_sha256),
        delta: None,
    }
}

pub fn candidate(release: &ReleaseRow) -> Result<Candidate, DbError> {
    Ok(Candidate {
        release_id: release.id,
        app_id: release.app_id.clone(),
        version: release
            .version
            .parse()
            .map_err(|e| DbError::Corrupt(format!("release {} has a bad version: {e}", release.id)))?,
        version_code: release.version_code as u64,
        models: release.models.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect(),
        min_firmware: release.min_firmware.clone(),
        withdrawn: release.withdrawn_at.is_some(),
        firmware: release.kind == "firmware",
    })
}

/// Reads every deployment that may deliver: not cancelled, not held, not
/// expired, and whose rollout (if any) is not paused, halted or rolled back.
pub fn load_snapshot(conn: &mut DbConnection) -> Result<Snapshot, DbError> {
    let rows: Vec<DeploymentRow> = deployments::table
        .filter(deployments::status.eq("active"))
        .filter(deployments::expires_at.is_null().or(deployments::expires_at.gt(now())))
        .select(DeploymentRow::as_select())
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let rollouts: HashMap<i64, RolloutRow> =
        rollouts::for_deployments(conn, &ids)?.into_iter().map(|r| (r.deployment_id, r)).collect();
    let release_ids: Vec<i64> = rows.iter().filter_map(|r| r.release_id).collect();
    let releases: HashMap<i64, ReleaseRow> = releases::table
        .filter(releases::id.eq_any(&release_ids))
        .select(ReleaseRow::as_select())
        .load(conn)?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let mut deltas: HashMap<i64, Vec<tms_packages::wire::contact::DeltaOffer>> = HashMap::new();
    for (release_id, base_sha256, sha256, size) in crate::releases::deltas::built_for(conn, &release_ids)? {
        deltas.entry(release_id).or_default().push(tms_packages::wire::contact::DeltaOffer {
            download_path: format!("/api/v1/terminal/deltas/{sha256}"),
            base_sha256,
            sha256,
            size,
        });
    }
    // The operator's deployments of store and private apps only update them.
    let app_ids: BTreeSet<&str> = rows.iter().map(|r| r.app_id.as_str()).collect();
    let merchant_chosen: BTreeSet<String> = apps::table
        .filter(apps::id.eq_any(&app_ids))
        .filter(apps::visibility.ne("system"))
        .select(apps::id)
        .load(conn)?
        .into_iter()
        .collect();
    let mut groups: HashMap<i64, Target> = HashMap::new();
    let mut snapshot = Snapshot { schemas: crate::parameters::all_schemas(conn)?, ..Snapshot::default() };
    for row in rows {
        let rollout = rollouts.get(&row.id);
        if rollout.is_some_and(|r| !r.delivers()) {
            continue;
        }
        let stage = stage_of(&row, rollout);
        let (payload, offer) = match row.release_id {
            Some(id) => {
                let Some(release) = releases.get(&id) else { continue };
                (Payload::Release(candidate(release)?), Some(offer(release)))
            }
            None => (Payload::Removal { app_id: row.app_id.clone() }, None),
        };
        let target = target_of(conn, &row, &mut groups)?;
        snapshot.deliveries.insert(
            row.id,
            Delivery {
                offer,
                deltas: row.release_id.and_then(|id| deltas.get(&id)).cloned().unwrap_or_default(),
                wifi_only: row.wifi_only,
                starts_at: row.starts_at.and_utc().timestamp(),
                expires_at: row.expires_at.map(|e| e.and_utc().timestamp()),
            },
        );
        snapshot.deployments.push(Deployment {
            id: row.id,
            payload,
            target,
            action: row.action(),
            sequence: row.id,
            pinned: row.pinned,
            rollout: stage,
            window: row.window(),
            wifi_only: row.wifi_only,
            rollback_from: match row.rollback_of {
                Some(original) => rolled_back_code(conn, original)?,
                None => None,
            },
            mode: if row.origin == "store" {
                DeliveryMode::InstallOnly
            } else if merchant_chosen.contains(&row.app_id) {
                DeliveryMode::UpdateOnly
            } else {
                DeliveryMode::InstallOrUpdate
            },
        });
    }
    Ok(snapshot)
}

/// Whether a deployment of `app_id`, in whatever state it is now (cancelled
/// by a rollback, its rollout paused, expired), was meant for a device by
/// the device's registration: its target holds the device and its stage,
/// if staged, includes it. A dynamic group's filter follows what the device
/// reports, which changes as it installs: any device may be in it.
pub fn reached_by_registration(
    conn: &mut DbConnection,
    deployment_id: i64,
    app_id: &str,
    device: (i64, i64, i64),
) -> Result<bool, DbError> {
    let (device_id, merchant_id, location_id) = device;
    let Some(row) =
        deployments::table.find(deployment_id).select(DeploymentRow::as_select()).first(conn).optional()?
    else {
        return Ok(false);
    };
    if row.app_id != app_id {
        return Ok(false);
    }
    let stage = stage_of(&row, rollouts::for_deployment(conn, row.id)?.as_ref());
    if stage.is_some_and(|(seed, bp)| !tms_packages::contact::in_stage(seed, device_id, bp)) {
        return Ok(false);
    }
    Ok(match target_of(conn, &row, &mut HashMap::new())? {
        Target::Group { filter: Some(_), .. } => true,
        target => target.matches(&DeviceFacts {
            device_id,
            merchant_id,
            location_id,
            model: String::new(),
            firmware: String::new(),
            installed: Default::default(),
        }),
    })
}

/// A deployment's rollout stage as the planner sees it: (bucket seed, stage
/// in basis points), from its rollout, or the scope a rollback keeps.
fn stage_of(row: &DeploymentRow, rollout: Option<&RolloutRow>) -> Option<(i64, u32)> {
    match rollout {
        Some(r) => Some((r.id, r.current_bp())),
        None => row.scope_seed.zip(row.scope_bp.map(|b| b as u32)),
    }
}

/// A deployment's target as the planner sees it; `groups` keeps the groups
/// already read.
fn target_of(
    conn: &mut DbConnection,
    row: &DeploymentRow,
    groups: &mut HashMap<i64, Target>,
) -> Result<Target, DbError> {
    Ok(match (row.target_kind.as_str(), row.target_id) {
        ("merchant", Some(id)) => Target::Merchant(id),
        ("location", Some(id)) => Target::Location(id),
        ("group", Some(id)) => match groups.get(&id) {
            Some(t) => t.clone(),
            None => {
                let t = load_group_target(conn, id)?;
                groups.insert(id, t.clone());
                t
            }
        },
        ("devices", _) => Target::Devices(device_list(conn, row.id)?.into_iter().collect()),
        _ => Target::Everyone,
    })
}

/// Whether the artifact `sha256` is that of a withdrawn release a deployment
/// of which was meant for the device: its download then answers that the
/// release was withdrawn, which the terminal reports without it counting as
/// its failure, rather than as an artifact that does not exist.
pub fn withdrawn_offer_reached(
    conn: &mut DbConnection,
    sha256: &str,
    device: (i64, i64, i64),
) -> Result<bool, DbError> {
    let offered: Vec<(i64, String)> = deployments::table
        .inner_join(releases::table.on(deployments::release_id.eq(releases::id.nullable())))
        .filter(releases::artifact_sha256.eq(sha256))
        .filter(releases::withdrawn_at.is_not_null())
        .select((deployments::id, deployments::app_id))
        .load(conn)?;
    for (deployment_id, app_id) in offered {
        if reached_by_registration(conn, deployment_id, &app_id, device)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The version code of the release a deployment delivered.
fn rolled_back_code(conn: &mut DbConnection, deployment_id: i64) -> Result<Option<u64>, DbError> {
    let code: Option<i64> = deployments::table
        .inner_join(releases::table.on(deployments::release_id.eq(releases::id.nullable())))
        .filter(deployments::id.eq(deployment_id))
        .select(releases::version_code)
        .first(conn)
        .optional()?;
    Ok(code.map(|c| c as u64))
}

/// A device group as the planner sees it: its members, or its filter.
pub(crate) fn group_target(conn: &mut DbConnection, id: i64) -> Result<Target, DbError> {
    load_group_target(conn, id)
}

fn load_group_target(conn: &mut DbConnection, id: i64) -> Result<Target, DbError> {
    let filter: Option<Option<String>> =
        device_groups::table.find(id).select(device_groups::filter).first(conn).optional()?;
    let filter = filter.flatten().and_then(|f| f.parse::<DeviceFilter>().ok());
    let members = if filter.is_none() {
        device_group_members::table
            .filter(device_group_members::group_id.eq(id))
            .select(device_group_members::device_id)
            .load::<i64>(conn)?
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };
    Ok(Target::Group { id, members, filter })
}
