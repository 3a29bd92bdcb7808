//! Acquirers and contracts, for operator admins and support: the acquirers
//! with their latest parameter set, a new acquirer, a new parameter set (the
//! acquirer's JSON document and its expiry), revoking the latest one, and a
//! merchant's contract with an acquirer (from the merchant's page).

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::wire::acquirers::{
    AcquirerView, CreateAcquirerParametersRequest, CreateAcquirerRequest, CreateContractRequest,
};

use super::{ConfirmPage, staff};
use crate::acquirers;
use crate::error::Error;
use crate::http::AppState;
use crate::web::{Ctx, Lang, OrPage, Session, WebError, page, redirect_with};

#[derive(Template)]
#[template(path = "console/acquirers.html")]
struct ListPage {
    ctx: Ctx,
    acquirers: Vec<AcquirerView>,
    /// A refusal of the form just sent, and which form: `new`, or an acquirer's id.
    refusal: Option<(String, String)>,
}

impl ListPage {
    fn refusal_for(&self, form: &str) -> Option<&str> {
        self.refusal.as_ref().filter(|(f, _)| f == form).map(|(_, text)| text.as_str())
    }
}

async fn render(
    state: &AppState,
    session: &Session,
    refusal: Option<(String, String)>,
) -> Result<HttpResponse, WebError> {
    staff(session)?;
    let actor = session.actor.clone();
    let acquirers = state.db.run(move |conn| acquirers::list(conn, &actor)).await.or_page(session.lang)?;
    let body = ListPage { ctx: session.ctx("console.acquirers"), acquirers, refusal };
    page(&body.ctx, &body)
}

pub async fn list(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    render(&state, &session, None).await
}

/// The end of a day written `YYYY-MM-DD`, in UTC, as the API takes times.
fn end_of_day(field: &str, date: &str) -> Result<String, Error> {
    let day = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .map_err(|_| Error::invalid(field, "a date, YYYY-MM-DD"))?;
    Ok(format!("{day}T23:59:59Z"))
}

/// What a page says of a refused form: the catalogue's text when it has one.
fn refusal(lang: Lang, e: &Error) -> String {
    crate::web::form_refusal(lang, "console.acquirers", e)
}

