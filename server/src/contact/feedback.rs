//! What terminals report about each change, and the push history per device.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use tms_packages::rollouts::{RetryPolicy, Setback};
use tms_packages::wire::contact::{ACTION_STATUSES, DOWNLOAD_WAYS, FeedbackRequest};
use tms_packages::wire::deployments::ActionEventView;

use crate::accounts::access::Actor;
use crate::db::schema::{action_events, deployment_actions, deployment_devices, deployments, devices};
use crate::db::{Db, DbConnection, DbError, WriteTurn, insert_from_json};
use crate::error::{Error, ErrorCode};
use crate::time::{now, rfc3339};

fn clip(s: &Option<String>, max: usize) -> Option<String> {
    s.as_ref().map(|s| s.chars().take(max).collect())
}

/// Reports written in one transaction at most.
const MAX_BATCH: usize = 500;

/// Feedback waiting for its transaction. A rollout makes thousands of
/// terminals report within seconds; one transaction per report would make
/// them queue for the database's single writer one commit at a time, so
/// whoever finds no write under way writes every report waiting, in one
/// transaction and one statement per table ([`write_batch`]), and goes on
/// while more arrive. No report waits on a timer.
pub struct Queue {
    state: Mutex<Waiting>,
    turn: WriteTurn,
}

#[derive(Default)]
struct Waiting {
    reports: Vec<Queued>,
    writing: bool,
}

struct Queued {
    device_id: i64,
    report: FeedbackRequest,
    done: tokio::sync::oneshot::Sender<Result<(), Error>>,
}

/// Ends the writer's turn if writing panicked: the next report starts a new
/// one, and those caught in the panic get an error. (A turn that ends
/// normally ends under the lock that found nothing waiting.)
struct Turn<'a> {
    queue: &'a Queue,
    ended: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let mut state = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
            state.writing = false;
        }
    }
}

impl Queue {
    pub fn new(turn: WriteTurn) -> Queue {
        Queue { state: Mutex::default(), turn }
    }

    /// Records a terminal's report; returns once it is committed.
    pub async fn record(
        self: &Arc<Self>,
        db: &Db,
        device_id: i64,
        report: FeedbackRequest,
    ) -> Result<(), Error> {
        validate(&report)?;
        let (done, result) = tokio::sync::oneshot::channel();
        let lead = {
            let mut state = self.state.lock().expect("not poisoned");
            state.reports.push(Queued { device_id, report, done });
            !std::mem::replace(&mut state.writing, true)
        };
        if lead {
            // A task of its own: it goes on when this request is dropped.
            let (queue, db) = (self.clone(), db.clone());
            tokio::task::spawn_blocking(move || queue.write_waiting(&db));
        }
        result.await.unwrap_or_else(|_| Err(DbError::Batch("the writer stopped".into()).into()))
    }

    fn write_waiting(&self, db: &Db) {
        let mut turn = Turn { queue: self, ended: false };
        loop {
            let batch: Vec<Queued> = {
                let mut state = self.state.lock().expect("not poisoned");
                if state.reports.is_empty() {
                    // Under the lock that queues: a report queued later leads
                    // a turn of its own, which this one must not end.
                    state.writing = false;
                    turn.ended = true;
                    return;
                }
                let n = state.reports.len().min(MAX_BATCH);
                state.reports.drain(..n).collect()
            };
            let reports: Vec<(i64, &FeedbackRequest)> =
                batch.iter().map(|q| (q.device_id, &q.report)).collect();
            let written = db.get().map_err(Error::from).and_then(|mut conn| {
                let _turn = self.turn.take(&conn);
                write_reports(&mut conn, &reports)
            });
            let results: Vec<Result<(), Error>> = written.unwrap_or_else(|e| {
                tracing::error!(error = %e, reports = batch.len(), "could not record terminal feedback");
                let message = e.to_string();
                batch.iter().map(|_| Err(DbError::Batch(message.clone()).into())).collect()
            });
            for (q, result) in batch.into_iter().zip(results) {
                // The terminal may have hung up; its report is recorded all the same.
                let _ = q.done.send(result);
            }
        }
    }
}

