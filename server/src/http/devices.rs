//! Management API over devices and transactions.

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use tms_packages::accounts::Permission;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::devices::*;
use utoipa::IntoParams;

use crate::accounts::access::Actor;
use crate::devices::management::{self, DeviceFilter};
use crate::devices::transactions::{self, Cursor, Scope, TransactionFilter, TransactionRow};
use crate::http::AppState;
use crate::http::error::{Error, ErrorChain};
use crate::time::parse_time;

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeviceQuery {
    pub location_id: Option<i64>,
    pub model: Option<String>,
    /// `salespoint` or `tapngo`.
    pub app: Option<String>,
    /// `active`, `deactivated` or `replaced`.
    pub status: Option<String>,
    /// Last TMS contact before this time (RFC 3339).
    pub contacted_before: Option<String>,
    /// Last TMS contact after this time (RFC 3339).
    pub contacted_after: Option<String>,
}

/// The merchant's devices at the locations the caller sees.
#[utoipa::path(get, path = "/api/v1/merchants/{id}/devices", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path), DeviceQuery),
    responses((status = 200, body = [DeviceView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_devices(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    query: web::Query<DeviceQuery>,
) -> Result<web::Json<Vec<DeviceView>>, Error> {
    let id = id.into_inner();
    let q = query.into_inner();
    let filter = DeviceFilter {
        location_id: q.location_id,
        model: q.model,
        app: q.app,
        status: q.status,
        contacted_before: q
            .contacted_before
            .as_deref()
            .map(|t| parse_time("contacted_before", t))
            .transpose()?,
        contacted_after: q
            .contacted_after
            .as_deref()
            .map(|t| parse_time("contacted_after", t))
            .transpose()?,
    };
    Ok(web::Json(state.db.run(move |conn| management::list(conn, &actor, id, &filter)).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DeviceView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_device(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<DeviceView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| management::show(conn, &actor, id)).await?))
}

/// "Deactivate this device": its token stops working, its users are logged
/// out, and its name is free for the replacement terminal or phone.
#[utoipa::path(post, path = "/api/v1/devices/{id}/deactivate", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = DeviceView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn deactivate_device(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<DeviceView>, Error> {
    let id = id.into_inner();
    let view = state.db.run(move |conn| management::deactivate(conn, &actor, id)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// Rename a device or move it to another location.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UpdateDeviceRequest,
    responses((status = 200, body = DeviceView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`device_name_taken`", body = ErrorEnvelope)))]
pub async fn update_device(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<UpdateDeviceRequest>,
) -> Result<web::Json<DeviceView>, Error> {
    let id = id.into_inner();
    let view = state.db.run(move |conn| management::update(conn, &actor, id, &body)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TransactionQuery {
    /// From this time on (RFC 3339, inclusive).
    pub from: Option<String>,
    /// Before this time (RFC 3339, exclusive).
    pub to: Option<String>,
    pub location_id: Option<i64>,
    pub device_id: Option<i64>,
    /// The status in effect: `success`, `failure`, `cancelled` or `unknown`.
    pub status: Option<String>,
    /// Only transactions whose status was set by hand.
    #[serde(default)]
    pub manual_only: bool,
    /// Cursor from the previous page (overview only).
    pub after: Option<String>,
    /// Page size, 1 to 500 [default: 100] (overview only).
    pub limit: Option<i64>,
    /// `csv` or `jsonl` (export only) [default: csv].
    pub format: Option<String>,
}

impl TransactionQuery {
    fn filter(&self) -> Result<TransactionFilter, Error> {
        Ok(TransactionFilter {
            from: self.from.as_deref().map(|t| parse_time("from", t)).transpose()?,
            to: self.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
            location_id: self.location_id,
            device_id: self.device_id,
            status: self.status.clone(),
            manual_only: self.manual_only,
        })
    }
}

/// The transactions overview: newest first, keyset-paged, with totals per
/// currency over the whole filter. Needs `view_transactions`.
#[utoipa::path(get, path = "/api/v1/merchants/{id}/transactions", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path), TransactionQuery),
    responses((status = 200, body = TransactionPage), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_transactions(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    query: web::Query<TransactionQuery>,
) -> Result<web::Json<TransactionPage>, Error> {
    let id = id.into_inner();
    let filter = query.filter()?;
    let cursor = query.after.as_deref().map(Cursor::decode).transpose()?;
    let limit = query.limit.unwrap_or(100);
    Ok(web::Json(
        state
            .db
            .run(move |conn| {
                let scope = transactions::scope_for(conn, &actor, id, Permission::ViewTransactions, filter)?;
                transactions::page(conn, &scope, cursor, limit)
            })
            .await?,
    ))
}

const EXPORT_PAGE: i64 = 2000;
const CSV_HEADER: &str = "id,terminal_tx_id,occurred_at,device_id,location_id,type,amount_minor,currency,acquirer,\
masked_card,status,status_source,automatic_status,manual_set_by,manual_set_at,receipt_printed\n";

fn csv_field(out: &mut String, value: &str) {
    // A spreadsheet runs a cell that starts like a formula; what a terminal
    // sent must stay text.
    let neutralised;
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        neutralised = format!("'{value}");
        neutralised.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_rows(rows: &[TransactionRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 160);
    for row in rows {
        let v = row.view();
        let fields = [
            v.id.to_string(),
            v.terminal_tx_id,
            v.occurred_at,
            v.device_id.to_string(),
            v.location_id.to_string(),
            v.tx_type,
            v.amount_minor.to_string(),
            v.currency,
            v.acquirer,
            v.masked_card,
            v.status,
            v.status_source,
            v.automatic_status,
            v.manual_set_by.map(|u| u.to_string()).unwrap_or_default(),
            v.manual_set_at.unwrap_or_default(),
            v.receipt_printed.to_string(),
        ];
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, field);
        }
        out.push('\n');
    }
    out
}

fn jsonl_rows(rows: &[TransactionRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 300);
    for row in rows {
        out.push_str(&serde_json::to_string(&row.view()).expect("views serialise"));
        out.push('\n');
    }
    out
}

enum ExportStep {
    Header,
    Page(Option<Cursor>),
    Done,
}

/// Export the transactions as CSV or JSON lines, streamed page by page in
/// constant memory whatever their number. The `status_source` column tells
/// automatic from manual statuses. Needs `export_transactions`.
#[utoipa::path(get, path = "/api/v1/merchants/{id}/transactions/export", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path), TransactionQuery),
    responses((status = 200, description = "CSV (text/csv) or JSON lines (application/x-ndjson)", content_type = "text/csv", body = String),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn export_transactions(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    query: web::Query<TransactionQuery>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let jsonl = match query.format.as_deref().unwrap_or("csv") {
        "csv" => false,
        "jsonl" => true,
        other => return Err(Error::invalid("format", format!("{other:?}: csv or jsonl"))),
    };
    let filter = query.filter()?;
    let scope: Scope = state
        .db
        .run(move |conn| transactions::scope_for(conn, &actor, id, Permission::ExportTransactions, filter))
        .await?;
    let db = state.db.clone();
    let stream = futures_util::stream::unfold(ExportStep::Header, move |step| {
        let db = db.clone();
        let scope = scope.clone();
        async move {
            match step {
                ExportStep::Header if !jsonl => {
                    Some((Ok(Bytes::from_static(CSV_HEADER.as_bytes())), ExportStep::Page(None)))
                }
                ExportStep::Header => Some((Ok(Bytes::new()), ExportStep::Page(None))),
                ExportStep::Page(cursor) => {
                    match db.run(move |conn| transactions::page_rows(conn, &scope, cursor, EXPORT_PAGE)).await
                    {
                        Ok(rows) if rows.is_empty() => None,
                        Ok(rows) => {
                            let next = rows.last().map(Cursor::after);
                            let text = if jsonl { jsonl_rows(&rows) } else { csv_rows(&rows) };
                            Some((Ok(Bytes::from(text)), ExportStep::Page(next)))
                        }
                        Err(e) => {
                            // Headers are gone; cutting the stream short is the only signal left.
                            tracing::error!(error = %ErrorChain(&e), "transaction export failed");
                            Some((
                                Err(actix_web::error::ErrorInternalServerError("export failed")),
                                ExportStep::Done,
                            ))
                        }
                    }
                }
                ExportStep::Done => None,
            }
        }
    });
    let (content_type, extension) =
        if jsonl { ("application/x-ndjson", "jsonl") } else { ("text/csv; charset=utf-8", "csv") };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"transactions-{id}.{extension}\""),
        ))
        .streaming(stream))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, patch, post, resource};
    cfg.service(resource("/api/v1/merchants/{id}/devices").route(get().to(list_devices)))
        .service(
            resource("/api/v1/devices/{id}").route(get().to(show_device)).route(patch().to(update_device)),
        )
        .service(resource("/api/v1/devices/{id}/deactivate").route(post().to(deactivate_device)))
        .service(resource("/api/v1/merchants/{id}/transactions").route(get().to(list_transactions)))
        .service(resource("/api/v1/merchants/{id}/transactions/export").route(get().to(export_transactions)));
}
