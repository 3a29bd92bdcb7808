//! Merchants, their orders, locations and registered terminals.
//!
//! There is deliberately no way to create a location directly: a location
//! comes into being when an order is delivered to an address the merchant has
//! none at; merchants can only rename locations.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::{OperatorRole, Permission, address_key, is_plausible_email, normalize_email};
use tms_packages::wire::accounts::{
    Address, CreateOrderRequest, LocationView, MerchantView, OrderView, TerminalView,
};

use super::access::Actor;
use super::rows::{self, KIND_MERCHANT, LocationRow, MERCHANT_PENDING, MerchantRow, TerminalRow, UserRow};
use super::users::{AccountSettings, NewUser, insert_user, issue_activation_token};
use super::{PendingMail, activation_mail};
use crate::db::schema::{device_sessions, devices, locations, merchants, orders, terminals};
use crate::db::{DbConnection, audit};
use crate::error::{Error, ErrorCode};
use crate::per_backend;
use crate::time::{now, rfc3339};

const MAX_TERMINALS_PER_ORDER: usize = 1000;

fn required(field: &str, value: &str, max: usize) -> Result<String, Error> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, format!("{field} is required")));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(field, format!("{field} has at most {max} characters")));
    }
    Ok(value.to_owned())
}

fn validate_address(address: &Address) -> Result<Address, Error> {
    let country = required("delivery_address.country", &address.country, 2)?.to_uppercase();
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(Error::invalid("delivery_address.country", "an ISO 3166-1 alpha-2 code, e.g. FR"));
    }
    Ok(Address {
        line1: required("delivery_address.line1", &address.line1, 200)?,
        line2: address.line2.trim().to_owned(),
        postal_code: required("delivery_address.postal_code", &address.postal_code, 20)?,
        city: required("delivery_address.city", &address.city, 100)?,
        country,
    })
}

