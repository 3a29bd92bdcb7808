//! Devices (the payment app activated on a terminal or a phone), their
//! lifecycle and their transactions.

pub mod activation;
pub mod export;
pub mod linux;
pub mod management;
pub mod missing;
pub mod overview;
pub mod search;
pub mod transactions;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::auth::tokens;
use crate::db::schema::devices;
use crate::db::{DbConnection, DbError};
use crate::error::{Error, ErrorCode};

pub const ACTIVE: &str = "active";
pub const DEACTIVATED: &str = "deactivated";
pub const REPLACED: &str = "replaced";

/// The kind of a device that speaks hawkBit's DDI: firmware images only.
pub const LINUX: &str = "linux";
pub const ANDROID: &str = "android";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = devices)]
pub struct DeviceRow {
    pub id: i64,
    pub merchant_id: i64,
    pub location_id: i64,
    pub terminal_id: Option<i64>,
    pub app: String,
    pub name: String,
    pub hardware_id: String,
    pub model: String,
    pub status: String,
    pub token_hash: String,
    pub replaces_device_id: Option<i64>,
    pub replaced_by_device_id: Option<i64>,
    pub activated_by: i64,
    pub activated_at: NaiveDateTime,
    pub deactivated_at: Option<NaiveDateTime>,
    /// `android` or `linux` ([`LINUX`]).
    pub kind: String,
}

/// The device a terminal API call comes from.
#[derive(Debug, Clone)]
pub struct CallingDevice {
    pub id: i64,
    pub merchant_id: i64,
    pub location_id: i64,
    pub name: String,
    pub hardware_id: String,
}

/// The device behind a device token, or 401: `device_deactivated` for a
/// deactivated or replaced device, `invalid_device_token` otherwise. (The
/// caller records the contact: the contact service writes them in batches.)
pub fn authenticate(conn: &mut DbConnection, token: &str) -> Result<DeviceRow, Error> {
    let found: Option<DeviceRow> = devices::table
        .filter(devices::token_hash.eq(tokens::hash(token)))
        .select(DeviceRow::as_select())
        .first(conn)
        .optional()?;
    match found {
        Some(d) if d.status == ACTIVE => Ok(d),
        Some(_) => Err(Error::new(
            ErrorCode::DeviceDeactivated,
            "this device was deactivated: activate the app again",
        )),
        None => Err(Error::new(ErrorCode::InvalidDeviceToken, "unknown or revoked device token")),
    }
}

impl From<DeviceRow> for CallingDevice {
    fn from(d: DeviceRow) -> CallingDevice {
        CallingDevice {
            id: d.id,
            merchant_id: d.merchant_id,
            location_id: d.location_id,
            name: d.name,
            hardware_id: d.hardware_id,
        }
    }
}

/// A merchant's active and deactivated devices that already have `name`
/// (compared without case and surrounding spaces): (id, status, app,
/// location, name), the latest deactivated first. A deactivated device's
/// name is kept for its replacement.
pub fn named(conn: &mut DbConnection, merchant_id: i64, name: &str) -> Result<Vec<NamedDevice>, DbError> {
    let rows: Vec<NamedDevice> = devices::table
        .filter(devices::merchant_id.eq(merchant_id))
        .filter(devices::status.eq_any([ACTIVE, DEACTIVATED]))
        .select((devices::id, devices::status, devices::app, devices::location_id, devices::name))
        .order((devices::deactivated_at.desc(), devices::id.desc()))
        .load(conn)?;
    // The same name written the same way first: before case-insensitive
    // matching, two deactivated devices could be "Caisse 1" and "caisse 1".
    let mut same: Vec<NamedDevice> =
        rows.into_iter().filter(|d| tms_packages::devices::same_device_name(&d.4, name)).collect();
    same.sort_by_key(|d| d.4 != name);
    Ok(same)
}

/// (id, status, app, location, name) of a device, as [`named`] finds it.
pub type NamedDevice = (i64, String, String, i64, String);

/// The error for a name a deactivated device keeps for its replacement.
pub fn name_kept(existing: &str) -> Error {
    Error::new(
        ErrorCode::DeviceNameTaken,
        format!(
            "a deactivated device keeps the name {existing:?} for its replacement (of the same app, where it was); \
             names are compared without case and surrounding spaces"
        ),
    )
}

/// The error for a name an active device has.
pub fn name_taken(name: &str, existing: &str) -> Error {
    let message = if name == existing {
        format!("an active device is already named {name:?}")
    } else {
        format!(
            "an active device is already named {existing:?} (names are compared without case and surrounding spaces)"
        )
    };
    Error::new(ErrorCode::DeviceNameTaken, message)
}

pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<DeviceRow>, DbError> {
    Ok(devices::table.find(id).select(DeviceRow::as_select()).first(conn).optional()?)
}

/// The free storage a terminal reported last: with its state or with its
/// health report, whichever is newer (each as bytes and when).
pub fn latest_free_storage(
    with_state: Option<(i64, NaiveDateTime)>,
    with_health: Option<(i64, NaiveDateTime)>,
) -> Option<i64> {
    match (with_state, with_health) {
        (Some((_, state_at)), Some((free, health_at))) if health_at >= state_at => Some(free),
        (Some((free, _)), _) | (None, Some((free, _))) => Some(free),
        (None, None) => None,
    }
}
