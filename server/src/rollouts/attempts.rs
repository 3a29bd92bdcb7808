//! A terminal's attempts at a deployment: when it was offered the release
//! and until when it has to act, its failed attempts, and when (if ever)
//! it is offered the release again. The rules are
//! `tms_packages::rollouts::{settle, offer_deadline_secs}`; this module
//! keeps their state in `deployment_actions`.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tms_packages::rollouts::{RetryPolicy, Setback, Settlement, settle};
use tms_packages::targets::Hold;
use tms_packages::wire::deployments::FailedDeviceView;

use super::deployments::{self, READERS};
use crate::accounts::access::Actor;
use crate::config::DatabaseBackend;
use crate::db::schema::{action_events, deployment_actions, deployments as deployment_rows, devices};
use crate::db::{DbConnection, DbError, insert_from_json};
use crate::error::Error;
use crate::time::{now, rfc3339};

/// Statuses of an action under way: silence in one of them past the
/// deadline is a timeout.
pub const UNDER_WAY: [&str; 5] = ["offered", "downloading", "downloaded", "installing", "postponed"];

/// The deployments held back from a terminal: failed for good, or waiting
/// for a retry later than `now`.
pub fn holds_of(conn: &mut DbConnection, device_id: i64, now: NaiveDateTime) -> Result<Vec<Hold>, DbError> {
    // Read through the small partial index of terminals with a hold.
    let rows: Vec<(i64, i32, Option<NaiveDateTime>, bool)> = deployment_actions::table
        .filter(deployment_actions::device_id.eq(device_id))
        .filter(deployment_actions::retry_at.is_not_null().or(deployment_actions::failed_for_good))
        .select((
            deployment_actions::deployment_id,
            deployment_actions::attempts,
            deployment_actions::retry_at,
            deployment_actions::failed_for_good,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|(_, _, retry_at, for_good)| *for_good || retry_at.is_some_and(|r| r > now))
        .map(|(deployment_id, attempts, retry_at, for_good)| Hold {
            deployment_id,
            attempts: attempts.max(0) as u32,
            until: if for_good { None } else { retry_at.map(|r| r.and_utc().timestamp()) },
        })
        .collect())
}

/// An offer the contact made, waiting for the flush.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Offer {
    pub deployment_id: i64,
    pub device_id: i64,
    #[serde(serialize_with = "stored_time")]
    pub offered_at: NaiveDateTime,
    #[serde(serialize_with = "stored_time")]
    pub deadline_at: NaiveDateTime,
}

/// As diesel stores a timestamp on SQLite (and PostgreSQL reads it).
fn stored_time<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.format("%Y-%m-%d %H:%M:%S%.6f"))
}

/// Records offers, in one statement: a first offer starts the deadline; a
/// terminal whose failed attempt waited out its retry starts a new
/// attempt (its failures stay counted); an action already under way that
/// has no deadline (its first report came before the offer was written)
/// gets this one; anything else is left as it is.
pub fn record_offers(conn: &mut DbConnection, offers: &[Offer]) -> Result<(), DbError> {
    use diesel::sql_types::Text;
    if offers.is_empty() {
        return Ok(());
    }
    let backend = match conn {
        DbConnection::Sqlite(_) => DatabaseBackend::Sqlite,
        DbConnection::Postgres(_) => DatabaseBackend::Postgres,
    };
    let rows: Vec<OfferRow<'_>> = offers
        .iter()
        .map(|offer| OfferRow { offer, status: "offered", updated_at: offer.offered_at })
        .collect();
    let json = serde_json::to_string(&rows).expect("offers serialise");
    let statement = offer_statement(backend);
    crate::per_backend!(conn, |c| diesel::sql_query(statement).bind::<Text, _>(&json).execute(c))?;
    Ok(())
}

