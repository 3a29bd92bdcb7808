//! Management API of apps, publisher keys and releases, and artifact
//! downloads for the CLI and for terminals.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use tms_packages::releases::SignedManifest;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::releases::*;
use tms_signing::Sha256Digest;

use crate::accounts::access::Actor;
use crate::devices::CallingDevice;
use crate::http::error::{Error, ErrorCode};
use crate::http::{AppState, artifacts};
use crate::releases;

/// Register an app (release engineers, operator admins).
#[utoipa::path(post, path = "/api/v1/apps", tag = "releases", security(("bearer" = [])), request_body = CreateAppRequest,
    responses((status = 201, body = AppView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn create_app(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<CreateAppRequest>,
) -> Result<HttpResponse, Error> {
    let app = state.db.run(move |conn| releases::create_app(conn, &actor, &body)).await?;
    Ok(HttpResponse::Created().json(app))
}

#[utoipa::path(get, path = "/api/v1/apps", tag = "releases", security(("bearer" = [])), responses((status = 200, body = [AppView])))]
pub async fn list_apps(state: web::Data<AppState>, actor: Actor) -> Result<web::Json<Vec<AppView>>, Error> {
    Ok(web::Json(state.db.run(move |conn| releases::list_apps(conn, &actor)).await?))
}

#[utoipa::path(get, path = "/api/v1/apps/{app_id}", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path)), responses((status = 200, body = AppView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_app(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
) -> Result<web::Json<AppView>, Error> {
    let app_id = app_id.into_inner();
    Ok(web::Json(state.db.run(move |conn| releases::show_app(conn, &actor, &app_id)).await?))
}

/// Allow a publisher key to sign the app's releases (weak keys are refused).
#[utoipa::path(post, path = "/api/v1/apps/{app_id}/keys", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = AddPublisherKeyRequest,
    responses((status = 200, body = AppView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn add_key(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    body: web::Json<AddPublisherKeyRequest>,
) -> Result<web::Json<AppView>, Error> {
    let app_id = app_id.into_inner();
    Ok(web::Json(state.db.run(move |conn| releases::add_key(conn, &actor, &app_id, &body)).await?))
}

/// Revoke a publisher key: it signs nothing new; earlier releases stay valid.
#[utoipa::path(post, path = "/api/v1/apps/{app_id}/keys/{key_id}/revoke", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path), ("key_id" = String, Path)),
    responses((status = 200, body = AppView), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_key(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String)>,
) -> Result<web::Json<AppView>, Error> {
    let (app_id, key_id) = path.into_inner();
    Ok(web::Json(state.db.run(move |conn| releases::revoke_key(conn, &actor, &app_id, &key_id)).await?))
}

fn signed_manifest(req: &HttpRequest) -> Result<SignedManifest, Error> {
    let invalid = |why: String| {
        Error::with_details(
            ErrorCode::InvalidManifest,
            why,
            std::collections::BTreeMap::from([("field".to_owned(), MANIFEST_HEADER.to_owned())]),
        )
    };
    let raw = req.headers().get(MANIFEST_HEADER).ok_or_else(|| {
        invalid(format!("send the signed manifest, base64-encoded, in the {MANIFEST_HEADER} header"))
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.as_bytes())
        .map_err(|e| invalid(format!("the {MANIFEST_HEADER} header is not base64: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not a signed manifest: {e}")))
}

/// Publish a release: the signed manifest in the `x-tms-signed-manifest`
/// header (base64 of its JSON), the artifact as the request body, streamed.
/// The manifest, key, signature and version rules are checked before the body
/// is read; the artifact is hashed while it is stored and becomes visible
/// only once its size and sha256 match.
#[utoipa::path(post, path = "/api/v1/apps/{app_id}/releases", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path), ("x-tms-signed-manifest" = String, Header, description = "base64 of the signed manifest JSON")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the artifact"),
    responses((status = 201, body = ReleaseView),
        (status = 400, description = "`invalid_manifest`, `signature_invalid`, `hash_mismatch`, `size_mismatch`, `upload_interrupted`", body = ErrorEnvelope),
        (status = 409, description = "`unknown_publisher_key`, `key_revoked`, `version_not_higher`, `release_exists`", body = ErrorEnvelope),
        (status = 413, description = "`artifact_too_large`", body = ErrorEnvelope)))]
pub async fn publish(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Error> {
    let app_id = app_id.into_inner();
    let signed = signed_manifest(&req)?;
    let declared: Option<u64> = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let limit = state.config.max_artifact_bytes;
    let release =
        releases::publish::publish(&state.db, &state.blobs, actor, app_id, signed, declared, limit, payload)
            .await?;
    Ok(HttpResponse::Created().json(release))
}

/// Check a signed manifest without uploading anything: the same checks
/// publishing makes before it reads the artifact (run it before a long upload).
#[utoipa::path(post, path = "/api/v1/apps/{app_id}/releases/check", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = SignedManifest,
    responses((status = 204, description = "publishable"), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope)))]
