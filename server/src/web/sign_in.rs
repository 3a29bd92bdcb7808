//! Signing in (password, then the authenticator's code when two-step
//! verification is on), signing out, and the language switch.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{
    Ctx, FORM_COOKIE, LANG_COOKIE, Lang, OrPage, PENDING_COOKIE, SESSION_COOKIE, Session, WebError,
    anonymous_ctx, cookie, html, redirect, redirect_with, removal, same_token,
};
use crate::accounts::users::{self, BrowserLogin};
use crate::error::{Error, ErrorCode};
use crate::http::{AppState, client_ip};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: Ctx,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "login_code.html")]
struct CodePage {
    ctx: Ctx,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path of this site: never `//elsewhere` or `https://elsewhere`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// The double-submit token of the forms before sign-in: the cookie's, or a
/// new one (then also set as the cookie).
pub fn form_token(req: &HttpRequest) -> (String, bool) {
    match req.cookie(FORM_COOKIE).map(|c| c.value().to_owned()).filter(|v| v.len() == 32) {
        Some(t) => (t, false),
        None => (hex::encode(rand::random::<[u8; 16]>()), true),
    }
}

/// A page shown before sign-in: sets the form cookie when new, and clears
/// the message it showed (so it does not follow the user in).
pub fn with_form_cookie(
    state: &AppState,
    req: &HttpRequest,
    mut response: HttpResponse,
    token: String,
    fresh: bool,
) -> HttpResponse {
    if fresh {
        let _ = response.add_cookie(&cookie(state, FORM_COOKIE, token, None));
    }
    if req.cookie(super::FLASH_COOKIE).is_some() {
        let _ = response.add_cookie(&removal(super::FLASH_COOKIE));
    }
    response
}

/// A form posted before sign-in must echo the cookie set with it.
pub fn check_anonymous_form(req: &HttpRequest, posted: &str) -> Result<(), WebError> {
    match req.cookie(FORM_COOKIE) {
        Some(c) if same_token(c.value(), posted) => Ok(()),
        _ => Err(WebError::forbidden_form(super::request_lang(req))),
    }
}

pub async fn form(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> HttpResponse {
    let (token, fresh) = form_token(&req);
    let page = LoginPage {
        ctx: anonymous_ctx(&req, token.clone()),
        email: String::new(),
        next: safe_next(query.next.as_deref()),
        error: None,
    };
    with_form_cookie(&state, &req, html(StatusCode::OK, &page), token, fresh)
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf: String,
    email: String,
    password: String,
    next: Option<String>,
}

fn login_error(lang: Lang, e: &Error) -> (StatusCode, String) {
    let status = StatusCode::from_u16(e.code().status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let message = match e {
        Error::Throttled { retry_after_secs, .. } => {
            lang.format("login.throttled", &[&retry_after_secs.div_ceil(60).max(1)])
        }
        _ => match e.code() {
            ErrorCode::InvalidCredentials => lang.text("login.wrong_password").to_owned(),
            ErrorCode::InvalidTotp => lang.text("login.wrong_code").to_owned(),
            _ => lang.text("error.internal").to_owned(),
        },
    };
    (status, message)
}

pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, WebError> {
    check_anonymous_form(&req, &form.csrf)?;
    let lang = super::request_lang(&req);
    let next = safe_next(form.next.as_deref());
    let settings = state.accounts.clone();
    let ip = client_ip(&req);
    let (email, password) = (form.email.clone(), form.password.clone());
    let outcome = state
        .db
        .run(move |conn| users::begin_browser_login(conn, &email, &password, ip.as_deref(), &settings))
        .await;
    match outcome {
        Ok(BrowserLogin::Signed(session)) => Ok(signed_in(&state, &session.token, &next)),
        Ok(BrowserLogin::SecondFactor { pending }) => {
            let target = format!(
                "/login/code?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            let mut response = redirect(&target);
            let _ = response.add_cookie(&cookie(
                &state,
                PENDING_COOKIE,
                pending,
                Some(CookieDuration::minutes(5)),
            ));
            Ok(response)
        }
        Err(e) if e.is_internal() => Err(WebError::from_domain(lang, e)),
        Err(e) => {
            let (status, message) = login_error(lang, &e);
            let page = LoginPage {
                ctx: anonymous_ctx(&req, form.csrf.clone()),
                email: form.email.clone(),
                next,
                error: Some(message),
            };
            Ok(html(status, &page))
        }
    }
}

fn signed_in(state: &AppState, token: &str, next: &str) -> HttpResponse {
    let mut response = redirect(next);
    let hours = state.accounts.session_ttl_hours as i64;
    let _ = response.add_cookie(&cookie(
        state,
        SESSION_COOKIE,
        token.to_owned(),
        Some(CookieDuration::hours(hours)),
    ));
    let _ = response.add_cookie(&removal(PENDING_COOKIE));
    response
}

pub async fn code_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> HttpResponse {
    if req.cookie(PENDING_COOKIE).is_none() {
        return redirect("/login");
    }
    let (token, fresh) = form_token(&req);
    let page = CodePage {
        ctx: anonymous_ctx(&req, token.clone()),
        next: safe_next(query.next.as_deref()),
        error: None,
    };
    with_form_cookie(&state, &req, html(StatusCode::OK, &page), token, fresh)
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: String,
    code: String,
    next: Option<String>,
}

pub async fn code_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, WebError> {
    check_anonymous_form(&req, &form.csrf)?;
    let lang = super::request_lang(&req);
    let next = safe_next(form.next.as_deref());
    let Some(pending) = req.cookie(PENDING_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(redirect_with("/login", "flash.sign_in_again"));
    };
    let settings = state.accounts.clone();
    let ip = client_ip(&req);
    let code = form.code.clone();
    let outcome = state
        .db
        .run(move |conn| users::finish_browser_login(conn, &pending, &code, ip.as_deref(), &settings))
        .await;
    match outcome {
        Ok(session) => Ok(signed_in(&state, &session.token, &next)),
        Err(e) if e.code() == ErrorCode::Unauthorized => {
            let mut response = redirect_with("/login", "flash.sign_in_again");
            let _ = response.add_cookie(&removal(PENDING_COOKIE));
            Ok(response)
        }
        Err(e) if e.is_internal() => Err(WebError::from_domain(lang, e)),
        Err(e) => {
            let (status, message) = login_error(lang, &e);
            let page = CodePage { ctx: anonymous_ctx(&req, form.csrf.clone()), next, error: Some(message) };
            Ok(html(status, &page))
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    let lang = session.lang;
    let actor = session.actor;
    state.db.run(move |conn| users::logout(conn, &actor)).await.or_page(lang)?;
    let mut response = redirect_with("/login", "flash.signed_out");
    let _ = response.add_cookie(&removal(SESSION_COOKIE));
    Ok(response)
}

#[derive(Deserialize)]
pub struct LanguageForm {
    csrf: String,
    lang: String,
    next: Option<String>,
}

/// The switcher: kept on the user when signed in, in a cookie otherwise.
pub async fn language(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: Option<Session>,
    form: web::Form<LanguageForm>,
) -> Result<HttpResponse, WebError> {
    let Some(lang) = Lang::parse(&form.lang) else {
        return Err(WebError::not_found(super::request_lang(&req)));
    };
    match session {
        Some(session) => {
            session.check_form(&form.csrf)?;
            let actor = session.actor;
            state
                .db
                .run(move |conn| users::set_language(conn, &actor, Some(lang.code())))
                .await
                .or_page(lang)?;
        }
        None => check_anonymous_form(&req, &form.csrf)?,
    }
    let mut response = redirect(&safe_next(form.next.as_deref()));
    let year = CookieDuration::days(365);
    let _ = response.add_cookie(&cookie(&state, LANG_COOKIE, lang.code().to_owned(), Some(year)));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/terminals?location=3")), "/terminals?location=3");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
