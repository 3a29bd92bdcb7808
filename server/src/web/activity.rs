//! The merchant's own audit trail: who did what, when (admins).

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{Ctx, OrPage, Session, WebError, page};
use crate::db::audit::{AuditEvent, AuditFilter};
use crate::http::AppState;

const PAGE_SIZE: i64 = 50;

pub struct Entry {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    ctx: Ctx,
    entries: Vec<Entry>,
    next_page: Option<String>,
}

#[derive(Deserialize)]
pub struct ActivityQuery {
    before: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<ActivityQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = session.lang;
    let merchant_id = session.merchant_id()?;
    let actor = session.actor.clone();
    let filter = AuditFilter {
        merchant_id: Some(merchant_id),
        before_id: query.before,
        limit: PAGE_SIZE + 1,
        ..Default::default()
    };
    let mut events: Vec<AuditEvent> =
        state.db.run(move |conn| crate::accounts::audit_trail(conn, &actor, filter)).await.or_page(lang)?;
    let more = events.len() as i64 > PAGE_SIZE;
    events.truncate(PAGE_SIZE as usize);
    let next_page = more.then(|| events.last().map(|e| format!("/activity?before={}", e.id))).flatten();
    let entries = events
        .into_iter()
        .map(|e| Entry {
            at: lang.date_time(e.occurred_at),
            actor: e.actor,
            action: lang
                .try_text(&format!("activity.action.{}", e.action))
                .map(str::to_owned)
                .unwrap_or(e.action),
            subject: e.subject,
        })
        .collect();
    let body = ActivityPage { ctx: session.ctx("activity"), entries, next_page };
    page(&body.ctx, &body)
}
