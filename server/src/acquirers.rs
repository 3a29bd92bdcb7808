//! Acquirers, merchants' contracts with them, their versioned parameter
//! sets, and the parameter sessions terminals run.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::OperatorRole;
use tms_packages::wire::acquirers::*;

use crate::accounts::access::Actor;
use crate::accounts::rows;
use crate::db::schema::{acquirer_contracts, acquirer_parameter_sets, acquirer_sessions, acquirers};
use crate::db::{DbConnection, audit};
use crate::devices::CallingDevice;

/// Acquirer documents hold keys and credentials: sealed, bound to this.
pub const SEALED_PURPOSE: &str = "acquirer_parameter_sets.document";
use crate::error::{Error, ErrorCode};
use crate::per_backend;
use crate::secrets::MasterKeys;
use crate::time::parse_time;
use crate::time::{now, rfc3339};

const OPERATORS: &[OperatorRole] = &[OperatorRole::OperatorAdmin, OperatorRole::Support];

pub fn create(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &CreateAcquirerRequest,
) -> Result<AcquirerView, Error> {
    actor.require_operator(OPERATORS)?;
    let id = request.id.trim();
    if id.is_empty()
        || id.len() > 40
        || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Error::invalid("id", "1 to 40 lower-case letters, digits or dashes"));
    }
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::invalid("name", "1 to 100 characters"));
    }
    crate::db::write_tx(conn, |conn| {
        if acquirers::table.find(id).count().get_result::<i64>(conn)? > 0 {
            return Err(Error::new(ErrorCode::Conflict, format!("acquirer {id} exists")));
        }
        diesel::insert_into(acquirers::table)
            .values((acquirers::id.eq(id), acquirers::name.eq(name), acquirers::created_at.eq(now())))
            .execute(conn)?;
        let subject = format!("acquirer:{id}");
        audit::record(conn, &actor.audit("acquirer.create", &subject, None, &json!({"name": name})))?;
        Ok(AcquirerView { id: id.to_owned(), name: name.to_owned(), latest_version: None })
    })
}

