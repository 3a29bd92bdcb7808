//! The DDI routes under `/{tenant}/controller/v1/{controllerId}`, answered
//! with hawkBit's JSON; errors keep this server's envelope (DDI clients go by
//! the status code).

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tms_packages::ddi::{cancel_feedback, deployment_feedback, handling, polling_sleep};
use tms_packages::wire::contact::FeedbackRequest;
use tms_packages::wire::ddi::*;
use tms_signing::Sha256Digest;

use super::{Credential, DdiService, Polled};
use crate::devices::linux;
use crate::error::{Error, ErrorCode};
use crate::http::AppState;

/// The path every DDI call carries.
#[derive(Debug, Deserialize)]
pub struct DevicePath {
    tenant: String,
    controller: String,
}

#[derive(Debug, Deserialize)]
pub struct ActionPath {
    tenant: String,
    controller: String,
    action: i64,
}

#[derive(Debug, Deserialize)]
pub struct ArtifactPath {
    tenant: String,
    controller: String,
    module: i64,
    file: String,
}

fn ddi(state: &AppState) -> &DdiService {
    &state.ddi
}

/// Checks the tenant and the credentials of a call.
fn authorise(state: &AppState, req: &HttpRequest, tenant: &str) -> Result<Credential, Error> {
    ddi(state).check_tenant(tenant)?;
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    ddi(state).credential(authorization)
}

/// The device's DDI base URL as the client reached this server.
fn base_url(req: &HttpRequest, tenant: &str, controller: &str) -> String {
    let info = req.connection_info();
    format!("{}://{}/{tenant}/controller/v1/{controller}", info.scheme(), info.host())
}

/// Writes a change to what the server keeps for a device, then forgets
/// this process's copy and follows the change log, so the device's next call
/// (here or through another process) sees it.
async fn change_device(
    state: &AppState,
    credential: &Credential,
    controller: &str,
    write: impl FnOnce(&mut crate::db::DbConnection) -> Result<(), Error> + Send + 'static,
) -> Result<(), Error> {
    ddi(state).db().run(write).await?;
    ddi(state).forget(credential, controller);
    ddi(state).contact().caught_up().await;
    Ok(())
}

/// A deployment's app and release, whatever its state.
async fn deployment_row(state: &AppState, id: i64) -> Result<Option<(String, Option<i64>)>, Error> {
    ddi(state).db().run(move |conn| linux::deployment_of(conn, id)).await
}

fn action_not_found() -> Error {
    Error::not_found("action")
}

fn action_gone() -> Error {
    Error::new(ErrorCode::ActionGone, "this action is no longer active for the device")
}

/// The file name an artifact is offered under: the app id and version (the
/// server keeps no upload file name).
fn file_name(app_id: &str, version: &str) -> String {
    format!("{app_id}-{version}.bin")
}

