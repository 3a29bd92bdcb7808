//! The terminal API: what the payment app on a terminal or phone calls.
//! Everything but activation authenticates with the device token.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::devices::*;
use utoipa::IntoParams;

use crate::devices::transactions::{self, Cursor};
use crate::devices::{self, CallingDevice, activation};
use crate::http::error::Error;
use crate::http::{AppState, client_ip, device_token};

/// The calling device, from `Authorization: Bearer <device token>`.
impl FromRequest for CallingDevice {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<CallingDevice, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = device_token(req);
        Box::pin(async move {
            let state = state.expect("AppState is registered");
            let token = token?;
            let device = state.db.run(move |conn| devices::authenticate(conn, &token)).await?;
            state.contact.heard_from(device.id);
            Ok(CallingDevice::from(device))
        })
    }
}

/// Activation, step one: the user's e-mail and password (two-step
/// verification does not apply), the app and the hardware. Answers a ticket
/// and the locations the user may choose.
#[utoipa::path(post, path = "/api/v1/terminal/activation/start", tag = "terminal",
    request_body = ActivationStartRequest,
    responses((status = 200, body = ActivationTicket),
        (status = 401, description = "`invalid_credentials`", body = ErrorEnvelope),
        (status = 403, description = "the user may not activate the app", body = ErrorEnvelope),
        (status = 404, description = "`unknown_terminal`: the serial is not in the merchant's estate", body = ErrorEnvelope),
        (status = 409, description = "`device_already_active`", body = ErrorEnvelope),
        (status = 429, description = "`too_many_attempts`", body = ErrorEnvelope)))]
pub async fn activation_start(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ActivationStartRequest>,
) -> Result<web::Json<ActivationTicket>, Error> {
    let settings = state.accounts.clone();
    let ip = client_ip(&req);
    Ok(web::Json(state.db.run(move |conn| activation::start(conn, &body, ip.as_deref(), &settings)).await?))
}

/// Activation, step two: the ticket, the chosen location and device name.
/// The name of a deactivated device makes this one its replacement.
#[utoipa::path(post, path = "/api/v1/terminal/activation/complete", tag = "terminal",
    request_body = ActivationCompleteRequest,
    responses((status = 201, body = ActivatedDevice),
        (status = 400, description = "`activation_ticket_invalid` or `invalid_request`", body = ErrorEnvelope),
        (status = 404, description = "a location the user may not activate in", body = ErrorEnvelope),
        (status = 409, description = "`device_name_taken` or `device_already_active`", body = ErrorEnvelope)))]
pub async fn activation_complete(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ActivationCompleteRequest>,
) -> Result<HttpResponse, Error> {
    let ip = client_ip(&req);
    let device = state.db.run(move |conn| activation::complete(conn, &body, ip.as_deref())).await?;
    Ok(HttpResponse::Created().json(device))
}

/// A user logs in to the app on this device.
#[utoipa::path(post, path = "/api/v1/terminal/login", tag = "terminal", security(("device" = [])),
    request_body = DeviceLoginRequest,
    responses((status = 204), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn device_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    device: CallingDevice,
    body: web::Json<DeviceLoginRequest>,
) -> Result<HttpResponse, Error> {
    let settings = state.accounts.clone();
    let ip = client_ip(&req);
    state
        .db
        .run(move |conn| {
            activation::login(conn, &device, &body.email, &body.password, ip.as_deref(), &settings)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The user logs out of the app on this device; their profile is no longer in use here.
#[utoipa::path(post, path = "/api/v1/terminal/logout", tag = "terminal", security(("device" = [])),
    responses((status = 204), (status = 401, body = ErrorEnvelope)))]
pub async fn device_logout(state: web::Data<AppState>, device: CallingDevice) -> Result<HttpResponse, Error> {
    state.db.run(move |conn| activation::logout(conn, &device)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Upload transactions (up to 1000); retries are recognised by the terminal's own id.
#[utoipa::path(post, path = "/api/v1/terminal/transactions", tag = "terminal", security(("device" = [])),
    request_body = TransactionBatch,
    responses((status = 200, body = TransactionBatchResult),
        (status = 400, description = "`invalid_request` naming the transaction and field, or `pan_not_allowed`", body = ErrorEnvelope),
        (status = 401, description = "`device_deactivated` or `invalid_device_token`", body = ErrorEnvelope)))]
pub async fn upload_transactions(
    state: web::Data<AppState>,
    device: CallingDevice,
    body: web::Json<TransactionBatch>,
) -> Result<web::Json<TransactionBatchResult>, Error> {
    Ok(web::Json(state.db.run(move |conn| transactions::upload(conn, &device, &body)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Cursor from the previous page.
    pub after: Option<String>,
    /// Page size, 1 to 500 [default: 100].
    pub limit: Option<i64>,
}

/// This device's transactions, newest first, including those inherited from
/// the device it replaced.
#[utoipa::path(get, path = "/api/v1/terminal/transactions", tag = "terminal", security(("device" = [])),
    params(HistoryQuery), responses((status = 200, body = TransactionPage), (status = 401, body = ErrorEnvelope)))]
pub async fn transaction_history(
    state: web::Data<AppState>,
    device: CallingDevice,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<TransactionPage>, Error> {
    let q = query.into_inner();
    let cursor = q.after.as_deref().map(Cursor::decode).transpose()?;
    let limit = q.limit.unwrap_or(100);
    Ok(web::Json(state.db.run(move |conn| transactions::device_history(conn, &device, cursor, limit)).await?))
}

/// Set the status of a failed or unknown transaction by hand (success or
/// failure); recorded as manual, with who and when, beside the automatic one.
#[utoipa::path(post, path = "/api/v1/terminal/transactions/{terminal_tx_id}/manual-status", tag = "terminal",
    security(("device" = [])), params(("terminal_tx_id" = String, Path)), request_body = ManualStatusRequest,
    responses((status = 200, body = TransactionView), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`manual_status_not_allowed` or `not_logged_in`", body = ErrorEnvelope)))]
pub async fn manual_status(
    state: web::Data<AppState>,
    device: CallingDevice,
    id: web::Path<String>,
    body: web::Json<ManualStatusRequest>,
) -> Result<web::Json<TransactionView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(
        state.db.run(move |conn| transactions::set_manual_status(conn, &device, &id, &body.status)).await?,
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, post, resource};
    let small = || super::json_config(super::AUTH_BODY_LIMIT);
    cfg.service(
        resource("/api/v1/terminal/activation/start").app_data(small()).route(post().to(activation_start)),
    )
    .service(
        resource("/api/v1/terminal/activation/complete")
            .app_data(small())
            .route(post().to(activation_complete)),
    )
    .service(resource("/api/v1/terminal/login").app_data(small()).route(post().to(device_login)))
    .service(resource("/api/v1/terminal/logout").route(post().to(device_logout)))
    .service(
        resource("/api/v1/terminal/transactions")
            .route(post().to(upload_transactions))
            .route(get().to(transaction_history)),
    )
    .service(
        resource("/api/v1/terminal/transactions/{terminal_tx_id}/manual-status")
            .route(post().to(manual_status)),
    );
}
