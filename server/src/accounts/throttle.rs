//! Login throttling: failed attempts per account and per client address,
//! counted in the database so that every server process sees them.

use chrono::Duration;
use diesel::prelude::*;

use super::now;
use crate::db::schema::login_failures;
use crate::db::{DbConnection, DbError};
use crate::http::error::ApiError;

/// Limits for one attempt: each key with the most failures it may have within
/// the window.
pub struct Limits {
    pub keys: Vec<(String, u32)>,
    pub window_secs: u64,
}

impl Limits {
    pub fn for_login(
        email: &str,
        source_ip: Option<&str>,
        per_account: u32,
        per_address: u32,
        window_secs: u64,
    ) -> Limits {
        let mut keys = vec![(account_key(email), per_account)];
        if let Some(ip) = source_ip {
            keys.push((format!("address:{ip}"), per_address));
        }
        Limits { keys, window_secs }
    }
}

pub fn account_key(email: &str) -> String {
    format!("account:{email}")
}

/// Refuses the attempt if any key is over its limit, saying when to retry.
pub fn check(conn: &mut DbConnection, limits: &Limits) -> Result<(), ApiError> {
    let window_start = now() - Duration::seconds(limits.window_secs as i64);
    for (key, max) in &limits.keys {
        let recent: Vec<chrono::NaiveDateTime> = login_failures::table
            .filter(login_failures::throttle_key.eq(key))
            .filter(login_failures::failed_at.gt(window_start))
            .select(login_failures::failed_at)
            .order(login_failures::failed_at.desc())
            .limit(i64::from(*max))
            .load(conn)?;
        if recent.len() as u64 >= u64::from(*max) && *max > 0 {
            // The attempt becomes possible when the oldest of the last `max`
            // failures leaves the window.
            let oldest = *recent.last().expect("max > 0 failures");
            let free_at = oldest + Duration::seconds(limits.window_secs as i64);
            let retry_after_secs = (free_at - now()).num_seconds().max(1) as u64;
            return Err(ApiError::Throttled {
                message: "too many failed attempts; try again later".into(),
                retry_after_secs,
            });
        }
    }
    Ok(())
}

pub fn record_failure(conn: &mut DbConnection, limits: &Limits) -> Result<(), DbError> {
    let at = now();
    let expired = at - Duration::seconds(limits.window_secs as i64);
    for (key, _) in &limits.keys {
        diesel::insert_into(login_failures::table)
            .values((login_failures::throttle_key.eq(key), login_failures::failed_at.eq(at)))
            .execute(conn)?;
        diesel::delete(login_failures::table)
            .filter(login_failures::throttle_key.eq(key))
            .filter(login_failures::failed_at.lt(expired))
            .execute(conn)?;
    }
    Ok(())
}

/// Forgets an account's failures after it logged in.
pub fn clear(conn: &mut DbConnection, key: &str) -> Result<(), DbError> {
    diesel::delete(login_failures::table.filter(login_failures::throttle_key.eq(key))).execute(conn)?;
    Ok(())
}
