//! The home page: each location with its terminals online and today's
//! takings, and what needs the merchant's attention.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use tms_packages::accounts::Permission;

use super::{Ctx, OrPage, Session, WebError, page};
use crate::accounts::merchants;
use crate::devices::management::{self, DeviceFilter};
use crate::devices::transactions::{self, TransactionFilter};
use crate::http::AppState;

pub struct LocationCard {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub online: usize,
    pub terminals: usize,
    /// (count, net amount), one per currency; `None` without the permission.
    pub today: Option<Vec<(i64, String)>>,
}

pub struct Warning {
    pub text: String,
    pub link: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    ctx: Ctx,
    locations: Vec<LocationCard>,
    warnings: Vec<Warning>,
}

pub async fn show(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    let lang = session.lang;
    // The operator's staff have their own console.
    if session.actor.operator_role().is_some() {
        return Ok(super::redirect("/console/"));
    }
    let merchant_id = session.merchant_id()?;
    let actor = session.actor.clone();
    let now = crate::time::now();
    // Today's takings: since midnight in France.
    let midnight = super::i18n::paris::day_start_utc(super::i18n::paris::today(now));
    let (locations, terminals, today) = state
        .db
        .run(move |conn| {
            let locations = merchants::list_locations(conn, &actor, merchant_id)?;
            let active = DeviceFilter { status: Some(crate::devices::ACTIVE.into()), ..Default::default() };
            let terminals = management::summaries(conn, &actor, merchant_id, &active)?;
            // Takings only for users who may read transactions somewhere.
            let filter = TransactionFilter { from: Some(midnight), ..Default::default() };
            let today = match transactions::scope_for(
                conn,
                &actor,
                merchant_id,
                Permission::ViewTransactions,
                filter,
            ) {
                Ok(scope) => Some((scope.locations.clone(), transactions::totals_by_location(conn, &scope)?)),
                Err(e) if e.code() == crate::error::ErrorCode::Forbidden => None,
                Err(e) => return Err(e),
            };
            Ok((locations, terminals, today))
        })
        .await
        .or_page(lang)?;
    // The weak-password warning needs manage_settings; without it, none.
    let weak = super::weak_password_terminals(&state, &session).await?;

    // Apps that failed to install.
    let failed_installs = {
        let actor = session.actor.clone();
        let query = crate::store::CatalogueQuery { merchant_id: None, search: None, category: None };
        super::unless_forbidden(state.db.run(move |conn| crate::store::catalogue(conn, &actor, &query)).await)
            .or_page(lang)?
    };

    let mut by_location: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    if let Some((_, totals)) = &today {
        for (location, total) in totals {
            by_location
                .entry(*location)
                .or_default()
                .push((total.count, lang.amount(total.net_amount_minor, &total.currency)));
        }
    }
    let readable = |location: i64| match &today {
        None => false,
        Some((None, _)) => true,
        Some((Some(allowed), _)) => allowed.contains(&location),
    };
    let cards = locations
        .iter()
        .map(|l| {
            let here: Vec<_> = terminals.iter().filter(|t| t.location_id == l.id).collect();
            LocationCard {
                id: l.id,
                name: l.name.clone(),
                address: format!("{}, {} {}", l.address.line1, l.address.postal_code, l.address.city),
                online: here.iter().filter(|t| t.online(now)).count(),
                terminals: here.len(),
                today: readable(l.id).then(|| by_location.remove(&l.id).unwrap_or_default()),
            }
        })
        .collect();

    let mut warnings = Vec::new();
    let mut weak_by_location: BTreeMap<i64, usize> = BTreeMap::new();
    for device in &weak {
        *weak_by_location.entry(device.location_id).or_default() += 1;
    }
    for (location, count) in weak_by_location {
        let name = locations.iter().find(|l| l.id == location).map(|l| l.name.as_str()).unwrap_or("?");
        warnings.push(Warning {
            text: lang.count_format("home.warning_weak_password", count as i64, &[&name]),
            link: format!("/locations/{location}/settings"),
        });
    }
    for app in failed_installs.iter().filter(|a| a.failed_on > 0) {
        warnings.push(Warning {
            text: lang.count_format("home.warning_failed_install", app.failed_on as i64, &[&app.name]),
            link: format!("/store/{}", app.app_id),
        });
    }
    let day = chrono::Duration::hours(24);
    for t in terminals.iter().filter(|t| t.last_contact_at.is_none_or(|c| now - c > day)) {
        let text = match t.last_contact_at {
            Some(at) => lang.format("home.warning_silent", &[&t.name, &lang.date_time(at)]),
            None => lang.format("home.warning_never_seen", &[&t.name]),
        };
        warnings.push(Warning { text, link: format!("/terminals/{}", t.id) });
    }
    let body = HomePage { ctx: session.ctx("home"), locations: cards, warnings };
    page(&body.ctx, &body)
}
