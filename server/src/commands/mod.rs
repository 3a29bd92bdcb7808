//! Remote commands: queued per terminal (or for many, fanned out in the
//! background at a bounded rate), delivered in the signed contact answer
//! until the terminal reports a result, expires or is cancelled. The rules
//! (what may be asked, how a state moves, who may ask) are in
//! `tms_packages::commands`; this module keeps them in the database.

pub mod logs;

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::{OperatorRole, Permission};
use tms_packages::commands::{
    Asked, CommandEvent, CommandKind, CommandSpec, CommandState, LogSpec, check, transition,
};
use tms_packages::contact::{DeviceFacts, Target};
use tms_packages::wire::commands::{
    CommandBatchView, CommandInstruction, CommandRequest, CommandResultRequest, CommandView,
    GroupCommandRequest, LogRequest, LogUpload,
};
use tms_packages::wire::contact::TerminalState;

use crate::accounts::access::{Actor, Role};
use crate::contact::changes::{self, Scope};
use crate::db::schema::{command_batches, device_commands, device_inventory, devices};
use crate::db::{DbConnection, DbError, audit};
use crate::devices::management::visible as visible_device;
use crate::devices::{ACTIVE, CallingDevice, DeviceRow};
use crate::error::{Error, ErrorCode};
use crate::time::{from_unix, parse_time, rfc3339};

/// Operator roles that send commands: support and operator admins.
pub const SENDERS: &[OperatorRole] = &[OperatorRole::OperatorAdmin, OperatorRole::Support];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = device_commands)]
pub struct CommandRow {
    pub id: i64,
    pub device_id: i64,
    pub kind: String,
    pub message: Option<String>,
    pub log_name: Option<String>,
    pub log_since: Option<NaiveDateTime>,
    pub log_until: Option<NaiveDateTime>,
    pub log_max_bytes: Option<i64>,
    pub state: String,
    pub issued_by: String,
    pub batch_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub delivered_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub error_code: Option<String>,
    pub result_message: Option<String>,
}

impl CommandRow {
    fn state(&self) -> CommandState {
        // Written by this module from a CommandState.
        self.state.parse().unwrap_or(CommandState::Failed)
    }

    /// The state as of `now`: an open command past its expiry is expired
    /// even before the sweep writes so.
    fn state_at(&self, now: NaiveDateTime) -> CommandState {
        let state = self.state();
        if state.is_open() && self.expires_at <= now { CommandState::Expired } else { state }
    }

    pub fn log_spec(&self) -> Option<LogSpec> {
        log_spec_of(&self.log_name, self.log_since, self.log_until, self.log_max_bytes)
    }

    fn view(&self, log_id: Option<i64>, now: NaiveDateTime) -> CommandView {
        CommandView {
            id: self.id,
            device_id: self.device_id,
            kind: self.kind.clone(),
            message: self.message.clone(),
            log: self.log_name.as_ref().map(|name| LogRequest {
                name: name.clone(),
                since: self.log_since.map(rfc3339),
                until: self.log_until.map(rfc3339),
                max_bytes: self.log_max_bytes.map(|b| b as u64),
            }),
            state: self.state_at(now).as_str().to_owned(),
            issued_by: self.issued_by.clone(),
            batch_id: self.batch_id,
            created_at: rfc3339(self.created_at),
            expires_at: rfc3339(self.expires_at),
            delivered_at: self.delivered_at.map(rfc3339),
            finished_at: self.finished_at.map(rfc3339),
            error_code: self.error_code.clone(),
            result_message: self.result_message.clone(),
            log_id,
        }
    }

    fn instruction(&self) -> CommandInstruction {
        CommandInstruction {
            id: self.id,
            kind: self.kind.clone(),
            message: self.message.clone(),
            log: self.log_spec().map(|log| LogUpload {
                name: log.name,
                since: log.since,
                until: log.until,
                max_bytes: log.max_bytes,
                upload_path: format!("/api/v1/terminal/commands/{}/log", self.id),
            }),
            expires_at: self.expires_at.and_utc().timestamp(),
        }
    }
}

/// The log a command or a group command asks for, from its stored columns
/// (both tables keep them alike).
fn log_spec_of(
    name: &Option<String>,
    since: Option<NaiveDateTime>,
    until: Option<NaiveDateTime>,
    max_bytes: Option<i64>,
) -> Option<LogSpec> {
    Some(LogSpec {
        name: name.clone()?,
        since: since.map(|t| t.and_utc().timestamp()),
        until: until.map(|t| t.and_utc().timestamp()),
        max_bytes: max_bytes.unwrap_or_default().max(0) as u64,
    })
}

