//! The merchant portal: server-rendered pages over the same domain
//! functions as the JSON API, in French and English.
//!
//! Pages are plain HTML forms (post, redirect, get); `static/portal.js`
//! only enhances them. A browser session is a session token in an HttpOnly
//! cookie, resolved like a bearer token; every form that changes something
//! carries a CSRF token derived from that session, checked before the
//! change.

pub mod assets;
pub mod i18n;

mod activity;
pub mod console;
mod home;
mod locations;
mod password;
mod profile;
mod settings;
mod sign_in;
mod store;
mod team;
mod terminals;
mod transactions;

use std::fmt::Display;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use askama::Template;
use futures_util::future::LocalBoxFuture;
use sha2::{Digest, Sha256};

use crate::accounts::access::Actor;
use crate::accounts::users;
use crate::error::{Error, ErrorChain};
use crate::http::{AppState, client_ip};
pub use i18n::Lang;

pub const SESSION_COOKIE: &str = "tms_session";
pub const LANG_COOKIE: &str = "tms_lang";
/// Double-submit token of the forms shown before signing in.
pub const FORM_COOKIE: &str = "tms_form";
/// The proof that a login passed its first step.
pub const PENDING_COOKIE: &str = "tms_pending";
/// A catalogue key naming what the last change did, shown once.
pub const FLASH_COOKIE: &str = "tms_flash";

/// The headers every page carries: no script but ours, no framing, no
/// referrer leaving the site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, post, resource};
    // A form that does not parse (a field missing or malformed) is answered
    // with a page, like every other refusal here.
    cfg.app_data(web::FormConfig::default().limit(64 * 1024).error_handler(|err, req| {
        tracing::debug!(error = %err, "form refused");
        let lang = request_lang(req);
        WebError::Page {
            lang,
            status: StatusCode::BAD_REQUEST,
            message: lang.text("error.bad_form").to_owned(),
        }
        .into()
    }))
    .service(resource("/static/{name}").route(get().to(assets::serve)))
    .service(resource("/").route(get().to(home::show)))
    .service(resource("/login").route(get().to(sign_in::form)).route(post().to(sign_in::submit)))
    .service(
        resource("/login/code").route(get().to(sign_in::code_form)).route(post().to(sign_in::code_submit)),
    )
    .service(resource("/logout").route(post().to(sign_in::logout)))
    .service(resource("/activate").route(get().to(password::set_form)).route(post().to(password::set)))
    .service(
        resource("/password/forgot")
            .route(get().to(password::forgot_form))
            .route(post().to(password::forgot)),
    )
    .service(resource("/language").route(post().to(sign_in::language)))
    .service(resource("/profile").route(get().to(profile::show)))
    .service(resource("/profile/password").route(post().to(profile::change_password)))
    .service(resource("/profile/two-factor/start").route(post().to(profile::start_two_factor)))
    .service(resource("/profile/two-factor/confirm").route(post().to(profile::confirm_two_factor)))
    .service(resource("/profile/two-factor/disable").route(post().to(profile::disable_two_factor)))
    .service(resource("/profile/sign-out-everywhere").route(post().to(profile::sign_out_everywhere)))
    .service(resource("/locations").route(get().to(locations::list)))
    .service(resource("/locations/{id}/name").route(post().to(locations::rename)))
    .service(
        resource("/locations/{id}/settings").route(get().to(settings::show)).route(post().to(settings::save)),
    )
    .service(resource("/locations/{id}/logo").route(post().to(settings::save_logo)))
    .service(resource("/terminals").route(get().to(terminals::list)))
    .service(resource("/terminals/{id}").route(get().to(terminals::show)))
    .service(
        resource("/terminals/{id}/deactivate")
            .route(get().to(terminals::confirm_deactivate))
            .route(post().to(terminals::deactivate)),
    )
    .service(resource("/transactions").route(get().to(transactions::list)))
    .service(resource("/transactions/totals").route(get().to(transactions::totals)))
    .service(resource("/transactions/export.csv").route(get().to(transactions::export)))
    .service(resource("/activity").route(get().to(activity::list)))
    .service(resource("/users").route(get().to(team::list)).route(post().to(team::invite)))
    .service(resource("/users/{id}/remove").route(post().to(team::remove)))
    .service(resource("/groups").route(post().to(team::create_group)))
    .service(resource("/groups/{id}/grants").route(post().to(team::set_grants)))
    .service(resource("/groups/{id}/members").route(post().to(team::add_member)))
    .service(resource("/groups/{id}/members/{user_id}/remove").route(post().to(team::remove_member)))
    .service(resource("/groups/{id}/delete").route(post().to(team::delete_group)))
    .service(resource("/store").route(get().to(store::catalogue)))
    .service(resource("/store/{app_id}").route(get().to(store::show)))
    .service(resource("/store/{app_id}/install").route(post().to(store::install)))
    .service(resource("/store/{app_id}/uninstall").route(post().to(store::uninstall)))
    .service(resource("/store/{app_id}/icon").route(get().to(store::icon)))
    .service(resource("/store/{app_id}/screenshots/{screenshot_id}").route(get().to(store::screenshot)));
    console::routes(cfg);
}

