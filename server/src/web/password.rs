//! Choosing a password: from the activation link of an order or an
//! invitation, or from a "forgotten password" link.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::sign_in::{check_anonymous_form, form_token, with_form_cookie};
use super::{Ctx, WebError, anonymous_ctx, html, redirect_with, request_lang};
use crate::accounts::users;
use crate::error::ErrorCode;
use crate::http::{AppState, client_ip};

#[derive(Template)]
#[template(path = "set_password.html")]
struct SetPasswordPage {
    ctx: Ctx,
    token: String,
    error: Option<String>,
    /// The link itself is spent or expired: only a new one helps.
    link_dead: bool,
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn set_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<TokenQuery>,
) -> HttpResponse {
    let (csrf, fresh) = form_token(&req);
    let page = SetPasswordPage {
        ctx: anonymous_ctx(&req, csrf.clone()),
        token: query.token.clone(),
        error: None,
        link_dead: false,
    };
    with_form_cookie(&state, &req, html(StatusCode::OK, &page), csrf, fresh)
}

#[derive(Deserialize)]
pub struct SetPasswordForm {
    csrf: String,
    token: String,
    password: String,
    repeat: String,
}

pub async fn set(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<SetPasswordForm>,
) -> Result<HttpResponse, WebError> {
    check_anonymous_form(&req, &form.csrf)?;
    let lang = request_lang(&req);
    let refuse = |status: StatusCode, message: String, link_dead: bool| {
        let page = SetPasswordPage {
            ctx: anonymous_ctx(&req, form.csrf.clone()),
            token: form.token.clone(),
            error: Some(message),
            link_dead,
        };
        Ok(html(status, &page))
    };
    if form.password != form.repeat {
        return refuse(StatusCode::BAD_REQUEST, lang.text("password.differ").to_owned(), false);
    }
    let ip = client_ip(&req);
    let (token, password) = (form.token.clone(), form.password.clone());
    match state.db.run(move |conn| users::activate_account(conn, &token, &password, ip.as_deref())).await {
        Ok(()) => Ok(redirect_with("/login", "flash.password_set")),
        Err(e) if e.code() == ErrorCode::WeakPassword => {
            refuse(StatusCode::BAD_REQUEST, super::refusal_text(lang, "password", &e), false)
        }
        Err(e) if e.code() == ErrorCode::ActivationTokenInvalid => {
            refuse(StatusCode::BAD_REQUEST, lang.text("password.link_dead").to_owned(), true)
        }
        Err(e) => Err(WebError::from_domain(lang, e)),
    }
}

#[derive(Template)]
#[template(path = "forgot_password.html")]
struct ForgotPage {
    ctx: Ctx,
}

pub async fn forgot_form(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let (csrf, fresh) = form_token(&req);
    let page = ForgotPage { ctx: anonymous_ctx(&req, csrf.clone()) };
    with_form_cookie(&state, &req, html(StatusCode::OK, &page), csrf, fresh)
}

#[derive(Deserialize)]
pub struct ForgotForm {
    csrf: String,
    email: String,
}

/// The same answer whether or not the address has an account.
pub async fn forgot(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, WebError> {
    check_anonymous_form(&req, &form.csrf)?;
    let lang = request_lang(&req);
    let settings = state.accounts.clone();
    let ip = client_ip(&req);
    let email = form.email.clone();
    let mail = state
        .db
        .run(move |conn| users::request_password_reset(conn, &email, ip.as_deref(), &settings))
        .await
        .map_err(|e| WebError::from_domain(lang, e))?;
    if let Some(mail) = mail {
        crate::http::accounts::deliver(&state, mail).await;
    }
    Ok(redirect_with("/login", "flash.reset_sent"))
}
