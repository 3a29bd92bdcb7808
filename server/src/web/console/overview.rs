//! The fleet overview: terminals by model, firmware and app version,
//! contacts per minute over the last day, missing terminals and the
//! rollouts under way.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::DateTime;
use tms_packages::wire::deployments::DeploymentView;

use super::charts::{BarChart, LineChart};
use super::staff;
use crate::devices::overview::{self, top_with_others};
use crate::http::AppState;
use crate::web::{Ctx, OrPage, Session, WebError, page};

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    ctx: Ctx,
    active: i64,
    never_reported: i64,
    counted_at: String,
    models: BarChart,
    firmware: BarChart,
    apps: Vec<BarChart>,
    contacts: LineChart,
    /// (hour as text, contacts), oldest first.
    contact_hours: Vec<(String, i64)>,
    missing: i64,
    rollouts: Vec<DeploymentView>,
}

/// `/console` without its slash.
pub async fn to_console() -> HttpResponse {
    crate::web::redirect("/console/")
}

pub async fn show(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    let lang = session.lang;
    let counts = state.fleet_summary.latest_or_count(&state.db).await.or_page(lang)?;
    let actor = session.actor.clone();
    let now = crate::time::now();
    let found =
        state.db.run(move |conn| overview::overview(conn, &actor, counts, now)).await.or_page(lang)?;
    let ctx = session.ctx("console.overview");
    let others = ctx.t("console.overview.others");
    let counts = &found.counts;
    let models = BarChart::new(
        "models",
        ctx.t("console.overview.by_model").into(),
        &top_with_others(&counts.by_model, others),
    );
    let firmware = BarChart::new(
        "firmware",
        ctx.t("console.overview.by_firmware").into(),
        &top_with_others(&counts.by_firmware, others),
    );
    let mut apps: Vec<BarChart> = Vec::new();
    let mut app_ids: Vec<&str> = counts.by_app_version.iter().map(|(app, _, _)| app.as_str()).collect();
    app_ids.dedup();
    for app in app_ids {
        let versions: Vec<(String, i64)> = counts
            .by_app_version
            .iter()
            .filter(|(a, _, _)| a == app)
            .map(|(_, version, n)| (version.clone(), *n))
            .collect();
        apps.push(BarChart::new(
            &format!("app-{}", apps.len()),
            ctx.t1("console.overview.by_app_version", app),
            &top_with_others(&versions, others),
        ));
    }
    // In French time, as every time the pages show.
    let minute_text = |minute: i64| {
        DateTime::from_timestamp(minute * 60, 0)
            .map(|t| crate::web::i18n::paris::from_utc(t.naive_utc()).format("%H:%M").to_string())
            .unwrap_or_default()
    };
    let values: Vec<i64> = found.contacts.iter().map(|c| c.1).collect();
    let first_minute = found.contacts.first().map(|c| c.0).unwrap_or_default();
    let contacts = LineChart::new(&values, 180, |i| minute_text(first_minute + i as i64));
    let contact_hours = found
        .contacts
        .chunks(60)
        .map(|hour| (minute_text(hour[0].0), hour.iter().map(|c| c.1).sum()))
        .collect();
    let counted_at =
        counts.counted_at.map(|t| lang.date_time_text(&crate::time::rfc3339(t))).unwrap_or_default();
    let body = OverviewPage {
        active: counts.active,
        never_reported: counts.never_reported,
        counted_at,
        models,
        firmware,
        apps,
        contacts,
        contact_hours,
        missing: found.missing,
        rollouts: found.rollouts,
        ctx,
    };
    page(&body.ctx, &body)
}
