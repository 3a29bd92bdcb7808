//! Remote commands and collected logs: support and merchants send, the
//! terminal reports and uploads.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::commands::*;
use tms_signing::Sha256Digest;
use utoipa::IntoParams;

use crate::accounts::access::Actor;
use crate::blobs::StageError;
use crate::commands::{self, logs};
use crate::devices::CallingDevice;
use crate::http::AppState;
use crate::http::error::{Error, ErrorCode};

/// Queue a command for one terminal. Support and operator admins send any;
/// a merchant's users with `manage_devices` lock, unlock and message.
#[utoipa::path(post, path = "/api/v1/devices/{id}/commands", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = CommandRequest,
    responses((status = 201, body = CommandView),
        (status = 400, description = "`invalid_request` naming the field", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "the device is not active", body = ErrorEnvelope)))]
pub async fn issue_command(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<CommandRequest>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let view = state.db.run(move |conn| commands::issue(conn, &actor, id, &body)).await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Created().json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CommandListQuery {
    /// How many, newest first, 1 to 500 [default: 50].
    pub limit: Option<i64>,
}

/// A terminal's commands, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/commands", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path), CommandListQuery),
    responses((status = 200, body = [CommandView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_device_commands(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    query: web::Query<CommandListQuery>,
) -> Result<web::Json<Vec<CommandView>>, Error> {
    let (id, limit) = (id.into_inner(), query.limit.unwrap_or(50));
    Ok(web::Json(state.db.run(move |conn| commands::list_for_device(conn, &actor, id, limit)).await?))
}

#[utoipa::path(get, path = "/api/v1/commands/{id}", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = CommandView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_command(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<CommandView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| commands::show(conn, &actor, id)).await?))
}

/// Withdraw a command the terminal has not reported on yet.
#[utoipa::path(post, path = "/api/v1/commands/{id}/cancel", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = CommandView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`command_finished`", body = ErrorEnvelope)))]
pub async fn cancel_command(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<CommandView>, Error> {
    let id = id.into_inner();
    let view = state.db.run(move |conn| commands::cancel(conn, &actor, id)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// Queue one command for every active terminal of a target, fanned out in
/// the background at `command_fanout_per_sec`.
#[utoipa::path(post, path = "/api/v1/commands", tag = "commands", security(("bearer" = [])),
    request_body = GroupCommandRequest,
    responses((status = 202, body = CommandBatchView),
        (status = 400, description = "`invalid_request` or `invalid_target`", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
pub async fn issue_group_command(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<GroupCommandRequest>,
) -> Result<HttpResponse, Error> {
    let view = state.db.run(move |conn| commands::issue_to_group(conn, &actor, &body)).await?;
    Ok(HttpResponse::Accepted().json(view))
}

/// A group command: how far its fan-out got and its commands by state.
#[utoipa::path(get, path = "/api/v1/command-batches/{id}", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = CommandBatchView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_command_batch(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<CommandBatchView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| commands::show_batch(conn, &actor, id)).await?))
}

/// The logs a terminal uploaded and that are still kept (support only).
#[utoipa::path(get, path = "/api/v1/devices/{id}/logs", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = [CollectedLogView]), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_device_logs(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<Vec<CollectedLogView>>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| logs::list(conn, &actor, id)).await?))
}

/// Download a collected log as the terminal uploaded it (gzip when its
/// `content_encoding` says so); Range supported.
#[utoipa::path(get, path = "/api/v1/logs/{id}", tag = "commands", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, content_type = "application/octet-stream"), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn download_device_log(
    state: web::Data<AppState>,
    req: HttpRequest,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let row = state.db.run(move |conn| logs::find_for_download(conn, &actor, id)).await?;
    let digest: Sha256Digest = row.sha256.parse().map_err(|_| Error::not_found("log"))?;
    super::artifacts::serve(&state, &req, digest, row.size as u64, &row.file_name()).await
}

/// The terminal reports a command's result.
#[utoipa::path(post, path = "/api/v1/terminal/commands/{id}/result", tag = "terminal", security(("device" = [])),
    params(("id" = i64, Path)), request_body = CommandResultRequest,
    responses((status = 200, body = CommandView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`command_finished`: expired, cancelled or already reported", body = ErrorEnvelope)))]
pub async fn report_command_result(
    state: web::Data<AppState>,
    device: CallingDevice,
    id: web::Path<i64>,
    body: web::Json<CommandResultRequest>,
) -> Result<web::Json<CommandView>, Error> {
    let id = id.into_inner();
    let view = state.db.run(move |conn| commands::report(conn, &device, id, &body)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// The terminal uploads the log a `collect_logs` command asked for: raw or
/// `Content-Encoding: gzip`, at most the command's `max_bytes` as sent.
/// Completes the command.
#[utoipa::path(put, path = "/api/v1/terminal/commands/{id}/log", tag = "terminal", security(("device" = [])),
    params(("id" = i64, Path)), request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = CollectedLogView), (status = 400, description = "`upload_interrupted`", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`command_finished`, or a command that collects no log", body = ErrorEnvelope),
        (status = 413, description = "`payload_too_large`: past the command's max_bytes", body = ErrorEnvelope),
        (status = 415, description = "an encoding other than gzip", body = ErrorEnvelope)))]
pub async fn upload_command_log(
    state: web::Data<AppState>,
    req: HttpRequest,
    device: CallingDevice,
    id: web::Path<i64>,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let encoding = match req.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim())
    {
        None | Some("identity") => None,
        Some(e) if e.eq_ignore_ascii_case("gzip") => Some("gzip"),
        Some(other) => {
            return Err(Error::new(
                ErrorCode::UnsupportedMediaType,
                format!("{other:?}: a log is sent as is or with Content-Encoding: gzip"),
            ));
        }
    };
    let limit = {
        let device = device.clone();
        state.db.run(move |conn| logs::upload_allowed(conn, &device, id)).await?
    };
    let declared: Option<u64> =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let too_large =
        || Error::new(ErrorCode::PayloadTooLarge, format!("this log may have at most {limit} bytes"));
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let staged = match state.blobs.stage(payload, limit).await {
        Ok(staged) => staged,
        Err(StageError::TooLarge { .. }) => return Err(too_large()),
        Err(StageError::Interrupted(why)) => {
            tracing::info!(command = id, why, "log upload interrupted; nothing kept");
            return Err(Error::new(
                ErrorCode::UploadInterrupted,
                "the upload stopped before its end; nothing was kept",
            ));
        }
        Err(StageError::Storage(e)) => return Err(e.into()),
    };
    let size = staged.size;
    let digest = state.blobs.commit(staged).await?;
    let retention = chrono::Duration::days(state.config.log_retention_days as i64);
    let sha256 = digest.to_hex();
    // Should this fail (the command was cancelled meanwhile), the blob is
    // left to blob collection: no row names it.
    let view = state
        .db
        .run(move |conn| logs::record_upload(conn, &device, id, (&sha256, size, encoding), retention))
        .await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Created().json(view))
}

pub fn terminal_routes(cfg: &mut web::ServiceConfig) {
    use web::{post, put, resource};
    cfg.service(resource("/api/v1/terminal/commands/{id}/result").route(post().to(report_command_result)))
        .service(resource("/api/v1/terminal/commands/{id}/log").route(put().to(upload_command_log)));
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, head, post, resource};
    cfg.service(
        resource("/api/v1/devices/{id}/commands")
            .route(post().to(issue_command))
            .route(get().to(list_device_commands)),
    )
    .service(resource("/api/v1/devices/{id}/logs").route(get().to(list_device_logs)))
    .service(resource("/api/v1/commands").route(post().to(issue_group_command)))
    .service(resource("/api/v1/commands/{id}").route(get().to(show_command)))
    .service(resource("/api/v1/commands/{id}/cancel").route(post().to(cancel_command)))
    .service(resource("/api/v1/command-batches/{id}").route(get().to(show_command_batch)))
    .service(
        resource("/api/v1/logs/{id}")
            .route(get().to(download_device_log))
            .route(head().to(download_device_log)),
    );
}
