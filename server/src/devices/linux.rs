//! Linux devices that speak hawkBit's DDI API (kiosks, EV chargers, vending
//! and parking machines): registered by staff, who get the device's
//! TargetToken, or on their first poll with the tenant's gateway token. They
//! report nothing of what they run, so the server keeps it: the release they
//! installed last, the action they work on, and the attributes they sent.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::Permission;
use tms_packages::wire::devices::{LinuxDeviceRegistered, RegisterLinuxDeviceRequest};

use super::{ACTIVE, DeviceRow, LINUX};
use crate::accounts::access::Actor;
use crate::accounts::rows;
use crate::auth::tokens;
use crate::contact::changes::{self, Scope};
use crate::db::schema::{ddi_targets, devices, releases};
use crate::db::{DbConnection, DbError, audit};
use crate::error::{Error, ErrorCode};
use crate::per_backend;
use crate::time::now;

/// A Linux device as its DDI calls need it.
#[derive(Debug, Clone)]
pub struct LinuxDevice {
    pub row: DeviceRow,
    pub installed: Option<Installed>,
    /// The deployment it works on (its open DDI action).
    pub action_deployment_id: Option<i64>,
    /// It confirms every action itself (hawkBit's auto-confirm).
    pub auto_confirm: bool,
    /// The action needing confirmation it confirmed last.
    pub confirmed_deployment_id: Option<i64>,
    pub attributes: BTreeMap<String, String>,
    /// Whether it ever sent attributes (hawkBit asks until it did).
    pub attributes_reported: bool,
}

/// The release a device installed last, and the deployment that brought it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub deployment_id: i64,
    pub release_id: i64,
    pub version: String,
    pub sha256: String,
}

fn unknown_controller() -> Error {
    Error::new(ErrorCode::UnknownController, "no device is registered with this controller id")
}

/// A controller id as DDI URLs carry it.
pub fn valid_controller_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