pub fn list(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<AcquirerView>, Error> {
    actor.require_operator(OPERATORS)?;
    let found: Vec<(String, String)> =
        acquirers::table.order(acquirers::id).select((acquirers::id, acquirers::name)).load(conn)?;
    let mut out = Vec::with_capacity(found.len());
    for (id, name) in found {
        let latest: Option<i64> = acquirer_parameter_sets::table
            .filter(acquirer_parameter_sets::acquirer_id.eq(&id))
            .select(diesel::dsl::max(acquirer_parameter_sets::version))
            .first(conn)?;
        out.push(AcquirerView { id, name, latest_version: latest.map(|v| v as u64) });
    }
    Ok(out)
}

fn require_acquirer(conn: &mut DbConnection, id: &str) -> Result<(), Error> {
    if acquirers::table.find(id).count().get_result::<i64>(conn)? == 0 {
        return Err(Error::not_found("acquirer"));
    }
    Ok(())
}

/// Parameters or a contract whose validity already ended would never reach a
/// terminal: say so at once rather than publish them.
fn refuse_if_passed(valid_until: NaiveDateTime) -> Result<(), Error> {
    if valid_until <= now() {
        return Err(Error::with_details(
            ErrorCode::AlreadyExpired,
            format!("valid_until ({}) has already passed", rfc3339(valid_until)),
            BTreeMap::from([("field".to_owned(), "valid_until".to_owned())]),
        ));
    }
    Ok(())
}

/// A new version of an acquirer's parameters.
pub fn add_parameters(
    conn: &mut DbConnection,
    actor: &Actor,
    acquirer_id: &str,
    request: &CreateAcquirerParametersRequest,
    keys: &MasterKeys,
) -> Result<AcquirerParametersView, Error> {
    actor.require_operator(OPERATORS)?;
    if !request.document.is_object() {
        return Err(Error::invalid("document", "a JSON object"));
    }
    let valid_until = parse_time("valid_until", &request.valid_until)?;
    refuse_if_passed(valid_until)?;
    crate::db::write_tx(conn, |conn| {
        require_acquirer(conn, acquirer_id)?;
        let latest: Option<i64> = acquirer_parameter_sets::table
            .filter(acquirer_parameter_sets::acquirer_id.eq(acquirer_id))
            .select(diesel::dsl::max(acquirer_parameter_sets::version))
            .first(conn)?;
        let version = latest.unwrap_or(0) + 1;
        diesel::insert_into(acquirer_parameter_sets::table)
            .values((
                acquirer_parameter_sets::acquirer_id.eq(acquirer_id),
                acquirer_parameter_sets::version.eq(version),
                acquirer_parameter_sets::document
                    .eq(keys.seal_text(SEALED_PURPOSE, &request.document.to_string())),
                acquirer_parameter_sets::valid_until.eq(valid_until),
                acquirer_parameter_sets::created_at.eq(now()),
            ))
            .execute(conn)?;
        crate::contact::changes::record(conn, &[crate::contact::changes::Scope::Everyone])?;
        let subject = format!("acquirer:{acquirer_id}");
        audit::record(
            conn,
            &actor.audit(
                "acquirer.parameters",
                &subject,
                None,
                &json!({"version": version, "valid_until": request.valid_until}),
            ),
        )?;
        Ok(AcquirerParametersView {
            acquirer_id: acquirer_id.to_owned(),
            version: version as u64,
            valid_until: rfc3339(valid_until),
            revoked_at: None,
        })
    })
}

pub fn revoke_parameters(
    conn: &mut DbConnection,
    actor: &Actor,
    acquirer_id: &str,
    version: i64,
) -> Result<AcquirerParametersView, Error> {
    actor.require_operator(OPERATORS)?;
    crate::db::write_tx(conn, |conn| {
        let row: Option<(NaiveDateTime, Option<NaiveDateTime>)> = acquirer_parameter_sets::table
            .filter(acquirer_parameter_sets::acquirer_id.eq(acquirer_id))
            .filter(acquirer_parameter_sets::version.eq(version))
            .select((acquirer_parameter_sets::valid_until, acquirer_parameter_sets::revoked_at))
            .first(conn)
            .optional()?;
        let (valid_until, revoked) = row.ok_or_else(|| Error::not_found("acquirer parameter set"))?;
        if revoked.is_some() {
            return Err(Error::new(ErrorCode::Conflict, "already revoked"));
        }
        let at = now();
        diesel::update(
            acquirer_parameter_sets::table
                .filter(acquirer_parameter_sets::acquirer_id.eq(acquirer_id))
                .filter(acquirer_parameter_sets::version.eq(version)),
        )
        .set(acquirer_parameter_sets::revoked_at.eq(at))
        .execute(conn)?;
        crate::contact::changes::record(conn, &[crate::contact::changes::Scope::Everyone])?;
        let subject = format!("acquirer:{acquirer_id}");
        audit::record(
            conn,
            &actor.audit("acquirer.parameters_revoke", &subject, None, &json!({"version": version})),
        )?;
        Ok(AcquirerParametersView {
            acquirer_id: acquirer_id.to_owned(),
            version: version as u64,
            valid_until: rfc3339(valid_until),
            revoked_at: Some(rfc3339(at)),
        })
    })
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = acquirer_contracts)]
struct ContractRow {
    id: i64,
    acquirer_id: String,
    merchant_id: i64,
    location_id: Option<i64>,
    device_id: Option<i64>,
    acquirer_merchant_id: String,
    acquirer_terminal_id: String,
    valid_until: Option<NaiveDateTime>,
    #[allow(dead_code)]
    created_at: NaiveDateTime,
}