/// An offer as the statement reads it: its JSON names are the columns.
#[derive(serde::Serialize)]
struct OfferRow<'a> {
    #[serde(flatten)]
    offer: &'a Offer,
    status: &'static str,
    /// A new action was last heard of when it was offered.
    #[serde(serialize_with = "stored_time")]
    updated_at: NaiveDateTime,
}

/// The columns of `OfferRow`, with their PostgreSQL types.
const OFFER_COLUMNS: [(&str, &str); 6] = [
    ("deployment_id", "bigint"),
    ("device_id", "bigint"),
    ("status", "text"),
    ("offered_at", "timestamp"),
    ("deadline_at", "timestamp"),
    ("updated_at", "timestamp"),
];

/// The statement of [`record_offers`], per backend, built once.
fn offer_statement(backend: DatabaseBackend) -> &'static str {
    static SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let build = || {
        let retry = "deployment_actions.status IN ('failed', 'timed_out') AND NOT deployment_actions.failed_for_good \
                     AND (deployment_actions.retry_at IS NULL OR deployment_actions.retry_at <= excluded.offered_at)";
        let undated = "deployment_actions.offered_at IS NULL \
                       AND deployment_actions.status NOT IN ('installed', 'failed', 'timed_out')";
        let when = |retry_value: &str, undated_value: &str, column: &str| {
            format!(
                "{column} = CASE WHEN {retry} THEN {retry_value} WHEN {undated} THEN {undated_value} \
                 ELSE deployment_actions.{column} END"
            )
        };
        let set = [
            when("'offered'", "deployment_actions.status", "status"),
            when("NULL", "deployment_actions.progress_percent", "progress_percent"),
            when("NULL", "deployment_actions.error_code", "error_code"),
            when("NULL", "deployment_actions.message", "message"),
            when("excluded.updated_at", "deployment_actions.updated_at", "updated_at"),
            when("NULL", "deployment_actions.retry_at", "retry_at"),
            when("excluded.offered_at", "excluded.offered_at", "offered_at"),
            when("excluded.deadline_at", "excluded.deadline_at", "deadline_at"),
        ]
        .join(", ");
        // `WHERE true`: SQLite would read `ON` as a join's without it.
        let tail = format!(
            " WHERE true ON CONFLICT (deployment_id, device_id) DO UPDATE SET {set} WHERE ({retry}) OR ({undated})"
        );
        insert_from_json(backend, "INSERT", "deployment_actions", &OFFER_COLUMNS, None, &tail)
    };
    match backend {
        DatabaseBackend::Sqlite => SQLITE.get_or_init(build),
        DatabaseBackend::Postgres => POSTGRES.get_or_init(build),
    }
}

/// Timeouts settled per pass at most (the next pass takes the rest).
const TIMEOUTS_PER_PASS: i64 = 1_000;

