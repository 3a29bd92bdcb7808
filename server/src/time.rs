//! Time as the whole server reads and writes it: UTC, stored without a zone,
//! sent as RFC 3339.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Timelike, Utc};

use crate::error::Error;

/// The current time, as stored.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
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
    fn wire_times_round_trip_at_microseconds() {
        let at = parse_time("at", "2026-11-30T10:00:00.123456789+01:00").unwrap();
        assert_eq!(rfc3339_micros(at), "2026-11-30T09:00:00.123456Z");
        assert_eq!(rfc3339(at), "2026-11-30T09:00:00Z");
        let err = parse_time("from", "yesterday").unwrap_err();
        assert_eq!(err.public_details()["field"], "from");
    }
}
