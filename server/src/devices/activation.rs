//! Activating the payment app on a terminal or phone, in the two steps the
//! app walks the merchant through, and logging users in and out of it.

use chrono::Duration;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::Permission;
use tms_packages::devices::{PaymentApp, normalize_device_name};
use tms_packages::wire::devices::{
    ActivatedDevice, ActivationCompleteRequest, ActivationStartRequest, ActivationTicket,
};

use super::{ACTIVE, CallingDevice, DEACTIVATED, REPLACED};
use crate::accounts::access::Actor;
use crate::accounts::rows::{self, LocationRow};
use crate::accounts::users::{self, AccountSettings};
use crate::auth::tokens;
use crate::db::schema::{activation_tickets, device_sessions, devices, locations, terminals, transactions};
use crate::db::{DbConnection, DbError, audit};
use crate::error::{Error, ErrorCode};
use crate::per_backend;
use crate::time::{now, rfc3339};

const TICKET_MINUTES: i64 = 10;

/// The locations of the merchant where the user may activate the app.
fn activation_locations(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
) -> Result<Vec<LocationRow>, DbError> {
    let all: Vec<LocationRow> = locations::table
        .filter(locations::merchant_id.eq(merchant_id))
        .order(locations::id)
        .select(LocationRow::as_select())
        .load(conn)?;
    Ok(all.into_iter().filter(|l| actor.may(merchant_id, Some(l.id), Permission::ActivateApp)).collect())
}

fn hardware_id(app: PaymentApp, raw: &str) -> Result<String, Error> {
    let id = raw.trim();
    let id = if app.needs_registered_terminal() { id.to_uppercase() } else { id.to_owned() };
    if id.is_empty() || id.len() > 100 {
        return Err(Error::invalid(
            "hardware_id",
            "the serial number or install id is required (at most 100 characters)",
        ));
    }
    Ok(id)
}

