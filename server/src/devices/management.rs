//! Support and merchant admins looking after devices: lists, detail,
//! deactivation of a broken device, rename and move.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::Permission;
use tms_packages::devices::normalize_device_name;
use tms_packages::wire::contact::TerminalState;
use tms_packages::wire::devices::{DeviceSessionView, DeviceView, UpdateDeviceRequest};

use super::{ACTIVE, DEACTIVATED, DeviceRow};
use crate::accounts::access::Actor;
use crate::accounts::rows;
use crate::db::schema::{device_contacts, device_health, device_inventory, device_sessions, devices, users};
use crate::db::{DbConnection, DbError, audit};
use crate::error::{Error, ErrorCode};
use crate::time::{now, rfc3339};

/// Filters of the device list.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub location_id: Option<i64>,
    pub model: Option<String>,
    pub app: Option<String>,
    pub status: Option<String>,
    pub contacted_before: Option<NaiveDateTime>,
    pub contacted_after: Option<NaiveDateTime>,
}

pub(crate) fn view(conn: &mut DbConnection, d: &DeviceRow) -> Result<DeviceView, Error> {
    let acquirer_sessions = crate::acquirers::last_sessions(conn, d.id)?;
    let sessions: Vec<(i64, String, NaiveDateTime)> = device_sessions::table
        .inner_join(users::table)
        .filter(device_sessions::device_id.eq(d.id))
        .filter(device_sessions::ended_at.is_null())
        .select((users::id, users::email, device_sessions::started_at))
        .load(conn)?;
    let last_contact_at: Option<NaiveDateTime> =
        device_contacts::table.find(d.id).select(device_contacts::contacted_at).first(conn).optional()?;
    let inventory: Option<(String, String, i64, NaiveDateTime)> = device_inventory::table
        .find(d.id)
        .select((
            device_inventory::firmware,
            device_inventory::state_json,
            device_inventory::free_storage_bytes,
            device_inventory::reported_at,
        ))
        .first(conn)
        .optional()?;
    let health: Option<(String, i64, NaiveDateTime)> = device_health::table
        .find(d.id)
        .select((device_health::health_json, device_health::free_storage_bytes, device_health::reported_at))
        .first(conn)
        .optional()?;
    let free_storage_bytes = super::latest_free_storage(
        inventory.as_ref().map(|i| (i.2, i.3)),
        health.as_ref().map(|h| (h.1, h.2)),
    )
    .filter(|b| *b > 0)
    .map(|b| b as u64);
    // Written by this server from a parsed report.
    let (health, health_reported_at) = match health {
        Some((json, _, at)) => (serde_json::from_str(&json).ok(), Some(rfc3339(at))),
        None => (None, None),
    };
    let (firmware_version, installed_apps, reported_model) = match inventory {
        Some((firmware, json, _, _)) => {
            // Written by this server from a parsed state: unreadable only if
            // a later version changed its shape, and then the apps are unknown.
            let state = serde_json::from_str::<TerminalState>(&json).ok();
            let apps = state
                .iter()
                .flat_map(|s| &s.apps)
                .map(|a| format!("{} {} ({})", a.app_id, a.version, a.version_code))
                .collect();
            let reported_model = state.map(|s| s.model).filter(|m| !m.eq_ignore_ascii_case(&d.model));
            (Some(firmware), apps, reported_model)
        }
        None => (None, Vec::new(), None),
    };
    let attributes =
        if d.kind == super::LINUX { super::linux::attributes(conn, d.id)? } else { Default::default() };
    Ok(DeviceView {
        id: d.id,
        kind: d.kind.clone(),
        attributes,
        merchant_id: d.merchant_id,
        location_id: d.location_id,
        name: d.name.clone(),
        app: d.app.clone(),
        hardware_id: d.hardware_id.clone(),
        model: d.model.clone(),
        status: d.status.clone(),
        firmware_version,
        reported_model,
        installed_apps,
        free_storage_bytes,
        health,
        health_reported_at,
        activated_at: rfc3339(d.activated_at),
        last_contact_at: last_contact_at.map(rfc3339),
        deactivated_at: d.deactivated_at.map(rfc3339),
        replaces_device_id: d.replaces_device_id,
        replaced_by_device_id: d.replaced_by_device_id,
        sessions: sessions
            .into_iter()
            .map(|(user_id, email, started)| DeviceSessionView {
                user_id,
                email,
                started_at: rfc3339(started),
            })
            .collect(),
        acquirer_sessions,
    })
}

