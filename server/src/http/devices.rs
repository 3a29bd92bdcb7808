//! Management API over devices and transactions.

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use tms_packages::accounts::Permission;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::devices::*;
use utoipa::IntoParams;

use crate::accounts::access::Actor;
use crate::devices::export::{self, ExportFormat};
use crate::devices::management::{self, DeviceFilter};
use crate::devices::missing;
use crate::devices::transactions::{self, Cursor, Scope, TransactionFilter};
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

/// Registers a Linux device that speaks hawkBit's DDI API (a kiosk, an EV
/// charger) at a location, and issues its TargetToken, shown once. It takes
/// firmware releases that name its model; see docs/ddi.md.
#[utoipa::path(post, path = "/api/v1/linux-devices", tag = "devices", security(("bearer" = [])),
    request_body = RegisterLinuxDeviceRequest,
    responses((status = 201, body = LinuxDeviceRegistered), (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`device_name_taken`: the controller id or name is taken", body = ErrorEnvelope)))]
pub async fn register_linux_device(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<RegisterLinuxDeviceRequest>,
) -> Result<HttpResponse, Error> {
    let registered = state.db.run(move |conn| crate::devices::linux::register(conn, &actor, &body)).await?;
    Ok(HttpResponse::Created().json(registered))
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
    let format = match query.format.as_deref().unwrap_or("csv") {
        "csv" => ExportFormat::Csv,
        "jsonl" => ExportFormat::JsonLines,
        other => return Err(Error::invalid("format", format!("{other:?}: csv or jsonl"))),
    };
    let filter = query.filter()?;
    let scope: Scope = state
        .db
        .run(move |conn| transactions::scope_for(conn, &actor, id, Permission::ExportTransactions, filter))
        .await?;
    let stream = export::stream(state.db.clone(), scope, format).map(|chunk| {
        chunk.map_err(|e| {
            // Headers are gone; cutting the stream short is the only signal left.
            tracing::error!(error = %ErrorChain(&e), "transaction export failed");
            actix_web::error::ErrorInternalServerError("export failed")
        })
    });
    let (content_type, extension) = (format.content_type(), format.extension());
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"transactions-{id}.{extension}\""),
        ))
        .streaming(stream))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct MissingQuery {
    /// Only this merchant's (a merchant's user: always their own).
    pub merchant_id: Option<i64>,
}

/// Terminals not heard from for longer than their merchant's threshold,
/// longest silent first.
#[utoipa::path(get, path = "/api/v1/missing-terminals", tag = "devices", security(("bearer" = [])),
    params(MissingQuery),
    responses((status = 200, body = [MissingTerminalView]), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_missing(
    state: web::Data<AppState>,
    actor: Actor,
    query: web::Query<MissingQuery>,
) -> Result<web::Json<Vec<MissingTerminalView>>, Error> {
    let merchant = query.merchant_id;
    Ok(web::Json(state.db.run(move |conn| missing::list(conn, &actor, merchant)).await?))
}

/// A merchant's own missing-terminal threshold, or back to the default.
#[utoipa::path(put, path = "/api/v1/merchants/{id}/missing-threshold", tag = "devices", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = MissingThresholdRequest,
    responses((status = 200, body = MissingThresholdView), (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn set_missing_threshold(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<MissingThresholdRequest>,
) -> Result<web::Json<MissingThresholdView>, Error> {
    let (id, hours) = (id.into_inner(), body.hours);
    let default_hours = state.config.missing_after_hours as i64;
    Ok(web::Json(
        state.db.run(move |conn| missing::set_threshold(conn, &actor, id, hours, default_hours)).await?,
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, patch, post, put, resource};
    cfg.service(resource("/api/v1/merchants/{id}/devices").route(get().to(list_devices)))
        .service(
            resource("/api/v1/devices/{id}").route(get().to(show_device)).route(patch().to(update_device)),
        )
        .service(resource("/api/v1/devices/{id}/deactivate").route(post().to(deactivate_device)))
        .service(resource("/api/v1/linux-devices").route(post().to(register_linux_device)))
        .service(resource("/api/v1/missing-terminals").route(get().to(list_missing)))
        .service(resource("/api/v1/merchants/{id}/missing-threshold").route(put().to(set_missing_threshold)))
        .service(resource("/api/v1/merchants/{id}/transactions").route(get().to(list_transactions)))
        .service(resource("/api/v1/merchants/{id}/transactions/export").route(get().to(export_transactions)));
}
