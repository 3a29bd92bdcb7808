//! The merchant app store: the catalogue a merchant browses (store apps, and
//! private apps offered to it, that fit at least one of its terminals), and
//! install and uninstall requests, which become merchant-scoped deployments
//! delivered by the normal contact.
//!
//! A store install brings the app where it is absent and then steps aside
//! (`DeliveryMode::InstallOnly`), so later releases reach those terminals
//! through the operator's rollouts of the app. The operator's deployments of
//! store and private apps only update them (`DeliveryMode::UpdateOnly`):
//! where such an app goes is the merchant's choice.

pub mod listing;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::Permission;
use tms_packages::contact::{ActionType, Candidate, DeviceFacts};
use tms_packages::rollouts::{DEFAULT_MAX_POSTPONES, RetryPolicy};
use tms_packages::store::{StoreRequestState, matches_search, newest_compatible, terminal_status};
use tms_packages::wire::contact::TerminalState;
use tms_packages::wire::store::*;

use crate::accounts::access::{Actor, Role};
use crate::contact::changes::{self, Scope};
use crate::db::schema::{
    app_merchants, app_screenshots, apps, deployment_actions, deployment_devices, deployments,
    device_inventory, devices, locations, merchants, releases, rollouts,
};
use crate::db::{DbConnection, DbError, audit};
use crate::devices::ACTIVE;
use crate::error::{Error, ErrorCode};
use crate::releases::{AppRow, ReleaseRow, find_app, screenshot_path};
use crate::rollouts::deployments::{self as deploys, NewDeployment, candidate};
use crate::time::{now, rfc3339};

/// Whose store a request is about: a merchant user's own merchant, or the
/// merchant an operator names.
fn store_merchant(conn: &mut DbConnection, actor: &Actor, named: Option<i64>) -> Result<i64, Error> {
    let merchant_id = match (&actor.role, named) {
        (Role::Merchant(m), None) => m.merchant_id,
        (Role::Merchant(m), Some(id)) if id == m.merchant_id => id,
        (Role::Merchant(_), Some(_)) => return Err(Error::not_found("merchant")),
        (Role::Operator(role), _) if !role.manages_merchants() => {
            return Err(Error::forbidden(format!("the {role} role does not act for merchants")));
        }
        (Role::Operator(_), None) => {
            return Err(Error::invalid("merchant_id", "name the merchant whose store this is"));
        }
        (Role::Operator(_), Some(id)) => id,
    };
    let found: i64 = merchants::table.filter(merchants::id.eq(merchant_id)).count().get_result(conn)?;
    if found == 0 {
        return Err(Error::not_found("merchant"));
    }
    if !may_use_store(actor, merchant_id) {
        return Err(Error::forbidden(format!("this needs the {} permission", Permission::InstallApps)));
    }
    Ok(merchant_id)
}

/// The store is for users holding `install_apps`, merchant-wide or at some
/// location. They see the terminals of every location they see, and act
/// only where they hold `install_apps`.
fn may_use_store(actor: &Actor, merchant_id: i64) -> bool {
    match &actor.role {
        Role::Merchant(m) => {
            actor.may(merchant_id, None, Permission::InstallApps)
                || m.locations.keys().any(|l| actor.may(merchant_id, Some(*l), Permission::InstallApps))
        }
        Role::Operator(role) => role.manages_merchants(),
    }
}

/// A terminal of the merchant, as the store sees it.
struct StoreTerminal {
    facts: DeviceFacts,
    name: String,
    /// When its inventory was last reported.
    reported_at: Option<NaiveDateTime>,
}

