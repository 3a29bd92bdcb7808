//! The whole fleet searched by the operator's staff: by serial prefix,
//! merchant, location, model, firmware and last contact, a page at a time
//! (keyset pages in device order, so the millionth terminal costs what the
//! first does).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::lower;

use crate::accounts::access::Actor;
use crate::db::schema::{
    device_contact_hours, device_contacts, device_inventory, devices, locations, merchants,
};
use crate::db::{DbConnection, MultiBackend};
use crate::error::Error;
use crate::rollouts::deployments::READERS;

/// Terminals a page shows at most.
pub const PAGE_MAX: i64 = 200;

/// How recently a terminal called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactFilter {
    /// Within [`super::management::ONLINE_WITHIN`].
    Online,
    /// No contact for at least this long (or never).
    SilentFor(chrono::Duration),
    Never,
}

impl ContactFilter {
    /// The console's choices: `online`, `silent_1h`, `silent_24h`,
    /// `silent_7d`, `never`.
    pub fn parse(text: &str) -> Option<ContactFilter> {
        Some(match text {
            "online" => ContactFilter::Online,
            "silent_1h" => ContactFilter::SilentFor(chrono::Duration::hours(1)),
            "silent_24h" => ContactFilter::SilentFor(chrono::Duration::hours(24)),
            "silent_7d" => ContactFilter::SilentFor(chrono::Duration::days(7)),
            "never" => ContactFilter::Never,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct FleetSearch {
    /// The start of the serial (hardware id), as typed.
    pub serial: Option<String>,
    /// A merchant id, or a part of a merchant's name.
    pub merchant: Option<String>,
    /// A location id, or a part of a location's name.
    pub location: Option<String>,
    pub model: Option<String>,
    /// The firmware version as reported.
    pub firmware: Option<String>,
    /// `active` or `deactivated`; `None` for both.
    pub status: Option<String>,
    pub contact: Option<ContactFilter>,
    /// The last device id of the page before.
    pub after: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub struct FleetRow {
    pub id: i64,
    pub merchant_id: i64,
    pub merchant_name: String,
    pub location_id: i64,
    pub location_name: String,
    pub name: String,
    pub hardware_id: String,
    pub model: String,
    pub status: String,
    pub firmware: Option<String>,
    pub last_contact_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Default)]
pub struct FleetPage {
    pub rows: Vec<FleetRow>,
    /// The cursor of the next page, when there is one.
    pub next_after: Option<i64>,
}

/// `text` as a LIKE pattern matching itself anywhere (`%`, `_` and `\`
/// taken literally).
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The first string after every string starting with `prefix`, in byte
/// order: a range an index serves. `None` when no string is after (a
/// prefix of only U+10FFFF), where the lower bound alone is the range.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The code point after, over the surrogates no string holds.
        let after = match last as u32 + 1 {
            0xD800 => 0xE000,
            n => n,
        };
        if let Some(next) = char::from_u32(after) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Below this many terminals contacted in the last hours, the search for
/// the terminals online starts from them.
const FEW_ONLINE: i64 = 10_000;

fn trimmed(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub fn search(
    conn: &mut DbConnection,
    actor: &Actor,
    q: &FleetSearch,
    now: NaiveDateTime,
) -> Result<FleetPage, Error> {
    actor.require_operator(READERS)?;
    let limit = q.limit.clamp(1, PAGE_MAX);
    let mut query = devices::table
        .inner_join(merchants::table.on(merchants::id.eq(devices::merchant_id)))
        .inner_join(locations::table.on(locations::id.eq(devices::location_id)))
        .left_join(device_inventory::table)
        .left_join(device_contacts::table)
        .into_boxed::<MultiBackend>();
    if let Some(serial) = trimmed(&q.serial) {
        query = query.filter(devices::hardware_id.ge(serial.to_owned()));
        if let Some(end) = prefix_end(serial) {
            query = query.filter(devices::hardware_id.lt(end));
        }
    }
    if let Some(merchant) = trimmed(&q.merchant) {
        query = match merchant.parse::<i64>() {
            Ok(id) => query.filter(devices::merchant_id.eq(id)),
            Err(_) => query
                .filter(lower(merchants::name).like(contains_pattern(&merchant.to_lowercase())).escape('\\')),
        };
    }
    if let Some(location) = trimmed(&q.location) {
        query = match location.parse::<i64>() {
            Ok(id) => query.filter(devices::location_id.eq(id)),
            Err(_) => query
                .filter(lower(locations::name).like(contains_pattern(&location.to_lowercase())).escape('\\')),
        };
    }
    if let Some(model) = trimmed(&q.model) {
        query = query.filter(devices::model.eq(model.to_uppercase()));
    }
    if let Some(firmware) = trimmed(&q.firmware) {
        query = query.filter(device_inventory::firmware.eq(firmware.to_owned()));
    }
    if let Some(status) = trimmed(&q.status) {
        query = query.filter(devices::status.eq(status.to_owned()));
    }
    match q.contact {
        None => {}
        Some(ContactFilter::Online) => {
            let since = now - super::management::ONLINE_WITHIN;
            query = query.filter(device_contacts::contacted_at.ge(since));
            // Terminals in contact lately are read off the hour of their
            // last contact when they are few (a night, an estate switched
            // off): walking the fleet in device order would read every
            // terminal to find them. When they are many, that walk finds a
            // page of them at once.
            let hour = since.and_utc().timestamp().div_euclid(3_600);
            let recent = device_contact_hours::table
                .filter(device_contact_hours::hour.ge(hour))
                .select(device_contact_hours::device_id);
            let few = recent.limit(FEW_ONLINE).load::<i64>(conn)?.len() < FEW_ONLINE as usize;
            if few {
                query = query.filter(devices::id.eq_any(recent));
            }
        }
        Some(ContactFilter::SilentFor(quiet)) => {
            query = query.filter(
                device_contacts::contacted_at.lt(now - quiet).or(device_contacts::contacted_at.is_null()),
            );
        }
        Some(ContactFilter::Never) => {
            query = query.filter(device_contacts::device_id.nullable().is_null());
        }
    }
    // By firmware, the inventory's index holds the terminals in device
    // order: ordering by its device id lets the database read the page off
    // that index instead of sorting every terminal on that version.
    let by_firmware = trimmed(&q.firmware).is_some();
    if let Some(after) = q.after {
        query = if by_firmware {
            query.filter(device_inventory::device_id.gt(after))
        } else {
            query.filter(devices::id.gt(after))
        };
    }
    query = if by_firmware { query.order(device_inventory::device_id) } else { query.order(devices::id) };
    type Row = (
        i64,
        i64,
        String,
        i64,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<NaiveDateTime>,
    );
    let mut found: Vec<Row> = query
        .limit(limit + 1)
        .select((
            devices::id,
            devices::merchant_id,
            merchants::name,
            devices::location_id,
            locations::name,
            devices::name,
            devices::hardware_id,
            devices::model,
            devices::status,
            device_inventory::firmware.nullable(),
            device_contacts::contacted_at.nullable(),
        ))
        .load(conn)?;
    let more = found.len() as i64 > limit;
    found.truncate(limit as usize);
    let rows: Vec<FleetRow> = found
        .into_iter()
        .map(
            |(
                id,
                merchant_id,
                merchant_name,
                location_id,
                location_name,
                name,
                hardware_id,
                model,
                status,
                firmware,
                last_contact_at,
            )| FleetRow {
                id,
                merchant_id,
                merchant_name,
                location_id,
                location_name,
                name,
                hardware_id,
                model,
                status,
                firmware,
                last_contact_at,
            },
        )
        .collect();
    let next_after = if more { rows.last().map(|r| r.id) } else { None };
    Ok(FleetPage { rows, next_after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern("Café 50%_\\"), "%Café 50\\%\\_\\\\%");
    }

    proptest! {
        #[test]
        fn the_prefix_range_holds_exactly_the_strings_that_start_with_it(
            prefix in "[A-Za-z0-9\u{7f}\u{D7FF}\u{E000}\u{10FFFF}]{1,4}",
            other in "[A-Za-z0-9\u{7f}\u{D7FF}\u{E000}\u{10FFFF}]{0,6}",
        ) {
            let inside = other.as_str() >= prefix.as_str()
                && prefix_end(&prefix).is_none_or(|end| other.as_str() < end.as_str());
            prop_assert_eq!(inside, other.starts_with(&prefix));
        }
    }
}