fn validate(report: &FeedbackRequest) -> Result<(), Error> {
    if !ACTION_STATUSES.contains(&report.status.as_str()) {
        return Err(Error::invalid("status", format!("one of {}", ACTION_STATUSES.join(", "))));
    }
    if report.download.as_deref().is_some_and(|way| !DOWNLOAD_WAYS.contains(&way)) {
        return Err(Error::invalid("download", format!("one of {}", DOWNLOAD_WAYS.join(", "))));
    }
    if report.progress_percent.is_some_and(|p| p > 100) {
        return Err(Error::invalid("progress_percent", "a percentage is 0 to 100"));
    }
    if report.status == "failed" && report.error_code.as_deref().is_none_or(str::is_empty) {
        return Err(Error::invalid("error_code", "a failure carries an error code"));
    }
    Ok(())
}

/// Writes terminals' reports (device, report), each answered on its own: in
/// one transaction with one statement per table; should that fail as a
/// whole (a device deleted meanwhile, say), each report alone in a
/// savepoint of its own, so that one bad report fails alone. Both ways go
/// through the one writer, [`write_batch`].
pub fn write_reports(
    conn: &mut DbConnection,
    reports: &[(i64, &FeedbackRequest)],
) -> Result<Vec<Result<(), Error>>, Error> {
    crate::db::write_tx(conn, |conn| write_batch(conn, reports)).or_else(|e| {
        tracing::debug!(error = %e, "writing terminal reports one at a time");
        crate::db::write_tx(conn, |conn| {
            Ok::<_, Error>(
                reports
                    .iter()
                    .map(|report| {
                        crate::db::write_tx(conn, |conn| {
                            write_batch(conn, std::slice::from_ref(report))?
                                .pop()
                                .expect("one report, one result")
                        })
                    })
                    .collect(),
            )
        })
    })
}

/// A report as the batch statements read it: its JSON names are the
/// columns it fills, in both tables.
#[derive(serde::Serialize)]
struct Row<'a> {
    deployment_id: i64,
    device_id: i64,
    app_id: &'a str,
    status: &'a str,
    progress_percent: Option<u8>,
    error_code: Option<String>,
    message: Option<String>,
    download: Option<&'a str>,
}

/// The columns of `Row`, with their PostgreSQL types: the statements are
/// built from this list, so a column is named once. The history
/// (`action_events`) takes them all; where a device stands
/// (`deployment_actions`) all but the app.
const EVENT_COLUMNS: [(&str, &str); 8] = [
    ("deployment_id", "bigint"),
    ("device_id", "bigint"),
    ("app_id", "text"),
    ("status", "text"),
    ("progress_percent", "int"),
    ("error_code", "text"),
    ("message", "text"),
    ("download", "text"),
];

/// The two statements of a batch, per backend, built once.
fn statements(backend: crate::config::DatabaseBackend) -> &'static (String, String) {
    use crate::config::DatabaseBackend;
    static SQLITE: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    static POSTGRES: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let build = || {
        let action_columns: Vec<(&str, &str)> =
            EVENT_COLUMNS.iter().copied().filter(|(name, _)| *name != "app_id").collect();
        // The latest report of a device about a deployment is where it
        // stands; what the contact and the supervisor keep beside it (the
        // offer's deadline, the attempts, a hold) is kept, except that an
        // install ends the hold and a final report the deadline.
        let set: Vec<String> = action_columns
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !matches!(*name, "deployment_id" | "device_id"))
            .chain(["updated_at"])
            .map(|name| format!("{name} = excluded.{name}"))
            .chain([
                "deadline_at = CASE WHEN excluded.status IN ('installed', 'failed') THEN NULL \
                 ELSE deployment_actions.deadline_at END"
                    .to_owned(),
                "retry_at = CASE WHEN excluded.status = 'installed' THEN NULL ELSE deployment_actions.retry_at END"
                    .to_owned(),
                "failed_for_good = CASE WHEN excluded.status = 'installed' THEN false \
                 ELSE deployment_actions.failed_for_good END"
                    .to_owned(),
            ])
            .collect();
        // `WHERE true`: SQLite would read `ON` as a join's without it.
        let tail =
            format!(" WHERE true ON CONFLICT (deployment_id, device_id) DO UPDATE SET {}", set.join(", "));
        let actions = insert_from_json(
            backend,
            "INSERT",
            "deployment_actions",
            &action_columns,
            Some("updated_at"),
            &tail,
        );
        let events =
            insert_from_json(backend, "INSERT", "action_events", &EVENT_COLUMNS, Some("occurred_at"), "");
        (actions, events)
    };
    match backend {
        DatabaseBackend::Sqlite => SQLITE.get_or_init(build),
        DatabaseBackend::Postgres => POSTGRES.get_or_init(build),
    }
}

