//! Webhook subscriptions and their delivery log.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::webhooks::*;
use utoipa::IntoParams;

use crate::accounts::access::Actor;
use crate::http::AppState;
use crate::http::error::Error;
use crate::webhooks;

/// Subscribe a URL to events: operator admins (every merchant's events and
/// rollouts) or a merchant's admins (their own). The answer carries the
/// signing secret, shown once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = CreateWebhookRequest,
    responses((status = 201, body = WebhookView), (status = 400, description = "`invalid_request` naming url or events", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
pub async fn create_webhook(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<CreateWebhookRequest>,
) -> Result<HttpResponse, Error> {
    let keys = state.master_keys.clone();
    let view = state.db.run(move |conn| webhooks::create(conn, &actor, &keys, &body)).await?;
    Ok(HttpResponse::Created().json(view))
}

/// The caller's subscriptions (without their secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = [WebhookView]), (status = 403, body = ErrorEnvelope)))]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    actor: Actor,
) -> Result<web::Json<Vec<WebhookView>>, Error> {
    Ok(web::Json(state.db.run(move |conn| webhooks::list(conn, &actor)).await?))
}

/// Unsubscribe: nothing more is sent, pending deliveries included.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    state.db.run(move |conn| webhooks::delete(conn, &actor, id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryQuery {
    /// How many, newest first, 1 to 500 [default: 50].
    pub limit: Option<i64>,
}

/// A subscription's delivery log: each event, its attempts, the receiver's
/// last answer.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = i64, Path), DeliveryQuery),
    responses((status = 200, body = [WebhookDeliveryView]), (status = 404, body = ErrorEnvelope)))]
pub async fn webhook_deliveries(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<Vec<WebhookDeliveryView>>, Error> {
    let (id, limit) = (id.into_inner(), query.limit.unwrap_or(50));
    Ok(web::Json(state.db.run(move |conn| webhooks::deliveries(conn, &actor, id, limit)).await?))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, post, resource};
    cfg.service(resource("/api/v1/webhooks").route(post().to(create_webhook)).route(get().to(list_webhooks)))
        .service(resource("/api/v1/webhooks/{id}").route(delete().to(delete_webhook)))
        .service(resource("/api/v1/webhooks/{id}/deliveries").route(get().to(webhook_deliveries)));
}