/// Reads a request into the checked command; the times are RFC 3339.
fn spec_of(request: &CommandRequest) -> Result<CommandSpec, Error> {
    let time = |field: &str, t: &Option<String>| {
        t.as_deref().map(|t| parse_time(field, t).map(|at| at.and_utc().timestamp())).transpose()
    };
    let log = request.log.as_ref();
    let asked = Asked {
        kind: &request.kind,
        message: request.message.as_deref(),
        log_name: log.map(|l| l.name.as_str()),
        since: log.map(|l| time("log.since", &l.since)).transpose()?.flatten(),
        until: log.map(|l| time("log.until", &l.until)).transpose()?.flatten(),
        max_bytes: log.and_then(|l| l.max_bytes),
        expires_in_secs: request.expires_in_secs,
    };
    check(&asked).map_err(|e| Error::invalid(e.field, e.message))
}

/// Who may send `kind` to a terminal of this merchant and location: support
/// and operator admins anything; a merchant's users with the
/// `manage_devices` permission there (admins always) lock, unlock and message.
fn require_sender(
    actor: &Actor,
    kind: CommandKind,
    merchant_id: i64,
    location_id: Option<i64>,
) -> Result<(), Error> {
    match &actor.role {
        Role::Operator(_) => actor.require_operator(SENDERS).map(|_| ()),
        Role::Merchant(_) if !kind.merchant_may_issue() => {
            Err(Error::forbidden(format!("{kind} is for the payment provider's support")))
        }
        Role::Merchant(_) => actor.require(merchant_id, location_id, Permission::ManageDevices),
    }
}

/// Queues a command for one terminal.
pub fn issue(
    conn: &mut DbConnection,
    actor: &Actor,
    device_id: i64,
    request: &CommandRequest,
) -> Result<CommandView, Error> {
    let spec = spec_of(request)?;
    crate::db::write_tx(conn, |conn| {
        let device = visible_device(conn, actor, device_id)?;
        require_sender(actor, spec.kind, device.merchant_id, Some(device.location_id))?;
        if device.status != ACTIVE {
            return Err(Error::new(ErrorCode::Conflict, format!("the device is {}", device.status)));
        }
        let issued_by = format!("user:{}", actor.user_id);
        let id = insert(conn, device.id, &spec, &issued_by, None, crate::time::now())?
            .expect("a command without a batch is always inserted");
        changes::record(conn, &[Scope::Device(device.id)])?;
        let subject = format!("device:{}", device.id);
        audit::record(
            conn,
            &actor.audit(
                "command.issue",
                &subject,
                Some(device.merchant_id),
                &json!({"command_id": id, "kind": spec.kind.as_str()}),
            ),
        )?;
        let row = find(conn, id)?.ok_or_else(|| Error::not_found("command"))?;
        Ok(row.view(None, crate::time::now()))
    })
}

/// Inserts one command; `None` when the batch already queued one for the
/// device (another process fanned out the same devices).
fn insert(
    conn: &mut DbConnection,
    device_id: i64,
    spec: &CommandSpec,
    issued_by: &str,
    batch: Option<(i64, NaiveDateTime)>,
    at: NaiveDateTime,
) -> Result<Option<i64>, DbError> {
    let expires_at = match batch {
        Some((_, expires_at)) => expires_at,
        None => at + chrono::Duration::seconds(spec.expires_in_secs as i64),
    };
    let log = spec.log.as_ref();
    let insert = diesel::insert_into(device_commands::table)
        .values((
            device_commands::device_id.eq(device_id),
            device_commands::kind.eq(spec.kind.as_str()),
            device_commands::message.eq(spec.message.as_deref()),
            device_commands::log_name.eq(log.map(|l| l.name.as_str())),
            device_commands::log_since.eq(log.and_then(|l| l.since).map(from_unix)),
            device_commands::log_until.eq(log.and_then(|l| l.until).map(from_unix)),
            device_commands::log_max_bytes.eq(log.map(|l| l.max_bytes as i64)),
            device_commands::state.eq(CommandState::Queued.as_str()),
            device_commands::issued_by.eq(issued_by),
            device_commands::batch_id.eq(batch.map(|(id, _)| id)),
            device_commands::created_at.eq(at),
            device_commands::expires_at.eq(expires_at),
        ))
        .on_conflict_do_nothing();
    Ok(crate::per_backend!(conn, |c| insert.returning(device_commands::id).get_result(c).optional())?)
}

pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<CommandRow>, DbError> {
    Ok(device_commands::table.find(id).select(CommandRow::as_select()).first(conn).optional()?)
}

/// A command the caller may see: the device's merchant and location.
fn visible_command(
    conn: &mut DbConnection,
    actor: &Actor,
    id: i64,
) -> Result<(CommandRow, DeviceRow), Error> {
    let row = find(conn, id)?.ok_or_else(|| Error::not_found("command"))?;
    let device = visible_device(conn, actor, row.device_id).map_err(|_| Error::not_found("command"))?;
    Ok((row, device))
}

pub fn show(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<CommandView, Error> {
    let (row, _) = visible_command(conn, actor, id)?;
    let log_id = logs::of_command(conn, row.id)?;
    Ok(row.view(log_id, crate::time::now()))
}

/// A device's commands, newest first.
pub fn list_for_device(
    conn: &mut DbConnection,
    actor: &Actor,
    device_id: i64,
    limit: i64,
) -> Result<Vec<CommandView>, Error> {
    visible_device(conn, actor, device_id)?;
    let rows: Vec<CommandRow> = device_commands::table
        .filter(device_commands::device_id.eq(device_id))
        .order(device_commands::id.desc())
        .limit(limit.clamp(1, 500))
        .select(CommandRow::as_select())
        .load(conn)?;
    let logs = logs::by_command(conn, &rows.iter().map(|r| r.id).collect::<Vec<_>>())?;
    let now = crate::time::now();
    Ok(rows.iter().map(|r| r.view(logs.get(&r.id).copied(), now)).collect())
}

/// Withdraws a command the terminal has not reported on. A terminal that
/// already got it may have carried it out; it is not sent again.
pub fn cancel(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<CommandView, Error> {
    crate::db::write_tx(conn, |conn| {
        let (row, device) = visible_command(conn, actor, id)?;
        let kind: CommandKind = row.kind.parse().map_err(|m: String| Error::invalid("kind", m))?;
        require_sender(actor, kind, device.merchant_id, Some(device.location_id))?;
        let now = crate::time::now();
        move_to(conn, &row, CommandEvent::Cancel, now, None, None)?;
        changes::record(conn, &[Scope::Device(device.id)])?;
        let subject = format!("device:{}", device.id);
        audit::record(
            conn,
            &actor.audit("command.cancel", &subject, Some(device.merchant_id), &json!({"command_id": id})),
        )?;
        let row = find(conn, id)?.ok_or_else(|| Error::not_found("command"))?;
        Ok(row.view(logs::of_command(conn, id)?, now))
    })
}

/// Moves a command by `event`, or answers `command_finished` when it is no
/// longer open (an open command past its expiry is expired first).
fn move_to(
    conn: &mut DbConnection,
    row: &CommandRow,
    event: CommandEvent,
    now: NaiveDateTime,
    error_code: Option<&str>,
    message: Option<&str>,
) -> Result<CommandState, Error> {
    let current = row.state_at(now);
    let Some(next) = transition(current, event) else {
        if current == CommandState::Expired && row.state().is_open() {
            expire(conn, now)?;
        }
        return Err(Error::new(ErrorCode::CommandFinished, format!("the command is already {current}")));
    };
    let finished = (!next.is_open()).then_some(now);
    // Only from the state read: a concurrent change makes this a no-op,
    // which is then reported as the command having finished.
    let moved = diesel::update(
        device_commands::table.find(row.id).filter(device_commands::state.eq(row.state.as_str())),
    )
    .set((
        device_commands::state.eq(next.as_str()),
        device_commands::finished_at.eq(finished),
        device_commands::error_code.eq(error_code),
        device_commands::result_message.eq(message),
    ))
    .execute(conn)?;
    if moved == 0 {
        return Err(Error::new(ErrorCode::CommandFinished, "the command changed meanwhile"));
    }
    Ok(next)
}

/// The commands a terminal is given at this contact: open and not expired,
/// oldest first.
pub fn open_for_device(
    conn: &mut DbConnection,
    device_id: i64,
    now: NaiveDateTime,
) -> Result<Vec<CommandInstruction>, DbError> {
    let rows: Vec<CommandRow> = device_commands::table
        .filter(device_commands::device_id.eq(device_id))
        .filter(device_commands::state.eq_any(CommandState::OPEN.map(CommandState::as_str)))
        .filter(device_commands::expires_at.gt(now))
        .order(device_commands::id)
        .select(CommandRow::as_select())
        .load(conn)?;
    Ok(rows.iter().map(CommandRow::instruction).collect())
}

/// Records that these commands were put in an answer.
pub fn mark_delivered(conn: &mut DbConnection, ids: &[i64], now: NaiveDateTime) -> Result<(), DbError> {
    diesel::update(
        device_commands::table
            .filter(device_commands::id.eq_any(ids))
            .filter(device_commands::state.eq(CommandState::Queued.as_str())),
    )
    .set((device_commands::state.eq(CommandState::Delivered.as_str()), device_commands::delivered_at.eq(now)))
    .execute(conn)?;
    Ok(())
}

/// A terminal reports a command's result: `succeeded` or `failed` (with an
/// error code). Refused (`command_finished`) once it expired, was
/// cancelled or already reported.
pub fn report(
    conn: &mut DbConnection,
    device: &CallingDevice,
    id: i64,
    request: &CommandResultRequest,
) -> Result<CommandView, Error> {
    let event = match request.status.as_str() {
        "succeeded" => CommandEvent::Succeed,
        "failed" => CommandEvent::Fail,
        other => return Err(Error::invalid("status", format!("{other:?}: a result is succeeded or failed"))),
    };
    let error_code = request.error_code.as_deref().map(str::trim).filter(|c| !c.is_empty());
    if error_code.is_some_and(|c| c.len() > 64) {
        return Err(Error::invalid("error_code", "at most 64 characters"));
    }
    let message = request.message.as_deref().map(|m| m.chars().take(1_000).collect::<String>());
    crate::db::write_tx(conn, |conn| {
        let row = find(conn, id)?
            .filter(|r| r.device_id == device.id)
            .ok_or_else(|| Error::not_found("command"))?;
        let now = crate::time::now();
        let state = move_to(conn, &row, event, now, error_code, message.as_deref())?;
        if state == CommandState::Failed {
            crate::webhooks::enqueue(
                conn,
                "command.failed",
                Some(device.merchant_id),
                json!({
                    "command_id": row.id,
                    "device_id": device.id,
                    "kind": row.kind,
                    "error_code": error_code,
                    "message": message,
                }),
            )?;
        }
        // Its cached answer carried the command: the next contact is
        // answered without it.
        changes::record(conn, &[Scope::Device(device.id)])?;
        let row = find(conn, id)?.ok_or_else(|| Error::not_found("command"))?;
        Ok(row.view(logs::of_command(conn, id)?, now))
    })
}

/// Marks open commands past their expiry as expired; how many.
pub fn expire(conn: &mut DbConnection, now: NaiveDateTime) -> Result<usize, DbError> {
    Ok(diesel::update(
        device_commands::table
            .filter(device_commands::state.eq_any(CommandState::OPEN.map(CommandState::as_str)))
            .filter(device_commands::expires_at.le(now)),
    )
    .set((device_commands::state.eq(CommandState::Expired.as_str()), device_commands::finished_at.eq(now)))
    .execute(conn)?)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = command_batches)]
pub struct BatchRow {
    pub id: i64,
    pub target: String,
    pub kind: String,
    pub message: Option<String>,
    pub log_name: Option<String>,
    pub log_since: Option<NaiveDateTime>,
    pub log_until: Option<NaiveDateTime>,
    pub log_max_bytes: Option<i64>,
    pub issued_by: String,
    pub merchant_scope: Option<i64>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub next_device_id: i64,
    pub queued: i64,
    pub fanned_out_at: Option<NaiveDateTime>,
}

impl BatchRow {
    fn spec(&self) -> Result<CommandSpec, Error> {
        Ok(CommandSpec {
            kind: self.kind.parse().map_err(|m: String| Error::invalid("kind", m))?,
            message: self.message.clone(),
            log: log_spec_of(&self.log_name, self.log_since, self.log_until, self.log_max_bytes),
            expires_in_secs: (self.expires_at - self.created_at).num_seconds().max(0) as u64,
        })
    }
}

/// Queues one command for every terminal of a target. Support and operator
/// admins reach any target; a merchant's users (lock, unlock, message) only
/// `merchant:` their own or `location:` one of theirs.
pub fn issue_to_group(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &GroupCommandRequest,
) -> Result<CommandBatchView, Error> {
    let spec = spec_of(&request.command)?;
    crate::db::write_tx(conn, |conn| {
        let target = crate::rollouts::deployments::parse_target(conn, &request.target)?;
        let merchant_scope = match &actor.role {
            Role::Operator(_) => {
                actor.require_operator(SENDERS)?;
                None
            }
            Role::Merchant(m) => {
                let merchant_id = m.merchant_id;
                let location = match (target.kind, target.id) {
                    ("merchant", Some(id)) if id == merchant_id => None,
                    ("location", Some(id)) => {
                        let owner = crate::accounts::rows::find_location(conn, id)?.map(|l| l.merchant_id);
                        if owner != Some(merchant_id) || !actor.sees_location(merchant_id, id) {
                            return Err(Error::new(ErrorCode::InvalidTarget, format!("no location {id}")));
                        }
                        Some(id)
                    }
                    _ => {
                        return Err(Error::new(
                            ErrorCode::InvalidTarget,
                            "a merchant's command goes to merchant:<yours> or location:<one of yours>",
                        ));
                    }
                };
                require_sender(actor, spec.kind, merchant_id, location)?;
                Some(merchant_id)
            }
        };
        let now = crate::time::now();
        let log = spec.log.as_ref();
        let insert = diesel::insert_into(command_batches::table).values((
            command_batches::target.eq(request.target.trim()),
            command_batches::kind.eq(spec.kind.as_str()),
            command_batches::message.eq(spec.message.as_deref()),
            command_batches::log_name.eq(log.map(|l| l.name.as_str())),
            command_batches::log_since.eq(log.and_then(|l| l.since).map(from_unix)),
            command_batches::log_until.eq(log.and_then(|l| l.until).map(from_unix)),
            command_batches::log_max_bytes.eq(log.map(|l| l.max_bytes as i64)),
            command_batches::issued_by.eq(format!("user:{}", actor.user_id)),
            command_batches::merchant_scope.eq(merchant_scope),
            command_batches::created_at.eq(now),
            command_batches::expires_at.eq(now + chrono::Duration::seconds(spec.expires_in_secs as i64)),
            command_batches::next_device_id.eq(0),
            command_batches::queued.eq(0),
        ));
        let id: i64 = crate::per_backend!(conn, |c| insert.returning(command_batches::id).get_result(c))?;
        let subject = format!("command_batch:{id}");
        audit::record(
            conn,
            &actor.audit(
                "command.issue_group",
                &subject,
                merchant_scope,
                &json!({"target": request.target.trim(), "kind": spec.kind.as_str()}),
            ),
        )?;
        batch_view(conn, id)
    })
}

fn batch_view(conn: &mut DbConnection, id: i64) -> Result<CommandBatchView, Error> {
    let row: BatchRow = command_batches::table
        .find(id)
        .select(BatchRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("command batch"))?;
    let now = crate::time::now();
    let counted: Vec<(String, NaiveDateTime, i64)> = device_commands::table
        .filter(device_commands::batch_id.eq(id))
        .group_by((device_commands::state, device_commands::expires_at))
        .select((device_commands::state, device_commands::expires_at, diesel::dsl::count_star()))
        .load(conn)?;
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    for (state, expires_at, n) in counted {
        let state: CommandState = state.parse().unwrap_or(CommandState::Failed);
        let state = if state.is_open() && expires_at <= now { CommandState::Expired } else { state };
        *states.entry(state.as_str().to_owned()).or_default() += n as u64;
    }
    Ok(CommandBatchView {
        id: row.id,
        target: row.target,
        kind: row.kind,
        issued_by: row.issued_by,
        created_at: rfc3339(row.created_at),
        expires_at: rfc3339(row.expires_at),
        queued: row.queued as u64,
        fanned_out: row.fanned_out_at.is_some(),
        states,
    })
}

/// A group command, for whoever may see its issuer's scope.
pub fn show_batch(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<CommandBatchView, Error> {
    let scope: Option<Option<i64>> =
        command_batches::table.find(id).select(command_batches::merchant_scope).first(conn).optional()?;
    let visible = match (scope, &actor.role) {
        (None, _) => false,
        (Some(_), Role::Operator(role)) => role.manages_merchants(),
        (Some(Some(m)), Role::Merchant(access)) => access.merchant_id == m,
        (Some(None), Role::Merchant(_)) => false,
    };
    if !visible {
        return Err(Error::not_found("command batch"));
    }
    batch_view(conn, id)
}

/// One pass of the fan-out: every group command not fanned out yet is
/// queued for at most `per_pass` more terminals, in device id order, so a
/// target of 100,000 terminals is asked over minutes, not at once. The
/// commands, the cursor and the change log entries commit together, and a
/// (batch, device) pair is unique: each terminal gets it exactly once,
/// whichever process runs the pass. Returns how many were queued.
pub fn fan_out(conn: &mut DbConnection, per_pass: i64) -> Result<usize, Error> {
    let batches: Vec<i64> = command_batches::table
        .filter(command_batches::fanned_out_at.is_null())
        .order(command_batches::id)
        .select(command_batches::id)
        .load(conn)?;
    let mut queued = 0;
    let mut budget = per_pass;
    for id in batches {
        if budget <= 0 {
            break;
        }
        let n = crate::db::write_tx(conn, |conn| fan_out_batch(conn, id, budget))?;
        budget -= n as i64;
        queued += n;
    }
    Ok(queued)
}

fn fan_out_batch(conn: &mut DbConnection, id: i64, limit: i64) -> Result<usize, Error> {
    let Some(batch) = command_batches::table
        .find(id)
        .filter(command_batches::fanned_out_at.is_null())
        .select(BatchRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(0);
    };
    let now = crate::time::now();
    if batch.expires_at <= now {
        diesel::update(command_batches::table.find(id))
            .set(command_batches::fanned_out_at.eq(now))
            .execute(conn)?;
        return Ok(0);
    }
    let spec = batch.spec()?;
    let target = crate::rollouts::deployments::parse_target(conn, &batch.target)?;
    let mut query = devices::table
        .left_join(device_inventory::table)
        .filter(devices::status.eq(ACTIVE))
        .filter(devices::id.ge(batch.next_device_id))
        .into_boxed::<crate::db::MultiBackend>();
    if let Some(m) = batch.merchant_scope {
        query = query.filter(devices::merchant_id.eq(m));
    }
    let mut group: Option<Target> = None;
    match (target.kind, target.id) {
        ("merchant", Some(m)) => query = query.filter(devices::merchant_id.eq(m)),
        ("location", Some(l)) => query = query.filter(devices::location_id.eq(l)),
        ("devices", _) => query = query.filter(devices::id.eq_any(target.devices.clone())),
        ("group", Some(g)) => group = Some(crate::rollouts::deployments::group_target(conn, g)?),
        _ => {}
    }
    let rows: Vec<(i64, i64, i64, String, Option<String>)> = query
        .order(devices::id)
        .limit(limit)
        .select((
            devices::id,
            devices::merchant_id,
            devices::location_id,
            devices::model,
            device_inventory::state_json.nullable(),
        ))
        .load(conn)?;
    let done = (rows.len() as i64) < limit;
    let mut scopes = Vec::new();
    for (device_id, merchant_id, location_id, model, state_json) in &rows {
        if let Some(group) = &group {
            let state: Option<TerminalState> =
                state_json.as_deref().and_then(|j| serde_json::from_str(j).ok());
            let facts = DeviceFacts {
                device_id: *device_id,
                merchant_id: *merchant_id,
                location_id: *location_id,
                model: model.clone(),
                firmware: state.as_ref().map(|s| s.firmware.clone()).unwrap_or_default(),
                installed: state
                    .map(|s| s.apps.into_iter().map(|a| (a.app_id, (a.version, a.version_code))).collect())
                    .unwrap_or_default(),
            };
            if !group.matches(&facts) {
                continue;
            }
        }
        if insert(conn, *device_id, &spec, &batch.issued_by, Some((batch.id, batch.expires_at)), now)?
            .is_some()
        {
            scopes.push(Scope::Device(*device_id));
        }
    }
    changes::record(conn, &scopes)?;
    let next = rows.last().map_or(batch.next_device_id, |r| r.0 + 1);
    diesel::update(command_batches::table.find(id))
        .set((
            command_batches::next_device_id.eq(next),
            command_batches::queued.eq(command_batches::queued + scopes.len() as i64),
            command_batches::fanned_out_at.eq(done.then_some(now)),
        ))
        .execute(conn)?;
    Ok(scopes.len())
}
