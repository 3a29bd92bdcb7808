//! Management API of the merchant app store: the operator's listing of an
//! app, and the catalogue, installs and uninstalls of merchants.

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::releases::AppView;
use tms_packages::wire::store::*;
use utoipa::IntoParams;

use crate::accounts::access::Actor;
use crate::http::AppState;
use crate::http::error::{Error, ErrorCode};
use crate::store::{self, CatalogueQuery, listing};

/// Change an app's name, visibility or store listing (release engineers,
/// operator admins).
#[utoipa::path(patch, path = "/api/v1/apps/{app_id}", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = UpdateAppRequest,
    responses((status = 200, body = AppView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_app(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    body: web::Json<UpdateAppRequest>,
) -> Result<web::Json<AppView>, Error> {
    let app_id = app_id.into_inner();
    let view = state.db.run(move |conn| listing::update_app(conn, &actor, &app_id, &body)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// Once the caller may edit the app's listing, reads a PNG, JPEG or WebP
/// image (told by its bytes) of at most 2 MiB and stores it as a blob;
/// returns its sha256 and content type.
async fn store_image(
    state: &AppState,
    actor: &Actor,
    app_id: &str,
    mut payload: web::Payload,
) -> Result<(String, String), Error> {
    {
        let (actor, app_id) = (actor.clone(), app_id.to_owned());
        state.db.run(move |conn| listing::check_listing_editable(conn, &actor, &app_id)).await?;
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::new(ErrorCode::UploadInterrupted, e.to_string()))?;
        if bytes.len() + chunk.len() > listing::IMAGE_LIMIT_BYTES {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("images are limited to {} bytes", listing::IMAGE_LIMIT_BYTES),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let content_type = tms_packages::store::image_type(&bytes)
        .ok_or_else(|| Error::new(ErrorCode::UnsupportedMediaType, "send a PNG, JPEG or WebP image"))?;
    let digest = state.blobs.put_bytes(bytes).await?;
    Ok((digest.to_hex(), content_type.to_owned()))
}

/// Set the app's icon: a PNG, JPEG or WebP image of at most 2 MiB.
#[utoipa::path(put, path = "/api/v1/apps/{app_id}/icon", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "image/png", description = "PNG, JPEG or WebP"),
    responses((status = 200, body = AppView), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope)))]
pub async fn set_icon(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<AppView>, Error> {
    let app_id = app_id.into_inner();
    let (sha, content_type) = store_image(&state, &actor, &app_id, payload).await?;
    Ok(web::Json(
        state.db.run(move |conn| listing::set_icon(conn, &actor, &app_id, &sha, &content_type)).await?,
    ))
}

/// Add a screenshot to the app's listing (at most 8).
#[utoipa::path(post, path = "/api/v1/apps/{app_id}/screenshots", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "image/png", description = "PNG, JPEG or WebP"),
    responses((status = 200, body = AppView), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope)))]
pub async fn add_screenshot(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<AppView>, Error> {
    let app_id = app_id.into_inner();
    let (sha, content_type) = store_image(&state, &actor, &app_id, payload).await?;
    Ok(web::Json(
        state.db.run(move |conn| listing::add_screenshot(conn, &actor, &app_id, &sha, &content_type)).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/apps/{app_id}/screenshots/{screenshot_id}", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path), ("screenshot_id" = i64, Path)),
    responses((status = 200, body = AppView), (status = 404, body = ErrorEnvelope)))]
pub async fn remove_screenshot(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, i64)>,
) -> Result<web::Json<AppView>, Error> {
    let (app_id, id) = path.into_inner();
    Ok(web::Json(state.db.run(move |conn| listing::remove_screenshot(conn, &actor, &app_id, id)).await?))
}

/// Offer a private app to a merchant.
#[utoipa::path(put, path = "/api/v1/apps/{app_id}/merchants/{merchant_id}", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path), ("merchant_id" = i64, Path)),
    responses((status = 200, body = AppView), (status = 404, body = ErrorEnvelope)))]
pub async fn grant_app(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, i64)>,
) -> Result<web::Json<AppView>, Error> {
    let (app_id, merchant) = path.into_inner();
    Ok(web::Json(state.db.run(move |conn| listing::grant(conn, &actor, &app_id, merchant, true)).await?))
}

/// Stop offering a private app to a merchant (its terminals keep it).
#[utoipa::path(delete, path = "/api/v1/apps/{app_id}/merchants/{merchant_id}", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path), ("merchant_id" = i64, Path)),
    responses((status = 200, body = AppView), (status = 404, body = ErrorEnvelope)))]
