//! The TMS contact and feedback (terminal API), and deployments, rollouts,
//! device groups and device plans (management API).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::contact::*;
use tms_packages::wire::deployments::*;
use utoipa::IntoParams;

use crate::accounts::access::Actor;
use crate::contact::feedback;
use crate::http::error::Error;
use crate::http::{AppState, device_token};
use crate::rollouts::{self, deployments};
use tms_packages::rollouts::RolloutCommand;

/// The TMS contact: the terminal reports what it has and gets what to
/// change, signed. A terminal in sync gets a short answer.
#[utoipa::path(post, path = "/api/v1/terminal/contact", tag = "terminal", security(("device" = [])),
    request_body = ContactRequest,
    responses((status = 200, body = ContactAnswer),
        (status = 400, description = "`state_digest_mismatch` or `invalid_json`", body = ErrorEnvelope),
        (status = 401, description = "`invalid_device_token` or `device_deactivated`", body = ErrorEnvelope)))]
pub async fn terminal_contact(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ContactRequest>,
) -> Result<HttpResponse, Error> {
    let token = device_token(&req)?;
    let answer = state.contact.contact(&token, body.into_inner()).await?;
    Ok(HttpResponse::Ok().content_type(actix_web::http::header::ContentType::json()).body(answer))
}

/// How one change is going on this terminal.
#[utoipa::path(post, path = "/api/v1/terminal/feedback", tag = "terminal", security(("device" = [])),
    request_body = FeedbackRequest,
    responses((status = 204), (status = 400, body = ErrorEnvelope),
        (status = 401, description = "`invalid_device_token` or `device_deactivated`", body = ErrorEnvelope),
        (status = 404, description = "a deployment that does not reach this terminal, does not exist, or is of another app (answered alike)", body = ErrorEnvelope)))]
pub async fn terminal_feedback(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<FeedbackRequest>,
) -> Result<HttpResponse, Error> {
    let token = device_token(&req)?;
    state.contact.feedback(crate::contact::Caller::Token(&token), body.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deliver a release (or remove an app) to a target.
#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments", security(("bearer" = [])),
    request_body = CreateDeploymentRequest,
    responses((status = 201, body = DeploymentView),
        (status = 400, description = "`invalid_target` or `invalid_request`", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "the release was withdrawn", body = ErrorEnvelope)))]
pub async fn create_deployment(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<CreateDeploymentRequest>,
) -> Result<HttpResponse, Error> {
    let view = state.db.run(move |conn| deployments::create(conn, &actor, &body)).await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Created().json(view))
}

/// What a deployment would reach if it were saved now: the terminals its
/// target holds, those it would deliver to, those already up to date, and
/// those the release does not fit, by model and reason. Refuses what the
/// creation would refuse.
#[utoipa::path(post, path = "/api/v1/deployments/preview", tag = "deployments", security(("bearer" = [])),
    request_body = CreateDeploymentRequest,
    responses((status = 200, body = DeploymentPreview),
        (status = 400, description = "`invalid_target` or `invalid_request`", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "the release was withdrawn", body = ErrorEnvelope)))]
pub async fn preview_deployment(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<CreateDeploymentRequest>,
) -> Result<web::Json<DeploymentPreview>, Error> {
    Ok(web::Json(state.db.run(move |conn| rollouts::preview::preview(conn, &actor, &body)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeploymentQuery {
    /// Only this app's deployments.
    pub app_id: Option<String>,
}

/// Deployments, newest first (at most 500).
#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", security(("bearer" = [])),
    params(DeploymentQuery), responses((status = 200, body = [DeploymentView])))]
pub async fn list_deployments(
    state: web::Data<AppState>,
    actor: Actor,
    query: web::Query<DeploymentQuery>,
) -> Result<web::Json<Vec<DeploymentView>>, Error> {
    Ok(web::Json(state.db.run(move |conn| deployments::list(conn, &actor, query.app_id.as_deref())).await?))
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DeploymentView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_deployment(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<DeploymentView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| deployments::show(conn, &actor, id)).await?))
}

/// Stop delivering; terminals keep what they installed.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/cancel", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DeploymentView), (status = 409, body = ErrorEnvelope)))]
pub async fn cancel_deployment(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<DeploymentView>, Error> {
    let id = id.into_inner();
    let view = state.db.run(move |conn| deployments::cancel(conn, &actor, id)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// Move the deployment through stages.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/rollout", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = StartRolloutRequest,
    responses((status = 201, body = RolloutView), (status = 400, body = ErrorEnvelope),
        (status = 409, description = "`rollout_state`", body = ErrorEnvelope)))]
pub async fn start_rollout(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<StartRolloutRequest>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let view = state.db.run(move |conn| rollouts::start(conn, &actor, id, &body)).await?;
    state.contact.caught_up().await;
    Ok(HttpResponse::Created().json(view))
}

/// The rollout with statistics per stage, as it stands (a read: the supervisor and the commands
/// apply its rules).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/rollout", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = RolloutView), (status = 404, body = ErrorEnvelope)))]
pub async fn rollout_status(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<RolloutView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| rollouts::status(conn, &actor, id)).await?))
}

/// Where the rollout's stages stood over its life, as the supervisor counted them (the last count of
/// each minute; a few hundred counts at most, evenly spaced, the latest always in).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/rollout/history", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = RolloutHistoryView), (status = 404, body = ErrorEnvelope)))]
pub async fn rollout_history(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<RolloutHistoryView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| rollouts::counts::history(conn, &actor, id)).await?))
}