/// The merchant's active terminals the caller sees (and, with
/// `installing`, may install on), with their reported model, firmware and apps.
fn visible_terminals(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
) -> Result<Vec<StoreTerminal>, DbError> {
    type Row = (i64, i64, String, String, Option<String>, Option<NaiveDateTime>);
    let rows: Vec<Row> = devices::table
        .left_join(device_inventory::table)
        .filter(devices::merchant_id.eq(merchant_id))
        .filter(devices::status.eq(ACTIVE))
        .order(devices::id)
        .select((
            devices::id,
            devices::location_id,
            devices::name,
            devices::model,
            device_inventory::state_json.nullable(),
            device_inventory::reported_at.nullable(),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|(_, location, ..)| actor.sees_location(merchant_id, *location))
        .map(|(id, location_id, name, model, state, reported_at)| {
            let state: Option<TerminalState> = state.and_then(|s| serde_json::from_str(&s).ok());
            let (firmware, installed) = match state {
                Some(s) => (
                    s.firmware,
                    s.apps.into_iter().map(|a| (a.app_id, (a.version, a.version_code))).collect(),
                ),
                None => (String::new(), BTreeMap::new()),
            };
            StoreTerminal {
                facts: DeviceFacts { device_id: id, merchant_id, location_id, model, firmware, installed },
                name,
                reported_at,
            }
        })
        .collect())
}

/// The apps the merchant's store offers.
fn offered_apps(conn: &mut DbConnection, merchant_id: i64) -> Result<Vec<AppRow>, DbError> {
    let granted: Vec<String> = app_merchants::table
        .filter(app_merchants::merchant_id.eq(merchant_id))
        .select(app_merchants::app_id)
        .load(conn)?;
    Ok(apps::table
        .filter(apps::kind.eq("app"))
        .filter(apps::visibility.eq("store").or(apps::visibility.eq("private").and(apps::id.eq_any(granted))))
        .order(apps::name)
        .select(AppRow::as_select())
        .load(conn)?)
}

/// The releases the store may install, per app: not withdrawn, and not
/// held back by the operator: a release still held, or whose staged rollout
/// has not completed (or was halted or rolled back), is not given to new
/// installs ahead of the fleet.
fn installable_releases(
    conn: &mut DbConnection,
    app_ids: &[&str],
) -> Result<HashMap<String, Installable>, DbError> {
    let held_back: BTreeSet<i64> = deployments::table
        .left_join(rollouts::table.on(rollouts::deployment_id.eq(deployments::id)))
        .filter(deployments::origin.eq("operator"))
        .filter(deployments::app_id.eq_any(app_ids))
        .filter(deployments::rollback_of.is_null())
        .filter(deployments::status.eq("held").or(rollouts::status.nullable().ne("completed")))
        .select(deployments::release_id)
        .load::<Option<i64>>(conn)?
        .into_iter()
        .flatten()
        .collect();
    let rows: Vec<ReleaseRow> = releases::table
        .filter(releases::app_id.eq_any(app_ids))
        .filter(releases::withdrawn_at.is_null())
        .select(ReleaseRow::as_select())
        .load::<ReleaseRow>(conn)?
        .into_iter()
        .filter(|r| !held_back.contains(&r.id))
        .collect();
    let mut out: HashMap<String, Installable> = HashMap::new();
    for row in rows {
        let app = out.entry(row.app_id.clone()).or_default();
        app.candidates.push(candidate(&row)?);
        app.rows.push(row);
    }
    Ok(out)
}

/// An app's installable releases, as the planner sees them and as stored
/// (same order).
#[derive(Default)]
struct Installable {
    candidates: Vec<Candidate>,
    rows: Vec<ReleaseRow>,
}

impl Installable {
    fn row(&self, release_id: i64) -> Option<&ReleaseRow> {
        self.rows.iter().find(|r| r.id == release_id)
    }
}

/// The merchant's standing store request for a terminal: which deployment,
/// install or uninstall, when, and the terminal's last report on it.
struct StandingRequest {
    deployment_id: i64,
    uninstall: bool,
    requested_at: NaiveDateTime,
    report: Option<String>,
    error: Option<String>,
    /// A request the terminal finished (and left) at this time: it speaks
    /// for the terminal until an inventory newer than that arrives.
    finished_at: Option<NaiveDateTime>,
}