/// The active Linux device with this controller id.
pub fn by_controller(conn: &mut DbConnection, controller_id: &str) -> Result<DeviceRow, Error> {
    devices::table
        .filter(devices::kind.eq(LINUX))
        .filter(devices::status.eq(ACTIVE))
        .filter(devices::hardware_id.eq(controller_id))
        .select(DeviceRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(unknown_controller)
}

/// The device behind a TargetToken, which must be the Linux device the URL
/// names: another device's token is refused as an unknown one.
pub fn by_token(conn: &mut DbConnection, token: &str, controller_id: &str) -> Result<DeviceRow, Error> {
    let device = super::authenticate(conn, token)?;
    if device.kind != LINUX || device.hardware_id != controller_id {
        return Err(Error::new(ErrorCode::InvalidDeviceToken, "unknown or revoked device token"));
    }
    Ok(device)
}

/// What the server keeps for a Linux device.
pub fn load(conn: &mut DbConnection, row: DeviceRow) -> Result<LinuxDevice, Error> {
    type Kept =
        (Option<i64>, Option<i64>, Option<i64>, bool, Option<i64>, String, Option<chrono::NaiveDateTime>);
    let kept: Option<Kept> = ddi_targets::table
        .find(row.id)
        .select((
            ddi_targets::installed_deployment_id,
            ddi_targets::installed_release_id,
            ddi_targets::action_deployment_id,
            ddi_targets::auto_confirm,
            ddi_targets::confirmed_deployment_id,
            ddi_targets::attributes_json,
            ddi_targets::attributes_at,
        ))
        .first(conn)
        .optional()?;
    let Some((deployment, release, action, auto_confirm, confirmed, attributes, attributes_at)) = kept else {
        return Ok(LinuxDevice {
            row,
            installed: None,
            action_deployment_id: None,
            auto_confirm: false,
            confirmed_deployment_id: None,
            attributes: BTreeMap::new(),
            attributes_reported: false,
        });
    };
    let installed = match (deployment, release) {
        (Some(deployment_id), Some(release_id)) => releases::table
            .find(release_id)
            .select((releases::version, releases::artifact_sha256))
            .first::<(String, String)>(conn)
            .optional()?
            .map(|(version, sha256)| Installed { deployment_id, release_id, version, sha256 }),
        _ => None,
    };
    Ok(LinuxDevice {
        row,
        installed,
        action_deployment_id: action,
        auto_confirm,
        confirmed_deployment_id: confirmed,
        // Written by this server from a parsed map.
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        attributes_reported: attributes_at.is_some(),
    })
}

/// Registers a Linux device and issues its TargetToken.
pub fn register(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &RegisterLinuxDeviceRequest,
) -> Result<LinuxDeviceRegistered, Error> {
    let location =
        rows::find_location(conn, request.location_id)?.ok_or_else(|| Error::not_found("location"))?;
    actor.check_merchant(location.merchant_id, "location")?;
    if !actor.sees_location(location.merchant_id, location.id) {
        return Err(Error::not_found("location"));
    }
    actor.require(location.merchant_id, Some(location.id), Permission::ManageDevices)?;
    let controller_id = request.controller_id.trim();
    if !valid_controller_id(controller_id) {
        return Err(Error::invalid("controller_id", "1 to 64 letters, digits, '.', '_', '-' or ':'"));
    }
    let model = request.model.trim().to_uppercase();
    if model.is_empty() || model.len() > 64 {
        return Err(Error::invalid("model", "1 to 64 characters"));
    }
    let name = tms_packages::devices::normalize_device_name(request.name.as_deref().unwrap_or(controller_id))
        .ok_or_else(|| Error::invalid("name", "1 to 50 characters, no control characters"))?;
    let (token, hash) = tokens::generate("tms_t_");
    let row = crate::db::write_tx(conn, |conn| {
        let id = insert(
            conn,
            location.merchant_id,
            location.id,
            controller_id,
            &model,
            &name,
            &hash,
            actor.user_id,
        )?;
        audit::record(
            conn,
            &actor.audit(
                "device.register_linux",
                &format!("device:{id}"),
                Some(location.merchant_id),
                &json!({"controller_id": controller_id, "model": model, "location_id": location.id}),
            ),
        )?;
        super::find(conn, id)?.ok_or_else(|| Error::not_found("device"))
    })?;
    Ok(LinuxDeviceRegistered { device: super::management::view(conn, &row)?, target_token: token })
}

/// Registers a device on its first poll with the tenant's gateway token, at
/// the configured location. It gets a token no one holds: it authenticates
/// with the gateway token from then on, unless staff issue it one.
pub fn register_by_gateway(
    conn: &mut DbConnection,
    controller_id: &str,
    location_id: i64,
    model: &str,
) -> Result<DeviceRow, Error> {
    let location = rows::find_location(conn, location_id)?.ok_or_else(|| {
        Error::new(ErrorCode::UnknownController, "the location DDI devices register at does not exist")
    })?;
    let (_, hash) = tokens::generate("tms_t_");
    let model = model.trim().to_uppercase();
    let inserted = crate::db::write_tx(conn, |conn| {
        // Activated by no one: 0 stands for the gateway.
        let name: String = controller_id.chars().take(50).collect();
        let id = insert(conn, location.merchant_id, location.id, controller_id, &model, &name, &hash, 0)?;
        let subject = format!("device:{id}");
        let event = crate::db::audit::NewAuditEvent {
            merchant_id: Some(location.merchant_id),
            ..crate::db::audit::NewAuditEvent::now(
                "ddi-gateway",
                "device.register_linux",
                &subject,
                &json!({"controller_id": controller_id, "model": model, "location_id": location.id}),
            )
        };
        audit::record(conn, &event)?;
        super::find(conn, id)?.ok_or_else(|| Error::not_found("device"))
    });
    match inserted {
        Ok(row) => Ok(row),
        // Two first polls at once: the other registered it.
        Err(e) if e.code() == ErrorCode::DeviceNameTaken => by_controller(conn, controller_id),
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn insert(
    conn: &mut DbConnection,
    merchant_id: i64,
    location_id: i64,
    controller_id: &str,
    model: &str,
    name: &str,
    token_hash: &str,
    by: i64,
) -> Result<i64, Error> {
    let insert = diesel::insert_into(devices::table).values((
        devices::merchant_id.eq(merchant_id),
        devices::location_id.eq(location_id),
        devices::app.eq(LINUX),
        devices::kind.eq(LINUX),
        devices::name.eq(name),
        devices::hardware_id.eq(controller_id),
        devices::model.eq(model),
        devices::status.eq(ACTIVE),
        devices::token_hash.eq(token_hash),
        devices::activated_by.eq(by),
        devices::activated_at.eq(now()),
    ));
    match per_backend!(conn, |c| insert.returning(devices::id).get_result::<i64>(c)) {
        Ok(id) => Ok(id),
        Err(e) => {
            let e = DbError::from(e);
            if e.is_unique_violation() {
                Err(Error::new(
                    ErrorCode::DeviceNameTaken,
                    "an active device already has this controller id or name",
                ))
            } else {
                Err(e.into())
            }
        }
    }
}

/// Changes what is kept for a device (`set`, on its row, made first if
/// need be), and records the change in the change log so every process
/// reads the device again. Call inside the write transaction.
fn change_target(
    conn: &mut DbConnection,
    device_id: i64,
    set: impl Fn(&mut DbConnection) -> Result<usize, diesel::result::Error>,
) -> Result<(), Error> {
    let at = now();
    let insert = diesel::insert_into(ddi_targets::table)
        .values((ddi_targets::device_id.eq(device_id), ddi_targets::updated_at.eq(at)))
        .on_conflict_do_nothing();
    per_backend!(conn, |c| insert.execute(c))?;
    set(conn)?;
    changes::record(conn, &[Scope::Device(device_id)])?;
    Ok(())
}

/// The action a device now works on (`None`: none), as its reports say.
pub fn record_action(
    conn: &mut DbConnection,
    device_id: i64,
    deployment_id: Option<i64>,
) -> Result<(), Error> {
    crate::db::write_tx(conn, |conn| {
        change_target(conn, device_id, |conn| {
            diesel::update(ddi_targets::table.find(device_id))
                .set((ddi_targets::action_deployment_id.eq(deployment_id), ddi_targets::updated_at.eq(now())))
                .execute(conn)
        })
    })
}

/// A device installed a deployment's release: it runs that release now.
/// Recorded in the change log, so every process plans it from the new image.
pub fn record_installed(conn: &mut DbConnection, device_id: i64, deployment_id: i64) -> Result<(), Error> {
    let Some((_, Some(release_id))) = deployment_of(conn, deployment_id)? else {
        return Err(Error::not_found("deployment"));
    };
    crate::db::write_tx(conn, |conn| {
        change_target(conn, device_id, |conn| {
            diesel::update(ddi_targets::table.find(device_id))
                .set((
                    ddi_targets::installed_deployment_id.eq(deployment_id),
                    ddi_targets::installed_release_id.eq(release_id),
                    ddi_targets::action_deployment_id.eq(None::<i64>),
                    ddi_targets::updated_at.eq(now()),
                ))
                .execute(conn)
        })
    })
}

/// A device confirmed an action that waited for it (`confirmed`), or
/// denied it, which leaves it waiting and goes to the audit log.
pub fn record_confirmation(
    conn: &mut DbConnection,
    device: &DeviceRow,
    deployment_id: i64,
    confirmed: bool,
    details: &[String],
) -> Result<(), Error> {
    crate::db::write_tx(conn, |conn| {
        if confirmed {
            change_target(conn, device.id, |conn| {
                diesel::update(ddi_targets::table.find(device.id))
                    .set((
                        ddi_targets::confirmed_deployment_id.eq(Some(deployment_id)),
                        ddi_targets::updated_at.eq(now()),
                    ))
                    .execute(conn)
            })?;
        }
        let subject = format!("device:{}", device.id);
        let detail = json!({"deployment_id": deployment_id, "details": details});
        let event = crate::db::audit::NewAuditEvent {
            merchant_id: Some(device.merchant_id),
            ..crate::db::audit::NewAuditEvent::now(
                &device.hardware_id,
                if confirmed { "device.ddi_confirmed" } else { "device.ddi_denied" },
                &subject,
                &detail,
            )
        };
        audit::record(conn, &event)?;
        Ok(())
    })
}

/// Switches a device's auto-confirm on or off.
pub fn set_auto_confirm(conn: &mut DbConnection, device_id: i64, on: bool) -> Result<(), Error> {
    crate::db::write_tx(conn, |conn| {
        change_target(conn, device_id, |conn| {
            diesel::update(ddi_targets::table.find(device_id))
                .set((ddi_targets::auto_confirm.eq(on), ddi_targets::updated_at.eq(now())))
                .execute(conn)
        })
    })
}

/// Whether a deployment's action waits for a DDI device's confirmation.
pub fn confirmation_required(conn: &mut DbConnection, deployment_id: i64) -> Result<bool, Error> {
    use crate::db::schema::deployments;
    Ok(deployments::table
        .find(deployment_id)
        .select(deployments::confirmation_required)
        .first::<bool>(conn)
        .optional()?
        .unwrap_or(false))
}

/// A deployment's app and release (none for a removal), whatever its state.
pub fn deployment_of(conn: &mut DbConnection, id: i64) -> Result<Option<(String, Option<i64>)>, Error> {
    use crate::db::schema::deployments;
    Ok(deployments::table
        .find(id)
        .select((deployments::app_id, deployments::release_id))
        .first::<(String, Option<i64>)>(conn)
        .optional()?)
}

/// The attributes a device reported (`configData`).
pub fn attributes(conn: &mut DbConnection, device_id: i64) -> Result<BTreeMap<String, String>, Error> {
    let json: Option<String> =
        ddi_targets::table.find(device_id).select(ddi_targets::attributes_json).first(conn).optional()?;
    // Written by this server from a parsed map.
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default())
}

/// Stores the attributes a device reported (`configData`).
pub fn report_attributes(
    conn: &mut DbConnection,
    device_id: i64,
    mode: Option<&str>,
    data: &BTreeMap<String, String>,
) -> Result<(), Error> {
    crate::db::write_tx(conn, |conn| {
        let held: String = ddi_targets::table
            .find(device_id)
            .select(ddi_targets::attributes_json)
            .first(conn)
            .optional()?
            .unwrap_or_else(|| "{}".to_owned());
        let held: BTreeMap<String, String> = serde_json::from_str(&held).unwrap_or_default();
        let attributes = tms_packages::ddi::apply_attributes(&held, mode, data)?;
        let json = serde_json::to_string(&attributes).expect("attributes serialise");
        change_target(conn, device_id, |conn| {
            diesel::update(ddi_targets::table.find(device_id))
                .set((
                    ddi_targets::attributes_json.eq(&json),
                    ddi_targets::attributes_at.eq(Some(now())),
                    ddi_targets::updated_at.eq(now()),
                ))
                .execute(conn)
        })?;
        Ok(())
    })
}
