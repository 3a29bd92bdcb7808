//! Transactions: idempotent uploads from terminals, manual statuses, the
//! merchant's overview with totals, and pages for the streamed export.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime};
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::Permission;
use tms_packages::devices::{
    TRANSACTION_TYPES, TransactionStatus, contains_pan, is_currency_code, is_masked_card,
};
use tms_packages::wire::devices::{
    CurrencyTotal, TransactionBatch, TransactionBatchResult, TransactionPage, TransactionView,
};

use super::CallingDevice;
use crate::accounts::access::Actor;
use crate::accounts::rows;
use crate::db::schema::{device_sessions, devices, locations, transactions, users};
use crate::db::{DbConnection, audit};
use crate::error::{Error, ErrorCode};
use crate::time::{now, parse_time, rfc3339, rfc3339_micros};

type Backend = <DbConnection as diesel::Connection>::Backend;

pub const MAX_BATCH: usize = 1000;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = transactions)]
pub struct TransactionRow {
    pub id: i64,
    pub merchant_id: i64,
    pub device_id: i64,
    pub original_device_id: i64,
    pub hardware_id: String,
    pub location_id: i64,
    pub terminal_tx_id: String,
    pub occurred_at: NaiveDateTime,
    pub tx_type: String,
    pub amount_minor: i64,
    pub currency: String,
    pub acquirer: String,
    pub masked_card: String,
    pub status: String,
    pub manual_status: Option<String>,
    pub manual_set_by: Option<i64>,
    pub manual_set_at: Option<NaiveDateTime>,
    pub receipt_printed: bool,
    pub uploaded_at: NaiveDateTime,
}

impl TransactionRow {
    pub fn effective_status(&self) -> &str {
        self.manual_status.as_deref().unwrap_or(&self.status)
    }

    pub fn status_source(&self) -> &'static str {
        if self.manual_status.is_some() { "manual" } else { "automatic" }
    }

    pub fn view(&self) -> TransactionView {
        TransactionView {
            id: self.id,
            terminal_tx_id: self.terminal_tx_id.clone(),
            occurred_at: rfc3339_micros(self.occurred_at),
            device_id: self.device_id,
            location_id: self.location_id,
            tx_type: self.tx_type.clone(),
            amount_minor: self.amount_minor,
            currency: self.currency.clone(),
            acquirer: self.acquirer.clone(),
            masked_card: self.masked_card.clone(),
            status: self.effective_status().to_owned(),
            status_source: self.status_source().to_owned(),
            automatic_status: self.status.clone(),
            manual_set_by: self.manual_set_by,
            manual_set_at: self.manual_set_at.map(rfc3339),
            receipt_printed: self.receipt_printed,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = transactions)]
struct NewTransaction {
    merchant_id: i64,
    device_id: i64,
    original_device_id: i64,
    hardware_id: String,
    location_id: i64,
    terminal_tx_id: String,
    occurred_at: NaiveDateTime,
    tx_type: String,
    amount_minor: i64,
    currency: String,
    acquirer: String,
    masked_card: String,
    status: String,
    receipt_printed: bool,
    uploaded_at: NaiveDateTime,
}

