//! The audit trail of the whole TMS (operator admins and support), newest
//! first, filtered by who, what, subject and time, a page at a time.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::staff;
use crate::db::audit::{AuditEvent, AuditFilter};
use crate::http::AppState;
use crate::web::{Ctx, OrPage, Session, WebError, page};

const PAGE_SIZE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// The e-mail address of who acted.
    #[serde(default)]
    who: String,
    /// An action, e.g. `rollout.pause`.
    #[serde(default)]
    what: String,
    /// An object, e.g. `user:42` or `deployment:7`.
    #[serde(default)]
    subject: String,
    /// A day (`YYYY-MM-DD`): events of that day and before.
    #[serde(default)]
    until: String,
    before: Option<i64>,
}

pub struct Entry {
    pub event: AuditEvent,
    pub at: String,
    pub action: String,
    pub subject_page: Option<String>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    ctx: Ctx,
    q: AuditQuery,
    entries: Vec<Entry>,
    next_page: Option<String>,
    /// A filter that could not be read (an unknown e-mail, a malformed day).
    problem: Option<&'static str>,
}

fn trimmed(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

pub async fn list(
    state: web::Data<AppState>,
    session: Session,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    let lang = session.lang;
    let q = q.into_inner();
    let mut problem = None;
    let until = match trimmed(&q.until) {
        None => None,
        Some(day) => match chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d") {
            // The day as the page shows times: in France, to its last instant.
            Ok(d) => d
                .succ_opt()
                .map(|next| crate::web::i18n::paris::day_start_utc(next) - chrono::Duration::microseconds(1)),
            Err(_) => {
                problem = Some("console.audit.bad_day");
                None
            }
        },
    };
    let (actor, who) = (session.actor.clone(), trimmed(&q.who));
    let mut filter = AuditFilter {
        subject: trimmed(&q.subject),
        action: trimmed(&q.what),
        before_id: q.before,
        until,
        limit: PAGE_SIZE + 1,
        ..Default::default()
    };
    let found = state
        .db
        .run(move |conn| {
            if let Some(email) = who {
                match crate::accounts::rows::find_user_by_email(conn, &email)? {
                    Some(user) => filter.actor_user_id = Some(user.id),
                    None => return Ok(None),
                }
            }
            crate::accounts::audit_trail(conn, &actor, filter).map(Some)
        })
        .await
        .or_page(lang)?;
    let mut events = found.unwrap_or_else(|| {
        problem = Some("console.audit.unknown_who");
        Vec::new()
    });
    let more = events.len() as i64 > PAGE_SIZE;
    events.truncate(PAGE_SIZE as usize);
    let next_page = more.then(|| events.last().map(|e| e.id)).flatten().map(|before| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("who", &q.who), ("what", &q.what), ("subject", &q.subject), ("until", &q.until)] {
            if !v.is_empty() {
                query.append_pair(k, v);
            }
        }
        query.append_pair("before", &before.to_string());
        format!("/console/audit?{}", query.finish())
    });
    let entries = events
        .into_iter()
        .map(|event| Entry {
            at: lang.date_time(event.occurred_at),
            action: lang
                .try_text(&format!("activity.action.{}", event.action))
                .map(str::to_owned)
                .unwrap_or_else(|| event.action.clone()),
            subject_page: subject_page(&event.subject),
            event,
        })
        .collect();
    let body = AuditPage { ctx: session.ctx("console.audit"), q, entries, next_page, problem };
    page(&body.ctx, &body)
}

/// The console page of an event's subject, where the console has one, so
/// "who paused deployment 7" is one click from deployment 7.
fn subject_page(subject: &str) -> Option<String> {
    let (kind, id) = subject.split_once(':')?;
    let id: i64 = id.parse().ok()?;
    match kind {
        "device" => Some(format!("/console/terminals/{id}")),
        "deployment" => Some(format!("/console/deployments/{id}")),
        _ => None,
    }
}