/// `GET /{tenant}/controller/v1/{controllerId}`: the poll.
pub async fn poll(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<DevicePath>,
) -> Result<HttpResponse, Error> {
    let credential = authorise(&state, &req, &path.tenant)?;
    let polled = ddi(&state).poll(&credential, &path.controller).await?;
    let base = base_url(&req, &path.tenant, &path.controller);
    let mut links = ControllerLinks::default();
    if let Some(action) = ddi(&state).to_cancel(&polled) {
        links.cancel_action = Some(Link::to(format!("{base}/cancelAction/{action}")));
    } else if let Some(link) = confirmation_link(&state, &polled, &base).await? {
        links.confirmation_base = Some(link);
    } else if let Some(offer) = polled.offered() {
        // `c` changes with what the action delivers, as hawkBit's does, so
        // a client caching by URL fetches it again.
        let release = offer.release.as_ref().map_or(0, |r| r.release_id);
        links.deployment_base =
            Some(Link::to(format!("{base}/deploymentBase/{}?c={release}", offer.deployment_id)));
    }
    if let Some(installed) = &polled.device.installed {
        links.installed_base = Some(Link::to(format!("{base}/installedBase/{}", installed.deployment_id)));
    }
    if !polled.device.attributes_reported {
        links.config_data = Some(Link::to(format!("{base}/configData")));
    }
    let answer = ControllerBase {
        config: ControllerConfig {
            polling: Polling { sleep: polling_sleep(polled.decided.next_contact_secs) },
        },
        links,
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// A chunk for a release, with its artifact's three hashes and links.
#[allow(clippy::too_many_arguments)]
async fn chunk(
    state: &AppState,
    base: &str,
    release_id: i64,
    app_id: &str,
    version: &str,
    sha256: &str,
    size: u64,
    signature: (&str, &str),
) -> Result<Chunk, Error> {
    let digest = sha256.parse::<Sha256Digest>().map_err(|_| Error::not_found("artifact"))?;
    let legacy = crate::releases::digests::of(ddi(state).db(), ddi(state).blobs(), &digest).await?;
    let filename = file_name(app_id, version);
    let download = format!("{base}/softwaremodules/{release_id}/artifacts/{filename}");
    let links = BTreeMap::from([
        ("download".to_owned(), Link::to(download.clone())),
        ("download-http".to_owned(), Link::to(download.clone())),
        ("md5sum".to_owned(), Link::to(format!("{download}.MD5SUM"))),
        ("md5sum-http".to_owned(), Link::to(format!("{download}.MD5SUM"))),
    ]);
    Ok(Chunk {
        part: "os".into(),
        version: version.to_owned(),
        name: app_id.to_owned(),
        artifacts: vec![Artifact {
            filename,
            hashes: Hashes { sha1: legacy.sha1, md5: legacy.md5, sha256: sha256.to_owned() },
            size,
            links,
        }],
        // The publisher's signature of the release manifest, for agents that
        // check it as the Android terminals do.
        metadata: vec![
            Metadata { key: "tms.key_id".into(), value: signature.0.to_owned() },
            Metadata { key: "tms.signature".into(), value: signature.1.to_owned() },
        ],
    })
}

/// The action a device is offered now, as `deploymentBase` and
/// `confirmationBase/{actionId}` describe it, or 404
/// when the action is not offered. `confirming`: the confirmation's view,
/// offered only while the action waits for the device's confirmation (and
/// the deployment's only once it does not).
async fn offered_action(
    state: &AppState,
    req: &HttpRequest,
    path: &ActionPath,
    confirming: bool,
) -> Result<Deployment, Error> {
    let credential = authorise(state, req, &path.tenant)?;
    let polled = ddi(state).poll(&credential, &path.controller).await?;
    let Some(offer) = polled.offered().filter(|o| o.deployment_id == path.action) else {
        return Err(action_not_found());
    };
    if ddi(state).awaits_confirmation(&polled.device, path.action).await? != confirming {
        return Err(action_not_found());
    }
    let release = offer.release.as_ref().ok_or_else(action_not_found)?;
    let deployment = ddi(state).contact().deployment(path.action);
    let (download, update) = handling(offer.action);
    let base = base_url(req, &path.tenant, &path.controller);
    let chunk = chunk(
        state,
        &base,
        release.release_id,
        &offer.app_id,
        &release.version,
        &release.sha256,
        release.size,
        (&release.key_id, &release.signature),
    )
    .await?;
    Ok(Deployment {
        download: download.into(),
        update: update.into(),
        // Offered only while its window is open.
        maintenance_window: deployment.and_then(|d| d.window).map(|_| "available".to_owned()),
        chunks: vec![chunk],
    })
}

/// `GET …/deploymentBase/{actionId}`: what the action installs, and how.
pub async fn deployment_base(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<ActionPath>,
) -> Result<HttpResponse, Error> {
    let deployment = offered_action(&state, &req, &path, false).await?;
    Ok(HttpResponse::Ok().json(DeploymentBase {
        id: path.action.to_string(),
        deployment,
        action_history: None,
    }))
}

/// `GET …/confirmationBase/{actionId}`: the action that waits for the
/// device's confirmation.
pub async fn confirmation_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<ActionPath>,
) -> Result<HttpResponse, Error> {
    let confirmation = offered_action(&state, &req, &path, true).await?;
    Ok(HttpResponse::Ok().json(ConfirmationAction { id: path.action.to_string(), confirmation }))
}

/// `POST …/confirmationBase/{actionId}/feedback`: `confirmed` delivers the
/// action; `denied` leaves it waiting (the device may confirm it later) and
/// goes to the audit log.
pub async fn confirmation_feedback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<ActionPath>,
    body: web::Json<ConfirmationFeedback>,
) -> Result<HttpResponse, Error> {
    let confirmed = match body.confirmation.as_str() {
        "confirmed" => true,
        "denied" => false,
        _ => return Err(Error::invalid("confirmation", "confirmed or denied")),
    };
    let credential = authorise(&state, &req, &path.tenant)?;
    let polled = ddi(&state).poll(&credential, &path.controller).await?;
    let offered = polled.offered().is_some_and(|o| o.deployment_id == path.action);
    if !offered || !ddi(&state).awaits_confirmation(&polled.device, path.action).await? {
        return Err(action_gone());
    }
    let (device, action, details) = (polled.device.row.clone(), path.action, body.into_inner().details);
    change_device(&state, &credential, &path.controller, move |conn| {
        linux::record_confirmation(conn, &device, action, confirmed, &details)
    })
    .await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET …/installedBase/{actionId}`: the action that installed what the
/// device runs.
pub async fn installed_base(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<ActionPath>,
) -> Result<HttpResponse, Error> {
    let credential = authorise(&state, &req, &path.tenant)?;
    let device = ddi(&state).device(&credential, &path.controller).await?;
    let Some(installed) = device.installed.as_ref().filter(|i| i.deployment_id == path.action) else {
        return Err(action_not_found());
    };
    let (release_id, deployment_id) = (installed.release_id, installed.deployment_id);
    let (release, action) = ddi(&state)
        .db()
        .run(move |conn| {
            let release = crate::releases::find_release_by_id(conn, release_id)?;
            Ok::<_, Error>((release, crate::rollouts::deployments::find(conn, deployment_id)?.action()))
        })
        .await?;
    let signed = release.view();
    let (download, update) = handling(action);
    let base = base_url(&req, &path.tenant, &path.controller);
    let chunk = chunk(
        &state,
        &base,
        release.id,
        &release.app_id,
        &release.version,
        &release.artifact_sha256,
        release.artifact_size.max(0) as u64,
        (&signed.key_id, &signed.signature),
    )
    .await?;
    let answer = DeploymentBase {
        id: path.action.to_string(),
        deployment: Deployment {
            download: download.into(),
            update: update.into(),
            maintenance_window: None,
            chunks: vec![chunk],
        },
        action_history: Some(ActionHistory { status: "FINISHED".into(), messages: Vec::new() }),
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST …/deploymentBase/{actionId}/feedback`.
pub async fn deployment_feedback_route(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<ActionPath>,
    body: web::Json<ActionFeedback>,
) -> Result<HttpResponse, Error> {
    let credential = authorise(&state, &req, &path.tenant)?;
    let report = deployment_feedback(&body.status)?;
    let device = ddi(&state).device(&credential, &path.controller).await?;
    let deployment = ddi(&state).contact().deployment(path.action);
    let working = device.action_deployment_id == Some(path.action);
    let app_id = match (&deployment, working) {
        (Some(d), _) => d.payload.app_id().to_owned(),
        // A deployment no longer in force takes the report of the device
        // that was working on it (it may have finished meanwhile).
        (None, true) => deployment_row(&state, path.action).await?.ok_or_else(action_not_found)?.0,
        (None, false) => return Err(action_gone()),
    };
    let feedback = FeedbackRequest {
        deployment_id: path.action,
        app_id,
        status: report.status.to_owned(),
        progress_percent: report.progress_percent,
        error_code: report.error_code,
        message: report.message,
        download: None,
    };
    ddi(&state).contact().feedback(credential.caller(&path.controller), feedback).await?;
    let (device_id, action) = (device.row.id, path.action);
    let finished = tms_packages::wire::contact::is_final_status(report.status);
    let installed = report.status == "installed";
    if finished || !working {
        change_device(&state, &credential, &path.controller, move |conn| match (installed, finished) {
            (true, _) => linux::record_installed(conn, device_id, action),
            (false, true) => linux::record_action(conn, device_id, None),
            (false, false) => linux::record_action(conn, device_id, Some(action)),
        })
        .await?;
    }
    Ok(HttpResponse::Ok().finish())
}

/// `GET …/cancelAction/{actionId}`.
pub async fn cancel_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<ActionPath>,
) -> Result<HttpResponse, Error> {
    let credential = authorise(&state, &req, &path.tenant)?;
    let polled: Polled = ddi(&state).poll(&credential, &path.controller).await?;
    if ddi(&state).to_cancel(&polled) != Some(path.action) {
        return Err(action_not_found());
    }
    let id = path.action.to_string();
    Ok(HttpResponse::Ok()
        .json(CancelActionBase { id: id.clone(), cancel_action: CancelAction { stop_id: id } }))
}