/// A terminal's last report on a deployment: status, error code, message.
type Report = (String, Option<String>, Option<String>);

fn standing_requests(
    conn: &mut DbConnection,
    merchant_id: i64,
    app_id: Option<&str>,
) -> Result<HashMap<(String, i64), StandingRequest>, DbError> {
    let mut query = deployments::table
        .inner_join(deployment_devices::table.on(deployment_devices::deployment_id.eq(deployments::id)))
        .filter(deployments::origin.eq("store"))
        .filter(deployments::merchant_id.eq(merchant_id))
        .filter(deployments::status.eq("active"))
        .select((
            deployments::id,
            deployments::app_id,
            deployment_devices::device_id,
            deployments::release_id,
            deployments::created_at,
        ))
        .into_boxed();
    if let Some(app) = app_id {
        query = query.filter(deployments::app_id.eq(app.to_owned()));
    }
    let rows: Vec<(i64, String, i64, Option<i64>, NaiveDateTime)> = query.load(conn)?;
    let ids: BTreeSet<i64> = rows.iter().map(|r| r.0).collect();
    let reports: HashMap<(i64, i64), Report> = deployment_actions::table
        .filter(deployment_actions::deployment_id.eq_any(ids))
        .select((
            deployment_actions::deployment_id,
            deployment_actions::device_id,
            deployment_actions::status,
            deployment_actions::error_code,
            deployment_actions::message,
        ))
        .load::<(i64, i64, String, Option<String>, Option<String>)>(conn)?
        .into_iter()
        .map(|(d, device, status, code, message)| ((d, device), (status, code, message)))
        .collect();
    let mut out: HashMap<(String, i64), StandingRequest> = HashMap::new();
    // Requests terminals finished lately, which they have left.
    let mut finished = deployment_actions::table
        .inner_join(deployments::table.on(deployments::id.eq(deployment_actions::deployment_id)))
        .filter(deployments::origin.eq("store"))
        .filter(deployments::merchant_id.eq(merchant_id))
        .filter(deployment_actions::status.eq("installed"))
        .filter(deployment_actions::updated_at.gt(now() - chrono::Duration::days(1)))
        .select((
            deployments::id,
            deployments::app_id,
            deployment_actions::device_id,
            deployments::release_id,
            deployments::created_at,
            deployment_actions::updated_at,
        ))
        .into_boxed();
    if let Some(app) = app_id {
        finished = finished.filter(deployments::app_id.eq(app.to_owned()));
    }
    type Finished = (i64, String, i64, Option<i64>, NaiveDateTime, NaiveDateTime);
    for (deployment_id, app, device, release, requested_at, at) in finished.load::<Finished>(conn)? {
        let request = StandingRequest {
            deployment_id,
            uninstall: release.is_none(),
            requested_at,
            report: Some("installed".into()),
            error: None,
            finished_at: Some(at),
        };
        keep_newest(&mut out, (app, device), request);
    }
    for (deployment_id, app, device, release, requested_at) in rows {
        let report = reports.get(&(deployment_id, device));
        let error = report.filter(|r| matches!(r.0.as_str(), "failed" | "timed_out")).map(
            |(_, code, message)| match (code, message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, m) => m.clone().unwrap_or_default(),
            },
        );
        let request = StandingRequest {
            deployment_id,
            uninstall: release.is_none(),
            requested_at,
            report: report.map(|r| r.0.clone()),
            error,
            finished_at: None,
        };
        keep_newest(&mut out, (app, device), request);
    }
    Ok(out)
}

/// Requests supersede earlier ones: keeps the newest should two overlap.
fn keep_newest(
    out: &mut HashMap<(String, i64), StandingRequest>,
    key: (String, i64),
    request: StandingRequest,
) {
    if out.get(&key).is_none_or(|kept| kept.deployment_id < request.deployment_id) {
        out.insert(key, request);
    }
}