/// Turns silence into `timed_out`: an action under way past its offer's
/// deadline, or, with no deadline known (offered by a process that stopped
/// before writing it), not heard of for `fallback`. Each is a failed
/// attempt, retried by its deployment's policy, and a line of the
/// terminal's history. Of `deployment` only, or of all. Says how many.
pub fn expire_overdue(
    conn: &mut DbConnection,
    deployment: Option<i64>,
    fallback: chrono::Duration,
) -> Result<usize, Error> {
    let at = now();
    type Key = (i64, i64, String, NaiveDateTime);
    let select = (
        deployment_actions::deployment_id,
        deployment_actions::device_id,
        deployment_actions::status,
        deployment_actions::updated_at,
    );
    let mut past_deadline = deployment_actions::table
        .filter(deployment_actions::deadline_at.is_not_null())
        .filter(deployment_actions::deadline_at.lt(at))
        .filter(deployment_actions::status.eq_any(UNDER_WAY))
        .select(select)
        .limit(TIMEOUTS_PER_PASS)
        .into_boxed();
    let mut undated = deployment_actions::table
        .filter(deployment_actions::status.eq_any(UNDER_WAY))
        .filter(deployment_actions::updated_at.lt(at - fallback))
        .filter(deployment_actions::deadline_at.is_null())
        .select(select)
        .limit(TIMEOUTS_PER_PASS)
        .into_boxed();
    if let Some(id) = deployment {
        past_deadline = past_deadline.filter(deployment_actions::deployment_id.eq(id));
        undated = undated.filter(deployment_actions::deployment_id.eq(id));
    }
    let mut overdue: Vec<Key> = past_deadline.load(conn)?;
    overdue.extend(undated.load::<Key>(conn)?);
    if overdue.is_empty() {
        return Ok(0);
    }
    let mut policies: HashMap<i64, (String, RetryPolicy, u32)> = HashMap::new();
    let mut settled = 0;
    for (deployment_id, device_id, status, updated_at) in overdue {
        if let std::collections::hash_map::Entry::Vacant(slot) = policies.entry(deployment_id) {
            let row = deployments::find(conn, deployment_id)?;
            slot.insert((row.app_id.clone(), row.retry_policy(), row.max_postpones()));
        }
        let (app_id, policy, max_postpones) = &policies[&deployment_id];
        crate::db::write_tx(conn, |conn| {
            // Only if no report came in since it was read.
            let unchanged: i64 = deployment_actions::table
                .find((deployment_id, device_id))
                .filter(deployment_actions::status.eq(&status))
                .filter(deployment_actions::updated_at.eq(updated_at))
                .count()
                .get_result(conn)?;
            if unchanged == 1 {
                settle_setback(
                    conn,
                    (deployment_id, device_id, app_id),
                    Setback::TimedOut,
                    policy,
                    *max_postpones,
                    at,
                )?;
                settled += 1;
            }
            Ok::<_, Error>(())
        })?;
    }
    Ok(settled)
}

