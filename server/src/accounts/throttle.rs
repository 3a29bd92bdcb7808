//! Login throttling, counted in the database so that every server process
//! sees it: growing delays per account and source (so guesses from
//! elsewhere slow the guesser, not the account's owner), a ceiling per
//! account from every source together, a ceiling per source address across
//! accounts, and wrong second-factor codes per account.
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

/// How many failures one key may have before attempts are refused.
#[derive(Clone, Debug)]
pub enum Rule {
    /// At most `max` failures within the window, from anywhere: a budget
    /// that only time restores.
    Ceiling { key: String, max: u32 },
    /// `free` failures, then each further attempt waits after the last
    /// failure: `first_delay_secs`, doubling each time up to
    /// `max_delay_secs`. Slows one source down without locking anyone else
    /// out.
    Backoff { key: String, free: u32, first_delay_secs: u64, max_delay_secs: u64 },
}

impl Rule {
    fn key(&self) -> &str {
        match self {
            Rule::Ceiling { key, .. } | Rule::Backoff { key, .. } => key,
        }
    }
}

/// How a login's failures are counted: per account and source with growing
/// delays, per account from everywhere under a ceiling, per source address
/// across accounts under a ceiling.
#[derive(Clone, Debug)]
pub struct Policy {
    pub free_failures: u32,
    pub first_delay_secs: u64,
    pub max_delay_secs: u64,
    pub max_failures_per_account: u32,
    pub max_failures_per_address: u32,
    pub max_code_failures_per_account: u32,
    pub window_secs: u64,
}

/// The rules for one attempt, counted over one window, and the keys a
/// complete login forgives.
#[derive(Clone, Debug)]
pub struct Limits {
    pub rules: Vec<Rule>,
    pub window_secs: u64,
    pub forgives: Vec<String>,
}

impl Policy {
    fn backoff(&self, key: String) -> Rule {
        Rule::Backoff {
            key,
            free: self.free_failures,
            first_delay_secs: self.first_delay_secs,
            max_delay_secs: self.max_delay_secs,
        }
    }

    /// A password from a client: delays for this account from this source,
    /// the account's ceiling, and the source's ceiling across accounts.
    pub fn password(&self, email: &str, source_ip: Option<&str>) -> Limits {
        let rules = vec![
            self.backoff(source_key(email, source_ip)),
            Rule::Ceiling { key: account_key(email), max: self.max_failures_per_account },
        ];
        self.with_source(rules, email, source_ip)
    }

    /// A password typed on a terminal already activated for the merchant:
    /// only that terminal's own failures slow it down, so guesses made
    /// elsewhere never stop a shop's terminals.
    pub fn known_device(&self, email: &str, device_id: i64) -> Limits {
        let key = format!("{}|device:{device_id}", account_key(email));
        Limits { rules: vec![self.backoff(key.clone())], window_secs: self.window_secs, forgives: vec![key] }
    }

    /// A second-factor code: wrong codes count per account from every
    /// source together, and only a complete login forgives them.
    pub fn second_factor(&self, email: &str, source_ip: Option<&str>) -> Limits {
        let rules =
            vec![Rule::Ceiling { key: second_factor_key(email), max: self.max_code_failures_per_account }];
        self.with_source(rules, email, source_ip)
    }

    /// `rules` plus the source address's ceiling. A complete login forgives
    /// this source's delays for the account, the first step's included (a
    /// browser login counts its first step as failed until the code is
    /// right), and the account's wrong codes.
    fn with_source(&self, mut rules: Vec<Rule>, email: &str, source_ip: Option<&str>) -> Limits {
        if let Some(ip) = source_ip {
            rules.push(Rule::Ceiling { key: address_key(ip), max: self.max_failures_per_address });
        }
        Limits {
            rules,
            window_secs: self.window_secs,
            forgives: vec![source_key(email, source_ip), second_factor_key(email)],
        }
    }

    /// A password checked for a signed-in user (changing it, turning two-step
    /// verification off): the account's ceiling, so a stolen session is no
    /// password oracle.
    pub fn signed_in(&self, email: &str) -> Limits {
        Limits {
            rules: vec![Rule::Ceiling { key: account_key(email), max: self.max_failures_per_account }],
            window_secs: self.window_secs,
            forgives: Vec::new(),
        }
    }
}

/// The wait the `n`-th failure past the free ones imposes (`n` from 0).
pub fn backoff_delay_secs(n: u32, first_delay_secs: u64, max_delay_secs: u64) -> u64 {
    first_delay_secs.saturating_mul(1u64.checked_shl(n).unwrap_or(u64::MAX)).min(max_delay_secs)
}

/// Keys are hashes: of fixed size whatever was typed, so a long e-mail
/// cannot fill the table.
pub fn account_key(email: &str) -> String {
    format!("account:{}", tokens::hash(&email.trim().to_lowercase()))
}

/// One account from one source: the unit growing delays apply to.
fn source_key(email: &str, source_ip: Option<&str>) -> String {
    let source = source_ip.map(address_key).unwrap_or_else(|| "address:unknown".to_owned());
    format!("{}|{source}", account_key(email))
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
    limits: Limits,
}