/// Stores a batch from a terminal. The whole batch is checked first (one bad
/// transaction refuses it, naming which); a transaction already uploaded is
/// counted as a duplicate and left as it was.
pub fn upload(
    conn: &mut DbConnection,
    device: &CallingDevice,
    batch: &TransactionBatch,
) -> Result<TransactionBatchResult, Error> {
    if batch.transactions.len() > MAX_BATCH {
        return Err(Error::invalid("transactions", format!("at most {MAX_BATCH} transactions per upload")));
    }
    let at = now();
    let mut rows = Vec::with_capacity(batch.transactions.len());
    for (i, t) in batch.transactions.iter().enumerate() {
        let field = |name: &str| format!("transactions[{i}].{name}");
        let id = t.terminal_tx_id.trim();
        if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
            return Err(Error::invalid(&field("terminal_tx_id"), "1 to 64 printable characters"));
        }
        if !TRANSACTION_TYPES.contains(&t.tx_type.as_str()) {
            return Err(Error::invalid(&field("type"), format!("one of {}", TRANSACTION_TYPES.join(", "))));
        }
        if !(0..=1_000_000_000_000).contains(&t.amount_minor) {
            return Err(Error::invalid(&field("amount_minor"), "an amount in minor units, 0 or more"));
        }
        if !is_currency_code(&t.currency) {
            return Err(Error::invalid(&field("currency"), "an ISO 4217 code such as EUR"));
        }
        let acquirer = t.acquirer.trim();
        if acquirer.is_empty() || acquirer.len() > 64 {
            return Err(Error::invalid(&field("acquirer"), "1 to 64 characters"));
        }
        if !is_masked_card(&t.masked_card) || contains_pan(id) || contains_pan(acquirer) {
            return Err(Error::with_details(
                ErrorCode::PanNotAllowed,
                format!(
                    "transaction {i} carries card data that is not masked; send at most the first six and last four digits"
                ),
                BTreeMap::from([
                    ("field".to_owned(), field("masked_card")),
                    ("index".to_owned(), i.to_string()),
                ]),
            ));
        }
        if t.masked_card.len() > 32 {
            return Err(Error::invalid(&field("masked_card"), "at most 32 characters"));
        }
        let status: TransactionStatus =
            t.status.parse().map_err(|e: tms_packages::accounts::UnknownName| {
                Error::invalid(&field("status"), e.to_string())
            })?;
        rows.push(NewTransaction {
            merchant_id: device.merchant_id,
            device_id: device.id,
            original_device_id: device.id,
            hardware_id: device.hardware_id.clone(),
            location_id: device.location_id,
            terminal_tx_id: id.to_owned(),
            occurred_at: parse_time(&field("occurred_at"), &t.occurred_at)?,
            tx_type: t.tx_type.clone(),
            amount_minor: t.amount_minor,
            currency: t.currency.clone(),
            acquirer: acquirer.to_owned(),
            masked_card: t.masked_card.clone(),
            status: status.as_str().to_owned(),
            receipt_printed: t.receipt_printed,
            uploaded_at: at,
        });
    }
    if rows.is_empty() {
        return Ok(TransactionBatchResult { accepted: 0, duplicates: 0 });
    }
    let total = rows.len();
    // PostgreSQL takes the batch in one statement; diesel's SQLite backend
    // has no multi-row insert with ON CONFLICT, so there it is one statement
    // per row inside one transaction (cheap: no round trips).
    // The device is checked again inside the transaction, so rows never land
    // on a device that was replaced since the request was authenticated.
    let still_active = |status: Option<String>| {
        if status.as_deref() == Some(super::ACTIVE) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::DeviceDeactivated,
                "this device was deactivated: activate the app again",
            ))
        }
    };
    let accepted = match conn {
        DbConnection::Postgres(c) => c.transaction(|c| {
            let status =
                devices::table.find(device.id).select(devices::status).for_share().first(c).optional()?;
            still_active(status)?;
            Ok::<_, Error>(
                diesel::insert_into(transactions::table).values(&rows).on_conflict_do_nothing().execute(c)?,
            )
        })?,
        DbConnection::Sqlite(c) => c.immediate_transaction(|c| {
            let status = devices::table.find(device.id).select(devices::status).first(c).optional()?;
            still_active(status)?;
            rows.iter().try_fold(0, |n, row| {
                Ok::<_, Error>(
                    n + diesel::insert_into(transactions::table)
                        .values(row)
                        .on_conflict_do_nothing()
                        .execute(c)?,
                )
            })
        })?,
    };
    Ok(TransactionBatchResult { accepted: accepted as u32, duplicates: (total - accepted) as u32 })
}

