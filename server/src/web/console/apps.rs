//! Apps and their releases: every operator role reads them; operator
//! admins and release engineers add and revoke publisher keys and withdraw
//! releases, each undoing act confirmed on a page that says what it stops.
//! Publishing stays a signed act done where the key is (`tms sign`, then
//! `tms release publish`); the app's page says how.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::releases::SignedManifest;
use tms_packages::wire::releases::{AddPublisherKeyRequest, AppView, ReleaseView};

use super::{ConfirmPage, byte_size, staff};
use crate::error::ErrorCode;
use crate::http::AppState;
use crate::releases::{self, PUBLISHERS};
use crate::web::{Ctx, OrPage, Session, WebError, page, redirect_with};

#[derive(Template)]
#[template(path = "console/apps.html")]
struct ListPage {
    ctx: Ctx,
    apps: Vec<AppView>,
}

impl ListPage {
    fn active_keys(&self, app: &AppView) -> usize {
        app.keys.iter().filter(|k| k.revoked_at.is_none()).count()
    }
}

pub async fn list(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    let actor = session.actor.clone();
    let apps = state.db.run(move |conn| releases::list_apps(conn, &actor)).await.or_page(session.lang)?;
    let body = ListPage { ctx: session.ctx("console.apps"), apps };
    page(&body.ctx, &body)
}

#[derive(Template)]
#[template(path = "console/app.html")]
struct ShowPage {
    ctx: Ctx,
    app: AppView,
    releases: Vec<ReleaseView>,
    /// Whether this user adds and revokes keys and withdraws releases.
    publisher: bool,
    /// A refusal of the key just submitted, in the reader's words.
    refusal: Option<String>,
    /// The form as submitted, kept when refused: (name, public key).
    key_form: (String, String),
    /// A refusal of the release just uploaded, in the reader's words.
    publish_refusal: Option<String>,
    /// The largest artifact accepted, as people read it.
    max_artifact: String,
}

impl ShowPage {
    /// A digest or key, shortened for a table (the page's title has it whole).
    fn short(&self, hex: &str) -> String {
        hex.chars().take(12).collect::<String>() + "…"
    }

    fn size(&self, bytes: &u64) -> String {
        byte_size(self.ctx.lang, *bytes)
    }
}

/// What the app's page says of a form just refused.
#[derive(Default)]
struct Refusals {
    /// The key form's refusal, and the form as submitted: (name, public key).
    key: Option<String>,
    key_form: (String, String),
    /// The upload's refusal.
    publish: Option<String>,
}

async fn render(
    state: &AppState,
    session: &Session,
    app_id: String,
    refusals: Refusals,
) -> Result<HttpResponse, WebError> {
    let role = staff(session)?;
    let actor = session.actor.clone();
    let (app, releases) = state
        .db
        .run(move |conn| {
            let app = releases::show_app(conn, &actor, &app_id)?;
            let found = releases::list_releases(conn, &actor, &app_id)?;
            Ok::<_, crate::error::Error>((app, found))
        })
        .await
        .or_page(session.lang)?;
    let body = ShowPage {
        ctx: session.ctx("console.apps"),
        app,
        releases,
        publisher: PUBLISHERS.contains(&role),
        refusal: refusals.key,
        key_form: refusals.key_form,
        publish_refusal: refusals.publish,
        max_artifact: byte_size(session.lang, state.config.max_artifact_bytes),
    };
    page(&body.ctx, &body)
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    app_id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    render(&state, &session, app_id.into_inner(), Refusals::default()).await
}

#[derive(Deserialize)]
pub struct KeyForm {
    csrf: String,
    name: String,
    public_key: String,
}