/// What every page's frame needs: the language, the signed-in user, the
/// form token, the section for the navigation, a message from the last
/// change.
pub struct Ctx {
    pub lang: Lang,
    pub csrf: String,
    /// Empty when nobody is signed in.
    pub user_email: String,
    pub section: &'static str,
    /// A catalogue key.
    pub flash: Option<&'static str>,
    /// This page's path and query, where a language switch comes back to.
    pub here: String,
    /// The sections the user may open (the navigation shows only these).
    pub sections: Vec<&'static str>,
    /// The operator console's frame rather than the merchant portal's.
    pub console: bool,
}

/// Every section of the navigation: (section, link, catalogue key), in
/// the order shown. The portal's sections, then the console's.
const NAV: &[(&str, &str, &str)] = &[
    ("home", "/", "nav.home"),
    ("locations", "/locations", "nav.locations"),
    ("terminals", "/terminals", "nav.terminals"),
    ("transactions", "/transactions", "nav.transactions"),
    ("store", "/store", "nav.store"),
    ("users", "/users", "nav.users"),
    ("activity", "/activity", "nav.activity"),
    ("console.overview", "/console/", "console.nav.overview"),
    ("console.terminals", "/console/terminals", "console.nav.terminals"),
    ("console.merchants", "/console/merchants", "console.nav.merchants"),
    ("console.deployments", "/console/deployments", "console.nav.deployments"),
    ("console.apps", "/console/apps", "console.nav.apps"),
    ("console.parameters", "/console/parameters", "console.nav.parameters"),
    ("console.acquirers", "/console/acquirers", "console.nav.acquirers"),
    ("console.audit", "/console/audit", "console.nav.audit"),
    ("console.operators", "/console/operators", "console.nav.operators"),
];

impl Ctx {
    pub fn t(&self, key: &str) -> &'static str {
        self.lang.text(key)
    }

    /// The text of a key made from data (a status a newer server may
    /// add), or the data itself when the catalogue has none.
    pub fn t_or<'a>(&self, key: &str, fallback: &'a str) -> &'a str {
        self.lang.try_text(key).unwrap_or(fallback)
    }

    /// The text of `prefix` + `value` (a status, a kind), or the value
    /// itself when the catalogue has none (one a newer server added).
    pub fn t_of<'a>(&self, prefix: &str, value: &'a str) -> &'a str {
        self.lang.try_text(&format!("{prefix}{value}")).unwrap_or(value)
    }

    pub fn t1(&self, key: &str, a: impl Display) -> String {
        self.lang.format(key, &[&a])
    }

    pub fn t2(&self, key: &str, a: impl Display, b: impl Display) -> String {
        self.lang.format(key, &[&a, &b])
    }

    /// A text about a count, in its singular or plural form.
    pub fn n1(&self, key: &str, n: impl Count) -> String {
        self.lang.count_format(key, n.count(), &[])
    }

    pub fn n2(&self, key: &str, n: impl Count, b: impl Display) -> String {
        self.lang.count_format(key, n.count(), &[&b])
    }

    pub fn when(&self, rfc3339: &str) -> String {
        self.lang.date_time_text(rfc3339)
    }

    pub fn amount(&self, minor: impl Count, currency: &str) -> String {
        self.lang.amount(minor.count(), currency)
    }

    pub fn number(&self, n: impl Count) -> String {
        self.lang.number(n.count())
    }

    pub fn css(&self) -> &'static str {
        &assets::ASSETS.css
    }

    pub fn js(&self) -> &'static str {
        &assets::ASSETS.js
    }

    pub fn icon(&self) -> &'static str {
        &assets::ASSETS.icon
    }

    pub fn langs(&self) -> [Lang; 2] {
        Lang::ALL
    }

    pub fn signed_in(&self) -> bool {
        !self.user_email.is_empty()
    }

    pub fn shows(&self, section: &str) -> bool {
        self.sections.contains(&section)
    }

    /// The navigation's links this user sees: (link, text, section).
    pub fn nav(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        NAV.iter()
            .filter(|(section, _, _)| self.shows(section))
            .map(|(section, href, key)| (*href, self.t(key), *section))
            .collect()
    }

    /// Where the brand leads: the console's or the portal's home.
    pub fn home_link(&self) -> &'static str {
        if self.console { "/console/" } else { "/" }
    }

    pub fn app_name(&self) -> &'static str {
        self.t(if self.console { "console.name" } else { "app.name" })
    }

    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section { "page" } else { "false" }
    }
}