fn terminal_view(
    t: &StoreTerminal,
    app_id: &str,
    releases: &Installable,
    request: Option<&StandingRequest>,
) -> StoreTerminalView {
    let installed = t.facts.installed.get(app_id);
    let request = request.filter(|r| match (r.finished_at, t.reported_at) {
        (Some(finished), Some(reported)) => reported < finished,
        _ => true,
    });
    let state = request.map(|r| StoreRequestState { uninstall: r.uninstall, report: r.report.as_deref() });
    StoreTerminalView {
        device_id: t.facts.device_id,
        name: t.name.clone(),
        location_id: t.facts.location_id,
        model: t.facts.model.clone(),
        installable_version: newest_compatible(&t.facts, &releases.candidates)
            .ok()
            .map(|c| c.version.to_string()),
        installed_version: installed.map(|(v, _)| v.clone()),
        status: terminal_status(installed.is_some(), state).to_owned(),
        report: request.and_then(|r| r.report.clone()),
        error: request.and_then(|r| r.error.clone()),
        requested_at: request.map(|r| rfc3339(r.requested_at)),
    }
}

/// The newest release that fits at least one of the terminals.
fn current_release<'a>(terminals: &[StoreTerminal], releases: &'a Installable) -> Option<&'a ReleaseRow> {
    let best = terminals
        .iter()
        .filter_map(|t| newest_compatible(&t.facts, &releases.candidates).ok())
        .max_by_key(|c| c.version_code)?;
    releases.row(best.release_id)
}

pub struct CatalogueQuery {
    pub merchant_id: Option<i64>,
    pub search: Option<String>,
    pub category: Option<String>,
}

pub fn catalogue(
    conn: &mut DbConnection,
    actor: &Actor,
    query: &CatalogueQuery,
) -> Result<Vec<StoreAppSummary>, Error> {
    let merchant_id = store_merchant(conn, actor, query.merchant_id)?;
    let terminals = visible_terminals(conn, actor, merchant_id)?;
    let offered: Vec<AppRow> = offered_apps(conn, merchant_id)?
        .into_iter()
        .filter(|a| {
            query.category.as_deref().is_none_or(|c| a.category.eq_ignore_ascii_case(c.trim()))
                && query
                    .search
                    .as_deref()
                    .is_none_or(|s| matches_search(s, &[&a.name, &a.id, &a.summary, &a.category]))
        })
        .collect();
    let ids: Vec<&str> = offered.iter().map(|a| a.id.as_str()).collect();
    let releases = installable_releases(conn, &ids)?;
    let none = Installable::default();
    let requests = standing_requests(conn, merchant_id, None)?;
    let mut out = Vec::new();
    for app in &offered {
        let app_releases = releases.get(&app.id).unwrap_or(&none);
        let Some(current) = current_release(&terminals, app_releases) else { continue };
        let (mut installed_on, mut requested_on, mut failed_on) = (0, 0, 0);
        for t in &terminals {
            let view =
                terminal_view(t, &app.id, app_releases, requests.get(&(app.id.clone(), t.facts.device_id)));
            match view.status.as_str() {
                "installed" | "removal_requested" | "removal_failed" => installed_on += 1,
                "requested" => requested_on += 1,
                "failed" => failed_on += 1,
                _ => {}
            }
        }
        out.push(StoreAppSummary {
            app_id: app.id.clone(),
            name: app.name.clone(),
            summary: app.summary.clone(),
            category: app.category.clone(),
            icon_path: app.icon_path(),
            current_version: current.version.clone(),
            size: current.artifact_size as u64,
            installed_on,
            requested_on,
            failed_on,
        });
    }
    Ok(out)
}