/// The user logged in to the app sets the status of a failed or unknown
/// transaction by hand; the automatic status is kept beside it.
pub fn set_manual_status(
    conn: &mut DbConnection,
    device: &CallingDevice,
    terminal_tx_id: &str,
    status: &str,
) -> Result<TransactionView, Error> {
    let wanted: TransactionStatus = status
        .parse()
        .map_err(|e: tms_packages::accounts::UnknownName| Error::invalid("status", e.to_string()))?;
    if !wanted.is_manual_choice() {
        return Err(Error::invalid("status", "a status set by hand is success or failure"));
    }
    crate::db::write_tx(conn, |conn| {
        let found: Vec<TransactionRow> = transactions::table
            .filter(transactions::device_id.eq(device.id))
            .filter(transactions::terminal_tx_id.eq(terminal_tx_id))
            .select(TransactionRow::as_select())
            .load(conn)?;
        // A replacement owns its predecessor's history too; its own upload wins a clash of ids.
        let tx = found
            .iter()
            .find(|t| t.original_device_id == device.id)
            .or_else(|| found.first())
            .ok_or_else(|| Error::not_found("transaction"))?
            .clone();
        let automatic: TransactionStatus = tx.status.parse().unwrap_or(TransactionStatus::Unknown);
        if !automatic.allows_manual_status() {
            return Err(Error::new(
                ErrorCode::ManualStatusNotAllowed,
                format!(
                    "only a failed or unknown transaction gets a status by hand; this one is {}",
                    tx.status
                ),
            ));
        }
        if let Some(previous) = &tx.manual_status {
            return Err(Error::new(
                ErrorCode::ManualStatusNotAllowed,
                format!("its status was already set by hand to {previous}"),
            ));
        }
        let user: Option<(i64, String)> = device_sessions::table
            .inner_join(users::table)
            .filter(device_sessions::device_id.eq(device.id))
            .filter(device_sessions::ended_at.is_null())
            .select((users::id, users::email))
            .first(conn)
            .optional()?;
        let (user_id, email) = user
            .ok_or_else(|| Error::new(ErrorCode::NotLoggedIn, "log in to the app to set a status by hand"))?;
        let at = now();
        diesel::update(transactions::table.find(tx.id))
            .set((
                transactions::manual_status.eq(wanted.as_str()),
                transactions::manual_set_by.eq(user_id),
                transactions::manual_set_at.eq(at),
            ))
            .execute(conn)?;
        let subject = format!("transaction:{}", tx.id);
        audit::record(
            conn,
            &audit::NewAuditEvent {
                actor_user_id: Some(user_id),
                merchant_id: Some(tx.merchant_id),
                ..audit::NewAuditEvent::now(
                    &email,
                    "transaction.manual_status",
                    &subject,
                    &json!({"device_id": device.id, "automatic_status": tx.status, "manual_status": wanted.as_str()}),
                )
            },
        )?;
        crate::webhooks::enqueue(
            conn,
            "transaction.manual_status",
            Some(tx.merchant_id),
            json!({
                "transaction_id": tx.id,
                "terminal_tx_id": tx.terminal_tx_id,
                "device_id": device.id,
                "automatic_status": tx.status,
                "manual_status": wanted.as_str(),
                "set_by": email,
            }),
        )?;
        let tx: TransactionRow =
            transactions::table.find(tx.id).select(TransactionRow::as_select()).first(conn)?;
        Ok(tx.view())
    })
}

/// Filters of the overview and the export.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    pub location_id: Option<i64>,
    pub device_id: Option<i64>,
    /// The status in effect (manual when set).
    pub status: Option<String>,
    pub manual_only: bool,
}

/// What a query may return: one merchant, the locations the caller may read
/// (`None`: all), and the filter.
#[derive(Debug, Clone)]
pub struct Scope {
    pub merchant_id: i64,
    pub locations: Option<Vec<i64>>,
    pub filter: TransactionFilter,
}

/// Position after the last row of a page: newest first, by time then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub occurred_at: NaiveDateTime,
    pub id: i64,
}

impl Cursor {
    pub fn after(row: &TransactionRow) -> Cursor {
        Cursor { occurred_at: row.occurred_at, id: row.id }
    }