pub fn list(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
    filter: &DeviceFilter,
) -> Result<Vec<DeviceView>, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
    let mut query = devices::table.filter(devices::merchant_id.eq(merchant_id)).into_boxed();
    if let Some(l) = filter.location_id {
        query = query.filter(devices::location_id.eq(l));
    }
    if let Some(m) = &filter.model {
        query = query.filter(devices::model.eq(m.to_uppercase()));
    }
    if let Some(a) = &filter.app {
        query = query.filter(devices::app.eq(a.clone()));
    }
    if let Some(s) = &filter.status {
        query = query.filter(devices::status.eq(s.clone()));
    }
    if let Some(t) = filter.contacted_before {
        query = query.filter(
            devices::id.eq_any(
                device_contacts::table
                    .filter(device_contacts::contacted_at.lt(t))
                    .select(device_contacts::device_id),
            ),
        );
    }
    if let Some(t) = filter.contacted_after {
        query = query.filter(
            devices::id.eq_any(
                device_contacts::table
                    .filter(device_contacts::contacted_at.gt(t))
                    .select(device_contacts::device_id),
            ),
        );
    }
    let found: Vec<DeviceRow> = query.order(devices::id).select(DeviceRow::as_select()).load(conn)?;
    found.iter().filter(|d| actor.sees_location(merchant_id, d.location_id)).map(|d| view(conn, d)).collect()
}

/// A terminal in a list: what one row of a page shows, read in one query
/// for the whole merchant rather than a detail view per terminal.
#[derive(Debug, Clone)]
pub struct DeviceSummary {
    pub id: i64,
    pub location_id: i64,
    pub name: String,
    pub model: String,
    pub hardware_id: String,
    pub status: String,
    pub firmware: Option<String>,
    pub last_contact_at: Option<NaiveDateTime>,
}

/// How recent a last contact must be for a terminal to count as online:
/// three of the default contact intervals, so one missed contact is no alarm.
pub const ONLINE_WITHIN: chrono::Duration = chrono::Duration::minutes(15);

impl DeviceSummary {
    pub fn online(&self, at: NaiveDateTime) -> bool {
        is_online(&self.status, self.last_contact_at, at)
    }
}

/// Whether a terminal counts as online at `at`: active, and a contact
/// within [`ONLINE_WITHIN`].
pub fn is_online(status: &str, last_contact_at: Option<NaiveDateTime>, at: NaiveDateTime) -> bool {
    status == super::ACTIVE && last_contact_at.is_some_and(|t| at - t <= ONLINE_WITHIN)
}

/// The merchant's terminals the caller sees, filtered, newest activation last.
pub fn summaries(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
    filter: &DeviceFilter,
) -> Result<Vec<DeviceSummary>, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
    let mut query = devices::table
        .left_join(device_contacts::table)
        .left_join(device_inventory::table)
        .filter(devices::merchant_id.eq(merchant_id))
        .into_boxed();
    if let Some(l) = filter.location_id {
        query = query.filter(devices::location_id.eq(l));
    }
    if let Some(m) = &filter.model {
        query = query.filter(devices::model.eq(m.to_uppercase()));
    }
    if let Some(s) = &filter.status {
        query = query.filter(devices::status.eq(s.clone()));
    }
    if let Some(t) = filter.contacted_before {
        query = query.filter(device_contacts::contacted_at.lt(t).or(device_contacts::contacted_at.is_null()));
    }
    if let Some(t) = filter.contacted_after {
        query = query.filter(device_contacts::contacted_at.gt(t));
    }
    type Row = (i64, i64, String, String, String, String, Option<String>, Option<NaiveDateTime>);
    let found: Vec<Row> = query
        .order(devices::id)
        .select((
            devices::id,
            devices::location_id,
            devices::name,
            devices::model,
            devices::hardware_id,
            devices::status,
            device_inventory::firmware.nullable(),
            device_contacts::contacted_at.nullable(),
        ))
        .load(conn)?;
    Ok(found
        .into_iter()
        .filter(|r| actor.sees_location(merchant_id, r.1))
        .map(|(id, location_id, name, model, hardware_id, status, firmware, last_contact_at)| DeviceSummary {
            id,
            location_id,
            name,
            model,
            hardware_id,
            status,
            firmware,
            last_contact_at,
        })
        .collect())
}