pub async fn ungrant_app(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, i64)>,
) -> Result<web::Json<AppView>, Error> {
    let (app_id, merchant) = path.into_inner();
    Ok(web::Json(state.db.run(move |conn| listing::grant(conn, &actor, &app_id, merchant, false)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CatalogueParams {
    /// The merchant, for operators acting for one.
    merchant_id: Option<i64>,
    /// Words that must all appear in the name, id, summary or category.
    search: Option<String>,
    category: Option<String>,
}

/// The merchant's catalogue: store apps, and private apps offered to it,
/// with a release that fits at least one of its terminals.
#[utoipa::path(get, path = "/api/v1/store/apps", tag = "store", security(("bearer" = [])), params(CatalogueParams),
    responses((status = 200, body = [StoreAppSummary]), (status = 403, body = ErrorEnvelope)))]
pub async fn catalogue(
    state: web::Data<AppState>,
    actor: Actor,
    params: web::Query<CatalogueParams>,
) -> Result<web::Json<Vec<StoreAppSummary>>, Error> {
    let params = params.into_inner();
    let query =
        CatalogueQuery { merchant_id: params.merchant_id, search: params.search, category: params.category };
    Ok(web::Json(state.db.run(move |conn| store::catalogue(conn, &actor, &query)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct MerchantParam {
    /// The merchant, for operators acting for one.
    merchant_id: Option<i64>,
}

/// One app as the merchant's store shows it, with every terminal's status.
#[utoipa::path(get, path = "/api/v1/store/apps/{app_id}", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path), MerchantParam),
    responses((status = 200, body = StoreAppView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_store_app(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    params: web::Query<MerchantParam>,
) -> Result<web::Json<StoreAppView>, Error> {
    let (app_id, merchant) = (app_id.into_inner(), params.merchant_id);
    Ok(web::Json(state.db.run(move |conn| store::show(conn, &actor, &app_id, merchant)).await?))
}

/// Install the app on terminals or whole locations: the newest compatible
/// release for each, at its next contact.
#[utoipa::path(post, path = "/api/v1/store/apps/{app_id}/install", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = StoreRequest,
    responses((status = 201, body = StoreRequestView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "`app_incompatible` names the model", body = ErrorEnvelope)))]
pub async fn install(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    body: web::Json<StoreRequest>,
) -> Result<HttpResponse, Error> {
    let app_id = app_id.into_inner();
    let view = state.db.run(move |conn| store::install(conn, &actor, &app_id, &body)).await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Created().json(view))
}

/// Remove the app from terminals or whole locations at their next contact.
#[utoipa::path(post, path = "/api/v1/store/apps/{app_id}/uninstall", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = StoreRequest,
    responses((status = 201, body = StoreRequestView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "`app_not_removable` for system apps", body = ErrorEnvelope)))]
pub async fn uninstall(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    body: web::Json<StoreRequest>,
) -> Result<HttpResponse, Error> {
    let app_id = app_id.into_inner();
    let view = state.db.run(move |conn| store::uninstall(conn, &actor, &app_id, &body)).await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Created().json(view))
}

pub async fn image_response(
    state: &AppState,
    actor: Actor,
    app_id: String,
    screenshot: Option<i64>,
) -> Result<HttpResponse, Error> {
    let (sha, content_type) =
        state.db.run(move |conn| listing::image(conn, &actor, &app_id, screenshot)).await?;
    let digest: tms_signing::Sha256Digest =
        sha.parse().map_err(|_| Error::new(ErrorCode::Internal, "a stored image digest is malformed"))?;
    let bytes = state.blobs.get_bytes(&digest).await?;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "private, max-age=86400"))
        .insert_header(("etag", format!("\"{sha}\"")))
        .body(bytes))
}

#[utoipa::path(get, path = "/api/v1/store/apps/{app_id}/icon", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path)),
    responses((status = 200, description = "the image", content_type = "image/png", body = Vec<u8>), (status = 404, body = ErrorEnvelope)))]
pub async fn icon(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    image_response(&state, actor, app_id.into_inner(), None).await
}

#[utoipa::path(get, path = "/api/v1/store/apps/{app_id}/screenshots/{screenshot_id}", tag = "store", security(("bearer" = [])),
    params(("app_id" = String, Path), ("screenshot_id" = i64, Path)),
    responses((status = 200, description = "the image", content_type = "image/png", body = Vec<u8>), (status = 404, body = ErrorEnvelope)))]
pub async fn screenshot(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, Error> {
    let (app_id, id) = path.into_inner();
    image_response(&state, actor, app_id, Some(id)).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, post, put, resource};
    cfg.service(resource("/api/v1/apps/{app_id}/icon").route(put().to(set_icon)))
        .service(resource("/api/v1/apps/{app_id}/screenshots").route(post().to(add_screenshot)))
        .service(
            resource("/api/v1/apps/{app_id}/screenshots/{screenshot_id}")
                .route(delete().to(remove_screenshot)),
        )
        .service(
            resource("/api/v1/apps/{app_id}/merchants/{merchant_id}")
                .route(put().to(grant_app))
                .route(delete().to(ungrant_app)),
        )
        .service(resource("/api/v1/store/apps").route(get().to(catalogue)))
        .service(resource("/api/v1/store/apps/{app_id}").route(get().to(show_store_app)))
        .service(resource("/api/v1/store/apps/{app_id}/install").route(post().to(install)))
        .service(resource("/api/v1/store/apps/{app_id}/uninstall").route(post().to(uninstall)))
        .service(resource("/api/v1/store/apps/{app_id}/icon").route(get().to(icon)))
        .service(
            resource("/api/v1/store/apps/{app_id}/screenshots/{screenshot_id}").route(get().to(screenshot)),
        );
}