/// Applies the rule for a setback ([`settle`]) to a terminal's action: a
/// postponement within the limit starts its deadline again; a failed
/// attempt holds the release back until its retry, or for good. A
/// postponement past the limit, or a timeout, becomes the action's status
/// and a line of its history (a report of the terminal's own is written by
/// the caller).
pub fn settle_setback(
    conn: &mut DbConnection,
    (deployment_id, device_id, app_id): (i64, i64, &str),
    setback: Setback,
    policy: &RetryPolicy,
    max_postpones: u32,
    at: NaiveDateTime,
) -> Result<(), Error> {
    let row = deployment_actions::table.find((deployment_id, device_id));
    let Some((attempts, postponements, offered_at, deadline_at)) = row
        .select((
            deployment_actions::attempts,
            deployment_actions::postponements,
            deployment_actions::offered_at,
            deployment_actions::deadline_at,
        ))
        .first::<(i32, i32, Option<NaiveDateTime>, Option<NaiveDateTime>)>(conn)
        .optional()?
    else {
        return Ok(());
    };
    let settled = settle(setback, attempts.max(0) as u32, postponements.max(0) as u32, policy, max_postpones);
    let (attempts, postponements, retry_at, for_good) = match settled {
        Settlement::Wait { postponements } => {
            // The time it has to act starts again from the postponement.
            let deadline = offered_at.zip(deadline_at).map(|(o, d)| at + (d - o));
            diesel::update(row)
                .set((
                    deployment_actions::postponements.eq(postponements as i32),
                    deployment_actions::offered_at.eq(offered_at.map(|_| at)),
                    deployment_actions::deadline_at.eq(deadline),
                ))
                .execute(conn)?;
            return Ok(());
        }
        Settlement::Retry { attempts, postponements, retry_in_secs } => {
            (attempts, postponements, Some(at + chrono::Duration::seconds(i64::from(retry_in_secs))), false)
        }
        Settlement::GiveUp { attempts, postponements } => (attempts, postponements, None, true),
    };
    diesel::update(row)
        .set((
            deployment_actions::attempts.eq(attempts as i32),
            deployment_actions::postponements.eq(postponements as i32),
            deployment_actions::retry_at.eq(retry_at),
            deployment_actions::failed_for_good.eq(for_good),
            deployment_actions::deadline_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    let (status, code, message) = match setback {
        Setback::Failed => return Ok(()),
        Setback::Postponed => (
            "failed",
            "postponed_too_often",
            format!("postponed more than the {max_postpones} times the deployment allows"),
        ),
        Setback::TimedOut => {
            ("timed_out", "timed_out", "no report before the deadline of the offer".to_owned())
        }
    };
    diesel::update(row)
        .set((
            deployment_actions::status.eq(status),
            deployment_actions::error_code.eq(code),
            deployment_actions::message.eq(&message),
            deployment_actions::progress_percent.eq(None::<i32>),
            deployment_actions::updated_at.eq(at),
        ))
        .execute(conn)?;
    diesel::insert_into(action_events::table)
        .values((
            action_events::deployment_id.eq(deployment_id),
            action_events::device_id.eq(device_id),
            action_events::app_id.eq(app_id),
            action_events::status.eq(status),
            action_events::error_code.eq(code),
            action_events::message.eq(&message),
            action_events::occurred_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// A terminal that failed at least once and has not installed since, as
/// the partial index `deployment_actions_attempts` states it: written out,
/// not bound, so that PostgreSQL's generic plans still match the index.
fn counted_failure() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql("deployment_actions.attempts > 0 AND deployment_actions.status <> 'installed'")
}

/// Failed attempts counted against a deployment's rollout: terminals that
/// failed at least once and have not installed since.
pub fn failed_count(conn: &mut DbConnection, deployment_id: i64) -> Result<u64, DbError> {
    let n: i64 = deployment_actions::table
        .filter(deployment_actions::deployment_id.eq(deployment_id))
        .filter(counted_failure())
        .count()
        .get_result(conn)?;
    Ok(n.max(0) as u64)
}

/// The most failures a list gives.
pub const MAX_FAILURES_LISTED: i64 = 10_000;

/// The rollout's failure list: the terminals that failed to install the
/// deployment's release and have not installed it since, those failed for
/// good first, then by their last report; at most `limit` of them.
pub fn failures(
    conn: &mut DbConnection,
    actor: &Actor,
    deployment_id: i64,
    limit: i64,
) -> Result<Vec<FailedDeviceView>, Error> {
    actor.require_operator(READERS)?;
    let exists: i64 =
        deployment_rows::table.filter(deployment_rows::id.eq(deployment_id)).count().get_result(conn)?;
    if exists == 0 {
        return Err(Error::not_found("deployment"));
    }
    type Row = (
        i64,
        String,
        String,
        String,
        i32,
        Option<String>,
        Option<String>,
        Option<NaiveDateTime>,
        bool,
        NaiveDateTime,
    );
    let rows: Vec<Row> = deployment_actions::table
        .inner_join(devices::table)
        .filter(deployment_actions::deployment_id.eq(deployment_id))
        .filter(counted_failure())
        .order((deployment_actions::failed_for_good.desc(), deployment_actions::updated_at.desc()))
        .limit(limit.clamp(1, MAX_FAILURES_LISTED))
        .select((
            devices::id,
            devices::name,
            devices::model,
            deployment_actions::status,
            deployment_actions::attempts,
            deployment_actions::error_code,
            deployment_actions::message,
            deployment_actions::retry_at,
            deployment_actions::failed_for_good,
            deployment_actions::updated_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(
                device_id,
                device_name,
                model,
                status,
                attempts,
                error_code,
                message,
                retry_at,
                for_good,
                at,
            )| {
                FailedDeviceView {
                    device_id,
                    device_name,
                    model,
                    status,
                    attempts: attempts.max(0) as u32,
                    error_code,
                    message,
                    retry_at: if for_good { None } else { retry_at.map(rfc3339) },
                    failed_for_good: for_good,
                    updated_at: rfc3339(at),
                }
            },
        )
        .collect())
}