impl ContractRow {
    fn view(&self) -> ContractView {
        ContractView {
            id: self.id,
            acquirer_id: self.acquirer_id.clone(),
            merchant_id: self.merchant_id,
            location_id: self.location_id,
            device_id: self.device_id,
            acquirer_merchant_id: self.acquirer_merchant_id.clone(),
            acquirer_terminal_id: self.acquirer_terminal_id.clone(),
            valid_until: self.valid_until.map(rfc3339),
        }
    }
}

/// Records a merchant's contract with an acquirer (operators, support).
pub fn add_contract(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
    request: &CreateContractRequest,
) -> Result<ContractView, Error> {
    actor.require_operator(OPERATORS)?;
    let text = |field: &str, v: &str| {
        let v = v.trim();
        if v.is_empty() || v.len() > 64 {
            Err(Error::invalid(field, "1 to 64 characters"))
        } else {
            Ok(v.to_owned())
        }
    };
    let acquirer_merchant_id = text("acquirer_merchant_id", &request.acquirer_merchant_id)?;
    let acquirer_terminal_id = text("acquirer_terminal_id", &request.acquirer_terminal_id)?;
    let valid_until = request.valid_until.as_deref().map(|t| parse_time("valid_until", t)).transpose()?;
    if let Some(at) = valid_until {
        refuse_if_passed(at)?;
    }
    crate::db::write_tx(conn, |conn| {
        rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
        require_acquirer(conn, &request.acquirer_id)?;
        if let Some(l) = request.location_id {
            match rows::find_location(conn, l)? {
                Some(loc) if loc.merchant_id == merchant_id => {}
                _ => return Err(Error::not_found("location")),
            }
        }
        if let Some(d) = request.device_id {
            match crate::devices::find(conn, d)? {
                Some(dev) if dev.merchant_id == merchant_id => {}
                _ => return Err(Error::not_found("device")),
            }
        }
        let insert = diesel::insert_into(acquirer_contracts::table).values((
            acquirer_contracts::acquirer_id.eq(&request.acquirer_id),
            acquirer_contracts::merchant_id.eq(merchant_id),
            acquirer_contracts::location_id.eq(request.location_id),
            acquirer_contracts::device_id.eq(request.device_id),
            acquirer_contracts::acquirer_merchant_id.eq(&acquirer_merchant_id),
            acquirer_contracts::acquirer_terminal_id.eq(&acquirer_terminal_id),
            acquirer_contracts::valid_until.eq(valid_until),
            acquirer_contracts::created_at.eq(now()),
        ));
        let id: i64 = per_backend!(conn, |c| insert.returning(acquirer_contracts::id).get_result(c))?;
        let scope = match (request.device_id, request.location_id) {
            (Some(d), _) => crate::contact::changes::Scope::Device(d),
            (None, Some(l)) => crate::contact::changes::Scope::Location(l),
            (None, None) => crate::contact::changes::Scope::Merchant(merchant_id),
        };
        crate::contact::changes::record(conn, &[scope])?;
        let subject = format!("acquirer_contract:{id}");
        audit::record(
            conn,
            &actor.audit(
                "acquirer.contract",
                &subject,
                Some(merchant_id),
                &json!({"acquirer_id": request.acquirer_id}),
            ),
        )?;
        let row: ContractRow =
            acquirer_contracts::table.find(id).select(ContractRow::as_select()).first(conn)?;
        Ok(row.view())
    })
}

pub fn list_contracts(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
) -> Result<Vec<ContractView>, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
    let found: Vec<ContractRow> = acquirer_contracts::table
        .filter(acquirer_contracts::merchant_id.eq(merchant_id))
        .order(acquirer_contracts::id)
        .select(ContractRow::as_select())
        .load(conn)?;
    // Device-level contracts name a device's own ids: admins and staff only.
    let admin = actor.is_admin_of(merchant_id);
    Ok(found
        .iter()
        .filter(|c| {
            admin
                || (c.device_id.is_none()
                    && c.location_id.is_none_or(|l| actor.sees_location(merchant_id, l)))
        })
        .map(ContractRow::view)
        .collect())
}

