//! Time as the whole server reads and writes it: UTC, stored without a zone,
//! sent as RFC 3339, and read from one [`Clock`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Timelike, Utc};

use crate::error::Error;

/// The server's clock: the system's, plus an offset that only an adjustable
/// clock (a test's) moves, forward only. The server installs its clock at
/// start-up ([`install`]) and keeps it in its state; every reading of the
/// time in the server goes through it.
#[derive(Clone, Debug)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
    adjustable: bool,
}

impl Clock {
    /// The system's clock, as in production.
    pub fn system() -> Clock {
        Clock { offset_micros: Arc::new(AtomicI64::new(0)), adjustable: false }
    }

    /// A clock a test moves forward ([`Clock::advance`]).
    pub fn adjustable() -> Clock {
        Clock { adjustable: true, ..Clock::system() }
    }

    pub fn is_adjustable(&self) -> bool {
        self.adjustable
    }

    pub fn now(&self) -> NaiveDateTime {
        Utc::now().naive_utc() + chrono::Duration::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    /// Unix seconds.
    pub fn unix(&self) -> i64 {
        self.now().and_utc().timestamp()
    }

    /// Moves an adjustable clock forward; `false` (and no change) for the
    /// system's clock, a step backwards, or past [`Clock::MAX_OFFSET`].
    pub fn advance(&self, by: chrono::Duration) -> bool {
        let Some(micros) = by.num_microseconds().filter(|m| *m >= 0) else { return false };
        if !self.adjustable {
            return false;
        }
        self.offset_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |offset| {
                offset.checked_add(micros).filter(|o| *o <= Self::MAX_OFFSET.num_microseconds().unwrap_or(0))
            })
            .is_ok()
    }

    /// How far a test may move the clock: a century, far from where dates
    /// overflow.
    pub const MAX_OFFSET: chrono::Duration = chrono::Duration::days(100 * 366);
}

static CLOCK: OnceLock<Clock> = OnceLock::new();

/// Makes `clock` the one the server reads. Once per process: a second call
/// keeps the first clock and says so.
pub fn install(clock: Clock) -> Result<(), Clock> {
    CLOCK.set(clock)
}

/// The clock the server reads (the system's until one is installed).
pub fn clock() -> &'static Clock {
    CLOCK.get_or_init(Clock::system)
}

/// The current time, as stored.
pub fn now() -> NaiveDateTime {
    clock().now()
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    clock().unix()
}

/// Unix seconds as a stored timestamp (out of range reads as the epoch).
pub fn from_unix(secs: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().naive_utc()
}

/// A stored timestamp (UTC) in its wire form, RFC 3339, to the second.
pub fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A stored timestamp in its wire form with the microseconds it keeps.
pub fn rfc3339_micros(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A timestamp from the wire, in UTC, at the microsecond precision both
/// databases keep (so cursors compare equal after a round trip). `field`
/// names the request field in the error.
pub fn parse_time(field: &str, text: &str) -> Result<NaiveDateTime, Error> {
    let at = DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| Error::invalid(field, format!("{text:?} is not an RFC 3339 time: {e}")))?
        .naive_utc();
    Ok(at.with_nanosecond(at.nanosecond() / 1000 * 1000).expect("a valid nanosecond"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_adjustable_clock_moves_and_only_forward() {
        let system = Clock::system();
        assert!(!system.advance(chrono::Duration::hours(1)));
        assert!((system.now() - Utc::now().naive_utc()).num_seconds().abs() < 5);
        let clock = Clock::adjustable();
        let before = clock.now();
        assert!(clock.advance(chrono::Duration::days(2)));
        assert!(!clock.advance(chrono::Duration::seconds(-1)));
        assert!(clock.now() - before >= chrono::Duration::days(2));
        // Clones share the offset: the state's clock is the installed one.
        assert!(clock.clone().advance(chrono::Duration::days(1)));
        assert!(clock.now() - before >= chrono::Duration::days(3));
        assert!(!clock.advance(Clock::MAX_OFFSET), "not past a century in all");
        assert!(!clock.advance(chrono::Duration::MAX));
    }

    #[test]
    fn wire_times_round_trip_at_microseconds() {
        let at = parse_time("at", "2026-11-30T10:00:00.123456789+01:00").unwrap();
        assert_eq!(rfc3339_micros(at), "2026-11-30T09:00:00.123456Z");
        assert_eq!(rfc3339(at), "2026-11-30T09:00:00Z");
        let err = parse_time("from", "yesterday").unwrap_err();
        assert_eq!(err.public_details()["field"], "from");
    }
}
