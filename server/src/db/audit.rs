//! The audit trail: an append-only record of who changed what, when and why.

use chrono::{NaiveDateTime, Utc};
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
    /// JSON object with action-specific detail (for example the reason given).
    pub detail: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent<'a> {
    pub occurred_at: NaiveDateTime,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub detail: String,
}

impl<'a> NewAuditEvent<'a> {
    pub fn now(actor: &'a str, action: &'a str, subject: &'a str, detail: &serde_json::Value) -> Self {
        NewAuditEvent {
            occurred_at: Utc::now().naive_utc(),
            actor,
            action,
            subject,
            detail: detail.to_string(),
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
    Ok(audit_events::table
        .filter(audit_events::subject.eq(subject))
        .order((audit_events::occurred_at.desc(), audit_events::id.desc()))
        .limit(limit)
        .select(AuditEvent::as_select())
        .load(conn)?)
}