/// Writes reports with one statement per table over a JSON array of them:
/// written one at a time, each cost five statements (two of them
/// savepoints), a third of the server's work while a rollout installs. A
/// report about a deployment that does not exist (or is of another app) is
/// refused alone; any other failure fails the whole call.
fn write_batch(
    conn: &mut DbConnection,
    batch: &[(i64, &FeedbackRequest)],
) -> Result<Vec<Result<(), Error>>, Error> {
    use diesel::sql_types::{Text, Timestamp};
    // One lookup per deployment named (a batch names one or two): a
    // statement SQLite prepares once, where an `IN` list is prepared again.
    let mut known: HashMap<i64, Option<Named>> = HashMap::new();
    for (_, report) in batch {
        if let std::collections::hash_map::Entry::Vacant(slot) = known.entry(report.deployment_id) {
            slot.insert(
                deployments::table
                    .find(report.deployment_id)
                    .select((
                        deployments::app_id,
                        deployments::origin,
                        deployments::retry_delays,
                        deployments::max_postpones,
                    ))
                    .first(conn)
                    .optional()?,
            );
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut events: Vec<Row> = Vec::with_capacity(batch.len());
    let mut store_installs = Vec::new();
    let mut setbacks: Vec<(i64, i64, Setback, Option<&str>)> = Vec::new();
    for (device_id, r) in batch {
        match &known[&r.deployment_id] {
            Some((app, origin, _, _)) if *app == r.app_id => {
                events.push(Row {
                    deployment_id: r.deployment_id,
                    device_id: *device_id,
                    app_id: &r.app_id,
                    status: &r.status,
                    progress_percent: r.progress_percent,
                    error_code: clip(&r.error_code, 80),
                    message: clip(&r.message, 1_000),
                    download: r.download.as_deref(),
                });
                if origin == "store" && r.status == "installed" {
                    store_installs.push((r.deployment_id, *device_id, app.as_str()));
                }
                if let Some(setback) = setback_of(r) {
                    setbacks.push((r.deployment_id, *device_id, setback, r.error_code.as_deref()));
                }
                results.push(Ok(()));
            }
            _ => results.push(Err(Error::not_found("deployment"))),
        }
    }
    if events.is_empty() {
        return Ok(results);
    }
    // Where each terminal with a setback stood before these reports: a
    // failure reported twice about one offer is one failed attempt.
    let mut before: HashMap<(i64, i64), Option<String>> = HashMap::new();
    for (deployment_id, device_id, _, _) in &setbacks {
        if let std::collections::hash_map::Entry::Vacant(slot) = before.entry((*deployment_id, *device_id)) {
            slot.insert(
                deployment_actions::table
                    .find((deployment_id, device_id))
                    .select(deployment_actions::status)
                    .first(conn)
                    .optional()?,
            );
        }
    }
    // The latest report of a device about a deployment is where it stands
    // (an upsert may not touch one row twice).
    let mut latest: HashMap<(i64, i64), usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        latest.insert((e.deployment_id, e.device_id), i);
    }
    let actions: Vec<&Row> = events
        .iter()
        .enumerate()
        .filter(|(i, e)| latest[&(e.deployment_id, e.device_id)] == *i)
        .map(|(_, e)| e)
        .collect();
    let (actions, events) = (
        serde_json::to_string(&actions).expect("reports serialise"),
        serde_json::to_string(&events).expect("reports serialise"),
    );
    let at = now();
    let backend = match conn {
        DbConnection::Sqlite(_) => crate::config::DatabaseBackend::Sqlite,
        DbConnection::Postgres(_) => crate::config::DatabaseBackend::Postgres,
    };
    let (write_actions, write_events) = statements(backend);
    for (statement, rows) in [(write_actions, &actions), (write_events, &events)] {
        crate::per_backend!(&mut *conn, |c| diesel::sql_query(statement.as_str())
            .bind::<Timestamp, _>(at)
            .bind::<Text, _>(rows)
            .execute(c))?;
    }
    for (deployment_id, device_id, setback, error_code) in setbacks {
        let previous = before.insert((deployment_id, device_id), Some(setback_status(setback).to_owned()));
        let repeated = setback == Setback::Failed
            && previous.flatten().is_some_and(|s| matches!(s.as_str(), "failed" | "timed_out"));
        if repeated {
            continue;
        }
        let Some((app_id, _, delays, max_postpones)) = &known[&deployment_id] else { continue };
        let policy = RetryPolicy::from_stored(delays);
        crate::rollouts::attempts::settle_setback(
            conn,
            (deployment_id, device_id, app_id),
            setback,
            &policy,
            (*max_postpones).max(0) as u32,
            at,
        )?;
        if setback == Setback::Failed {
            let merchant: Option<i64> =
                devices::table.find(device_id).select(devices::merchant_id).first(conn).optional()?;
            crate::webhooks::enqueue(
                conn,
                "install.failed",
                merchant,
                serde_json::json!({"deployment_id": deployment_id, "device_id": device_id, "app_id": app_id,
                                   "error_code": error_code}),
            )?;
        }
    }
    for (deployment_id, device_id, app) in store_installs {
        finish_store_request(conn, deployment_id, device_id, app)?;
    }
    Ok(results)
}

/// A deployment as a report needs it: app, origin, retry delays, postponements allowed.
type Named = (String, String, String, i32);

/// What a report says went wrong, if anything: a failure (one the
/// terminal can be blamed for: a release withdrawn under it is not) or a
/// postponement.
pub fn setback_of(report: &FeedbackRequest) -> Option<Setback> {
    match report.status.as_str() {
        "failed" if report.error_code.as_deref() != Some(ErrorCode::ReleaseWithdrawn.as_str()) => {
            Some(Setback::Failed)
        }
        "postponed" => Some(Setback::Postponed),
        _ => None,
    }
}

fn setback_status(setback: Setback) -> &'static str {
    match setback {
        Setback::Failed => "failed",
        Setback::TimedOut => "timed_out",
        Setback::Postponed => "postponed",
    }
}