/// A whole number however a template holds it (by value or by reference).
pub trait Count {
    fn count(&self) -> i64;
}

impl Count for i64 {
    fn count(&self) -> i64 {
        *self
    }
}

impl Count for u64 {
    fn count(&self) -> i64 {
        i64::try_from(*self).unwrap_or(i64::MAX)
    }
}

impl Count for usize {
    fn count(&self) -> i64 {
        i64::try_from(*self).unwrap_or(i64::MAX)
    }
}

impl<T: Count + ?Sized> Count for &T {
    fn count(&self) -> i64 {
        (**self).count()
    }
}

/// A page's failure, rendered as a page in the reader's language.
#[derive(Debug)]
pub enum WebError {
    /// Not signed in (or the session ended): to the login page, then back.
    SignIn {
        next: String,
    },
    Page {
        lang: Lang,
        status: StatusCode,
        message: String,
    },
}

impl WebError {
    pub fn from_domain(lang: Lang, e: Error) -> WebError {
        let code = e.code();
        if e.is_internal() {
            tracing::error!(error = %ErrorChain(&e), "page failed");
        }
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code == crate::error::ErrorCode::Unauthorized {
            return WebError::SignIn { next: "/".into() };
        }
        // The catalogue's words where it has them; the domain's own
        // (English) sentence for what only it can say precisely.
        let message = match lang.try_text(&format!("error.{}", code.as_str())) {
            Some(text) => text.to_owned(),
            None => e.public_message(),
        };
        WebError::Page { lang, status, message }
    }

    pub fn forbidden_form(lang: Lang) -> WebError {
        WebError::Page {
            lang,
            status: StatusCode::FORBIDDEN,
            message: lang.text("error.form_expired").to_owned(),
        }
    }

    pub fn not_found(lang: Lang) -> WebError {
        WebError::Page {
            lang,
            status: StatusCode::NOT_FOUND,
            message: lang.text("error.not_found").to_owned(),
        }
    }
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebError::SignIn { .. } => f.write_str("sign in first"),
            WebError::Page { message, .. } => f.write_str(message),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: Ctx,
    status: u16,
    message: String,
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::SignIn { .. } => StatusCode::SEE_OTHER,
            WebError::Page { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            WebError::SignIn { next } => {
                let target = if next == "/" || next.is_empty() {
                    "/login".to_owned()
                } else {
                    format!(
                        "/login?next={}",
                        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                    )
                };
                redirect(&target)
            }
            WebError::Page { lang, status, message } => {
                let page = ErrorPage {
                    ctx: Ctx {
                        lang: *lang,
                        csrf: String::new(),
                        user_email: String::new(),
                        section: "",
                        flash: None,
                        here: "/".into(),
                        sections: Vec::new(),
                        console: false,
                    },
                    status: status.as_u16(),
                    message: message.clone(),
                };
                let mut response = html(*status, &page);
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
                response
            }
        }
    }
}

/// A refusal the reader can act on, in their language: the catalogue's
/// `<prefix>.refused_<code>` text where it has one (a weak password by the
/// rule it breaks), else the domain's own sentence.
pub fn refusal_text(lang: Lang, prefix: &str, e: &Error) -> String {
    let key = match e.code() {
        crate::error::ErrorCode::WeakPassword => {
            format!(
                "password.rule_{}",
                e.public_details().get("rule").map(String::as_str).unwrap_or_default()
            )
        }
        code => format!("{prefix}.refused_{}", code.as_str()),
    };
    lang.try_text(&key).map_or_else(|| e.public_message(), str::to_owned)
}

