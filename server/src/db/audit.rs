//! The audit trail: an append-only record of who changed what, when, from
//! where and why.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::audit_events;
use super::{DbConnection, DbError};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// JSON object with action-specific detail (before/after, reason, …).
    pub detail: String,
    pub actor_user_id: Option<i64>,
    /// The merchant whose data changed, so merchants can read their own trail.
    pub merchant_id: Option<i64>,
    /// The client address the change came from.
    pub source_ip: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent<'a> {
    pub occurred_at: NaiveDateTime,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub detail: String,
    pub actor_user_id: Option<i64>,
    pub merchant_id: Option<i64>,
    pub source_ip: Option<&'a str>,
}

impl<'a> NewAuditEvent<'a> {
    pub fn now(actor: &'a str, action: &'a str, subject: &'a str, detail: &serde_json::Value) -> Self {
        NewAuditEvent {
            occurred_at: crate::time::now(),
            actor,
            action,
            subject,
            detail: detail.to_string(),
            actor_user_id: None,
            merchant_id: None,
            source_ip: None,
        }
    }
}

/// Appends one event and returns it as stored.
pub fn record(conn: &mut DbConnection, event: &NewAuditEvent<'_>) -> Result<AuditEvent, DbError> {
    let insert = diesel::insert_into(audit_events::table).values(event);
    Ok(crate::per_backend!(conn, |c| insert.returning(AuditEvent::as_returning()).get_result(c))?)
}

/// The newest events about one subject, newest first.
pub fn for_subject(conn: &mut DbConnection, subject: &str, limit: i64) -> Result<Vec<AuditEvent>, DbError> {
    list(conn, &AuditFilter { subject: Some(subject.to_owned()), limit, ..Default::default() })
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub merchant_id: Option<i64>,
    pub actor_user_id: Option<i64>,
    pub subject: Option<String>,
    pub action: Option<String>,
    /// Only events older than this id (paging).
    pub before_id: Option<i64>,
    /// Only events at or before this moment.
    pub until: Option<NaiveDateTime>,
    pub limit: i64,
}

pub fn list(conn: &mut DbConnection, filter: &AuditFilter) -> Result<Vec<AuditEvent>, DbError> {
    let mut query = audit_events::table.into_boxed();
    if let Some(m) = filter.merchant_id {
        query = query.filter(audit_events::merchant_id.eq(m));
    }
    if let Some(u) = filter.actor_user_id {
        query = query.filter(audit_events::actor_user_id.eq(u));
    }
    if let Some(s) = &filter.subject {
        query = query.filter(audit_events::subject.eq(s.clone()));
    }
    if let Some(a) = &filter.action {
        query = query.filter(audit_events::action.eq(a.clone()));
    }
    if let Some(before) = filter.before_id {
        query = query.filter(audit_events::id.lt(before));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::occurred_at.le(until));
    }
    Ok(query.order(audit_events::id.desc()).limit(filter.limit).select(AuditEvent::as_select()).load(conn)?)
}
