//! Management API of parameters.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use tms_packages::parameters::{EffectiveVersion, Level, Schema, TERMINAL_APP};
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::parameters::*;
use utoipa::IntoParams;

use crate::accounts::access::Actor;
use crate::http::AppState;
use crate::http::error::Error;
use crate::parameters;

fn level(text: &str) -> Result<Level, Error> {
    text.parse().map_err(|_| Error::not_found("parameter level"))
}

/// Register a new version of an app's parameter schema.
#[utoipa::path(put, path = "/api/v1/apps/{app_id}/parameter-schema", tag = "parameters", security(("bearer" = [])),
    params(("app_id" = String, Path)), request_body = Schema,
    responses((status = 200, description = "the new schema version"), (status = 400, description = "`invalid_parameter`", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn put_schema(
    state: web::Data<AppState>,
    actor: Actor,
    app_id: web::Path<String>,
    body: web::Json<Schema>,
) -> Result<HttpResponse, Error> {
    let app_id = app_id.into_inner();
    let version = state.db.run(move |conn| parameters::put_schema(conn, &actor, &app_id, &body)).await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Ok().json(serde_json::json!({"version": version})))
}

/// An app's parameter schema (`tms.terminal`: the terminal's built-in settings).
#[utoipa::path(get, path = "/api/v1/apps/{app_id}/parameter-schema", tag = "parameters", security(("bearer" = [])),
    params(("app_id" = String, Path)), responses((status = 200, body = Schema), (status = 404, body = ErrorEnvelope)))]
pub async fn get_schema(
    state: web::Data<AppState>,
    _actor: Actor,
    app_id: web::Path<String>,
) -> Result<web::Json<Schema>, Error> {
    let app_id = app_id.into_inner();
    Ok(web::Json(state.db.run(move |conn| parameters::schema_for(conn, &app_id)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct VersionQuery {
    /// An older version [default: the current one].
    pub version: Option<u64>,
}

/// What one level sets for one scope (`global` with scope 0, `merchant`,
/// `location` or `device` with its id), now or at an older version; secrets
/// show as `(set)`.
#[utoipa::path(get, path = "/api/v1/parameters/{app_id}/{level}/{scope_id}", tag = "parameters", security(("bearer" = [])),
    params(("app_id" = String, Path), ("level" = String, Path), ("scope_id" = i64, Path), VersionQuery),
    responses((status = 200, body = ParameterSetView), (status = 404, body = ErrorEnvelope)))]
pub async fn show(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String, i64)>,
    query: web::Query<VersionQuery>,
) -> Result<web::Json<ParameterSetView>, Error> {
    let (app_id, lvl, scope) = path.into_inner();
    let version = query.version;
    Ok(web::Json(
        parameters::show_scope(&state.db, &state.blobs, actor, app_id, level(&lvl)?, scope, version).await?,
    ))
}

/// Change what a level sets for a scope: a new immutable version.
#[utoipa::path(post, path = "/api/v1/parameters/{app_id}/{level}/{scope_id}", tag = "parameters", security(("bearer" = [])),
    params(("app_id" = String, Path), ("level" = String, Path), ("scope_id" = i64, Path)), request_body = ChangeParametersRequest,
    responses((status = 200, body = ParameterSetView),
        (status = 400, description = "`invalid_parameter` naming the key", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`parameter_locked`", body = ErrorEnvelope)))]
pub async fn change(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String, i64)>,
    body: web::Json<ChangeParametersRequest>,
) -> Result<web::Json<ParameterSetView>, Error> {
    let (app_id, lvl, scope) = path.into_inner();
    let view =
        parameters::change(&state.db, &state.blobs, actor, app_id, level(&lvl)?, scope, body.into_inner())
            .await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// The versions of what a level set for a scope, newest first, with who, when and why.
#[utoipa::path(get, path = "/api/v1/parameters/{app_id}/{level}/{scope_id}/history", tag = "parameters", security(("bearer" = [])),
    params(("app_id" = String, Path), ("level" = String, Path), ("scope_id" = i64, Path)),
    responses((status = 200, body = [ParameterVersionView]), (status = 404, body = ErrorEnvelope)))]
pub async fn history(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String, i64)>,
) -> Result<web::Json<Vec<ParameterVersionView>>, Error> {
    let (app_id, lvl, scope) = path.into_inner();
    Ok(web::Json(parameters::history(&state.db, &state.blobs, actor, app_id, level(&lvl)?, scope).await?))
}

/// A scope's parameters for a person: what its level sets, what its
/// terminals get and from which level, the keys locked above, and how many
/// terminals it holds.
#[utoipa::path(get, path = "/api/v1/parameters/{app_id}/{level}/{scope_id}/overview", tag = "parameters", security(("bearer" = [])),
    params(("app_id" = String, Path), ("level" = String, Path), ("scope_id" = i64, Path)),
    responses((status = 200, body = ScopeParametersView), (status = 404, body = ErrorEnvelope)))]
