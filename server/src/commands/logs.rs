//! Logs terminals upload for `collect_logs` commands: accepted only for an
//! open command of the uploading terminal, up to the command's size cap,
//! kept for `log_retention_days`, then deleted from the object store.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tms_packages::commands::{CommandEvent, CommandKind, CommandState};
use tms_packages::wire::commands::CollectedLogView;

use super::{CommandRow, find, move_to};
use crate::accounts::access::Actor;
use crate::contact::changes::{self, Scope};
use crate::db::schema::device_logs;
use crate::db::{DbConnection, DbError};
use crate::devices::CallingDevice;
use crate::error::{Error, ErrorCode};
use crate::time::rfc3339;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = device_logs)]
pub struct LogRow {
    pub id: i64,
    pub device_id: i64,
    pub command_id: i64,
    pub name: String,
    pub sha256: String,
    pub size: i64,
    pub content_encoding: Option<String>,
    pub uploaded_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

impl LogRow {
    fn view(&self) -> CollectedLogView {
        CollectedLogView {
            id: self.id,
            device_id: self.device_id,
            command_id: self.command_id,
            name: self.name.clone(),
            size: self.size as u64,
            sha256: self.sha256.clone(),
            content_encoding: self.content_encoding.clone(),
            uploaded_at: rfc3339(self.uploaded_at),
            expires_at: rfc3339(self.expires_at),
            download_path: format!("/api/v1/logs/{}", self.id),
        }
    }

    /// The name a download is saved under.
    pub fn file_name(&self) -> String {
        let gz = if self.content_encoding.is_some() { ".gz" } else { "" };
        format!("device-{}-{}-{}.log{gz}", self.device_id, self.name, self.command_id)
    }
}

/// The collected log of a command, if any.
pub fn of_command(conn: &mut DbConnection, command_id: i64) -> Result<Option<i64>, DbError> {
    Ok(device_logs::table
        .filter(device_logs::command_id.eq(command_id))
        .select(device_logs::id)
        .first(conn)
        .optional()?)
}

/// The collected logs of these commands: command id to log id.
pub fn by_command(conn: &mut DbConnection, command_ids: &[i64]) -> Result<HashMap<i64, i64>, DbError> {
    Ok(device_logs::table
        .filter(device_logs::command_id.eq_any(command_ids))
        .select((device_logs::command_id, device_logs::id))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect())
}

/// The command an upload is for, checked before a byte is stored: the
/// caller's own, a `collect_logs`, still open and without a log. Returns
/// the size cap.
pub fn upload_allowed(
    conn: &mut DbConnection,
    device: &CallingDevice,
    command_id: i64,
) -> Result<u64, Error> {
    let row = find(conn, command_id)?
        .filter(|r| r.device_id == device.id)
        .ok_or_else(|| Error::not_found("command"))?;
    check_open_upload(conn, &row)?;
    Ok(row.log_spec().map_or(0, |l| l.max_bytes))
}

fn check_open_upload(conn: &mut DbConnection, row: &CommandRow) -> Result<(), Error> {
    if row.kind != CommandKind::CollectLogs.as_str() {
        return Err(Error::new(ErrorCode::Conflict, format!("command {} collects no log", row.id)));
    }
    let state = row.state_at(crate::time::now());
    if !state.is_open() || of_command(conn, row.id)?.is_some() {
        let state = if state.is_open() { CommandState::Succeeded } else { state };
        return Err(Error::new(ErrorCode::CommandFinished, format!("the command is already {state}")));
    }
    Ok(())
}

/// Records an upload stored as blob `sha256` and completes its command, in
/// one transaction (checked again: the command may have been cancelled
/// while the log was on its way).
pub fn record_upload(
    conn: &mut DbConnection,
    device: &CallingDevice,
    command_id: i64,
    (sha256, size, content_encoding): (&str, u64, Option<&str>),
    retention: chrono::Duration,
) -> Result<CollectedLogView, Error> {
    crate::db::write_tx(conn, |conn| {
        let row = find(conn, command_id)?
            .filter(|r| r.device_id == device.id)
            .ok_or_else(|| Error::not_found("command"))?;
        check_open_upload(conn, &row)?;
        let now = crate::time::now();
        let insert = diesel::insert_into(device_logs::table).values((
            device_logs::device_id.eq(device.id),
            device_logs::command_id.eq(command_id),
            device_logs::name.eq(row.log_name.as_deref().unwrap_or("log")),
            device_logs::sha256.eq(sha256),
            device_logs::size.eq(size as i64),
            device_logs::content_encoding.eq(content_encoding),
            device_logs::uploaded_at.eq(now),
            device_logs::expires_at.eq(now + retention),
        ));
        let id: i64 = crate::per_backend!(conn, |c| insert.returning(device_logs::id).get_result(c))?;
        move_to(conn, &row, CommandEvent::Succeed, now, None, None)?;
        changes::record(conn, &[Scope::Device(device.id)])?;
        let log: LogRow = device_logs::table.find(id).select(LogRow::as_select()).first(conn)?;
        Ok(log.view())
    })
}

/// Logs are support's: they may hold what a merchant's staff should not
/// read about other terminals, and they are for diagnosing, not for the shop.
fn require_reader(actor: &Actor) -> Result<(), Error> {
    actor.require_operator(super::SENDERS).map(|_| ())
}

/// A device's collected logs, newest first.
pub fn list(conn: &mut DbConnection, actor: &Actor, device_id: i64) -> Result<Vec<CollectedLogView>, Error> {
    require_reader(actor)?;
    super::visible_device(conn, actor, device_id)?;
    let rows: Vec<LogRow> = device_logs::table
        .filter(device_logs::device_id.eq(device_id))
        .filter(device_logs::expires_at.gt(crate::time::now()))
        .order(device_logs::id.desc())
        .select(LogRow::as_select())
        .load(conn)?;
    Ok(rows.iter().map(LogRow::view).collect())
}

/// One log, to download.
pub fn find_for_download(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<LogRow, Error> {
    require_reader(actor)?;
    let row: LogRow = device_logs::table
        .find(id)
        .filter(device_logs::expires_at.gt(crate::time::now()))
        .select(LogRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("log"))?;
    super::visible_device(conn, actor, row.device_id).map_err(|_| Error::not_found("log"))?;
    Ok(row)
}

/// Forgets logs past their retention; returns the blobs no other log
/// names, for the caller to delete from the object store.
pub fn expire(conn: &mut DbConnection, now: NaiveDateTime) -> Result<Vec<String>, DbError> {
    crate::db::write_tx(conn, |conn| {
        let expired: Vec<(i64, String)> = device_logs::table
            .filter(device_logs::expires_at.le(now))
            .select((device_logs::id, device_logs::sha256))
            .load(conn)?;
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = expired.iter().map(|(id, _)| *id).collect();
        diesel::delete(device_logs::table.filter(device_logs::id.eq_any(&ids))).execute(conn)?;
        let mut blobs: Vec<String> = expired.into_iter().map(|(_, sha)| sha).collect();
        blobs.sort();
        blobs.dedup();
        // A blob is content-addressed: the same bytes may be another log,
        // or anything else a row names.
        let mut unnamed = Vec::with_capacity(blobs.len());
        for blob in blobs {
            if !crate::blob_gc::is_referenced(conn, &blob)? {
                unnamed.push(blob);
            }
        }
        Ok(unnamed)
    })
}
