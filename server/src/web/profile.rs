//! The user's own profile: password, two-step verification (with a QR code
//! for the authenticator app and recovery codes shown once), and signing
//! out everywhere.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::wire::accounts::UserView;

use super::{Ctx, OrPage, SESSION_COOKIE, Session, WebError, html, page, redirect_with, removal};
use crate::accounts::users;
use crate::error::{Error, ErrorCode};
use crate::http::AppState;

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    ctx: Ctx,
    user: UserView,
    /// (which form, message)
    error: Option<(&'static str, String)>,
}

async fn render(
    state: &AppState,
    session: &Session,
    error: Option<(&'static str, String)>,
) -> Result<ProfilePage, WebError> {
    let actor = session.actor.clone();
    let user = state.db.run(move |conn| users::me(conn, &actor)).await.or_page(session.lang)?;
    Ok(ProfilePage { ctx: session.ctx("profile"), user, error })
}

pub async fn show(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    let body = render(&state, &session, None).await?;
    page(&body.ctx, &body)
}

/// The page again, with a form's refusal.
async fn refused(
    state: &AppState,
    session: &Session,
    form: &'static str,
    e: Error,
) -> Result<HttpResponse, WebError> {
    let lang = session.lang;
    if e.is_internal() {
        return Err(WebError::from_domain(lang, e));
    }
    let message = super::refusal_text(lang, "profile", &e);
    let status = StatusCode::from_u16(e.code().status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = render(state, session, Some((form, message))).await?;
    Ok(html(status, &body))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
    repeat: String,
}

pub async fn change_password(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    if form.new != form.repeat {
        let message = session.lang.text("password.differ").to_owned();
        let body = render(&state, &session, Some(("password", message))).await?;
        return Ok(html(StatusCode::BAD_REQUEST, &body));
    }
    let (actor, settings) = (session.actor.clone(), state.accounts.clone());
    let (current, new) = (form.current.clone(), form.new.clone());
    match state
        .db
        .run(move |conn| users::change_password(conn, &actor, &current, &new, false, &settings))
        .await
    {
        Ok(()) => Ok(redirect_with("/profile", "flash.password_changed")),
        Err(e) => refused(&state, &session, "password", e).await,
    }
}

#[derive(Template)]
#[template(path = "two_factor_setup.html")]
struct SetupPage {
    ctx: Ctx,
    secret: String,
    qr_svg: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// The QR code of the authenticator URL, as SVG drawn here.
fn qr_svg(url: &str) -> Result<String, Error> {
    let code = qrcode::QrCode::new(url.as_bytes())
        .map_err(|e| Error::new(ErrorCode::Internal, format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

pub async fn start_two_factor(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    let actor = session.actor.clone();
    let settings = state.accounts.clone();
    let enrollment = state
        .db
        .run(move |conn| users::enroll_two_factor(conn, &actor, &settings))
        .await
        .or_page(session.lang)?;
    let page = SetupPage {
        ctx: session.ctx("profile"),
        qr_svg: qr_svg(&enrollment.otpauth_url).or_page(session.lang)?,
        secret: enrollment.secret,
        error: None,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryPage {
    ctx: Ctx,
    codes: Vec<String>,
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

pub async fn confirm_two_factor(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    let lang = session.lang;
    let actor = session.actor.clone();
    let code = form.code.clone();
    let settings = state.accounts.clone();
    match state.db.run(move |conn| users::confirm_two_factor(conn, &actor, &code, &settings)).await {
        // Shown once, on this answer only (never stored in the clear).
        Ok(recovery) => {
            Ok(html(StatusCode::OK, &RecoveryPage { ctx: session.ctx("profile"), codes: recovery.codes }))
        }
        Err(e) if e.code() == ErrorCode::InvalidTotp || e.code() == ErrorCode::Unauthorized => {
            // The same secret stays pending: show it again with the refusal.
            let actor = session.actor.clone();
            let settings = state.accounts.clone();
            let enrollment = state
                .db
                .run(move |conn| match users::pending_two_factor(conn, &actor, &settings)? {
                    Some(pending) => Ok(pending),
                    None => users::enroll_two_factor(conn, &actor, &settings),
                })
                .await
                .or_page(lang)?;
            let page = SetupPage {
                ctx: session.ctx("profile"),
                qr_svg: qr_svg(&enrollment.otpauth_url).or_page(lang)?,
                secret: enrollment.secret,
                error: Some(lang.text("login.wrong_code").to_owned()),
            };
            Ok(html(StatusCode::UNAUTHORIZED, &page))
        }
        Err(e) => Err(WebError::from_domain(lang, e)),
    }
}

#[derive(Deserialize)]
pub struct DisableForm {
    csrf: String,
    password: String,
    code: String,
}

pub async fn disable_two_factor(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<DisableForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    let (actor, settings) = (session.actor.clone(), state.accounts.clone());
    let (password, code) = (form.password.clone(), form.code.clone());
    match state.db.run(move |conn| users::disable_two_factor(conn, &actor, &password, &code, &settings)).await
    {
        Ok(()) => Ok(redirect_with("/profile", "flash.two_factor_off")),
        Err(e) => refused(&state, &session, "two_factor", e).await,
    }
}

pub async fn sign_out_everywhere(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    let actor = session.actor.clone();
    state.db.run(move |conn| users::logout_everywhere(conn, &actor)).await.or_page(session.lang)?;
    let mut response = redirect_with("/login", "flash.signed_out_everywhere");
    let _ = response.add_cookie(&removal(SESSION_COOKIE));
    Ok(response)
}
