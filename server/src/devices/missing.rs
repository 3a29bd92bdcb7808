//! Missing terminals: an active terminal not heard from for longer than its
//! merchant's threshold (`missing_after_hours`, overridable per merchant)
//! is missing until its next contact.
//!
//! A pass never reads the whole fleet: it reads, through the indexed hour
//! of the last contact (`device_contact_hours`), only the terminals whose
//! last contact fell between the previous pass's horizon and this one's
//! (those that may have crossed a threshold since), and the missing ones,
//! to see which came back.

use std::collections::HashMap;

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::OperatorRole;
use tms_packages::wire::devices::{MissingTerminalView, MissingThresholdView};

use super::ACTIVE;
use crate::accounts::access::{Actor, Role};
use crate::db::schema::{
    device_contact_hours, device_contacts, devices, merchant_missing_thresholds, missing_devices,
};
use crate::db::{DbConnection, DbError, audit};
use crate::error::Error;
use crate::time::rfc3339;

/// What a pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub now_missing: Vec<i64>,
    pub back: Vec<i64>,
    /// Terminals missing after the pass.
    pub missing: u64,
    /// Contacts read to find them (for the log: it stays far below the fleet).
    pub examined: usize,
}

/// The per-merchant thresholds that differ from the default, in hours.
fn overrides(conn: &mut DbConnection) -> Result<HashMap<i64, i64>, DbError> {
    Ok(merchant_missing_thresholds::table
        .select((merchant_missing_thresholds::merchant_id, merchant_missing_thresholds::hours))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect())
}

/// One pass at `now`. `since`: the previous pass's time in this process
/// (None at start: every silent terminal is looked at once).
pub fn pass(
    conn: &mut DbConnection,
    default_hours: i64,
    now: NaiveDateTime,
    since: Option<NaiveDateTime>,
) -> Result<Pass, DbError> {
    crate::db::write_tx(conn, |conn| {
        let thresholds = overrides(conn)?;
        let shortest = thresholds.values().copied().chain([default_hours]).min().unwrap_or(default_hours);
        let longest = thresholds.values().copied().chain([default_hours]).max().unwrap_or(default_hours);
        // A terminal crosses its threshold T between the previous pass and
        // this one only if its last contact is in [since - T, now - T):
        // within [since - longest, now - shortest) whatever its T.
        let upper = now - Duration::hours(shortest);
        let lower = since.map(|s| s - Duration::hours(longest));
        let already = missing_devices::table.select(missing_devices::device_id);
        // Through the hour of the last contact (indexed, and coarse so that
        // the contact flush rarely rewrites it), then the exact time.
        let hour_of = |t: NaiveDateTime| t.and_utc().timestamp().div_euclid(3_600);
        let mut query = device_contact_hours::table
            .inner_join(devices::table)
            .inner_join(
                device_contacts::table.on(device_contacts::device_id.eq(device_contact_hours::device_id)),
            )
            .filter(device_contact_hours::hour.le(hour_of(upper)))
            .filter(device_contacts::contacted_at.lt(upper))
            .filter(devices::status.eq(ACTIVE))
            .filter(device_contact_hours::device_id.ne_all(already))
            .select((devices::id, devices::merchant_id, device_contacts::contacted_at))
            .into_boxed::<crate::db::MultiBackend>();
        if let Some(lower) = lower {
            query = query
                .filter(device_contact_hours::hour.ge(hour_of(lower)))
                .filter(device_contacts::contacted_at.ge(lower));
        }
        let candidates: Vec<(i64, i64, NaiveDateTime)> = query.load(conn)?;
        let mut out = Pass { examined: candidates.len(), ..Pass::default() };
        for (device_id, merchant_id, contacted_at) in candidates {
            let hours = thresholds.get(&merchant_id).copied().unwrap_or(default_hours);
            if contacted_at >= now - Duration::hours(hours) {
                continue;
            }
            if mark_missing(conn, device_id, merchant_id, contacted_at, now)? {
                out.now_missing.push(device_id);
            }
        }
        // Back: heard from since it went missing, or no longer active.
        let returned: Vec<(i64, i64, NaiveDateTime)> = missing_devices::table
            .inner_join(device_contacts::table.on(device_contacts::device_id.eq(missing_devices::device_id)))
            .filter(device_contacts::contacted_at.gt(missing_devices::last_contact_at))
            .select((missing_devices::device_id, missing_devices::merchant_id, device_contacts::contacted_at))
            .load(conn)?;
        for (device_id, merchant_id, contacted_at) in returned {
            diesel::delete(missing_devices::table.find(device_id)).execute(conn)?;
            record(conn, "device.back", device_id, merchant_id, contacted_at)?;
            out.back.push(device_id);
        }
        let retired = devices::table.filter(devices::status.ne(ACTIVE)).select(devices::id);
        diesel::delete(missing_devices::table.filter(missing_devices::device_id.eq_any(retired)))
            .execute(conn)?;
        // A threshold raised since: no longer missing (it did not come back,
        // so no event). Reads the missing ones only.
        let still: Vec<(i64, i64, NaiveDateTime)> = missing_devices::table
            .select((
                missing_devices::device_id,
                missing_devices::merchant_id,
                missing_devices::last_contact_at,
            ))
            .load(conn)?;
        let cleared: Vec<i64> = still
            .into_iter()
            .filter(|(_, merchant_id, last)| {
                *last >= now - Duration::hours(thresholds.get(merchant_id).copied().unwrap_or(default_hours))
            })
            .map(|(device_id, _, _)| device_id)
            .collect();
        diesel::delete(missing_devices::table.filter(missing_devices::device_id.eq_any(&cleared)))
            .execute(conn)?;
        out.missing = missing_devices::table.count().get_result::<i64>(conn)? as u64;
        Ok(out)
    })
}