pub async fn overview(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String, i64)>,
) -> Result<web::Json<ScopeParametersView>, Error> {
    let (app_id, lvl, scope) = path.into_inner();
    Ok(web::Json(
        parameters::scope_overview(&state.db, &state.blobs, actor, app_id, level(&lvl)?, scope).await?,
    ))
}

/// What a change would do, saving nothing: each key's value for the
/// scope's terminals before and after, and how many terminals the scope
/// holds. Refuses what the change would refuse.
#[utoipa::path(post, path = "/api/v1/parameters/{app_id}/{level}/{scope_id}/preview", tag = "parameters", security(("bearer" = [])),
    params(("app_id" = String, Path), ("level" = String, Path), ("scope_id" = i64, Path)), request_body = ChangeParametersRequest,
    responses((status = 200, body = ParameterChangePreview),
        (status = 400, description = "`invalid_parameter` naming the key", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`parameter_locked`", body = ErrorEnvelope)))]
pub async fn preview(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String, i64)>,
    body: web::Json<ChangeParametersRequest>,
) -> Result<web::Json<ParameterChangePreview>, Error> {
    let (app_id, lvl, scope) = path.into_inner();
    Ok(web::Json(
        parameters::preview_change(
            &state.db,
            &state.blobs,
            actor,
            app_id,
            level(&lvl)?,
            scope,
            body.into_inner(),
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AppQuery {
    /// The app [default: tms.terminal, the terminal's own settings].
    pub app: Option<String>,
}

/// What a device sees: effective values with the level each came from.
#[utoipa::path(get, path = "/api/v1/devices/{id}/parameters", tag = "parameters", security(("bearer" = [])),
    params(("id" = i64, Path), AppQuery), responses((status = 200, body = EffectiveParametersView), (status = 404, body = ErrorEnvelope)))]
pub async fn device(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    query: web::Query<AppQuery>,
) -> Result<web::Json<EffectiveParametersView>, Error> {
    let app = query.into_inner().app.unwrap_or_else(|| TERMINAL_APP.to_owned());
    Ok(web::Json(parameters::device_view(&state.db, &state.blobs, actor, id.into_inner(), app).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DiffQuery {
    pub app: Option<String>,
    /// A version as shown by the device's parameters (`g.m.l.d`).
    pub from: String,
    pub to: String,
}

/// Key-level difference between two versions of what a device sees.
#[utoipa::path(get, path = "/api/v1/devices/{id}/parameters/diff", tag = "parameters", security(("bearer" = [])),
    params(("id" = i64, Path), DiffQuery), responses((status = 200, body = ParameterDiffView), (status = 404, body = ErrorEnvelope)))]
pub async fn device_diff(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    query: web::Query<DiffQuery>,
) -> Result<web::Json<ParameterDiffView>, Error> {
    let q = query.into_inner();
    let parse = |field: &str, v: &str| v.parse::<EffectiveVersion>().map_err(|e| Error::invalid(field, e));
    let (from, to) = (parse("from", &q.from)?, parse("to", &q.to)?);
    let app = q.app.unwrap_or_else(|| TERMINAL_APP.to_owned());
    Ok(web::Json(
        parameters::device_diff(&state.db, &state.blobs, actor, id.into_inner(), app, from, to).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ReportQuery {
    pub merchant_id: Option<i64>,
}

/// Active terminals whose merchant-menu password is weak: the default (99999), one repeated
/// digit or a run of consecutive digits; `reason` says which.
#[utoipa::path(get, path = "/api/v1/reports/weak-merchant-password", tag = "parameters", security(("bearer" = [])),
    params(ReportQuery), responses((status = 200, body = [ReportedDevice]), (status = 403, body = ErrorEnvelope)))]
pub async fn weak_password_report(
    state: web::Data<AppState>,
    actor: Actor,
    query: web::Query<ReportQuery>,
) -> Result<web::Json<Vec<ReportedDevice>>, Error> {
    Ok(web::Json(parameters::weak_password_report(&state.db, &state.blobs, actor, query.merchant_id).await?))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, post, put, resource};
    cfg.service(
        resource("/api/v1/apps/{app_id}/parameter-schema")
            .route(put().to(put_schema))
            .route(get().to(get_schema)),
    )
    .service(
        resource("/api/v1/parameters/{app_id}/{level}/{scope_id}")
            .route(get().to(show))
            .route(post().to(change)),
    )
    .service(resource("/api/v1/parameters/{app_id}/{level}/{scope_id}/history").route(get().to(history)))
    .service(resource("/api/v1/parameters/{app_id}/{level}/{scope_id}/overview").route(get().to(overview)))
    .service(resource("/api/v1/parameters/{app_id}/{level}/{scope_id}/preview").route(post().to(preview)))
    .service(resource("/api/v1/devices/{id}/parameters").route(get().to(device)))
    .service(resource("/api/v1/devices/{id}/parameters/diff").route(get().to(device_diff)))
    .service(resource("/api/v1/reports/weak-merchant-password").route(get().to(weak_password_report)));
}