/// Step one: credentials (two-step verification does not apply), the right
/// to activate, the terminal in the merchant's estate; answers a ticket and
/// where the user may activate.
pub fn start(
    conn: &mut DbConnection,
    request: &ActivationStartRequest,
    source_ip: Option<&str>,
    settings: &AccountSettings,
) -> Result<ActivationTicket, Error> {
    let app: PaymentApp = request
        .app
        .parse()
        .map_err(|e: tms_packages::accounts::UnknownName| Error::invalid("app", e.to_string()))?;
    let hardware = hardware_id(app, &request.hardware_id)?;
    let model = request.model.trim().to_uppercase();
    if model.is_empty() || model.len() > 40 {
        return Err(Error::invalid("model", "the model is required (at most 40 characters)"));
    }
    let user = users::check_terminal_activation_credentials(
        conn,
        &request.email,
        &request.password,
        source_ip,
        None,
        settings,
    )?;
    let actor = users::actor_for(conn, &user, source_ip.map(str::to_owned))?;
    let merchant_id = user.merchant_id.expect("checked: a merchant user");

    let terminal: Option<(i64, i64)> = if app.needs_registered_terminal() {
        let found = terminals::table
            .filter(terminals::merchant_id.eq(merchant_id))
            .filter(terminals::serial.eq(&hardware))
            .select((terminals::id, terminals::location_id))
            .first(conn)
            .optional()?;
        Some(found.ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownTerminal,
                format!(
                    "terminal {hardware} is not registered for this merchant; it must come from an order"
                ),
            )
        })?)
    } else {
        None
    };
    refuse_if_already_active(conn, merchant_id, app, &hardware)?;
    let locations = activation_locations(conn, &actor, merchant_id)?;
    if locations.is_empty() {
        return Err(Error::forbidden("this user may not activate the app at any location"));
    }

    let (ticket, hash) = tokens::generate("tms_t_");
    let expires_at = now() + Duration::minutes(TICKET_MINUTES);
    diesel::insert_into(activation_tickets::table)
        .values((
            activation_tickets::ticket_hash.eq(hash),
            activation_tickets::user_id.eq(user.id),
            activation_tickets::merchant_id.eq(merchant_id),
            activation_tickets::app.eq(app.as_str()),
            activation_tickets::hardware_id.eq(&hardware),
            activation_tickets::model.eq(&model),
            activation_tickets::terminal_id.eq(terminal.map(|(id, _)| id)),
            activation_tickets::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(ActivationTicket {
        ticket,
        expires_at: rfc3339(expires_at),
        merchant_id,
        locations: locations.iter().map(LocationRow::view).collect(),
        registered_location_id: terminal.map(|(_, location)| location),
    })
}

/// One active device per terminal or phone: a second activation must follow
/// a deactivation, so the merchant decides what happens to the old record.
fn refuse_if_already_active(
    conn: &mut DbConnection,
    merchant_id: i64,
    app: PaymentApp,
    hardware: &str,
) -> Result<(), Error> {
    let active: Option<(i64, String)> = devices::table
        .filter(devices::merchant_id.eq(merchant_id))
        .filter(devices::app.eq(app.as_str()))
        .filter(devices::hardware_id.eq(hardware))
        .filter(devices::status.eq(ACTIVE))
        .select((devices::id, devices::name))
        .first(conn)
        .optional()?;
    match active {
        Some((id, name)) => Err(Error::with_details(
            ErrorCode::DeviceAlreadyActive,
            format!("the app is already active on this hardware as {name:?}: deactivate that device first"),
            std::collections::BTreeMap::from([("device_id".to_owned(), id.to_string())]),
        )),
        None => Ok(()),
    }
}

#[derive(Queryable)]
struct Ticket {
    id: i64,
    user_id: i64,
    merchant_id: i64,
    app: String,
    hardware_id: String,
    model: String,
    terminal_id: Option<i64>,
}

/// Step two: spends the ticket and creates the device at the chosen location
/// under the chosen name. The name of a deactivated device makes the new one
/// its replacement, inheriting its transaction history.
pub fn complete(
    conn: &mut DbConnection,
    request: &ActivationCompleteRequest,
    source_ip: Option<&str>,
) -> Result<ActivatedDevice, Error> {
    let name = normalize_device_name(&request.device_name)
        .ok_or_else(|| Error::invalid("device_name", "a device name has 1 to 50 characters"))?;
    crate::db::write_tx(conn, |conn| {
        let invalid = || {
            Error::new(
                ErrorCode::ActivationTicketInvalid,
                "this activation ticket is invalid, used or expired; start again",
            )
        };
        let at = now();
        let ticket: Ticket = activation_tickets::table
            .filter(activation_tickets::ticket_hash.eq(tokens::hash(request.ticket.trim())))
            .filter(activation_tickets::used_at.is_null())
            .filter(activation_tickets::expires_at.gt(at))
            .select((
                activation_tickets::id,
                activation_tickets::user_id,
                activation_tickets::merchant_id,
                activation_tickets::app,
                activation_tickets::hardware_id,
                activation_tickets::model,
                activation_tickets::terminal_id,
            ))
            .first(conn)
            .optional()?
            .ok_or_else(invalid)?;
        let spent = diesel::update(activation_tickets::table.find(ticket.id))
            .filter(activation_tickets::used_at.is_null())
            .set(activation_tickets::used_at.eq(at))
            .execute(conn)?;
        if spent != 1 {
            return Err(invalid());
        }
        let user = rows::find_user(conn, ticket.user_id)?
            .filter(|u| u.status == rows::USER_ACTIVE)
            .ok_or_else(invalid)?;
        let actor = users::actor_for(conn, &user, source_ip.map(str::to_owned))?;
        let location = match rows::find_location(conn, request.location_id)? {
            Some(l)
                if l.merchant_id == ticket.merchant_id
                    && actor.may(l.merchant_id, Some(l.id), Permission::ActivateApp) =>
            {
                l
            }
            _ => return Err(Error::not_found("location")),
        };
        let app: PaymentApp = ticket.app.parse().map_err(|_| invalid())?;
        refuse_if_already_active(conn, ticket.merchant_id, app, &ticket.hardware_id)?;

        let same_name = super::named(conn, ticket.merchant_id, &name)?;
        if let Some((.., existing)) = same_name.iter().find(|(_, status, ..)| status == ACTIVE) {
            return Err(super::name_taken(&name, existing));
        }
        // Taking over a deactivated device's history needs the right to
        // activate where that device was, and the same app.
        let replaces = match same_name.iter().find(|(_, status, ..)| status == DEACTIVATED) {
            Some((id, _, old_app, old_location, _))
                if *old_app == ticket.app
                    && actor.may(ticket.merchant_id, Some(*old_location), Permission::ActivateApp) =>
            {
                Some(*id)
            }
            Some((.., existing)) => return Err(super::name_kept(existing)),
            None => None,
        };

        let (device_token, hash) = tokens::generate("tms_d_");
        let insert = diesel::insert_into(devices::table).values((
            devices::merchant_id.eq(ticket.merchant_id),
            devices::location_id.eq(location.id),
            devices::terminal_id.eq(ticket.terminal_id),
            devices::app.eq(app.as_str()),
            devices::name.eq(&name),
            devices::hardware_id.eq(&ticket.hardware_id),
            devices::model.eq(&ticket.model),
            devices::status.eq(ACTIVE),
            devices::token_hash.eq(hash),
            devices::replaces_device_id.eq(replaces),
            devices::activated_by.eq(user.id),
            devices::activated_at.eq(at),
        ));
        let device_id: i64 = match per_backend!(conn, |c| insert.returning(devices::id).get_result(c)) {
            Ok(id) => id,
            Err(e) => {
                let e = DbError::from(e);
                if !e.is_unique_violation() {
                    return Err(e.into());
                }
                // Lost a race: to the same name, or to the same hardware.
                refuse_if_already_active(conn, ticket.merchant_id, app, &ticket.hardware_id)?;
                return Err(super::name_taken(&name, &name));
            }
        };
        diesel::insert_into(device_sessions::table)
            .values((
                device_sessions::device_id.eq(device_id),
                device_sessions::user_id.eq(user.id),
                device_sessions::started_at.eq(at),
            ))
            .execute(conn)?;
        let subject = format!("device:{device_id}");
        if let Some(old) = replaces {
            diesel::update(devices::table.find(old))
                .set((devices::status.eq(REPLACED), devices::replaced_by_device_id.eq(device_id)))
                .execute(conn)?;
            let moved = diesel::update(transactions::table.filter(transactions::device_id.eq(old)))
                .set(transactions::device_id.eq(device_id))
                .execute(conn)?;
            audit::record(
                conn,
                &actor.audit(
                    "device.replace",
                    &subject,
                    Some(ticket.merchant_id),
                    &json!({"replaces": old, "transactions_moved": moved}),
                ),
            )?;
        }
        audit::record(
            conn,
            &actor.audit(
                "device.activate",
                &subject,
                Some(ticket.merchant_id),
                &json!({"name": name, "app": app.as_str(), "hardware_id": ticket.hardware_id, "location_id": location.id}),
            ),
        )?;
        Ok(ActivatedDevice {
            device_id,
            device_token,
            name: name.clone(),
            location_id: location.id,
            replaces_device_id: replaces,
        })
    })
}

/// A user logs in to the app on an activated device (replacing whoever was
/// logged in there).
pub fn login(
    conn: &mut DbConnection,
    device: &CallingDevice,
    email: &str,
    password: &str,
    source_ip: Option<&str>,
    settings: &AccountSettings,
) -> Result<(), Error> {
    let user = users::check_terminal_activation_credentials(
        conn,
        email,
        password,
        source_ip,
        Some(device.id),
        settings,
    )
    .map_err(|e| {
        if e.code() == ErrorCode::Forbidden { Error::forbidden("this user may not use the app") } else { e }
    })?;
    let actor = users::actor_for(conn, &user, source_ip.map(str::to_owned))?;
    if user.merchant_id != Some(device.merchant_id)
        || !actor.may(device.merchant_id, Some(device.location_id), Permission::ActivateApp)
    {
        return Err(Error::forbidden("this user may not use the app at this device's location"));
    }
    crate::db::write_tx(conn, |conn| {
        let at = now();
        diesel::update(
            device_sessions::table
                .filter(device_sessions::device_id.eq(device.id))
                .filter(device_sessions::ended_at.is_null()),
        )
        .set(device_sessions::ended_at.eq(at))
        .execute(conn)?;
        diesel::insert_into(device_sessions::table)
            .values((
                device_sessions::device_id.eq(device.id),
                device_sessions::user_id.eq(user.id),
                device_sessions::started_at.eq(at),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// The user logs out of the app on this device: their profile is no longer
/// in use there.
pub fn logout(conn: &mut DbConnection, device: &CallingDevice) -> Result<(), Error> {
    diesel::update(
        device_sessions::table
            .filter(device_sessions::device_id.eq(device.id))
            .filter(device_sessions::ended_at.is_null()),
    )
    .set(device_sessions::ended_at.eq(now()))
    .execute(conn)?;
    Ok(())
}
