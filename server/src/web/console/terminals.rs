//! The fleet searched by serial, merchant, location, model, firmware and
//! last contact; a terminal's page for support: what it is and runs, its
//! health, what it will get next and why, its effective parameters, its
//! history and its commands.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;
use tms_packages::wire::commands::CommandView;
use tms_packages::wire::deployments::{ActionEventView, AppPlanView, DevicePlanView};
use tms_packages::wire::devices::DeviceView;
use tms_packages::wire::parameters::EffectiveParametersView;

use super::staff;
use crate::devices::management;
use crate::devices::search::{self, ContactFilter, FleetRow, FleetSearch};
use crate::http::AppState;
use crate::web::{Ctx, Lang, OrPage, Session, WebError, page, unless_forbidden};

/// Terminals a search page lists.
const PAGE_SIZE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    serial: String,
    #[serde(default)]
    merchant: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    firmware: String,
    /// `active` (the default), `deactivated` or `all`.
    #[serde(default)]
    status: String,
    #[serde(default)]
    contact: String,
    after: Option<i64>,
}

pub struct Found {
    pub row: FleetRow,
    pub last_contact: String,
    pub online: bool,
}

#[derive(Template)]
#[template(path = "console/terminals.html")]
struct SearchPage {
    ctx: Ctx,
    q: SearchQuery,
    found: Vec<Found>,
    /// The query of the next page, when there is one.
    next: Option<String>,
    first: Option<String>,
}

impl SearchPage {
    fn contact_is(&self, value: &str) -> bool {
        self.q.contact == value
    }

    fn status_is(&self, value: &str) -> bool {
        self.q.status == value || (value == "active" && self.q.status.is_empty())
    }
}

fn query_string(q: &SearchQuery, after: Option<i64>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("serial", &q.serial),
        ("merchant", &q.merchant),
        ("location", &q.location),
        ("model", &q.model),
        ("firmware", &q.firmware),
        ("status", &q.status),
        ("contact", &q.contact),
    ] {
        if !v.is_empty() {
            out.append_pair(k, v);
        }
    }
    if let Some(after) = after {
        out.append_pair("after", &after.to_string());
    }
    out.finish()
}

pub async fn search(
    state: web::Data<AppState>,
    session: Session,
    q: web::Query<SearchQuery>,
) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    let lang = session.lang;
    let q = q.into_inner();
    let filter = FleetSearch {
        serial: Some(q.serial.clone()),
        merchant: Some(q.merchant.clone()),
        location: Some(q.location.clone()),
        model: Some(q.model.clone()),
        firmware: Some(q.firmware.clone()),
        status: match q.status.as_str() {
            "all" => None,
            "deactivated" => Some(crate::devices::DEACTIVATED.into()),
            _ => Some(crate::devices::ACTIVE.into()),
        },
        contact: ContactFilter::parse(&q.contact),
        after: q.after,
        limit: PAGE_SIZE,
    };
    let actor = session.actor.clone();
    let now = crate::time::now();
    let found = state.db.run(move |conn| search::search(conn, &actor, &filter, now)).await.or_page(lang)?;
    let next = found.next_after.map(|after| query_string(&q, Some(after)));
    let first = q.after.map(|_| query_string(&q, None));
    let found = found
        .rows
        .into_iter()
        .map(|row| Found {
            last_contact: row
                .last_contact_at
                .map(|t| lang.date_time_text(&crate::time::rfc3339(t)))
                .unwrap_or_else(|| lang.text("terminals.never").to_owned()),
            online: management::is_online(&row.status, row.last_contact_at, now),
            row,
        })
        .collect();
    let body = SearchPage { ctx: session.ctx("console.terminals"), q, found, next, first };
    page(&body.ctx, &body)
}

/// One app of the plan, in the reader's words.
pub struct PlannedApp {
    pub plan: AppPlanView,
    /// What happens next (or that nothing does).
    pub next: String,
    /// (deployment, precedence, why) for each deployment considered.
    pub considered: Vec<(i64, String, String)>,
}

#[derive(Template)]
#[template(path = "console/terminal.html")]
struct TerminalPage {
    ctx: Ctx,
    device: DeviceView,
    merchant_name: String,
    location_name: String,
    online: bool,
    /// (label key, value) of the last health report.
    health: Vec<(&'static str, String)>,
    plan: DevicePlanView,
    apps: Vec<PlannedApp>,
    /// Paused rollouts of the terminal's apps: they offer nothing to anyone
    /// until resumed, so the plan does not weigh them.
    paused: Vec<tms_packages::wire::deployments::DeploymentView>,
    parameters: Vec<EffectiveParametersView>,
    history: Vec<ActionEventView>,
    commands: Vec<CommandView>,
}

impl TerminalPage {
    /// A parameter's value as support reads it out: text without quotes.
    fn shown(&self, value: &Value) -> String {
        match value {
            Value::String(s) if s.is_empty() => self.ctx.t("console.terminal.empty").to_owned(),
            other => value_text(other),
        }
    }