/// `POST …/cancelAction/{actionId}/feedback`: the device stopped (or could not).
pub async fn cancel_feedback_route(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<ActionPath>,
    body: web::Json<ActionFeedback>,
) -> Result<HttpResponse, Error> {
    let credential = authorise(&state, &req, &path.tenant)?;
    let stopped = cancel_feedback(&body.status)?;
    let device = ddi(&state).device(&credential, &path.controller).await?;
    if device.action_deployment_id != Some(path.action) {
        return Err(action_gone());
    }
    if stopped == Some(true) {
        let device_id = device.row.id;
        change_device(&state, &credential, &path.controller, move |conn| {
            linux::record_action(conn, device_id, None)
        })
        .await?;
    }
    Ok(HttpResponse::Ok().finish())
}

/// `PUT …/configData`: the device's attributes.
pub async fn config_data(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<DevicePath>,
    body: web::Json<ConfigData>,
) -> Result<HttpResponse, Error> {
    let credential = authorise(&state, &req, &path.tenant)?;
    let device = ddi(&state).device(&credential, &path.controller).await?;
    let device_id = device.row.id;
    let body = body.into_inner();
    change_device(&state, &credential, &path.controller, move |conn| {
        linux::report_attributes(conn, device_id, body.mode.as_deref(), &body.data)
    })
    .await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET …/confirmationBase`: whether the device confirms every action
/// itself, and the action waiting for its confirmation, if any.
pub async fn confirmation_base(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<DevicePath>,
) -> Result<HttpResponse, Error> {
    let credential = authorise(&state, &req, &path.tenant)?;
    let polled = ddi(&state).poll(&credential, &path.controller).await?;
    let base = base_url(&req, &path.tenant, &path.controller);
    let mut links = BTreeMap::new();
    let auto_confirm = if polled.device.auto_confirm {
        links.insert(
            "deactivateAutoConfirm".to_owned(),
            Link::to(format!("{base}/confirmationBase/deactivateAutoConfirm")),
        );
        AutoConfirm { state: "active".into(), initiator: None, remark: None }
    } else {
        links.insert(
            "activateAutoConfirm".to_owned(),
            Link::to(format!("{base}/confirmationBase/activateAutoConfirm")),
        );
        if let Some(link) = confirmation_link(&state, &polled, &base).await? {
            links.insert("confirmationBase".to_owned(), link);
        }
        AutoConfirm { state: "inactive".into(), initiator: None, remark: None }
    };
    Ok(HttpResponse::Ok().json(ConfirmationBase { auto_confirm, links }))
}

/// The link to the action waiting for the device's confirmation, if one does.
async fn confirmation_link(state: &AppState, polled: &Polled, base: &str) -> Result<Option<Link>, Error> {
    let Some(offer) = polled.offered() else { return Ok(None) };
    if !ddi(state).awaits_confirmation(&polled.device, offer.deployment_id).await? {
        return Ok(None);
    }
    let release = offer.release.as_ref().map_or(0, |r| r.release_id);
    Ok(Some(Link::to(format!("{base}/confirmationBase/{}?c={release}", offer.deployment_id))))
}

/// `POST …/confirmationBase/activateAutoConfirm` (and `deactivate…`): the
/// device confirms every action itself from now on (or no longer). The
/// body's initiator and remark, if any, are not kept.
async fn auto_confirm(
    state: &AppState,
    req: &HttpRequest,
    path: &DevicePath,
    on: bool,
) -> Result<HttpResponse, Error> {
    let credential = authorise(state, req, &path.tenant)?;
    let device_id = ddi(state).device(&credential, &path.controller).await?.row.id;
    change_device(state, &credential, &path.controller, move |conn| {
        linux::set_auto_confirm(conn, device_id, on)
    })
    .await?;
    Ok(HttpResponse::Ok().finish())
}

pub async fn activate_auto_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<DevicePath>,
) -> Result<HttpResponse, Error> {
    auto_confirm(&state, &req, &path, true).await
}

pub async fn deactivate_auto_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<DevicePath>,
) -> Result<HttpResponse, Error> {
    auto_confirm(&state, &req, &path, false).await
}

/// `GET|HEAD …/softwaremodules/{moduleId}/artifacts/{fileName}` (with
/// Range), and its `.MD5SUM`: for the release the device is offered, works
/// on, or installed.
pub async fn artifact(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<ArtifactPath>,
) -> Result<HttpResponse, Error> {
    let credential = authorise(&state, &req, &path.tenant)?;
    let polled = ddi(&state).poll(&credential, &path.controller).await?;
    let module = path.module;
    let offered = polled.offered().and_then(|o| o.release.as_ref()).is_some_and(|r| r.release_id == module);
    let installed = polled.device.installed.as_ref().is_some_and(|i| i.release_id == module);
    let working = match polled.device.action_deployment_id {
        Some(id) if !offered && !installed => {
            deployment_row(&state, id).await?.and_then(|(_, release)| release) == Some(module)
        }
        _ => false,
    };
    if !(offered || installed || working) {
        return Err(Error::not_found("artifact"));
    }
    let release = ddi(&state).db().run(move |conn| crate::releases::find_release_by_id(conn, module)).await?;
    let name = file_name(&release.app_id, &release.version);
    let digest = release.artifact_sha256.parse::<Sha256Digest>().map_err(|_| Error::not_found("artifact"))?;
    if path.file == format!("{name}.MD5SUM") {
        let legacy = crate::releases::digests::of(ddi(&state).db(), ddi(&state).blobs(), &digest).await?;
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(format!("{}  {name}\n", legacy.md5)));
    }
    if path.file != name {
        return Err(Error::not_found("artifact"));
    }
    ddi(&state).contact().heard_from(polled.device.row.id);
    crate::http::artifacts::serve(&state, &req, digest, release.artifact_size.max(0) as u64, &name).await
}

/// The DDI routes. Registered before the management API: devices poll
/// every few minutes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, head, post, put, resource};
    let device = "/{tenant}/controller/v1/{controller}";
    cfg.service(resource(device).route(get().to(poll)))
        .service(resource(format!("{device}/deploymentBase/{{action}}")).route(get().to(deployment_base)))
        .service(
            resource(format!("{device}/deploymentBase/{{action}}/feedback"))
                .route(post().to(deployment_feedback_route)),
        )
        .service(resource(format!("{device}/installedBase/{{action}}")).route(get().to(installed_base)))
        .service(resource(format!("{device}/cancelAction/{{action}}")).route(get().to(cancel_action)))
        .service(
            resource(format!("{device}/cancelAction/{{action}}/feedback"))
                .route(post().to(cancel_feedback_route)),
        )
        .service(resource(format!("{device}/configData")).route(put().to(config_data)))
        .service(resource(format!("{device}/confirmationBase")).route(get().to(confirmation_base)))
        .service(
            resource(format!("{device}/confirmationBase/activateAutoConfirm"))
                .route(post().to(activate_auto_confirm)),
        )
        .service(
            resource(format!("{device}/confirmationBase/deactivateAutoConfirm"))
                .route(post().to(deactivate_auto_confirm)),
        )
        // After the literal paths, which `{action}` would take.
        .service(
            resource(format!("{device}/confirmationBase/{{action}}")).route(get().to(confirmation_action)),
        )
        .service(
            resource(format!("{device}/confirmationBase/{{action}}/feedback"))
                .route(post().to(confirmation_feedback)),
        )
        .service(
            resource(format!("{device}/softwaremodules/{{module}}/artifacts/{{file}}"))
                .route(get().to(artifact))
                .route(head().to(artifact)),
        );
}
