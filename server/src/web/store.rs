//! The app store: the catalogue for the merchant's terminals, one app's
//! page with its status on each terminal, install and uninstall on the
//! terminals ticked.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::wire::accounts::LocationView;
use tms_packages::wire::store::{StoreAppSummary, StoreAppView, StoreRequest};

use super::fields::{Fields, all, field};
use super::{Ctx, OrPage, Session, WebError, html, page, redirect_with};
use crate::accounts::merchants;
use crate::error::{Error, ErrorCode};
use crate::http::AppState;
use crate::store::{self, CatalogueQuery};

#[derive(Template)]
#[template(path = "store.html")]
struct CataloguePage {
    ctx: Ctx,
    apps: Vec<StoreAppSummary>,
    search: String,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub async fn catalogue(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, WebError> {
    session.merchant_id()?;
    let actor = session.actor.clone();
    let search = query.q.trim().to_owned();
    let wanted = CatalogueQuery {
        merchant_id: None,
        search: (!search.is_empty()).then(|| search.clone()),
        category: None,
    };
    let apps =
        state.db.run(move |conn| store::catalogue(conn, &actor, &wanted)).await.or_page(session.lang)?;
    let body = CataloguePage { ctx: session.ctx("store"), apps, search };
    page(&body.ctx, &body)
}

#[derive(Template)]
#[template(path = "store_app.html")]
struct AppPage {
    ctx: Ctx,
    app: StoreAppView,
    locations: Vec<LocationView>,
    error: Option<String>,
}

impl CataloguePage {
    /// The first letter of a name, standing in for a missing icon.
    fn initial(&self, name: &str) -> String {
        name.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default()
    }

    fn image(&self, api_path: &str) -> String {
        api_path.replacen("/api/v1/store/apps/", "/store/", 1)
    }
}

impl AppPage {
    /// Whether a terminal is still to act on a request: then the status
    /// table refreshes itself.
    fn waiting(&self) -> bool {
        self.app.terminals.iter().any(|t| t.status == "requested" || t.status == "removal_requested")
    }

    /// The download's size in the reader's units: kB under a megabyte.
    fn size(&self) -> String {
        let (value, key) = if self.app.size < 1_048_576 {
            (self.app.size as f64 / 1024.0, "store.kilobytes")
        } else {
            (self.app.size as f64 / 1_048_576.0, "store.megabytes")
        };
        let text = format!("{value:.1}");
        let text = if self.ctx.lang == super::Lang::Fr { text.replace('.', ",") } else { text };
        self.ctx.t1(key, text)
    }

    /// The portal's address of an image the API names.
    fn image(&self, api_path: &str) -> String {
        api_path.replacen("/api/v1/store/apps/", "/store/", 1)
    }

    fn location_name(&self, id: impl super::Count) -> String {
        super::location_name(&self.locations, id.count())
    }
}

async fn render(
    state: &AppState,
    session: &Session,
    app_id: String,
    error: Option<String>,
) -> Result<AppPage, WebError> {
    let merchant_id = session.merchant_id()?;
    let actor = session.actor.clone();
    let (app, locations) = state
        .db
        .run(move |conn| {
            let app = store::show(conn, &actor, &app_id, None)?;
            let locations = merchants::list_locations(conn, &actor, merchant_id)?;
            Ok::<_, Error>((app, locations))
        })
        .await
        .or_page(session.lang)?;
    Ok(AppPage { ctx: session.ctx("store"), app, locations, error })
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    app_id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let body = render(&state, &session, app_id.into_inner(), None).await?;
    page(&body.ctx, &body)
}

/// The ticked terminals of the form: `device=<id>` fields, repeated.
fn chosen(fields: &[(String, String)]) -> Vec<i64> {
    all(fields, "device").filter_map(|v| v.parse().ok()).collect()
}

async fn request(
    state: web::Data<AppState>,
    session: Session,
    app_id: String,
    fields: Vec<(String, String)>,
    install: bool,
) -> Result<HttpResponse, WebError> {
    session.check_form(field(&fields, "csrf"))?;
    let lang = session.lang;
    let devices = chosen(&fields);
    if devices.is_empty() {
        let body =
            render(&state, &session, app_id, Some(lang.text("store.choose_terminals").to_owned())).await?;
        return Ok(html(StatusCode::BAD_REQUEST, &body));
    }
    let wanted = StoreRequest { merchant_id: None, devices, locations: Vec::new(), action: None };
    let actor = session.actor.clone();
    let id = app_id.clone();
    let outcome = state
        .db
        .run(move |conn| {
            if install {
                store::install(conn, &actor, &id, &wanted)
            } else {
                store::uninstall(conn, &actor, &id, &wanted)
            }
        })
        .await;
    match outcome {
        Ok(_) => {
            state.contact.caught_up().await;
            let flash = if install { "flash.install_requested" } else { "flash.uninstall_requested" };
            Ok(redirect_with(&format!("/store/{app_id}"), flash))
        }
        Err(e) if !e.is_internal() && e.code() != ErrorCode::NotFound && e.code() != ErrorCode::Forbidden => {
            let message = super::refusal_text(lang, "store", &e);
            let status = StatusCode::from_u16(e.code().status()).unwrap_or(StatusCode::BAD_REQUEST);
            let body = render(&state, &session, app_id, Some(message)).await?;
            Ok(html(status, &body))
        }
        Err(e) => Err(WebError::from_domain(lang, e)),
    }
}

pub async fn install(
    state: web::Data<AppState>,
    session: Session,
    app_id: web::Path<String>,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    request(state, session, app_id.into_inner(), form.into_inner(), true).await
}

pub async fn uninstall(
    state: web::Data<AppState>,
    session: Session,
    app_id: web::Path<String>,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    request(state, session, app_id.into_inner(), form.into_inner(), false).await
}

/// The app's icon and screenshots, for the signed-in merchant.
pub async fn icon(
    state: web::Data<AppState>,
    session: Session,
    app_id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    crate::http::store::image_response(&state, session.actor.clone(), app_id.into_inner(), None)
        .await
        .map_err(|e| WebError::from_domain(session.lang, e))
}

pub async fn screenshot(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, WebError> {
    let (app_id, id) = path.into_inner();
    crate::http::store::image_response(&state, session.actor.clone(), app_id, Some(id))
        .await
        .map_err(|e| WebError::from_domain(session.lang, e))
}