pub async fn check(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    body: web::Json<SignedManifest>,
) -> Result<HttpResponse, Error> {
    let app_id = app_id.into_inner();
    let limit = state.config.max_artifact_bytes;
    if body.manifest.artifact_size > limit {
        return Err(Error::new(
            ErrorCode::ArtifactTooLarge,
            format!("artifacts are limited to {limit} bytes"),
        ));
    }
    state.db.run(move |conn| releases::check_publishable(conn, &actor, &app_id, &body)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/apps/{app_id}/releases", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path)), responses((status = 200, body = [ReleaseView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_releases(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
) -> Result<web::Json<Vec<ReleaseView>>, Error> {
    let app_id = app_id.into_inner();
    Ok(web::Json(state.db.run(move |conn| releases::list_releases(conn, &actor, &app_id)).await?))
}

#[utoipa::path(get, path = "/api/v1/apps/{app_id}/releases/{version}", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ReleaseView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_release(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String)>,
) -> Result<web::Json<ReleaseView>, Error> {
    let (app_id, version) = path.into_inner();
    let view = state
        .db
        .run(move |conn| {
            let release = releases::show_release(conn, &actor, &app_id, &version)?;
            let mut view = release.view();
            view.deltas = releases::deltas::of_release(conn, release.id)?;
            Ok::<_, crate::error::Error>(view)
        })
        .await?;
    Ok(web::Json(view))
}

/// Withdraw a release: never offered again; terminals that have it keep it.
#[utoipa::path(post, path = "/api/v1/apps/{app_id}/releases/{version}/withdraw", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ReleaseView), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn withdraw(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String)>,
) -> Result<web::Json<ReleaseView>, Error> {
    let (app_id, version) = path.into_inner();
    let view = state.db.run(move |conn| releases::withdraw(conn, &actor, &app_id, &version)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// Download a release's artifact (GET or HEAD; `Range`, `If-Range`, `ETag`).
#[utoipa::path(get, path = "/api/v1/apps/{app_id}/releases/{version}/artifact", tag = "releases", security(("bearer" = [])),
    params(("app_id" = String, Path), ("version" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "the requested range"),
        (status = 404, body = ErrorEnvelope), (status = 416, description = "`range_not_satisfiable`", body = ErrorEnvelope)))]
pub async fn download(
    state: web::Data<AppState>,
    actor: Actor,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Error> {
    let (app_id, version) = path.into_inner();
    let release = state.db.run(move |conn| releases::show_release(conn, &actor, &app_id, &version)).await?;
    let digest: Sha256Digest = release.artifact_sha256.parse().map_err(|_| Error::not_found("artifact"))?;
    let name = format!("{}-{}.bin", release.app_id, release.version);
    artifacts::serve(&state, &req, digest, release.artifact_size as u64, &name).await
}

/// A terminal downloads an artifact by its sha256 (GET or HEAD; `Range` to resume): only the
/// artifact of a release that a deployment in force offers this terminal.
#[utoipa::path(get, path = "/api/v1/terminal/artifacts/{sha256}", tag = "terminal", security(("device" = [])),
    params(("sha256" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "the requested range"),
        (status = 404, body = ErrorEnvelope),
        (status = 410, description = "`release_withdrawn`: the release this terminal was offered was withdrawn", body = ErrorEnvelope),
        (status = 416, body = ErrorEnvelope)))]
