//! Locations: the list, and renaming one (addresses come from orders).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::accounts::Permission;
use tms_packages::wire::accounts::LocationView;

use super::{Ctx, OrPage, Session, WebError, html, page, redirect_with};
use crate::accounts::merchants;
use crate::http::AppState;

pub struct LocationRow {
    pub view: LocationView,
    pub may_change: bool,
}

#[derive(Template)]
#[template(path = "locations.html")]
struct LocationsPage {
    ctx: Ctx,
    locations: Vec<LocationRow>,
    /// The location whose new name was refused, with why.
    error: Option<(i64, String)>,
}

async fn render(
    state: &AppState,
    session: &Session,
    error: Option<(i64, String)>,
) -> Result<LocationsPage, WebError> {
    let merchant_id = session.merchant_id()?;
    let actor = session.actor.clone();
    let views = state
        .db
        .run(move |conn| merchants::list_locations(conn, &actor, merchant_id))
        .await
        .or_page(session.lang)?;
    let locations = views
        .into_iter()
        .map(|view| LocationRow {
            may_change: session.actor.may(merchant_id, Some(view.id), Permission::ManageSettings),
            view,
        })
        .collect();
    Ok(LocationsPage { ctx: session.ctx("locations"), locations, error })
}

pub async fn list(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    let body = render(&state, &session, None).await?;
    page(&body.ctx, &body)
}

#[derive(Deserialize)]
pub struct RenameForm {
    csrf: String,
    name: String,
}

pub async fn rename(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: web::Form<RenameForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    let id = id.into_inner();
    let actor = session.actor.clone();
    let name = form.name.clone();
    match state.db.run(move |conn| merchants::rename_location(conn, &actor, id, &name)).await {
        Ok(_) => Ok(redirect_with("/locations", "flash.location_renamed")),
        Err(e) if e.code() == crate::error::ErrorCode::InvalidRequest => {
            let message = session.lang.text("locations.name_invalid").to_owned();
            let body = render(&state, &session, Some((id, message))).await?;
            Ok(html(StatusCode::BAD_REQUEST, &body))
        }
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}
