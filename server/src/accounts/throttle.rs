//! Login throttling: failed attempts per account and per client address,
//! counted in the database so that every server process sees them.
//!
//! An attempt is written down *before* the password is checked and erased
//! only if it succeeds, so parallel guesses cannot all slip past the count.

use chrono::Duration;
use diesel::prelude::*;

use crate::auth::tokens;
use crate::db::schema::login_failures;
use crate::db::{DbConnection, DbError};
use crate::error::Error;
use crate::per_backend;
use crate::time::now;

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
            keys.push((address_key(ip), per_address));
        }
        Limits { keys, window_secs }
    }

    /// Only the account's own limit (for checks made by a logged-in user,
    /// such as turning two-step verification off).
    pub fn for_account(email: &str, per_account: u32, window_secs: u64) -> Limits {
        Limits { keys: vec![(account_key(email), per_account)], window_secs }
    }

    /// Adds the account's second-factor limit: codes guessed from any
    /// number of addresses count together, and only a complete login
    /// forgives them.
    pub fn with_second_factor(mut self, email: &str, per_account: u32) -> Limits {
        self.keys.push((second_factor_key(email), per_account));
        self
    }
}

/// Keys are hashes: of fixed size whatever was typed, so a long e-mail
/// cannot fill the table.
pub fn account_key(email: &str) -> String {
    format!("account:{}", tokens::hash(&email.trim().to_lowercase()))
}

fn second_factor_key(email: &str) -> String {
    format!("second-factor:{}", tokens::hash(&email.trim().to_lowercase()))
}

/// IPv6 clients usually hold a whole /64, so that is what is counted.
fn address_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("address:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(addr) => format!("address:{}", addr.to_canonical()),
        Err(_) => format!("address:{}", tokens::hash(ip)),
    }
}

/// An attempt in progress: its rows count as failures until it succeeds.
#[must_use]
pub struct Attempt {
    ids: Vec<i64>,
}

/// Records the attempt, then refuses it (429, with when to retry) if any key
/// is over its limit counting this attempt. A key already at its limit is
/// refused before anything is written, and an attempt refused after it was
/// written (parallel guesses) is erased: a refused attempt leaves nothing.
pub fn begin(conn: &mut DbConnection, limits: &Limits) -> Result<Attempt, Error> {
    let at = now();
    let window_start = at - Duration::seconds(limits.window_secs as i64);
    // Expired rows of every key go now and then, so the table stays small.
    if rand::random::<u8>() == 0 {
        diesel::delete(login_failures::table.filter(login_failures::failed_at.lt(window_start)))
            .execute(conn)?;
    }
    over_limit(conn, limits, window_start, 0)?;
    let mut ids = Vec::with_capacity(limits.keys.len());
    for (key, _) in &limits.keys {
        let insert = diesel::insert_into(login_failures::table)
            .values((login_failures::throttle_key.eq(key), login_failures::failed_at.eq(at)));
        ids.push(per_backend!(conn, |c| insert.returning(login_failures::id).get_result::<i64>(c))?);
    }
    if let Err(refused) = over_limit(conn, limits, window_start, 1) {
        diesel::delete(login_failures::table.filter(login_failures::id.eq_any(&ids))).execute(conn)?;
        return Err(refused);
    }
    Ok(Attempt { ids })
}

/// Refuses when a key has more failures in the window than its limit,
/// counting this attempt (`own`: 1 when its rows are written already, 0
/// before).
fn over_limit(
    conn: &mut DbConnection,
    limits: &Limits,
    window_start: chrono::NaiveDateTime,
    own: u64,
) -> Result<(), Error> {
    for (key, max) in &limits.keys {
        let recent: Vec<chrono::NaiveDateTime> = login_failures::table
            .filter(login_failures::throttle_key.eq(key))
            .filter(login_failures::failed_at.gt(window_start))
            .select(login_failures::failed_at)
            .order(login_failures::failed_at.desc())
            .limit(i64::from(*max) + 1)
            .load(conn)?;
        if recent.len() as u64 + 1 - own > u64::from(*max) {
            // Possible again when the max-th most recent failure leaves the window.
            let retry_after_secs = match recent.get((*max as usize).saturating_sub(1)) {
                Some(at) => {
                    let free_at = *at + Duration::seconds(limits.window_secs as i64);
                    (free_at - now()).num_seconds().max(1) as u64
                }
                None => limits.window_secs.max(1),
            };
            return Err(Error::Throttled {
                message: "too many failed attempts; try again later".into(),
                retry_after_secs,
            });
        }
    }
    Ok(())
}

impl Attempt {
    /// The attempt failed: it stays counted.
    pub fn failed(self) {}

    /// The password was right but the login is not complete (the second
    /// factor is asked next): this attempt is no failure, and nothing
    /// earlier is forgiven.
    pub fn password_right(self, conn: &mut DbConnection) -> Result<(), DbError> {
        diesel::delete(login_failures::table.filter(login_failures::id.eq_any(&self.ids))).execute(conn)?;
        Ok(())
    }

    /// The attempt succeeded in full: it is not a failure, and the
    /// account's earlier failures, passwords and codes, are forgiven.
    pub fn succeeded(self, conn: &mut DbConnection, email: &str) -> Result<(), DbError> {
        diesel::delete(login_failures::table.filter(login_failures::id.eq_any(&self.ids))).execute(conn)?;
        diesel::delete(
            login_failures::table
                .filter(login_failures::throttle_key.eq_any([account_key(email), second_factor_key(email)])),
        )
        .execute(conn)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_and_ipv6_prefixes() {
        assert_eq!(account_key(" Anne@B.fr"), account_key("anne@b.fr"));
        assert_eq!(account_key(&"a".repeat(900_000)).len(), account_key("a@b.fr").len(), "fixed size");
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), address_key("2001:db8:1:2:bbbb::9"));
        assert_ne!(address_key("2001:db8:1:2::1"), address_key("2001:db8:1:3::1"));
        assert_eq!(address_key("::ffff:10.0.0.1"), "address:10.0.0.1");
        assert_eq!(address_key("10.0.0.1"), "address:10.0.0.1");
    }
}