/// A merchant's store request is done once per terminal: the terminal
/// leaves it, so finished requests do not pile up in what every contact
/// plans with, and later the operator's deployments alone decide the app.
/// (Processes notice at their next reload; until then the request only
/// steps aside, the app being there, or has nothing to remove.)
fn finish_store_request(
    conn: &mut crate::db::DbConnection,
    deployment_id: i64,
    device_id: i64,
    app_id: &str,
) -> Result<(), Error> {
    diesel::delete(
        deployment_devices::table
            .filter(deployment_devices::deployment_id.eq(deployment_id))
            .filter(deployment_devices::device_id.eq(device_id)),
    )
    .execute(conn)?;
    let left: i64 = deployment_devices::table
        .filter(deployment_devices::deployment_id.eq(deployment_id))
        .count()
        .get_result(conn)?;
    if left == 0 {
        diesel::update(deployments::table.find(deployment_id).filter(deployments::status.eq("active")))
            .set(deployments::status.eq("completed"))
            .execute(conn)?;
        tracing::debug!(deployment_id, app_id, "store request completed");
    }
    Ok(())
}

/// A device's push history, newest first.
pub fn history(
    conn: &mut DbConnection,
    actor: &Actor,
    device_id: i64,
) -> Result<Vec<ActionEventView>, Error> {
    let device = crate::devices::find(conn, device_id)?.ok_or_else(|| Error::not_found("device"))?;
    if !actor.sees_location(device.merchant_id, device.location_id) {
        return Err(Error::not_found("device"));
    }
    type Row = (
        i64,
        i64,
        String,
        String,
        Option<i32>,
        Option<String>,
        Option<String>,
        Option<String>,
        chrono::NaiveDateTime,
    );
    let rows: Vec<Row> = action_events::table
        .filter(action_events::device_id.eq(device_id))
        .order(action_events::id.desc())
        .limit(500)
        .select((
            action_events::device_id,
            action_events::deployment_id,
            action_events::app_id,
            action_events::status,
            action_events::progress_percent,
            action_events::error_code,
            action_events::message,
            action_events::download,
            action_events::occurred_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(device_id, deployment_id, app_id, status, progress, error_code, message, download, at)| {
            ActionEventView {
                device_id,
                deployment_id,
                app_id,
                status,
                progress_percent: progress.map(|p| p as u8),
                error_code,
                message,
                download,
                at: rfc3339(at),
            }
        })
        .collect())
}