fn is_valid_serial(serial: &str) -> bool {
    (4..=32).contains(&serial.len()) && serial.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Records an order: creates the merchant (first order), the location (new
/// address) and registers the terminals, all or nothing. Returns the e-mail to
/// send once committed (the first admin's activation).
pub fn create_order(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &CreateOrderRequest,
    settings: &AccountSettings,
) -> Result<(OrderView, Option<PendingMail>), Error> {
    actor.require_operator(&[OperatorRole::OperatorAdmin, OperatorRole::Support])?;
    let address = validate_address(&request.delivery_address)?;
    if request.terminals.is_empty() {
        return Err(Error::invalid("terminals", "an order has at least one terminal"));
    }
    if request.terminals.len() > MAX_TERMINALS_PER_ORDER {
        return Err(Error::invalid(
            "terminals",
            format!("at most {MAX_TERMINALS_PER_ORDER} terminals per order"),
        ));
    }
    let mut serials = BTreeSet::new();
    let mut ordered = Vec::with_capacity(request.terminals.len());
    for (i, t) in request.terminals.iter().enumerate() {
        let serial = t.serial.trim().to_uppercase();
        if !is_valid_serial(&serial) {
            return Err(Error::invalid(
                &format!("terminals[{i}].serial"),
                format!("{:?} is not a serial number (4 to 32 letters, digits or dashes)", t.serial),
            ));
        }
        if !serials.insert(serial.clone()) {
            return Err(Error::invalid(
                &format!("terminals[{i}].serial"),
                format!("{serial} is ordered twice"),
            ));
        }
        ordered.push((serial, required(&format!("terminals[{i}].model"), &t.model, 40)?.to_uppercase()));
    }

    crate::db::write_tx(conn, |conn| {
        let taken: Vec<String> = terminals::table
            .filter(terminals::serial.eq_any(serials.iter().cloned().collect::<Vec<_>>()))
            .select(terminals::serial)
            .load(conn)?;
        if !taken.is_empty() {
            return Err(Error::with_details(
                ErrorCode::TerminalAlreadyRegistered,
                format!("already registered: {}", taken.join(", ")),
                BTreeMap::from([("serials".to_owned(), taken.join(","))]),
            ));
        }
        let at = now();
        let (merchant, merchant_created, mut mail) = match request.merchant_id {
            Some(id) => {
                (rows::find_merchant(conn, id)?.ok_or_else(|| Error::not_found("merchant"))?, false, None)
            }
            None => {
                let name = required("company_name", request.company_name.as_deref().unwrap_or(""), 200)?;
                let contact = normalize_email(request.contact_email.as_deref().unwrap_or(""));
                if !is_plausible_email(&contact) {
                    return Err(Error::invalid(
                        "contact_email",
                        "the first order needs the contact e-mail of the merchant's admin",
                    ));
                }
                let insert = diesel::insert_into(merchants::table).values((
                    merchants::name.eq(&name),
                    merchants::contact_email.eq(&contact),
                    merchants::status.eq(MERCHANT_PENDING),
                    merchants::created_at.eq(at),
                ));
                let id: i64 = per_backend!(conn, |c| insert.returning(merchants::id).get_result(c))?;
                let admin_id = insert_user(
                    conn,
                    NewUser {
                        email: &contact,
                        kind: KIND_MERCHANT,
                        operator_role: None,
                        merchant_id: Some(id),
                        is_admin: true,
                        permissions: BTreeSet::new(),
                        password_hash: None,
                    },
                )
                .map_err(|e| match e.code() {
                    ErrorCode::EmailTaken => Error::new(
                        ErrorCode::EmailTaken,
                        format!("{contact} already has an account: order for its merchant with merchant_id"),
                    ),
                    _ => e,
                })?;
                let token = issue_activation_token(conn, admin_id, settings.activation_ttl_hours)?;
                let merchant_subject = format!("merchant:{id}");
                audit::record(
                    conn,
                    &actor.audit(
                        "merchant.create",
                        &merchant_subject,
                        Some(id),
                        &json!({"name": name, "contact_email": contact}),
                    ),
                )?;
                let user_subject = format!("user:{admin_id}");
                audit::record(
                    conn,
                    &actor.audit(
                        "user.invite",
                        &user_subject,
                        Some(id),
                        &json!({"email": contact, "is_admin": true}),
                    ),
                )?;
                let mail = activation_mail(
                    &settings.public_url,
                    &contact,
                    &token,
                    Some(&name),
                    settings.activation_ttl_hours,
                );
                let merchant = rows::find_merchant(conn, id)?.ok_or_else(|| Error::not_found("merchant"))?;
                (merchant, true, Some(mail))
            }
        };

        let key = address_key(
            &address.line1,
            &address.line2,
            &address.postal_code,
            &address.city,
            &address.country,
        );
        let existing: Option<LocationRow> = locations::table
            .filter(locations::merchant_id.eq(merchant.id))
            .filter(locations::address_key.eq(&key))
            .select(LocationRow::as_select())
            .first(conn)
            .optional()?;
        let (location, location_created) = match existing {
            Some(location) => (location, false),
            None => {
                let name = match request.location_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                    Some(n) => required("location_name", n, 100)?,
                    None => format!("{}, {}", address.line1, address.city),
                };
                let insert = diesel::insert_into(locations::table).values((
                    locations::merchant_id.eq(merchant.id),
                    locations::name.eq(&name),
                    locations::address_line1.eq(&address.line1),
                    locations::address_line2.eq(&address.line2),
                    locations::postal_code.eq(&address.postal_code),
                    locations::city.eq(&address.city),
                    locations::country.eq(&address.country),
                    locations::address_key.eq(&key),
                    locations::created_at.eq(at),
                ));
                let id: i64 = per_backend!(conn, |c| insert.returning(locations::id).get_result(c))?;
                let subject = format!("location:{id}");
                audit::record(
                    conn,
                    &actor.audit(
                        "location.create",
                        &subject,
                        Some(merchant.id),
                        &json!({"name": name, "address_key": key}),
                    ),
                )?;
                (rows::find_location(conn, id)?.ok_or_else(|| Error::not_found("location"))?, true)
            }
        };

        let insert = diesel::insert_into(orders::table).values((
            orders::merchant_id.eq(merchant.id),
            orders::location_id.eq(location.id),
            orders::created_by.eq(actor.user_id),
            orders::created_at.eq(at),
        ));
        let order_id: i64 = per_backend!(conn, |c| insert.returning(orders::id).get_result(c))?;
        for (serial, model) in &ordered {
            diesel::insert_into(terminals::table)
                .values((
                    terminals::merchant_id.eq(merchant.id),
                    terminals::location_id.eq(location.id),
                    terminals::order_id.eq(order_id),
                    terminals::serial.eq(serial),
                    terminals::model.eq(model),
                    terminals::registered_at.eq(at),
                ))
                .execute(conn)
                .map_err(|e| {
                    let e = crate::db::DbError::from(e);
                    if e.is_unique_violation() {
                        Error::new(
                            ErrorCode::TerminalAlreadyRegistered,
                            format!("already registered: {serial}"),
                        )
                    } else {
                        e.into()
                    }
                })?;
        }
        let subject = format!("order:{order_id}");
        audit::record(
            conn,
            &actor.audit(
                "order.create",
                &subject,
                Some(merchant.id),
                &json!({"location_id": location.id, "serials": serials.iter().collect::<Vec<_>>()}),
            ),
        )?;
        let registered: Vec<TerminalRow> = terminals::table
            .filter(terminals::order_id.eq(order_id))
            .order(terminals::id)
            .select(TerminalRow::as_select())
            .load(conn)?;
        let activation_email_sent_to = mail.as_ref().map(|m: &PendingMail| m.0.to.clone());
        let view = OrderView {
            id: order_id,
            merchant_id: merchant.id,
            merchant_created,
            location: location.view(),
            location_created,
            terminals: registered.iter().map(TerminalRow::view).collect(),
            activation_email_sent_to,
            created_at: rfc3339(at),
        };
        Ok((view, mail.take()))
    })
}

/// How merchants are looked for: by text (an id, part of an e-mail address
/// or part of the name), a page at a time in id order.
#[derive(Debug, Clone, Default)]
pub struct MerchantSearch {
    pub text: Option<String>,
    /// Only merchants after this id (the last of the page before).
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

pub fn list_merchants(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<MerchantView>, Error> {
    search_merchants(conn, actor, &MerchantSearch::default())
}

/// Merchants the caller sees that match `search`.
pub fn search_merchants(
    conn: &mut DbConnection,
    actor: &Actor,
    search: &MerchantSearch,
) -> Result<Vec<MerchantView>, Error> {
    let mut query = merchants::table.into_boxed();
    if let Some(text) = search.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        use crate::db::lower;
        let pattern = crate::devices::search::contains_pattern(&text.to_lowercase());
        query = match text.parse::<i64>() {
            Ok(id) => query.filter(merchants::id.eq(id)),
            Err(_) if text.contains('@') => {
                query.filter(lower(merchants::contact_email).like(pattern).escape('\\'))
            }
            Err(_) => query.filter(lower(merchants::name).like(pattern).escape('\\')),
        };
    }
    if let Some(after) = search.after {
        query = query.filter(merchants::id.gt(after));
    }
    if let Some(limit) = search.limit {
        query = query.limit(limit.clamp(1, 500));
    }
    match actor.merchant_id() {
        Some(own) => query = query.filter(merchants::id.eq(own)),
        None => {
            actor.require_operator(&[OperatorRole::OperatorAdmin, OperatorRole::Support])?;
        }
    }
    let found: Vec<MerchantRow> = query.order(merchants::id).select(MerchantRow::as_select()).load(conn)?;
    Ok(found.iter().map(MerchantRow::view).collect())
}

pub fn show_merchant(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
) -> Result<MerchantView, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    Ok(rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?.view())
}

pub fn list_locations(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
) -> Result<Vec<LocationView>, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
    let found: Vec<LocationRow> = locations::table
        .filter(locations::merchant_id.eq(merchant_id))
        .order(locations::id)
        .select(LocationRow::as_select())
        .load(conn)?;
    Ok(found.iter().filter(|l| actor.sees_location(merchant_id, l.id)).map(LocationRow::view).collect())
}