/// An acquirer parameter session for the calling terminal: its contract with
/// the acquirer (the device's own, else its location's, else its merchant's)
/// and the acquirer's current parameters. Every session is recorded with its
/// outcome, also when it fails.
pub fn run_session(
    conn: &mut DbConnection,
    device: &CallingDevice,
    acquirer_id: &str,
    keys: &MasterKeys,
) -> Result<AcquirerSessionResult, Error> {
    let outcome = session_outcome(conn, device, acquirer_id).and_then(|(mut result, stored)| {
        let document = keys.open_text(SEALED_PURPOSE, &stored)?;
        result.document = serde_json::from_str(&document).map_err(|_| {
            Error::new(ErrorCode::AcquirerSessionFailed, "the acquirer's parameters are unreadable")
        })?;
        Ok(result)
    });
    let (label, version) = match &outcome {
        Ok(r) => ("success", Some(r.parameter_version as i64)),
        Err(e) => (
            match e.code() {
                ErrorCode::AcquirerSessionNotFound => "not_found",
                ErrorCode::AcquirerSessionExpired => "expired",
                _ => "failed",
            },
            None,
        ),
    };
    diesel::insert_into(acquirer_sessions::table)
        .values((
            acquirer_sessions::device_id.eq(device.id),
            acquirer_sessions::acquirer_id.eq(acquirer_id.chars().take(40).collect::<String>()),
            acquirer_sessions::outcome.eq(label),
            acquirer_sessions::parameter_version.eq(version),
            acquirer_sessions::occurred_at.eq(now()),
        ))
        .execute(conn)?;
    outcome
}

/// The session's answer but its document (`null`), and the document as
/// stored (sealed): the contact path needs only the version.
fn session_outcome(
    conn: &mut DbConnection,
    device: &CallingDevice,
    acquirer_id: &str,
) -> Result<(AcquirerSessionResult, String), Error> {
    let not_found = || {
        Error::new(
            ErrorCode::AcquirerSessionNotFound,
            format!("no contract with acquirer {acquirer_id} for this terminal"),
        )
    };
    let contracts: Vec<ContractRow> = acquirer_contracts::table
        .filter(acquirer_contracts::merchant_id.eq(device.merchant_id))
        .filter(acquirer_contracts::acquirer_id.eq(acquirer_id))
        .order(acquirer_contracts::id.desc())
        .select(ContractRow::as_select())
        .load(conn)?;
    // The most specific contract that applies; at one level, the newest.
    let contract = contracts
        .iter()
        .find(|c| c.device_id == Some(device.id))
        .or_else(|| {
            contracts.iter().find(|c| c.device_id.is_none() && c.location_id == Some(device.location_id))
        })
        .or_else(|| contracts.iter().find(|c| c.device_id.is_none() && c.location_id.is_none()))
        .ok_or_else(not_found)?;
    let at = now();
    if contract.valid_until.is_some_and(|t| t < at) {
        return Err(Error::new(
            ErrorCode::AcquirerSessionExpired,
            "the contract with this acquirer has expired",
        ));
    }
    let latest: Option<(i64, String, NaiveDateTime, Option<NaiveDateTime>)> = acquirer_parameter_sets::table
        .filter(acquirer_parameter_sets::acquirer_id.eq(acquirer_id))
        .order(acquirer_parameter_sets::version.desc())
        .select((
            acquirer_parameter_sets::version,
            acquirer_parameter_sets::document,
            acquirer_parameter_sets::valid_until,
            acquirer_parameter_sets::revoked_at,
        ))
        .first(conn)
        .optional()?;
    let (version, document, valid_until, revoked) = latest
        .ok_or_else(|| Error::new(ErrorCode::AcquirerSessionFailed, "the acquirer has no parameters"))?;
    if revoked.is_some() {
        return Err(Error::with_details(
            ErrorCode::AcquirerSessionFailed,
            "the acquirer's current parameters were revoked",
            BTreeMap::from([("version".to_owned(), version.to_string())]),
        ));
    }
    if valid_until < at {
        return Err(Error::new(ErrorCode::AcquirerSessionExpired, "the acquirer's parameters have expired"));
    }
    let result = AcquirerSessionResult {
        acquirer_id: acquirer_id.to_owned(),
        acquirer_merchant_id: contract.acquirer_merchant_id.clone(),
        acquirer_terminal_id: contract.acquirer_terminal_id.clone(),
        parameter_version: version as u64,
        valid_until: rfc3339(valid_until),
        document: serde_json::Value::Null,
    };
    Ok((result, document))
}