/// The rollout's failure list: the terminals that failed to install the deployment's release and
/// have not installed it since (retrying, timed out, or failed for good, those first).
#[utoipa::path(get, path = "/api/v1/deployments/{id}/failures", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Vec<FailedDeviceView>), (status = 404, body = ErrorEnvelope)))]
pub async fn deployment_failures(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<Vec<FailedDeviceView>>, Error> {
    let id = id.into_inner();
    Ok(web::Json(
        state
            .db
            .run(move |conn| {
                rollouts::attempts::failures(conn, &actor, id, rollouts::attempts::MAX_FAILURES_LISTED)
            })
            .await?,
    ))
}

/// `pause`, `resume`, `halt`, `approve` (the next stage, when waiting for
/// approval), `rollback` (a deployment pinning the previous release for the
/// devices the rollout reached) or `evaluate` (apply the rollout's rules now,
/// as the supervisor's next pass would).
#[utoipa::path(post, path = "/api/v1/deployments/{id}/rollout/{command}", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path), ("command" = String, Path)),
    responses((status = 200, body = RolloutView), (status = 400, description = "an unknown command", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`rollout_state` or `no_previous_release`", body = ErrorEnvelope)))]
pub async fn rollout_command(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(i64, String)>,
) -> Result<web::Json<RolloutView>, Error> {
    let (id, command) = path.into_inner();
    if command == "evaluate" {
        let timeout = chrono::Duration::seconds(state.config.action_timeout_secs.max(1) as i64);
        let view = state.db.run(move |conn| rollouts::evaluate_now(conn, &actor, id, timeout)).await?;
        state.contact.caught_up().await;
        return Ok(web::Json(view));
    }
    let command: RolloutCommand =
        command.parse().map_err(|e: String| Error::invalid("command", format!("{e} or evaluate")))?;
    let view = state.db.run(move |conn| rollouts::command(conn, &actor, id, command)).await?;
    state.contact.caught_up().await;
    Ok(web::Json(view))
}

/// A device group: a list of devices, or a filter (a dynamic group).
#[utoipa::path(post, path = "/api/v1/device-groups", tag = "deployments", security(("bearer" = [])),
    request_body = CreateDeviceGroupRequest,
    responses((status = 201, body = DeviceGroupView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_device_group(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<CreateDeviceGroupRequest>,
) -> Result<HttpResponse, Error> {
    let view = state.db.run(move |conn| deployments::create_group(conn, &actor, &body)).await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/api/v1/device-groups", tag = "deployments", security(("bearer" = [])),
    responses((status = 200, body = [DeviceGroupView])))]
pub async fn list_device_groups(
    state: web::Data<AppState>,
    actor: Actor,
) -> Result<web::Json<Vec<DeviceGroupView>>, Error> {
    Ok(web::Json(state.db.run(move |conn| deployments::list_groups(conn, &actor)).await?))
}

#[utoipa::path(get, path = "/api/v1/device-groups/{id}", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DeviceGroupView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_device_group(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<DeviceGroupView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| deployments::show_group(conn, &actor, id)).await?))
}

/// Refused (409) while a deployment targets the group.
#[utoipa::path(delete, path = "/api/v1/device-groups/{id}", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn delete_device_group(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    state.db.run(move |conn| deployments::delete_group(conn, &actor, id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// What this terminal would receive on its next contact, and why: which
/// deployment decides each app, the stage, precedence and compatibility.
#[utoipa::path(get, path = "/api/v1/devices/{id}/plan", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = DevicePlanView), (status = 404, body = ErrorEnvelope)))]
pub async fn device_plan(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<DevicePlanView>, Error> {
    Ok(web::Json(state.contact.plan(&actor, id.into_inner()).await?))
}

/// The device's push history: every step it reported, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/actions", tag = "deployments", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = [ActionEventView]), (status = 404, body = ErrorEnvelope)))]
pub async fn device_actions(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<Vec<ActionEventView>>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| feedback::history(conn, &actor, id)).await?))
}

/// The routes every terminal calls every few minutes.
pub fn terminal_routes(cfg: &mut web::ServiceConfig) {
    use web::{post, resource};
    cfg.service(resource("/api/v1/terminal/contact").route(post().to(terminal_contact)))
        .service(resource("/api/v1/terminal/feedback").route(post().to(terminal_feedback)));
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, post, resource};
    cfg.service(
        resource("/api/v1/deployments").route(post().to(create_deployment)).route(get().to(list_deployments)),
    )
    // Before `{id}`, which would answer a POST with 405.
    .service(resource("/api/v1/deployments/preview").route(post().to(preview_deployment)))
    .service(resource("/api/v1/deployments/{id}").route(get().to(show_deployment)))
    .service(resource("/api/v1/deployments/{id}/cancel").route(post().to(cancel_deployment)))
    .service(resource("/api/v1/deployments/{id}/failures").route(get().to(deployment_failures)))
    .service(
        resource("/api/v1/deployments/{id}/rollout")
            .route(post().to(start_rollout))
            .route(get().to(rollout_status)),
    )
    // Before the commands' resource, which would answer a GET with 405.
    .service(resource("/api/v1/deployments/{id}/rollout/history").route(get().to(rollout_history)))
    .service(resource("/api/v1/deployments/{id}/rollout/{command}").route(post().to(rollout_command)))
    .service(
        resource("/api/v1/device-groups")
            .route(post().to(create_device_group))
            .route(get().to(list_device_groups)),
    )
    .service(
        resource("/api/v1/device-groups/{id}")
            .route(get().to(show_device_group))
            .route(delete().to(delete_device_group)),
    )
    .service(resource("/api/v1/devices/{id}/plan").route(get().to(device_plan)))
    .service(resource("/api/v1/devices/{id}/actions").route(get().to(device_actions)));
}