/// A refusal of a form, in the reader's words: the text of
/// `<prefix>.bad_<field>` for an invalid field when the catalogue has it
/// (the domain's message is English), then `<prefix>.refused_<code>`, then
/// the domain's message.
pub fn form_refusal(lang: Lang, prefix: &str, e: &Error) -> String {
    let field = e.public_details().get("field").cloned();
    let key = match (e.code(), field) {
        (crate::error::ErrorCode::InvalidRequest, Some(field)) => format!("{prefix}.bad_{field}"),
        (code, _) => format!("{prefix}.refused_{}", code.as_str()),
    };
    lang.try_text(&key).map_or_else(|| e.public_message(), str::to_owned)
}

/// A part of a page some users may not see: empty for them (a 403 from
/// the domain), any other failure still a failure.
pub fn unless_forbidden<T: Default>(result: Result<T, Error>) -> Result<T, Error> {
    match result {
        Err(e) if e.code() == crate::error::ErrorCode::Forbidden => Ok(T::default()),
        other => other,
    }
}

/// The merchant's terminals still on the default merchant password, for the
/// warning pages show: none for a user who may not manage settings.
pub async fn weak_password_terminals(
    state: &AppState,
    session: &Session,
) -> Result<Vec<tms_packages::wire::parameters::ReportedDevice>, WebError> {
    let merchant_id = session.merchant_id()?;
    unless_forbidden(
        crate::parameters::weak_password_report(
            &state.db,
            &state.blobs,
            session.actor.clone(),
            Some(merchant_id),
        )
        .await,
    )
    .or_page(session.lang)
}

/// The name of a location of the list, empty if it is not there.
pub fn location_name(locations: &[tms_packages::wire::accounts::LocationView], id: i64) -> String {
    locations.iter().find(|l| l.id == id).map(|l| l.name.clone()).unwrap_or_default()
}

/// Turns a domain result into a page result in the reader's language.
pub trait OrPage<T> {
    fn or_page(self, lang: Lang) -> Result<T, WebError>;
}

impl<T> OrPage<T> for Result<T, Error> {
    fn or_page(self, lang: Lang) -> Result<T, WebError> {
        self.map_err(|e| WebError::from_domain(lang, e))
    }
}

/// A rendered page with the security headers.
pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((header::REFERRER_POLICY, "same-origin"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("internal error")
        }
    }
}

/// A page answer that also clears the message it showed.
pub fn page(ctx: &Ctx, template: &impl Template) -> Result<HttpResponse, WebError> {
    let mut response = html(StatusCode::OK, template);
    if ctx.flash.is_some() {
        let mut gone = Cookie::build(FLASH_COOKIE, "").path("/").finish();
        gone.make_removal();
        let _ = response.add_cookie(&gone);
    }
    Ok(response)
}

/// 303 See Other: where a form post lands.
pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish()
}

/// 303 to `to`, with a message (a catalogue key) shown there once.
pub fn redirect_with(to: &str, flash: &'static str) -> HttpResponse {
    let mut response = redirect(to);
    let _ = response.add_cookie(
        &Cookie::build(FLASH_COOKIE, flash).path("/").http_only(true).same_site(SameSite::Lax).finish(),
    );
    response
}

/// A cookie of this site: HttpOnly, SameSite=Lax, Secure behind https.
pub fn cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    max_age: Option<CookieDuration>,
) -> Cookie<'static> {
    let mut c = Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.accounts.public_url.starts_with("https://"))
        .finish();
    if let Some(age) = max_age {
        c.set_max_age(age);
    }
    c
}