pub async fn device_download(
    state: web::Data<AppState>,
    device: CallingDevice,
    req: HttpRequest,
    sha256: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let digest: Sha256Digest = sha256.parse().map_err(|_| Error::not_found("artifact"))?;
    let hex = digest.to_hex();
    let candidates =
        state.db.run(move |conn| releases::releases_by_artifact(conn, &hex).map_err(Error::from)).await?;
    // Only what the planner offers this terminal; a withdrawn release it
    // was offered says so; anything else answers as an artifact that does
    // not exist.
    let ids: Vec<i64> = candidates.iter().map(|r| r.id).collect();
    let offered = state.contact.offered_release(&device, &ids).await?;
    let Some(release) = candidates.into_iter().find(|r| Some(r.id) == offered) else {
        let (hex, registration) = (digest.to_hex(), (device.id, device.merchant_id, device.location_id));
        let withdrawn = state
            .db
            .run(move |conn| crate::rollouts::deployments::withdrawn_offer_reached(conn, &hex, registration))
            .await?;
        return Err(if withdrawn {
            Error::new(
                ErrorCode::ReleaseWithdrawn,
                "the release was withdrawn: report the install as failed with this code",
            )
        } else {
            Error::not_found("artifact")
        });
    };
    let name = format!("{}-{}.bin", release.app_id, release.version);
    artifacts::serve(&state, &req, digest, release.artifact_size as u64, &name).await
}

/// A terminal downloads a delta by its sha256 (GET or HEAD; `Range` to resume): only a delta
/// to a release that a deployment in force offers this terminal.
#[utoipa::path(get, path = "/api/v1/terminal/deltas/{sha256}", tag = "terminal", security(("device" = [])),
    params(("sha256" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "the requested range"),
        (status = 404, body = ErrorEnvelope), (status = 416, body = ErrorEnvelope)))]
pub async fn device_delta_download(
    state: web::Data<AppState>,
    device: CallingDevice,
    req: HttpRequest,
    sha256: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let digest: Sha256Digest = sha256.parse().map_err(|_| Error::not_found("delta"))?;
    let hex = digest.to_hex();
    let targets =
        state.db.run(move |conn| releases::deltas::targets_of(conn, &hex).map_err(Error::from)).await?;
    let ids: Vec<i64> = targets.iter().map(|(id, _)| *id).collect();
    let offered = state.contact.offered_release(&device, &ids).await?;
    let Some((release_id, size)) = targets.into_iter().find(|(id, _)| Some(*id) == offered) else {
        return Err(Error::not_found("delta"));
    };
    let name = format!("release-{release_id}-{}.delta", &digest.to_hex()[..12]);
    artifacts::serve(&state, &req, digest, size, &name).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, head, patch, post, resource};
    cfg.service(resource("/api/v1/apps").route(post().to(create_app)).route(get().to(list_apps)))
        .service(
            resource("/api/v1/apps/{app_id}")
                .route(get().to(show_app))
                .route(patch().to(crate::http::store::update_app)),
        )
        .service(resource("/api/v1/apps/{app_id}/keys").route(post().to(add_key)))
        .service(resource("/api/v1/apps/{app_id}/keys/{key_id}/revoke").route(post().to(revoke_key)))
        .service(
            resource("/api/v1/apps/{app_id}/releases")
                .route(post().to(publish))
                .route(get().to(list_releases)),
        )
        .service(resource("/api/v1/apps/{app_id}/releases/check").route(post().to(check)))
        .service(resource("/api/v1/apps/{app_id}/releases/{version}").route(get().to(show_release)))
        .service(resource("/api/v1/apps/{app_id}/releases/{version}/withdraw").route(post().to(withdraw)))
        .service(
            resource("/api/v1/apps/{app_id}/releases/{version}/artifact")
                .route(get().to(download))
                .route(head().to(download)),
        )
        .service(
            resource("/api/v1/terminal/artifacts/{sha256}")
                .route(get().to(device_download))
                .route(head().to(device_download)),
        )
        .service(
            resource("/api/v1/terminal/deltas/{sha256}")
                .route(get().to(device_delta_download))
                .route(head().to(device_delta_download)),
        );
}
