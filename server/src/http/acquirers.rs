//! Acquirers: management API and the terminal's parameter session.

use actix_web::{HttpResponse, web};
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::acquirers::*;

use crate::accounts::access::Actor;
use crate::acquirers;
use crate::devices::CallingDevice;
use crate::http::AppState;
use crate::http::error::Error;

/// Register an acquirer (operators, support).
#[utoipa::path(post, path = "/api/v1/acquirers", tag = "acquirers", security(("bearer" = [])), request_body = CreateAcquirerRequest,
    responses((status = 201, body = AcquirerView), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<CreateAcquirerRequest>,
) -> Result<HttpResponse, Error> {
    let view = state.db.run(move |conn| acquirers::create(conn, &actor, &body)).await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/api/v1/acquirers", tag = "acquirers", security(("bearer" = [])), responses((status = 200, body = [AcquirerView])))]
pub async fn list(state: web::Data<AppState>, actor: Actor) -> Result<web::Json<Vec<AcquirerView>>, Error> {
    Ok(web::Json(state.db.run(move |conn| acquirers::list(conn, &actor)).await?))
}

/// A new version of an acquirer's parameters, with its expiry.
#[utoipa::path(post, path = "/api/v1/acquirers/{id}/parameter-sets", tag = "acquirers", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = CreateAcquirerParametersRequest,
    responses((status = 201, body = AcquirerParametersView), (status = 404, body = ErrorEnvelope)))]
pub async fn add_parameters(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<String>,
    body: web::Json<CreateAcquirerParametersRequest>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let keys = state.master_keys.clone();
    let view = state.db.run(move |conn| acquirers::add_parameters(conn, &actor, &id, &body, &keys)).await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Created().json(view))
}

/// Revoke a version of an acquirer's parameters.
#[utoipa::path(post, path = "/api/v1/acquirers/{id}/parameter-sets/{version}/revoke", tag = "acquirers", security(("bearer" = [])),
    params(("id" = String, Path), ("version" = i64, Path)),
    responses((status = 200, body = AcquirerParametersView), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn revoke_parameters(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, i64)>,
) -> Result<web::Json<AcquirerParametersView>, Error> {
    let (id, version) = path.into_inner();
    let view = state.db.run(move |conn| acquirers::revoke_parameters(conn, &actor, &id, version)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// Record a merchant's contract with an acquirer (merchant-wide, or for a location or a device).
#[utoipa::path(post, path = "/api/v1/merchants/{id}/acquirer-contracts", tag = "acquirers", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = CreateContractRequest,
    responses((status = 201, body = ContractView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn add_contract(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<CreateContractRequest>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let view = state.db.run(move |conn| acquirers::add_contract(conn, &actor, id, &body)).await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/api/v1/merchants/{id}/acquirer-contracts", tag = "acquirers", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = [ContractView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_contracts(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<Vec<ContractView>>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| acquirers::list_contracts(conn, &actor, id)).await?))
}

/// Run an acquirer parameter session: the current parameters for this
/// terminal's contract with the acquirer.
#[utoipa::path(post, path = "/api/v1/terminal/acquirer-sessions/{acquirer_id}", tag = "terminal", security(("device" = [])),
    params(("acquirer_id" = String, Path)),
    responses((status = 200, body = AcquirerSessionResult),
        (status = 404, description = "`acquirer_session_not_found`: no such acquirer or contract", body = ErrorEnvelope),
        (status = 409, description = "`acquirer_session_failed`: the acquirer's set is revoked or invalid", body = ErrorEnvelope),
        (status = 410, description = "`acquirer_session_expired`: the parameters or the contract expired", body = ErrorEnvelope)))]
pub async fn session(
    state: web::Data<AppState>,
    device: CallingDevice,
    acquirer_id: web::Path<String>,
) -> Result<web::Json<AcquirerSessionResult>, Error> {
    let acquirer_id = acquirer_id.into_inner();
    let keys = state.master_keys.clone();
    Ok(web::Json(state.db.run(move |conn| acquirers::run_session(conn, &device, &acquirer_id, &keys)).await?))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, post, resource};
    cfg.service(resource("/api/v1/acquirers").route(post().to(create)).route(get().to(list)))
        .service(resource("/api/v1/acquirers/{id}/parameter-sets").route(post().to(add_parameters)))
        .service(
            resource("/api/v1/acquirers/{id}/parameter-sets/{version}/revoke")
                .route(post().to(revoke_parameters)),
        )
        .service(
            resource("/api/v1/merchants/{id}/acquirer-contracts")
                .route(post().to(add_contract))
                .route(get().to(list_contracts)),
        )
        .service(resource("/api/v1/terminal/acquirer-sessions/{acquirer_id}").route(post().to(session)));
}