/// A location the caller sees, or 404.
pub fn visible_location(
    conn: &mut DbConnection,
    actor: &Actor,
    location_id: i64,
) -> Result<LocationRow, Error> {
    match rows::find_location(conn, location_id)? {
        Some(l) if actor.sees_location(l.merchant_id, l.id) => Ok(l),
        _ => Err(Error::not_found("location")),
    }
}

pub fn rename_location(
    conn: &mut DbConnection,
    actor: &Actor,
    location_id: i64,
    name: &str,
) -> Result<LocationView, Error> {
    let name = required("name", name, 100)?;
    crate::db::write_tx(conn, |conn| {
        let location = visible_location(conn, actor, location_id)?;
        actor.require(location.merchant_id, Some(location.id), Permission::ManageSettings)?;
        diesel::update(locations::table.find(location.id)).set(locations::name.eq(&name)).execute(conn)?;
        let subject = format!("location:{}", location.id);
        audit::record(
            conn,
            &actor.audit(
                "location.rename",
                &subject,
                Some(location.merchant_id),
                &json!({"before": {"name": location.name}, "after": {"name": name}}),
            ),
        )?;
        Ok(rows::find_location(conn, location.id)?.ok_or_else(|| Error::not_found("location"))?.view())
    })
}

/// The registered terminals at the locations the caller sees.
pub fn list_terminals(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
) -> Result<Vec<TerminalView>, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
    let found: Vec<TerminalRow> = terminals::table
        .filter(terminals::merchant_id.eq(merchant_id))
        .order(terminals::id)
        .select(TerminalRow::as_select())
        .load(conn)?;
    Ok(found
        .iter()
        .filter(|t| actor.sees_location(merchant_id, t.location_id))
        .map(TerminalRow::view)
        .collect())
}

/// The active devices (id, name) where the user is logged in to the app.
pub fn logged_in_on(conn: &mut DbConnection, user_id: i64) -> Result<Vec<(i64, String)>, crate::db::DbError> {
    Ok(device_sessions::table
        .inner_join(devices::table)
        .filter(device_sessions::user_id.eq(user_id))
        .filter(device_sessions::ended_at.is_null())
        .filter(devices::status.eq("active"))
        .select((devices::id, devices::name))
        .order(devices::id)
        .load(conn)?)
}

/// 409 `profile_in_use`, listing the devices, while the user is logged in to
/// the app on any active device.
pub fn refuse_if_in_use(conn: &mut DbConnection, user: &UserRow) -> Result<(), Error> {
    let holding = logged_in_on(conn, user.id)?;
    if holding.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = holding.iter().map(|(_, n)| n.as_str()).collect();
    let ids: Vec<String> = holding.iter().map(|(id, _)| id.to_string()).collect();
    Err(Error::with_details(
        ErrorCode::ProfileInUse,
        format!("{} is logged in on {}: log out of the app there first", user.email, names.join(", ")),
        BTreeMap::from([("devices".to_owned(), ids.join(",")), ("device_names".to_owned(), names.join(","))]),
    ))
}