pub fn removal(name: &'static str) -> Cookie<'static> {
    let mut c = Cookie::build(name, "").path("/").finish();
    c.make_removal();
    c
}

/// The form token of a session: derived from the session's secret, so a
/// page of another site can neither read nor compute it.
pub fn csrf_for(session_token: &str) -> String {
    let digest =
        Sha256::new().chain_update(b"tms-portal-csrf\0").chain_update(session_token.as_bytes()).finalize();
    hex::encode(&digest[..16])
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The language of a request nobody is signed in to: the switcher's
/// cookie, else the browser's Accept-Language.
pub fn request_lang(req: &HttpRequest) -> Lang {
    req.cookie(LANG_COOKIE).and_then(|c| Lang::parse(c.value())).unwrap_or_else(|| {
        Lang::from_accept_language(req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
    })
}

/// The message a redirect left, if it names a known text.
fn flash_of(req: &HttpRequest, lang: Lang) -> Option<&'static str> {
    known_flash(lang, req.cookie(FLASH_COOKIE)?.value())
}

/// Only the catalogue's own messages: a cookie cannot put text on a page.
fn known_flash(lang: Lang, key: &str) -> Option<&'static str> {
    key.starts_with("flash.").then(|| lang.try_key(key)).flatten()
}

fn here(req: &HttpRequest) -> String {
    match req.query_string() {
        "" => req.path().to_owned(),
        q => format!("{}?{q}", req.path()),
    }
}

/// A signed-in browser: the caller, its session token and its language.
pub struct Session {
    pub actor: Actor,
    pub token: String,
    pub lang: Lang,
    flash: Option<&'static str>,
    here: String,
}

impl Session {
    pub fn ctx(&self, section: &'static str) -> Ctx {
        Ctx {
            lang: self.lang,
            csrf: csrf_for(&self.token),
            user_email: self.actor.email.clone(),
            section,
            flash: self.flash,
            here: self.here.clone(),
            sections: self.sections(),
            console: self.actor.operator_role().is_some(),
        }
    }

    /// The portal's sections this user may open: every user sees the
    /// overview, locations and terminals; the others follow the permissions.
    fn sections(&self) -> Vec<&'static str> {
        use tms_packages::accounts::Permission;
        if let Some(role) = self.actor.operator_role() {
            return console::sections(role);
        }
        let Some(merchant) = self.actor.merchant_id() else { return Vec::new() };
        let may = |p: Permission| self.actor.may_somewhere(merchant, p);
        [
            ("home", true),
            ("locations", true),
            ("terminals", true),
            ("transactions", may(Permission::ViewTransactions)),
            ("store", may(Permission::InstallApps)),
            ("users", self.actor.may(merchant, None, Permission::ManageUsers)),
            ("activity", self.actor.is_admin_of(merchant)),
        ]
        .into_iter()
        .filter_map(|(section, shown)| shown.then_some(section))
        .collect()
    }

    /// Refuses a form that does not carry this session's token: a post
    /// from another site's page.
    pub fn check_form(&self, csrf: &str) -> Result<(), WebError> {
        if same_token(csrf, &csrf_for(&self.token)) {
            Ok(())
        } else {
            Err(WebError::forbidden_form(self.lang))
        }
    }

    /// The merchant of a merchant's user; the portal is theirs.
    pub fn merchant_id(&self) -> Result<i64, WebError> {
        self.actor.merchant_id().ok_or_else(|| WebError::Page {
            lang: self.lang,
            status: StatusCode::FORBIDDEN,
            message: self.lang.text("error.operator_portal").to_owned(),
        })
    }
}

impl FromRequest for Session {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Session, WebError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned().expect("AppState is registered");
        let token = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()).filter(|t| !t.is_empty());
        let ip = client_ip(req);
        let fallback = request_lang(req);
        let next = if req.method() == actix_web::http::Method::GET { here(req) } else { "/".to_owned() };
        let flash_cookie = req.cookie(FLASH_COOKIE).map(|c| c.value().to_owned());
        let here = here(req);
        Box::pin(async move {
            let Some(token) = token else { return Err(WebError::SignIn { next }) };
            let settings = state.accounts.clone();
            let resolved = {
                let token = token.clone();
                state.db.run(move |conn| users::resolve_session(conn, &token, ip, &settings)).await
            };
            match resolved {
                Ok((actor, language)) => {
                    let lang = language.as_deref().and_then(Lang::parse).unwrap_or(fallback);
                    let flash = flash_cookie.and_then(|k| known_flash(lang, &k));
                    Ok(Session { actor, token, lang, flash, here })
                }
                Err(e) if e.code() == crate::error::ErrorCode::Unauthorized => Err(WebError::SignIn { next }),
                Err(e) => Err(WebError::from_domain(fallback, e)),
            }
        })
    }
}

/// Forms read as their fields in order: a field may repeat (ticked boxes
/// of the same name), which a struct cannot hold.
pub mod fields {
    pub type Fields = actix_web::web::Form<Vec<(String, String)>>;

    /// The first value of a field, empty when absent.
    pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
        fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    /// Every value of a field.
    pub fn all<'a>(fields: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
        fields.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The frame of a page nobody is signed in to.
pub fn anonymous_ctx(req: &HttpRequest, form_token: String) -> Ctx {
    let lang = request_lang(req);
    Ctx {
        lang,
        csrf: form_token,
        user_email: String::new(),
        section: "",
        flash: flash_of(req, lang),
        here: here(req),
        sections: Vec::new(),
        console: false,
    }
}