/// An app as a merchant's store shows it: store apps and private apps offered
/// to the merchant, and its system apps (which it cannot remove).
pub fn show(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    merchant: Option<i64>,
) -> Result<StoreAppView, Error> {
    let merchant_id = store_merchant(conn, actor, merchant)?;
    let app = find_app(conn, app_id)?;
    if app.kind != "app" || (app.visibility != "system" && !listing::offered_to(conn, &app, merchant_id)?) {
        return Err(Error::not_found("app"));
    }
    let terminals = visible_terminals(conn, actor, merchant_id)?;
    let releases = installable_releases(conn, &[app_id])?.remove(app_id).unwrap_or_default();
    let current = match current_release(&terminals, &releases) {
        Some(r) => r,
        // None fits: show the newest, so the merchant sees which models it needs.
        None => releases.rows.iter().max_by_key(|r| r.version_code).ok_or_else(|| Error::not_found("app"))?,
    };
    let requests = standing_requests(conn, merchant_id, Some(app_id))?;
    let screenshots: Vec<i64> = app_screenshots::table
        .filter(app_screenshots::app_id.eq(app_id))
        .order(app_screenshots::id)
        .select(app_screenshots::id)
        .load(conn)?;
    let view = current.view();
    Ok(StoreAppView {
        app_id: app.id.clone(),
        name: app.name.clone(),
        summary: app.summary.clone(),
        description: app.description.clone(),
        category: app.category.clone(),
        visibility: app.visibility.clone(),
        removable: app.visibility != "system",
        icon_path: app.icon_path(),
        screenshot_paths: screenshots.iter().map(|s| screenshot_path(app_id, *s)).collect(),
        current_version: current.version.clone(),
        version_code: current.version_code as u64,
        size: current.artifact_size as u64,
        compatible_models: view.models,
        release_notes: current.release_notes.clone(),
        terminals: terminals
            .iter()
            .map(|t| {
                terminal_view(t, app_id, &releases, requests.get(&(app_id.to_owned(), t.facts.device_id)))
            })
            .collect(),
    })
}

/// The terminals a request names, checked: the merchant's, active, seen by
/// the caller, who holds `install_apps` where each one is.
fn chosen_terminals(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
    request: &StoreRequest,
) -> Result<Vec<StoreTerminal>, Error> {
    if request.devices.is_empty() && request.locations.is_empty() {
        return Err(Error::invalid("devices", "choose terminals or locations"));
    }
    for location in &request.locations {
        let owner: Option<i64> =
            locations::table.find(location).select(locations::merchant_id).first(conn).optional()?;
        if owner != Some(merchant_id) || !actor.sees_location(merchant_id, *location) {
            return Err(Error::not_found("location"));
        }
    }
    let all = visible_terminals(conn, actor, merchant_id)?;
    let by_id: BTreeSet<i64> = request.devices.iter().copied().collect();
    if let Some(missing) = by_id.iter().find(|d| !all.iter().any(|t| t.facts.device_id == **d)) {
        return Err(Error::with_details(
            ErrorCode::NotFound,
            format!("no active terminal {missing} of this merchant"),
            BTreeMap::from([("device_id".to_owned(), missing.to_string())]),
        ));
    }
    let chosen: Vec<StoreTerminal> = all
        .into_iter()
        .filter(|t| by_id.contains(&t.facts.device_id) || request.locations.contains(&t.facts.location_id))
        .collect();
    if chosen.is_empty() {
        return Err(Error::invalid("locations", "no active terminal at these locations"));
    }
    for t in &chosen {
        actor.require(merchant_id, Some(t.facts.location_id), Permission::InstallApps)?;
    }
    Ok(chosen)
}