/// A device the caller sees, or 404.
/// A device the caller sees (its merchant and location), or 404.
pub(crate) fn visible(conn: &mut DbConnection, actor: &Actor, device_id: i64) -> Result<DeviceRow, Error> {
    match super::find(conn, device_id)? {
        Some(d) if actor.sees_location(d.merchant_id, d.location_id) => Ok(d),
        _ => Err(Error::not_found("device")),
    }
}

pub fn show(conn: &mut DbConnection, actor: &Actor, device_id: i64) -> Result<DeviceView, Error> {
    let device = visible(conn, actor, device_id)?;
    view(conn, &device)
}

/// "Deactivate this device": for a broken terminal (or a phone whose app was
/// removed) that cannot log out itself. Its token stops working, its sessions
/// end, and its name becomes free for a replacement.
pub fn deactivate(conn: &mut DbConnection, actor: &Actor, device_id: i64) -> Result<DeviceView, Error> {
    crate::db::write_tx(conn, |conn| {
        let device = visible(conn, actor, device_id)?;
        actor.require(device.merchant_id, Some(device.location_id), Permission::ManageDevices)?;
        if device.status != ACTIVE {
            return Err(Error::new(ErrorCode::Conflict, format!("the device is already {}", device.status)));
        }
        let at = now();
        diesel::update(devices::table.find(device.id))
            .set((devices::status.eq(DEACTIVATED), devices::deactivated_at.eq(at)))
            .execute(conn)?;
        diesel::update(
            device_sessions::table
                .filter(device_sessions::device_id.eq(device.id))
                .filter(device_sessions::ended_at.is_null()),
        )
        .set(device_sessions::ended_at.eq(at))
        .execute(conn)?;
        crate::contact::changes::record(conn, &[crate::contact::changes::Scope::Device(device.id)])?;
        let subject = format!("device:{}", device.id);
        audit::record(
            conn,
            &actor.audit(
                "device.deactivate",
                &subject,
                Some(device.merchant_id),
                &json!({"name": device.name}),
            ),
        )?;
        let device = super::find(conn, device.id)?.ok_or_else(|| Error::not_found("device"))?;
        view(conn, &device)
    })
}

/// Renames a device or moves it to another of the merchant's locations.
pub fn update(
    conn: &mut DbConnection,
    actor: &Actor,
    device_id: i64,
    request: &UpdateDeviceRequest,
) -> Result<DeviceView, Error> {
    crate::db::write_tx(conn, |conn| {
        let device = visible(conn, actor, device_id)?;
        actor.require(device.merchant_id, Some(device.location_id), Permission::ManageDevices)?;
        if device.status != ACTIVE {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("a {} device cannot be changed", device.status),
            ));
        }
        let name = match &request.name {
            Some(n) => normalize_device_name(n)
                .ok_or_else(|| Error::invalid("name", "a device name has 1 to 50 characters"))?,
            None => device.name.clone(),
        };
        if name != device.name
            && let Some((.., existing)) =
                super::named(conn, device.merchant_id, &name)?.into_iter().find(|(id, ..)| *id != device.id)
        {
            return Err(super::name_taken(&name, &existing));
        }
        let location_id = match request.location_id {
            Some(l) if l != device.location_id => {
                match rows::find_location(conn, l)? {
                    Some(loc)
                        if loc.merchant_id == device.merchant_id
                            && actor.sees_location(loc.merchant_id, loc.id) => {}
                    _ => return Err(Error::not_found("location")),
                }
                actor.require(device.merchant_id, Some(l), Permission::ManageDevices)?;
                l
            }
            _ => device.location_id,
        };
        diesel::update(devices::table.find(device.id))
            .set((devices::name.eq(&name), devices::location_id.eq(location_id)))
            .execute(conn)
            .map_err(|e| {
                let e = DbError::from(e);
                if e.is_unique_violation() { super::name_taken(&name, &name) } else { e.into() }
            })?;
        if location_id != device.location_id {
            crate::contact::changes::record(conn, &[crate::contact::changes::Scope::Device(device.id)])?;
        }
        let subject = format!("device:{}", device.id);
        audit::record(
            conn,
            &actor.audit(
                "device.update",
                &subject,
                Some(device.merchant_id),
                &json!({"before": {"name": device.name, "location_id": device.location_id},
                        "after": {"name": name, "location_id": location_id}}),
            ),
        )?;
        let device = super::find(conn, device.id)?.ok_or_else(|| Error::not_found("device"))?;
        view(conn, &device)
    })
}
