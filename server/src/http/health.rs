//! Liveness, readiness, metrics and the API description.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use tms_packages::wire::{ErrorEnvelope, Health, Readiness};
use utoipa::OpenApi;

use crate::http::AppState;
use crate::http::error::{Error, ErrorChain, ErrorCode};

/// How long one dependency may take to answer a readiness probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The process is alive. It does not look at dependencies, so a struggling
/// database never gets the server restarted.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health))
)]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// The database and the object store both answer.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers", body = Readiness),
        (status = 503, description = "A dependency does not answer; `details` names it (code `not_ready`)",
         body = ErrorEnvelope),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<web::Json<Readiness>, Error> {
    let (database, object_store) =
        tokio::join!(probe("database", state.db.ping()), probe("object_store", state.blobs.check()),);
    let checks = BTreeMap::from([
        ("database".to_owned(), database.clone()),
        ("object_store".to_owned(), object_store.clone()),
    ]);
    let failing: Vec<&str> = checks.iter().filter(|(_, v)| *v != "ok").map(|(k, _)| k.as_str()).collect();
    if failing.is_empty() {
        Ok(web::Json(Readiness { status: "ready".into(), version: env!("CARGO_PKG_VERSION").into(), checks }))
    } else {
        let message = format!("not ready: {} unavailable", failing.join(" and "));
        Err(Error::with_details(ErrorCode::NotReady, message, checks))
    }
}

/// "ok", or why not in a word; the cause goes to the log, not to the caller.
async fn probe<E: std::error::Error>(part: &str, check: impl Future<Output = Result<(), E>>) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => {
            tracing::warn!(part, error = %ErrorChain(&e), "readiness check failed");
            "unavailable".to_owned()
        }
        Err(_) => {
            tracing::warn!(part, timeout_s = CHECK_TIMEOUT.as_secs(), "readiness check timed out");
            "timeout".to_owned()
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(state.db.pool_use()))
}

/// This document: the OpenAPI 3 description of every endpoint.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object))
)]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::ApiDoc::openapi())
}

/// The public keys terminals verify signed answers with (the current one and
/// those rotated out whose answers may not have expired yet).
#[utoipa::path(
    get, path = "/.well-known/tms/answer-keys", tag = "terminal",
    responses((status = 200, body = tms_packages::wire::server_keys::ServerKeys))
)]
pub async fn answer_keys(
    state: web::Data<AppState>,
) -> Result<web::Json<tms_packages::wire::server_keys::ServerKeys>, Error> {
    Ok(web::Json(state.db.run(|conn| crate::server_keys::published(conn).map_err(Error::from)).await?))
}

/// Moves the server's clock forward, on a server started with `adjustable_clock` (tests only):
/// the route exists only there. Operator admins only.
#[utoipa::path(
    post, path = "/api/v1/test/clock", tag = "operations", security(("bearer" = [])),
    request_body = tms_packages::wire::AdvanceClockRequest,
    responses(
        (status = 200, body = tms_packages::wire::ClockView),
        (status = 403, body = ErrorEnvelope),
        (status = 400, description = "past a century in all", body = ErrorEnvelope),
        (status = 404, description = "a server whose clock is not adjustable has no such route", body = ErrorEnvelope),
    )
)]
pub async fn advance_clock(
    state: web::Data<AppState>,
    actor: crate::accounts::access::Actor,
    body: web::Json<tms_packages::wire::AdvanceClockRequest>,
) -> Result<web::Json<tms_packages::wire::ClockView>, Error> {
    actor.require_operator(&[tms_packages::accounts::OperatorRole::OperatorAdmin])?;
    let by = chrono::Duration::try_seconds(i64::try_from(body.advance_secs).unwrap_or(i64::MAX))
        .unwrap_or(chrono::Duration::MAX);
    if !state.clock.advance(by) {
        return Err(Error::invalid("advance_secs", "the clock moves forward by at most a century in all"));
    }
    tracing::warn!(advance_secs = body.advance_secs, "the server's clock was moved forward");
    Ok(web::Json(tms_packages::wire::ClockView { now: crate::time::rfc3339(state.clock.now()) }))
}