/// Takes the terminals off the merchant's earlier store requests for the
/// app: the newest request about a terminal is the one that holds.
fn supersede(
    conn: &mut DbConnection,
    merchant_id: i64,
    app_id: &str,
    device_ids: &[i64],
) -> Result<(), DbError> {
    let earlier: Vec<i64> = deployments::table
        .filter(deployments::origin.eq("store"))
        .filter(deployments::merchant_id.eq(merchant_id))
        .filter(deployments::app_id.eq(app_id))
        .filter(deployments::status.eq("active"))
        .select(deployments::id)
        .load(conn)?;
    for deployment in earlier {
        for chunk in device_ids.chunks(500) {
            diesel::delete(
                deployment_devices::table
                    .filter(deployment_devices::deployment_id.eq(deployment))
                    .filter(deployment_devices::device_id.eq_any(chunk)),
            )
            .execute(conn)?;
        }
        let left: i64 = deployment_devices::table
            .filter(deployment_devices::deployment_id.eq(deployment))
            .count()
            .get_result(conn)?;
        if left == 0 {
            diesel::update(deployments::table.find(deployment))
                .set(deployments::status.eq("superseded"))
                .execute(conn)?;
        }
    }
    Ok(())
}

fn device_scopes(device_ids: &[i64]) -> Vec<Scope> {
    let mut scopes = vec![Scope::Deployments];
    if device_ids.len() > 1_000 {
        scopes.push(Scope::Everyone);
    } else {
        scopes.extend(device_ids.iter().map(|d| Scope::Device(*d)));
    }
    scopes
}

fn new_store_deployment<'a>(
    app_id: &'a str,
    release_id: Option<i64>,
    devices: &'a [i64],
    action: ActionType,
    merchant_id: i64,
) -> NewDeployment<'a> {
    NewDeployment {
        app_id,
        release_id,
        target_kind: "devices",
        target_id: None,
        devices,
        action,
        pinned: false,
        starts_at: now(),
        expires_at: None,
        window: None,
        wifi_only: false,
        status: "active",
        rollback_of: None,
        scope: None,
        origin: "store",
        merchant_id: Some(merchant_id),
        retry: RetryPolicy::default(),
        max_postpones: DEFAULT_MAX_POSTPONES,
        confirmation_required: false,
    }
}

/// Installs the newest compatible release on each chosen terminal: one
/// deployment per release, delivered at the terminals' next contact.
pub fn install(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    request: &StoreRequest,
) -> Result<StoreRequestView, Error> {
    crate::db::write_tx(conn, |conn| {
        let merchant_id = store_merchant(conn, actor, request.merchant_id)?;
        let app = find_app(conn, app_id)?;
        if app.kind != "app" || (app.visibility != "system" && !listing::offered_to(conn, &app, merchant_id)?)
        {
            return Err(Error::not_found("app"));
        }
        if app.visibility == "system" {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("{app_id} is a system app: the payment provider installs it"),
            ));
        }
        let chosen = chosen_terminals(conn, actor, merchant_id, request)?;
        let releases = installable_releases(conn, &[app_id])?.remove(app_id).unwrap_or_default();
        let named: BTreeSet<i64> = request.devices.iter().copied().collect();
        let mut by_release: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut refused = Vec::new();
        let mut skipped = Vec::new();
        for t in &chosen {
            match newest_compatible(&t.facts, &releases.candidates) {
                Ok(c) => by_release.entry(c.release_id).or_default().push(t.facts.device_id),
                Err(reason) if named.contains(&t.facts.device_id) => refused.push((t, reason)),
                Err(reason) => skipped.push(StoreSkippedTerminal {
                    device_id: t.facts.device_id,
                    model: t.facts.model.clone(),
                    reason: reason.to_string(),
                }),
            }
        }
        if let Some((t, reason)) = refused.first() {
            let models: BTreeSet<&str> = refused.iter().map(|(t, _)| t.facts.model.as_str()).collect();
            let models = models.into_iter().collect::<Vec<_>>().join(", ");
            return Err(Error::with_details(
                ErrorCode::AppIncompatible,
                format!(
                    "{app_id} has no release for terminal {} (model {}): {reason}",
                    t.facts.device_id, t.facts.model
                ),
                BTreeMap::from([
                    ("model".to_owned(), models),
                    (
                        "device_ids".to_owned(),
                        refused
                            .iter()
                            .map(|(t, _)| t.facts.device_id.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ]),
            ));
        }
        if by_release.is_empty() {
            let models: BTreeSet<&str> = chosen.iter().map(|t| t.facts.model.as_str()).collect();
            let models = models.into_iter().collect::<Vec<_>>().join(", ");
            return Err(Error::with_details(
                ErrorCode::AppIncompatible,
                format!("{app_id} has no release for the terminals there (models {models})"),
                BTreeMap::from([("model".to_owned(), models)]),
            ));
        }
        let all: Vec<i64> = by_release.values().flatten().copied().collect();
        supersede(conn, merchant_id, app_id, &all)?;
        let action = request.action.unwrap_or(ActionType::Soft);
        let mut deployment_ids = Vec::new();
        let mut terminals = Vec::new();
        for (release_id, device_ids) in &by_release {
            let id = deploys::insert(
                conn,
                actor,
                new_store_deployment(app_id, Some(*release_id), device_ids, action, merchant_id),
            )?;
            deployment_ids.push(id);
            let version = releases.row(*release_id).map(|r| &r.version);
            terminals.extend(
                device_ids
                    .iter()
                    .map(|d| StoreRequestedTerminal { device_id: *d, version: version.cloned() }),
            );
        }
        audit::record(
            conn,
            &actor.audit(
                "store.install",
                &format!("app:{app_id}"),
                Some(merchant_id),
                &json!({"devices": all, "deployments": deployment_ids, "action": action.as_str()}),
            ),
        )?;
        changes::record(conn, &device_scopes(&all))?;
        terminals.sort_by_key(|t| t.device_id);
        Ok(StoreRequestView {
            app_id: app_id.to_owned(),
            kind: "install".into(),
            deployment_ids,
            terminals,
            skipped,
        })
    })
}