    fn release_text(&self, d: &tms_packages::wire::deployments::DeploymentView) -> String {
        format!("{} {}", d.app_id, d.version.as_deref().unwrap_or_default())
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Why a deployment does not decide an app, from the planner's reason.
pub fn skip_text(lang: Lang, outcome: &str, detail: &Value) -> String {
    if outcome == "decides" {
        return lang.text("console.plan.decides").to_owned();
    }
    let reason = detail.get("reason").and_then(Value::as_str).unwrap_or_default();
    let field = |name: &str| detail.get(name).map(value_text).unwrap_or_default();
    let percent = |name: &str| {
        detail
            .get(name)
            .and_then(Value::as_u64)
            .map(|bp| format!("{:.2} %", bp as f64 / 100.0))
            .unwrap_or_default()
    };
    let key = format!("console.plan.skip_{reason}");
    if lang.try_text(&key).is_none() {
        return outcome.to_owned();
    }
    match reason {
        "not_in_stage" => lang.format(&key, &[&percent("bucket"), &percent("stage_bp")]),
        "outranked" | "removal_applies" => lang.format(&key, &[&field("by_deployment")]),
        "model_incompatible" => lang.format(&key, &[&field("model")]),
        "firmware_too_old" => lang.format(&key, &[&field("needs"), &field("has")]),
        "not_higher" => lang.format(&key, &[&field("installed")]),
        _ => lang.text(&key).to_owned(),
    }
}

/// What the terminal does next about an app.
fn next_text(lang: Lang, app: &AppPlanView) -> String {
    let Some(change) = app.change else { return lang.text("console.plan.nothing").to_owned() };
    let release = app.release.clone().unwrap_or_default();
    let mut text = lang.format(&format!("console.plan.change_{}", change.as_str()), &[&release]);
    if let Some(secs) = app.deferred_secs {
        text.push_str(" — ");
        text.push_str(&lang.format("console.plan.deferred", &[&(secs / 60)]));
    }
    if app.failed_for_good {
        text.push_str(" — ");
        text.push_str(lang.text("console.plan.failed_for_good"));
    } else if let Some(at) = &app.retry_at {
        text.push_str(" — ");
        text.push_str(&lang.format("console.plan.retry_at", &[&lang.date_time_text(at)]));
    }
    if let (Some(needed), Some(free)) = (app.storage_needed_bytes, app.storage_free_bytes) {
        text.push_str(" — ");
        let (needed, free) = (super::byte_size(lang, needed), super::byte_size(lang, free));
        text.push_str(&lang.format("console.plan.short_of_space", &[&needed, &free]));
    }
    text
}

fn health_rows(lang: Lang, device: &DeviceView) -> Vec<(&'static str, String)> {
    let Some(h) = &device.health else { return Vec::new() };
    let yes_no =
        |b: bool| lang.text(if b { "console.terminal.yes" } else { "console.terminal.no" }).to_owned();
    let mut rows = Vec::new();
    if let Some(b) = h.battery_percent {
        let charging =
            h.charging.map(|c| format!(" ({}: {})", lang.text("console.terminal.charging"), yes_no(c)));
        rows.push(("console.terminal.battery", format!("{b} %{}", charging.unwrap_or_default())));
    }
    if let Some(n) = &h.network {
        let signal = h.signal_percent.map(|s| format!(", {s} %")).unwrap_or_default();
        rows.push(("console.terminal.network", format!("{n}{signal}")));
    }
    if let Some(p) = &h.printer {
        rows.push(("console.terminal.printer", p.clone()));
    }
    if let Some(up) = h.uptime_secs {
        rows.push(("console.terminal.uptime", format!("{} h {} min", up / 3600, up % 3600 / 60)));
    }
    if let Some(free) = device.free_storage_bytes {
        rows.push(("console.terminal.free_storage", super::byte_size(lang, free)));
    }
    rows
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    let lang = session.lang;
    let id = id.into_inner();
    let actor = session.actor.clone();
    let (device, merchant_name, location_name, history, commands, under_way) = state
        .db
        .run(move |conn| {
            let device = management::show(conn, &actor, id)?;
            let merchant = crate::accounts::rows::find_merchant(conn, device.merchant_id)?;
            let location = crate::accounts::rows::find_location(conn, device.location_id)?;
            let history = crate::contact::feedback::history(conn, &actor, id)?;
            let commands = unless_forbidden(crate::commands::list_for_device(conn, &actor, id, 20))?;
            let under_way = crate::devices::overview::rollouts_under_way(conn)?;
            Ok::<_, crate::error::Error>((
                device,
                merchant.map(|m| m.name).unwrap_or_default(),
                location.map(|l| l.name).unwrap_or_default(),
                history,
                commands,
                under_way,
            ))
        })
        .await
        .or_page(lang)?;
    let plan = state.contact.plan(&session.actor, id).await.or_page(lang)?;
    let mut parameters = Vec::new();
    for app in &plan.parameters {
        let view = crate::parameters::device_view(
            &state.db,
            &state.blobs,
            session.actor.clone(),
            id,
            app.app_id.clone(),
        )
        .await;
        parameters.push(unless_forbidden(view.map(Some)).or_page(lang)?);
    }
    let paused = under_way
        .into_iter()
        .filter(|d| d.rollout.as_ref().is_some_and(|r| r.status == "paused"))
        .filter(|d| plan.apps.iter().any(|a| a.app_id == d.app_id))
        .collect();
    let apps = plan
        .apps
        .iter()
        .map(|app| PlannedApp {
            next: next_text(lang, app),
            considered: app
                .considered
                .iter()
                .map(|c| (c.deployment_id, c.precedence.clone(), skip_text(lang, &c.outcome, &c.detail)))
                .collect(),
            plan: app.clone(),
        })
        .collect();
    let now = crate::time::now();
    let online = management::is_online(
        &device.status,
        device.last_contact_at.as_deref().and_then(|t| crate::time::parse_time("last_contact_at", t).ok()),
        now,
    );
    let body = TerminalPage {
        health: health_rows(lang, &device),
        ctx: session.ctx("console.terminals"),
        device,
        merchant_name,
        location_name,
        online,
        plan,
        apps,
        paused,
        parameters: parameters.into_iter().flatten().collect(),
        history,
        commands,
    };
    page(&body.ctx, &body)
}