pub async fn add_key(
    state: web::Data<AppState>,
    session: Session,
    app_id: web::Path<String>,
    form: web::Form<KeyForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let app_id = app_id.into_inner();
    let form = form.into_inner();
    let request =
        AddPublisherKeyRequest { name: form.name.clone(), public_key: form.public_key.trim().to_owned() };
    let (actor, id) = (session.actor.clone(), app_id.clone());
    match state.db.run(move |conn| releases::add_key(conn, &actor, &id, &request)).await {
        Ok(_) => Ok(redirect_with(&format!("/console/apps/{app_id}"), "flash.key_added")),
        Err(e) if matches!(e.code(), ErrorCode::InvalidRequest | ErrorCode::Conflict) => {
            let refusal = crate::web::refusal_text(session.lang, "console.apps", &e);
            let refusals =
                Refusals { key: Some(refusal), key_form: (form.name, form.public_key), publish: None };
            render(&state, &session, app_id, refusals).await
        }
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}

fn refuse_unless_publisher(session: &Session) -> Result<(), WebError> {
    let role = staff(session)?;
    if PUBLISHERS.contains(&role) {
        Ok(())
    } else {
        Err(WebError::from_domain(
            session.lang,
            crate::error::Error::forbidden("this role may not change apps"),
        ))
    }
}

pub async fn confirm_revoke(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    refuse_unless_publisher(&session)?;
    let (app_id, key_id) = path.into_inner();
    let (actor, id) = (session.actor.clone(), app_id.clone());
    let app = state.db.run(move |conn| releases::show_app(conn, &actor, &id)).await.or_page(session.lang)?;
    let Some(key) = app.keys.iter().find(|k| k.key_id == key_id && k.revoked_at.is_none()) else {
        return Err(WebError::not_found(session.lang));
    };
    let body = ConfirmPage {
        ctx: session.ctx("console.apps"),
        effect: session.lang.format("console.apps.effect_revoke", &[&key.name, &key.key_id, &app.id]),
        action: format!("/console/apps/{}/keys/{}/revoke", app.id, key.key_id),
        back: format!("/console/apps/{}", app.id),
        heading: "console.apps.revoke_heading",
        button: "console.apps.confirm_revoke",
    };
    page(&body.ctx, &body)
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    csrf: String,
}

pub async fn revoke(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, String)>,
    form: web::Form<ConfirmForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let (app_id, key_id) = path.into_inner();
    let (actor, id) = (session.actor.clone(), app_id.clone());
    state.db.run(move |conn| releases::revoke_key(conn, &actor, &id, &key_id)).await.or_page(session.lang)?;
    Ok(redirect_with(&format!("/console/apps/{app_id}"), "flash.key_revoked"))
}

pub async fn confirm_withdraw(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    refuse_unless_publisher(&session)?;
    let (app_id, version) = path.into_inner();
    let actor = session.actor.clone();
    let (release, delivering, halted) = state
        .db
        .run(move |conn| releases::withdraw_reach(conn, &actor, &app_id, &version))
        .await
        .or_page(session.lang)?;
    if release.withdrawn_at.is_some() {
        return Ok(redirect_with(&format!("/console/apps/{}", release.app_id), "flash.already_withdrawn"));
    }
    let name = format!("{} {}", release.app_id, release.version);
    let body = ConfirmPage {
        ctx: session.ctx("console.apps"),
        effect: session.lang.format("console.apps.effect_withdraw", &[&name, &delivering, &halted]),
        action: format!("/console/apps/{}/releases/{}/withdraw", release.app_id, release.version),
        back: format!("/console/apps/{}", release.app_id),
        heading: "console.apps.withdraw_heading",
        button: "console.apps.confirm_withdraw",
    };
    page(&body.ctx, &body)
}

pub async fn withdraw(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, String)>,
    form: web::Form<ConfirmForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let (app_id, version) = path.into_inner();
    let (actor, id) = (session.actor.clone(), app_id.clone());
    match state.db.run(move |conn| releases::withdraw(conn, &actor, &id, &version)).await {
        Ok(_) => {
            // Terminals learn of it at their next contact.
            state.contact.caught_up().await;
            Ok(redirect_with(&format!("/console/apps/{app_id}"), "flash.release_withdrawn"))
        }
        Err(e) if e.code() == ErrorCode::Conflict => {
            Ok(redirect_with(&format!("/console/apps/{app_id}"), "flash.already_withdrawn"))
        }
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}