    pub fn encode(&self) -> String {
        format!("{}_{}", self.occurred_at.and_utc().timestamp_micros(), self.id)
    }

    pub fn decode(text: &str) -> Result<Cursor, Error> {
        let bad = || Error::invalid("after", "not a cursor from a previous page");
        let (micros, id) = text.split_once('_').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        let occurred_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?.naive_utc();
        Ok(Cursor { occurred_at, id })
    }
}

/// Resolves what the caller may read, needing `permission` at each location.
pub fn scope_for(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
    permission: Permission,
    filter: TransactionFilter,
) -> Result<Scope, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
    let locations = if actor.is_admin_of(merchant_id) {
        None
    } else {
        let all: Vec<i64> = locations::table
            .filter(locations::merchant_id.eq(merchant_id))
            .select(locations::id)
            .load(conn)?;
        let allowed: Vec<i64> =
            all.into_iter().filter(|l| actor.may(merchant_id, Some(*l), permission)).collect();
        if allowed.is_empty() {
            return Err(Error::forbidden(format!("this needs the {permission} permission")));
        }
        Some(allowed)
    };
    if let Some(d) = filter.device_id {
        // Checked here so that the rows' condition can name the terminal alone.
        match crate::devices::find(conn, d)? {
            Some(device)
                if device.merchant_id == merchant_id
                    && actor.sees_location(merchant_id, device.location_id) => {}
            _ => return Err(Error::not_found("device")),
        }
    }
    if let Some(l) = filter.location_id {
        if !actor.sees_location(merchant_id, l) {
            return Err(Error::not_found("location"));
        }
        if locations.as_ref().is_some_and(|allowed| !allowed.contains(&l)) {
            return Err(Error::forbidden(format!("this needs the {permission} permission at that location")));
        }
    }
    Ok(Scope { merchant_id, locations, filter })
}

type Predicate = Box<dyn BoxableExpression<transactions::table, Backend, SqlType = diesel::sql_types::Bool>>;

/// The rows a scope covers, as one boxed condition (GROUP BY does not work on
/// boxed queries, so the condition is boxed instead).
fn predicate(scope: &Scope) -> Predicate {
    // A terminal's rows are named by the terminal alone (`scope_for` checked
    // it is the merchant's): naming the merchant too would let PostgreSQL and
    // SQLite walk the merchant's index from the newest row instead of the
    // terminal's.
    let mut p: Predicate = match scope.filter.device_id {
        Some(d) => Box::new(transactions::device_id.eq(d)),
        None => Box::new(transactions::merchant_id.eq(scope.merchant_id)),
    };
    if let Some(allowed) = &scope.locations {
        p = Box::new(p.and(transactions::location_id.eq_any(allowed.clone())));
    }
    let f = &scope.filter;
    if let Some(from) = f.from {
        p = Box::new(p.and(transactions::occurred_at.ge(from)));
    }
    if let Some(to) = f.to {
        p = Box::new(p.and(transactions::occurred_at.lt(to)));
    }
    if let Some(l) = f.location_id {
        p = Box::new(p.and(transactions::location_id.eq(l)));
    }
    if let Some(s) = &f.status {
        let effective = transactions::manual_status
            .eq(s.clone())
            .or(transactions::manual_status.is_null().and(transactions::status.eq(s.clone())).nullable())
            .assume_not_null();
        p = Box::new(p.and(effective));
    }
    if f.manual_only {
        p = Box::new(p.and(transactions::manual_status.is_not_null()));
    }
    p
}

