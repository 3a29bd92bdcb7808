//! Terminals: the list with filters, one terminal's page, and deactivating
//! a terminal (its name becomes free for the one that replaces it).

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::accounts::Permission;
use tms_packages::wire::accounts::LocationView;
use tms_packages::wire::devices::{DeviceView, TransactionView};

use super::{Ctx, OrPage, Session, WebError, page, redirect_with};
use crate::accounts::merchants;
use crate::devices::management::{self, DeviceFilter, DeviceSummary};
use crate::devices::transactions::{self, TransactionFilter};
use crate::http::AppState;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    location: Option<String>,
    model: Option<String>,
    /// `online` or `offline`
    connection: Option<String>,
    /// `active` or `deactivated` [default: active]
    status: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub struct TerminalRow {
    pub summary: DeviceSummary,
    pub location: String,
    pub online: bool,
    pub last_contact: String,
}

#[derive(Template)]
#[template(path = "terminals.html")]
struct TerminalsPage {
    ctx: Ctx,
    terminals: Vec<TerminalRow>,
    locations: Vec<LocationView>,
    models: Vec<String>,
    location: Option<i64>,
    model: String,
    connection: String,
    status: String,
}

impl TerminalsPage {
    fn is_location(&self, id: impl super::Count) -> bool {
        self.location == Some(id.count())
    }
}

pub async fn list(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = session.lang;
    let merchant_id = session.merchant_id()?;
    let location = non_empty(&query.location).and_then(|l| l.parse::<i64>().ok());
    let model = non_empty(&query.model).map(str::to_owned);
    let status = match non_empty(&query.status) {
        Some("all") => None,
        Some("deactivated") => Some(crate::devices::DEACTIVATED.to_owned()),
        _ => Some(crate::devices::ACTIVE.to_owned()),
    };
    let filter = DeviceFilter {
        location_id: location,
        model: model.clone(),
        status: status.clone(),
        ..Default::default()
    };
    let actor = session.actor.clone();
    let (locations, found, models) = state
        .db
        .run(move |conn| {
            let locations = merchants::list_locations(conn, &actor, merchant_id)?;
            let found = management::summaries(conn, &actor, merchant_id, &filter)?;
            // The model filter offers the models the merchant has.
            let mut models: Vec<String> =
                management::summaries(conn, &actor, merchant_id, &DeviceFilter::default())?
                    .into_iter()
                    .map(|d| d.model)
                    .collect();
            models.sort();
            models.dedup();
            Ok::<_, crate::error::Error>((locations, found, models))
        })
        .await
        .or_page(lang)?;
    let now = crate::time::now();
    let connection = non_empty(&query.connection).unwrap_or("").to_owned();
    let terminals = found
        .into_iter()
        .map(|summary| TerminalRow {
            location: super::location_name(&locations, summary.location_id),
            online: summary.online(now),
            last_contact: summary
                .last_contact_at
                .map(|t| lang.date_time(t))
                .unwrap_or_else(|| lang.text("terminals.never").to_owned()),
            summary,
        })
        .filter(|t| match connection.as_str() {
            "online" => t.online,
            "offline" => !t.online,
            _ => true,
        })
        .collect();
    let body = TerminalsPage {
        ctx: session.ctx("terminals"),
        terminals,
        locations,
        models,
        location,
        model: model.unwrap_or_default(),
        connection,
        status: status.unwrap_or_else(|| "all".into()),
    };
    page(&body.ctx, &body)
}

#[derive(Template)]
#[template(path = "terminal.html")]
struct TerminalPage {
    ctx: Ctx,
    device: DeviceView,
    location: String,
    online: bool,
    may_deactivate: bool,
    /// `None`: the user may not read this location's transactions.
    recent: Option<Vec<TransactionView>>,
}

/// A terminal the caller sees, and its location's name.
fn device_and_location(
    conn: &mut crate::db::DbConnection,
    actor: &crate::accounts::access::Actor,
    id: i64,
) -> Result<(DeviceView, String), crate::error::Error> {
    let device = management::show(conn, actor, id)?;
    let location = merchants::visible_location(conn, actor, device.location_id)?.name;
    Ok((device, location))
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let merchant_id = session.merchant_id()?;
    let (actor, id) = (session.actor.clone(), id.into_inner());
    let (device, location, recent) = state
        .db
        .run(move |conn| {
            let (device, location) = device_and_location(conn, &actor, id)?;
            let recent = if actor.may(merchant_id, Some(device.location_id), Permission::ViewTransactions) {
                // The terminal alone names its rows (its location adds nothing, and
                // would steer SQLite to the location's index).
                let filter = TransactionFilter { device_id: Some(id), ..Default::default() };
                let scope =
                    transactions::scope_for(conn, &actor, merchant_id, Permission::ViewTransactions, filter)?;
                Some(transactions::page_rows(conn, &scope, None, 10)?.iter().map(|r| r.view()).collect())
            } else {
                None
            };
            Ok::<_, crate::error::Error>((device, location, recent))
        })
        .await
        .or_page(session.lang)?;
    let last_contact =
        device.last_contact_at.as_deref().and_then(|t| crate::time::parse_time("last_contact_at", t).ok());
    let online = management::is_online(&device.status, last_contact, crate::time::now());
    let may_deactivate = device.status == crate::devices::ACTIVE
        && session.actor.may(device.merchant_id, Some(device.location_id), Permission::ManageDevices);
    let body =
        TerminalPage { ctx: session.ctx("terminals"), device, location, online, may_deactivate, recent };
    page(&body.ctx, &body)
}

#[derive(Template)]
#[template(path = "deactivate.html")]
struct DeactivatePage {
    ctx: Ctx,
    device: DeviceView,
    location: String,
}

pub async fn confirm_deactivate(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    session.merchant_id()?;
    let (actor, id) = (session.actor.clone(), id.into_inner());
    let (device, location) =
        state.db.run(move |conn| device_and_location(conn, &actor, id)).await.or_page(session.lang)?;
    let body = DeactivatePage { ctx: session.ctx("terminals"), device, location };
    page(&body.ctx, &body)
}

#[derive(Deserialize)]
pub struct DeactivateForm {
    csrf: String,
}

pub async fn deactivate(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: web::Form<DeactivateForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    let id = id.into_inner();
    let actor = session.actor.clone();
    state.db.run(move |conn| management::deactivate(conn, &actor, id)).await.or_page(session.lang)?;
    state.contact.caught_up().await;
    Ok(redirect_with(&format!("/terminals/{id}"), "flash.terminal_deactivated"))
}