/// Removes the app from the chosen terminals at their next contact. System
/// apps are the payment provider's: `app_not_removable`.
pub fn uninstall(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    request: &StoreRequest,
) -> Result<StoreRequestView, Error> {
    crate::db::write_tx(conn, |conn| {
        let merchant_id = store_merchant(conn, actor, request.merchant_id)?;
        let app = find_app(conn, app_id)?;
        let chosen = chosen_terminals(conn, actor, merchant_id, request)?;
        // An app the store does not offer the merchant exists for it only
        // where its terminals run it (a private app withdrawn from its offer).
        let runs_it = chosen.iter().any(|t| t.facts.installed.contains_key(app_id));
        if app.kind != "app"
            || (app.visibility != "system" && !runs_it && !listing::offered_to(conn, &app, merchant_id)?)
        {
            return Err(Error::not_found("app"));
        }
        if app.visibility == "system" {
            return Err(Error::new(
                ErrorCode::AppNotRemovable,
                format!("{app_id} is a system app: the payment provider keeps it on every terminal"),
            ));
        }
        let all: Vec<i64> = chosen.iter().map(|t| t.facts.device_id).collect();
        supersede(conn, merchant_id, app_id, &all)?;
        let action = request.action.unwrap_or(ActionType::Soft);
        let id = deploys::insert(conn, actor, new_store_deployment(app_id, None, &all, action, merchant_id))?;
        audit::record(
            conn,
            &actor.audit(
                "store.uninstall",
                &format!("app:{app_id}"),
                Some(merchant_id),
                &json!({"devices": all, "deployment": id}),
            ),
        )?;
        changes::record(conn, &device_scopes(&all))?;
        Ok(StoreRequestView {
            app_id: app_id.to_owned(),
            kind: "uninstall".into(),
            deployment_ids: vec![id],
            terminals: all.iter().map(|d| StoreRequestedTerminal { device_id: *d, version: None }).collect(),
            skipped: Vec::new(),
        })
    })
}