/// The acquirers whose parameter session is due for a device, with their
/// current parameter version: it has a contract in force, the acquirer's
/// current parameters can be fetched, and the device holds another version.
pub fn due_sessions(
    conn: &mut DbConnection,
    device: &CallingDevice,
    held: &BTreeMap<String, u64>,
) -> Result<Vec<(String, u64)>, Error> {
    let mut acquirers: Vec<String> = acquirer_contracts::table
        .filter(acquirer_contracts::merchant_id.eq(device.merchant_id))
        .select(acquirer_contracts::acquirer_id)
        .distinct()
        .load(conn)?;
    acquirers.sort();
    let mut due = Vec::new();
    for acquirer in acquirers {
        if let Ok((current, _)) = session_outcome(conn, device, &acquirer)
            && held.get(&acquirer) != Some(&current.parameter_version)
        {
            due.push((acquirer, current.parameter_version));
        }
    }
    Ok(due)
}

/// The next time a contract of the merchant or the parameters of one of its
/// acquirers expire: what is due changes then, with no write to say so.
pub fn next_expiry(
    conn: &mut DbConnection,
    merchant_id: i64,
) -> Result<Option<NaiveDateTime>, crate::db::DbError> {
    let at = now();
    let acquirers: Vec<String> = acquirer_contracts::table
        .filter(acquirer_contracts::merchant_id.eq(merchant_id))
        .select(acquirer_contracts::acquirer_id)
        .distinct()
        .load(conn)?;
    if acquirers.is_empty() {
        return Ok(None);
    }
    let contract: Option<NaiveDateTime> = acquirer_contracts::table
        .filter(acquirer_contracts::merchant_id.eq(merchant_id))
        .filter(acquirer_contracts::valid_until.gt(at))
        .select(diesel::dsl::min(acquirer_contracts::valid_until))
        .first(conn)?;
    let parameters: Option<NaiveDateTime> = acquirer_parameter_sets::table
        .filter(acquirer_parameter_sets::acquirer_id.eq_any(&acquirers))
        .filter(acquirer_parameter_sets::valid_until.gt(at))
        .select(diesel::dsl::min(acquirer_parameter_sets::valid_until))
        .first(conn)?;
    Ok(contract.into_iter().chain(parameters).min())
}

/// The last session per acquirer of a device, for its detail.
pub fn last_sessions(conn: &mut DbConnection, device_id: i64) -> Result<Vec<AcquirerSessionView>, Error> {
    let found: Vec<(String, String, Option<i64>, NaiveDateTime)> = acquirer_sessions::table
        .filter(acquirer_sessions::device_id.eq(device_id))
        .order((
            acquirer_sessions::acquirer_id,
            acquirer_sessions::occurred_at.desc(),
            acquirer_sessions::id.desc(),
        ))
        .select((
            acquirer_sessions::acquirer_id,
            acquirer_sessions::outcome,
            acquirer_sessions::parameter_version,
            acquirer_sessions::occurred_at,
        ))
        .load(conn)?;
    let mut out: Vec<AcquirerSessionView> = Vec::new();
    for (acquirer_id, outcome, version, at) in found {
        if out.last().is_some_and(|s| s.acquirer_id == acquirer_id) {
            continue;
        }
        out.push(AcquirerSessionView {
            acquirer_id,
            outcome,
            parameter_version: version.map(|v| v as u64),
            at: rfc3339(at),
        });
    }
    Ok(out)
}