/// Records the attempt, then refuses it (429, with when to retry) if a rule
/// refuses it counting the failures before it. A rule that refuses already
/// refuses before anything is written, and an attempt refused after it was
/// written (parallel guesses) is erased: a refused attempt leaves nothing.
pub fn begin(conn: &mut DbConnection, limits: &Limits) -> Result<Attempt, Error> {
    let at = now();
    let window_start = at - Duration::seconds(limits.window_secs as i64);
    // Expired rows of every key go now and then, so the table stays small.
    if rand::random::<u8>() == 0 {
        diesel::delete(login_failures::table.filter(login_failures::failed_at.lt(window_start)))
            .execute(conn)?;
    }
    refused(conn, limits, window_start, &[])?;
    let mut ids = Vec::with_capacity(limits.rules.len());
    for rule in &limits.rules {
        let insert = diesel::insert_into(login_failures::table)
            .values((login_failures::throttle_key.eq(rule.key()), login_failures::failed_at.eq(at)));
        ids.push(per_backend!(conn, |c| insert.returning(login_failures::id).get_result::<i64>(c))?);
    }
    if let Err(refusal) = refused(conn, limits, window_start, &ids) {
        diesel::delete(login_failures::table.filter(login_failures::id.eq_any(&ids))).execute(conn)?;
        return Err(refusal);
    }
    Ok(Attempt { ids, limits: limits.clone() })
}

/// Refuses when a rule refuses an attempt made now, counting the failures
/// in the window but this attempt's own rows (`own`).
fn refused(
    conn: &mut DbConnection,
    limits: &Limits,
    window_start: chrono::NaiveDateTime,
    own: &[i64],
) -> Result<(), Error> {
    let at = now();
    for rule in &limits.rules {
        let enough = match rule {
            Rule::Ceiling { max, .. } => i64::from(*max) + 1,
            // Past a few dozen doublings every delay is the longest one.
            Rule::Backoff { free, .. } => i64::from(*free) + 64,
        };
        let earlier: Vec<chrono::NaiveDateTime> = login_failures::table
            .filter(login_failures::throttle_key.eq(rule.key()))
            .filter(login_failures::failed_at.gt(window_start))
            .filter(login_failures::id.ne_all(own))
            .select(login_failures::failed_at)
            .order(login_failures::failed_at.desc())
            .limit(enough)
            .load(conn)?;
        let free_at = match rule {
            Rule::Ceiling { max, .. } if earlier.len() as u64 >= u64::from(*max) => {
                // Possible again when the max-th most recent failure leaves the window.
                let oldest_counted = earlier.get((*max as usize).saturating_sub(1)).copied().unwrap_or(at);
                Some(oldest_counted + Duration::seconds(limits.window_secs as i64))
            }
            Rule::Backoff { free, first_delay_secs, max_delay_secs, .. }
                if earlier.len() as u64 >= u64::from(*free) =>
            {
                let past_free = (earlier.len() as u64 - u64::from(*free)).min(63) as u32;
                let wait = backoff_delay_secs(past_free, *first_delay_secs, *max_delay_secs);
                Some(earlier.first().copied().unwrap_or(at) + Duration::seconds(wait as i64))
            }
            _ => None,
        };
        if let Some(free_at) = free_at.filter(|free_at| *free_at > at) {
            let micros = (free_at - at).num_microseconds().unwrap_or(i64::MAX);
            return Err(Error::Throttled {
                message: "too many failed attempts; try again later".into(),
                retry_after_secs: (micros as u64).div_ceil(1_000_000).max(1),
            });
        }
    }
    Ok(())
}

impl Attempt {
    /// The attempt failed: it stays counted. When this failure makes the
    /// next attempt wait, says for how long.
    pub fn failed(self, conn: &mut DbConnection) -> Result<Option<u64>, Error> {
        let window_start = now() - Duration::seconds(self.limits.window_secs as i64);
        match refused(conn, &self.limits, window_start, &[]) {
            Ok(()) => Ok(None),
            Err(Error::Throttled { retry_after_secs, .. }) => Ok(Some(retry_after_secs)),
            Err(e) => Err(e),
        }
    }

    /// Counted as a failure until a later step succeeds, without being one
    /// (a browser login's first step before its code; a reset request).
    pub fn held(self) {}

    /// The password was right but the login is not complete (the second
    /// factor is asked next): this attempt is no failure, and nothing
    /// earlier is forgiven.
    pub fn password_right(self, conn: &mut DbConnection) -> Result<(), DbError> {
        diesel::delete(login_failures::table.filter(login_failures::id.eq_any(&self.ids))).execute(conn)?;
        Ok(())
    }

    /// The attempt succeeded in full: it is not a failure, this source's
    /// delays for the account start over, and wrong second-factor codes are
    /// forgiven. The account's ceiling is not: it bounds what every source
    /// together may guess, whoever logs in meanwhile.
    pub fn succeeded(self, conn: &mut DbConnection) -> Result<(), DbError> {
        diesel::delete(login_failures::table.filter(login_failures::id.eq_any(&self.ids))).execute(conn)?;
        diesel::delete(
            login_failures::table.filter(login_failures::throttle_key.eq_any(&self.limits.forgives)),
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

    #[test]
    fn delays_double_from_the_first_up_to_the_longest() {
        let delays: Vec<u64> = (0..8).map(|n| backoff_delay_secs(n, 30, 900)).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(backoff_delay_secs(63, 30, 900), 900);
        assert_eq!(backoff_delay_secs(200, u64::MAX, 900), 900, "no overflow");
    }
}