/// Where a form's request leads: back to `to` with `flash`, or the refusal
/// in the reader's words when the user can act on it.
fn outcome<T>(
    session: &Session,
    result: Result<T, Error>,
    to: &str,
    flash: &'static str,
) -> Result<Result<HttpResponse, String>, WebError> {
    match result {
        Ok(_) => Ok(Ok(redirect_with(to, flash))),
        Err(e) if super::refusable(&e) => Ok(Err(refusal(session.lang, &e))),
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}

#[derive(Deserialize)]
pub struct NewAcquirerForm {
    csrf: String,
    id: String,
    name: String,
}

pub async fn create(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<NewAcquirerForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let request = CreateAcquirerRequest { id: form.id.trim().to_owned(), name: form.name.trim().to_owned() };
    let actor = session.actor.clone();
    let result = state.db.run(move |conn| acquirers::create(conn, &actor, &request)).await;
    match outcome(&session, result, "/console/acquirers", "flash.acquirer_created")? {
        Ok(done) => Ok(done),
        Err(text) => render(&state, &session, Some(("new".into(), text))).await,
    }
}

#[derive(Deserialize)]
pub struct ParametersForm {
    csrf: String,
    document: String,
    valid_until: String,
}

pub async fn add_parameters(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<String>,
    form: web::Form<ParametersForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let id = id.into_inner();
    let request = serde_json::from_str::<serde_json::Value>(&form.document)
        .map_err(|_| Error::invalid("document", "a JSON object"))
        .and_then(|document| {
            Ok(CreateAcquirerParametersRequest {
                document,
                valid_until: end_of_day("valid_until", &form.valid_until)?,
            })
        });
    let result = match request {
        Ok(request) => {
            let (actor, keys, acquirer) = (session.actor.clone(), state.master_keys.clone(), id.clone());
            let added = state
                .db
                .run(move |conn| acquirers::add_parameters(conn, &actor, &acquirer, &request, &keys))
                .await;
            if added.is_ok() {
                state.contact.caught_up().await;
            }
            added
        }
        Err(e) => Err(e),
    };
    match outcome(&session, result, "/console/acquirers", "flash.acquirer_parameters_added")? {
        Ok(done) => Ok(done),
        Err(text) => render(&state, &session, Some((id, text))).await,
    }
}

/// What revoking a parameter set does, before it is done.
pub async fn confirm_revoke(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    let (id, version) = path.into_inner();
    let actor = session.actor.clone();
    let found = state.db.run(move |conn| acquirers::list(conn, &actor)).await.or_page(session.lang)?;
    let Some(acquirer) = found.into_iter().find(|a| a.id == id) else {
        return Err(WebError::not_found(session.lang));
    };
    let body = ConfirmPage {
        ctx: session.ctx("console.acquirers"),
        heading: "console.acquirers.revoke_heading",
        button: "console.acquirers.confirm_revoke",
        effect: session.lang.format("console.acquirers.effect_revoke", &[&version, &acquirer.name]),
        action: format!("/console/acquirers/{id}/parameter-sets/{version}/revoke"),
        back: "/console/acquirers".to_owned(),
    };
    page(&body.ctx, &body)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn revoke(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, i64)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let (id, version) = path.into_inner();
    let (actor, acquirer) = (session.actor.clone(), id.clone());
    let result =
        state.db.run(move |conn| acquirers::revoke_parameters(conn, &actor, &acquirer, version)).await;
    if result.is_ok() {
        state.contact.caught_up().await;
    }
    match outcome(&session, result, "/console/acquirers", "flash.acquirer_parameters_revoked")? {
        Ok(done) => Ok(done),
        Err(text) => render(&state, &session, Some((id, text))).await,
    }
}

#[derive(Deserialize)]
pub struct ContractForm {
    csrf: String,
    acquirer_id: String,
    /// `merchant`, `location` or `device`.
    applies_to: String,
    #[serde(default)]
    location_id: String,
    #[serde(default)]
    device_id: String,
    acquirer_merchant_id: String,
    acquirer_terminal_id: String,
    #[serde(default)]
    valid_until: String,
}

impl ContractForm {
    fn request(&self) -> Result<CreateContractRequest, Error> {
        let id = |field: &str, text: &str| {
            text.trim().parse::<i64>().map(Some).map_err(|_| Error::invalid(field, "not an id"))
        };
        Ok(CreateContractRequest {
            acquirer_id: self.acquirer_id.clone(),
            location_id: if self.applies_to == "location" {
                id("location_id", &self.location_id)?
            } else {
                None
            },
            device_id: if self.applies_to == "device" { id("device_id", &self.device_id)? } else { None },
            acquirer_merchant_id: self.acquirer_merchant_id.clone(),
            acquirer_terminal_id: self.acquirer_terminal_id.clone(),
            valid_until: match self.valid_until.trim() {
                "" => None,
                date => Some(end_of_day("valid_until", date)?),
            },
        })
    }
}

/// A contract added from the merchant's page; a refusal goes back there.
pub async fn add_contract(
    state: web::Data<AppState>,
    session: Session,
    merchant_id: web::Path<i64>,
    form: web::Form<ContractForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let merchant_id = merchant_id.into_inner();
    let result = match form.request() {
        Ok(request) => {
            let actor = session.actor.clone();
            state.db.run(move |conn| acquirers::add_contract(conn, &actor, merchant_id, &request)).await
        }
        Err(e) => Err(e),
    };
    let to = format!("/console/merchants/{merchant_id}");
    match outcome(&session, result, &to, "flash.contract_added")? {
        Ok(done) => Ok(done),
        Err(text) => super::merchants::render_show(&state, &session, merchant_id, Some(text), None).await,
    }
}