/// One page, newest first, after `cursor`.
pub fn page_rows(
    conn: &mut DbConnection,
    scope: &Scope,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<Vec<TransactionRow>, Error> {
    let mut condition = predicate(scope);
    if let Some(c) = cursor {
        // The `<=` bound lets the (merchant, time, id) index start the scan
        // at the cursor instead of at the newest row on every page.
        condition = Box::new(
            condition.and(transactions::occurred_at.le(c.occurred_at)).and(
                transactions::occurred_at
                    .lt(c.occurred_at)
                    .or(transactions::occurred_at.eq(c.occurred_at).and(transactions::id.lt(c.id))),
            ),
        );
    }
    Ok(transactions::table
        .filter(condition)
        .order((transactions::occurred_at.desc(), transactions::id.desc()))
        .limit(limit)
        .select(TransactionRow::as_select())
        .load(conn)?)
}

/// The net amount of the successful transactions: payments and completions
/// in, refunds and reversals out; pre-authorisations move no money.
const NET_AMOUNT: &str = "CAST(COALESCE(SUM(CASE WHEN COALESCE(manual_status, status) <> 'success' THEN 0 \
     WHEN tx_type IN ('payment', 'completion') THEN amount_minor \
     WHEN tx_type IN ('refund', 'reversal') THEN -amount_minor ELSE 0 END), 0) AS BIGINT)";

/// Per currency over the whole filter: how many transactions, and the net
/// amount of the successful ones (payments and completions in, refunds and
/// reversals out; pre-authorisations move no money).
pub fn totals(conn: &mut DbConnection, scope: &Scope) -> Result<Vec<CurrencyTotal>, Error> {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    let found: Vec<(String, i64, i64)> = transactions::table
        .filter(predicate(scope))
        .group_by(transactions::currency)
        .select((
            transactions::currency,
            sql::<BigInt>("CAST(COUNT(*) AS BIGINT)"),
            sql::<BigInt>(NET_AMOUNT),
        ))
        .order(transactions::currency)
        .load(conn)?;
    Ok(found
        .into_iter()
        .map(|(currency, count, amount_minor)| CurrencyTotal {
            currency,
            count,
            net_amount_minor: amount_minor,
        })
        .collect())
}

/// Per location and currency over the whole filter: (location, totals).
pub fn totals_by_location(
    conn: &mut DbConnection,
    scope: &Scope,
) -> Result<Vec<(i64, CurrencyTotal)>, Error> {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    let found: Vec<(i64, String, i64, i64)> = transactions::table
        .filter(predicate(scope))
        .group_by((transactions::location_id, transactions::currency))
        .select((
            transactions::location_id,
            transactions::currency,
            sql::<BigInt>("CAST(COUNT(*) AS BIGINT)"),
            sql::<BigInt>(NET_AMOUNT),
        ))
        .order((transactions::location_id, transactions::currency))
        .load(conn)?;
    Ok(found
        .into_iter()
        .map(|(location, currency, count, amount_minor)| {
            (location, CurrencyTotal { currency, count, net_amount_minor: amount_minor })
        })
        .collect())
}

/// The overview page: rows, the cursor of the next page, and (on the first
/// page only, as they cover the whole filter) the totals.
pub fn page(
    conn: &mut DbConnection,
    scope: &Scope,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<TransactionPage, Error> {
    let mut page = page_without_totals(conn, scope, cursor, limit)?;
    if cursor.is_none() {
        page.totals = Some(totals(conn, scope)?);
    }
    Ok(page)
}

/// The rows of a page and the next cursor only: the totals' cost grows
/// with the filter's rows, a page's does not.
pub fn page_without_totals(
    conn: &mut DbConnection,
    scope: &Scope,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<TransactionPage, Error> {
    let limit = limit.clamp(1, 500);
    let mut rows = page_rows(conn, scope, cursor, limit + 1)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(|r| Cursor::after(r).encode()) } else { None };
    Ok(TransactionPage { items: rows.iter().map(TransactionRow::view).collect(), next_cursor, totals: None })
}

/// The calling device's history (its own and inherited transactions).
pub fn device_history(
    conn: &mut DbConnection,
    device: &CallingDevice,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<TransactionPage, Error> {
    let scope = Scope {
        merchant_id: device.merchant_id,
        locations: None,
        filter: TransactionFilter { device_id: Some(device.id), ..Default::default() },
    };
    page(conn, &scope, cursor, limit)
}