/// The largest signed manifest read from a form (they are a few hundred bytes).
const MANIFEST_MAX_BYTES: usize = 256 * 1024;

/// A release uploaded from the app's page (multipart: the form token, the
/// manifest `tms sign` wrote, then the artifact). The artifact part is
/// streamed into storage as the API's body is; a refusal before the artifact
/// is read reads the rest of the upload first, so the browser gets the page.
pub async fn publish(
    state: web::Data<AppState>,
    session: Session,
    app_id: web::Path<String>,
    mut form: actix_multipart::Multipart,
) -> Result<HttpResponse, WebError> {
    use futures_util::StreamExt;
    staff(&session)?;
    let lang = session.lang;
    let app_id = app_id.into_inner();
    let bad_form = || WebError::Page {
        lang,
        status: actix_web::http::StatusCode::BAD_REQUEST,
        message: lang.text("error.bad_form").to_owned(),
    };
    let (mut csrf, mut manifest): (String, Option<Vec<u8>>) = (String::new(), None);
    let mut outcome: Option<Result<ReleaseView, crate::error::Error>> = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|_| bad_form())?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == "artifact" && outcome.is_none() {
            session.check_form(&csrf)?;
            let signed = match manifest.as_deref().map(serde_json::from_slice::<SignedManifest>) {
                Some(Ok(signed)) => signed,
                Some(Err(e)) => {
                    outcome = Some(Err(crate::error::Error::new(
                        ErrorCode::InvalidManifest,
                        format!("not a signed manifest: {e}"),
                    )));
                    continue;
                }
                None => {
                    outcome = Some(Err(crate::error::Error::new(
                        ErrorCode::InvalidManifest,
                        "choose the manifest tms sign wrote",
                    )));
                    continue;
                }
            };
            let limit = state.config.max_artifact_bytes;
            let published = releases::publish::publish(
                &state.db,
                &state.blobs,
                session.actor.clone(),
                app_id.clone(),
                signed,
                None,
                limit,
                &mut field,
            )
            .await;
            outcome = Some(published);
            continue;
        }
        // Read small fields whole; the rest of an upload already refused is
        // read and dropped.
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|_| bad_form())?;
            if outcome.is_none() && bytes.len() + chunk.len() <= MANIFEST_MAX_BYTES {
                bytes.extend_from_slice(&chunk);
            }
        }
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "manifest" => manifest = Some(bytes),
            _ => {}
        }
    }
    session.check_form(&csrf)?;
    let outcome = outcome.unwrap_or_else(|| {
        Err(crate::error::Error::new(ErrorCode::UploadInterrupted, "choose the artifact to upload"))
    });
    match outcome {
        Ok(release) => {
            state.contact.caught_up().await;
            let to = format!("/console/apps/{}", release.app_id);
            Ok(redirect_with(&to, "flash.release_published"))
        }
        Err(e) if super::refusable(&e) => {
            let text = crate::web::refusal_text(lang, "console.publish", &e);
            let text = format!("{text} ({})", e.public_message());
            render(&state, &session, app_id, Refusals { publish: Some(text), ..Refusals::default() }).await
        }
        Err(e) => Err(WebError::from_domain(lang, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::Lang;

    #[test]
    fn sizes_read_in_each_language() {
        assert_eq!(byte_size(Lang::En, 512), "512\u{a0}B");
        assert_eq!(byte_size(Lang::En, 1536), "1.5\u{a0}KiB");
        assert_eq!(byte_size(Lang::Fr, 5 * 1024 * 1024 + 1024 * 102), "5,1\u{a0}Mio");
        assert_eq!(byte_size(Lang::Fr, 3 << 30), "3,0\u{a0}Gio");
    }
}