/// Marks a terminal missing, with its event; false when it already was
/// (another process marked it first).
fn mark_missing(
    conn: &mut DbConnection,
    device_id: i64,
    merchant_id: i64,
    contacted_at: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let insert = diesel::insert_into(missing_devices::table)
        .values((
            missing_devices::device_id.eq(device_id),
            missing_devices::merchant_id.eq(merchant_id),
            missing_devices::last_contact_at.eq(contacted_at),
            missing_devices::missing_since.eq(now),
        ))
        .on_conflict_do_nothing();
    let marked = crate::per_backend!(conn, |c| insert.execute(c))? == 1;
    if marked {
        record(conn, "device.missing", device_id, merchant_id, contacted_at)?;
    }
    Ok(marked)
}

fn record(
    conn: &mut DbConnection,
    action: &str,
    device_id: i64,
    merchant_id: i64,
    last_contact_at: NaiveDateTime,
) -> Result<(), DbError> {
    let subject = format!("device:{device_id}");
    let detail = json!({"last_contact_at": rfc3339(last_contact_at)});
    let mut event = audit::NewAuditEvent::now("system", action, &subject, &detail);
    event.merchant_id = Some(merchant_id);
    audit::record(conn, &event)?;
    let webhook = if action == "device.back" { "terminal.back" } else { "terminal.missing" };
    crate::webhooks::enqueue(
        conn,
        webhook,
        Some(merchant_id),
        json!({"device_id": device_id, "last_contact_at": rfc3339(last_contact_at)}),
    )?;
    Ok(())
}

/// The missing terminals the caller sees, longest silent first;
/// `merchant`: only that merchant's.
pub fn list(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant: Option<i64>,
) -> Result<Vec<MissingTerminalView>, Error> {
    let merchant = match (&actor.role, merchant) {
        (Role::Operator(role), m) if role.manages_merchants() => m,
        (Role::Operator(_), _) => {
            return Err(Error::forbidden("support and operator admins follow missing terminals"));
        }
        (Role::Merchant(access), None) => Some(access.merchant_id),
        (Role::Merchant(_), Some(m)) => {
            actor.check_merchant(m, "merchant")?;
            Some(m)
        }
    };
    let mut query = missing_devices::table
        .inner_join(devices::table)
        .order(missing_devices::last_contact_at)
        .select((
            devices::id,
            devices::merchant_id,
            devices::location_id,
            devices::name,
            devices::hardware_id,
            missing_devices::last_contact_at,
            missing_devices::missing_since,
        ))
        .into_boxed::<crate::db::MultiBackend>();
    if let Some(m) = merchant {
        query = query.filter(missing_devices::merchant_id.eq(m));
    }
    let rows: Vec<(i64, i64, i64, String, String, NaiveDateTime, NaiveDateTime)> = query.load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|r| actor.sees_location(r.1, r.2))
        .map(|(device_id, merchant_id, location_id, name, hardware_id, last, since)| MissingTerminalView {
            device_id,
            merchant_id,
            location_id,
            name,
            hardware_id,
            last_contact_at: rfc3339(last),
            missing_since: rfc3339(since),
        })
        .collect())
}

/// A merchant's threshold: its own, or the default (`None` resets).
pub fn set_threshold(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
    hours: Option<i64>,
    default_hours: i64,
) -> Result<MissingThresholdView, Error> {
    actor.require_operator(&[OperatorRole::OperatorAdmin, OperatorRole::Support])?;
    if hours.is_some_and(|h| !(1..=24 * 90).contains(&h)) {
        return Err(Error::invalid("hours", "from 1 hour to 90 days"));
    }
    crate::db::write_tx(conn, |conn| {
        crate::accounts::rows::find_merchant(conn, merchant_id)?
            .ok_or_else(|| Error::not_found("merchant"))?;
        diesel::delete(merchant_missing_thresholds::table.find(merchant_id)).execute(conn)?;
        if let Some(h) = hours {
            diesel::insert_into(merchant_missing_thresholds::table)
                .values((
                    merchant_missing_thresholds::merchant_id.eq(merchant_id),
                    merchant_missing_thresholds::hours.eq(h),
                ))
                .execute(conn)?;
        }
        // A lower threshold makes some of its terminals missing now, which
        // the passes' window (terminals crossing a threshold since the last
        // pass) would not see: they are looked at here, this merchant only.
        let now = crate::time::now();
        let cutoff = now - Duration::hours(hours.unwrap_or(default_hours));
        let already = missing_devices::table.select(missing_devices::device_id);
        let silent: Vec<(i64, NaiveDateTime)> = device_contacts::table
            .inner_join(devices::table)
            .filter(devices::merchant_id.eq(merchant_id))
            .filter(devices::status.eq(ACTIVE))
            .filter(device_contacts::contacted_at.lt(cutoff))
            .filter(device_contacts::device_id.ne_all(already))
            .select((devices::id, device_contacts::contacted_at))
            .load(conn)?;
        for (device_id, contacted_at) in silent {
            mark_missing(conn, device_id, merchant_id, contacted_at, now)?;
        }
        let subject = format!("merchant:{merchant_id}");
        audit::record(
            conn,
            &actor.audit("merchant.missing_threshold", &subject, Some(merchant_id), &json!({"hours": hours})),
        )?;
        Ok(MissingThresholdView {
            merchant_id,
            hours: hours.unwrap_or(default_hours),
            default: hours.is_none(),
        })
    })
}
