//! Terminal settings of one location: receipt header and footer, the
//! customer copy, and the merchant-menu password. Each save is one new
//! version of what the location sets, as `tms params set` makes.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;
use tms_packages::parameters::{Level, MERCHANT_PASSWORD_KEY, TERMINAL_APP, weak_pin_reason};
use tms_packages::wire::parameters::ChangeParametersRequest;

use super::{Ctx, OrPage, Session, WebError, html, page, redirect_with};
use crate::accounts::merchants;
use crate::error::ErrorCode;
use crate::http::AppState;

const HEADER: &str = "receipt.header";
const FOOTER: &str = "receipt.footer";
const CUSTOMER_COPY: &str = "receipt.print_customer_copy";
const LOGO: &str = "receipt.logo";
/// What the receipt printer takes: a small PNG (the schema's limit).
const LOGO_MAX_BYTES: usize = 64 * 1024;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    ctx: Ctx,
    location_id: i64,
    location: String,
    values: LocationValues,
    /// Terminals here whose password is weak (the default 99999 among them).
    weak_terminals: usize,
    error: Option<String>,
}

/// What the location itself sets, as the form shows it.
struct LocationValues {
    header: String,
    footer: String,
    /// `inherit`, `on` or `off`
    customer_copy: &'static str,
    password_set: bool,
    /// The location's own logo, as a `data:` URL for the preview.
    logo: Option<String>,
}

/// The location's current values (what a save compares the form with).
async fn location_values(state: &AppState, session: &Session, id: i64) -> Result<LocationValues, WebError> {
    let set = crate::parameters::show_scope(
        &state.db,
        &state.blobs,
        session.actor.clone(),
        TERMINAL_APP.to_owned(),
        Level::Location,
        id,
        None,
    )
    .await
    .or_page(session.lang)?;
    let text = |key: &str| set.values.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(LocationValues {
        header: text(HEADER),
        footer: text(FOOTER),
        customer_copy: match set.values.get(CUSTOMER_COPY) {
            Some(Value::Bool(true)) => "on",
            Some(Value::Bool(false)) => "off",
            _ => "inherit",
        },
        password_set: set.values.contains_key(MERCHANT_PASSWORD_KEY),
        logo: set.values.get(LOGO).and_then(Value::as_str).map(|b64| format!("data:image/png;base64,{b64}")),
    })
}

/// Saves a change of what the location sets; the terminals hear of it.
async fn apply(
    state: &AppState,
    session: &Session,
    id: i64,
    request: ChangeParametersRequest,
) -> Result<(), crate::error::Error> {
    let actor = session.actor.clone();
    crate::parameters::change(
        &state.db,
        &state.blobs,
        actor,
        TERMINAL_APP.into(),
        Level::Location,
        id,
        request,
    )
    .await?;
    state.contact.caught_up().await;
    Ok(())
}

/// An empty change of what a location sets, made from the portal.
fn portal_change() -> ChangeParametersRequest {
    ChangeParametersRequest {
        set: BTreeMap::new(),
        unset: Vec::new(),
        lock: Vec::new(),
        unlock: Vec::new(),
        reason: "merchant portal".into(),
    }
}

async fn render(
    state: &AppState,
    session: &Session,
    id: i64,
    error: Option<String>,
) -> Result<SettingsPage, WebError> {
    let lang = session.lang;
    // A merchant's page: an operator is told so before anything is read.
    session.merchant_id()?;
    let actor = session.actor.clone();
    let location =
        state.db.run(move |conn| merchants::visible_location(conn, &actor, id)).await.or_page(lang)?;
    let values = location_values(state, session, id).await?;
    let weak = super::weak_password_terminals(state, session).await?;
    Ok(SettingsPage {
        ctx: session.ctx("locations"),
        location_id: id,
        location: location.name,
        values,
        weak_terminals: weak.iter().filter(|d| d.location_id == id).count(),
        error,
    })
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let body = render(&state, &session, id.into_inner(), None).await?;
    page(&body.ctx, &body)
}

#[derive(Deserialize)]
pub struct SettingsForm {
    csrf: String,
    #[serde(default)]
    header: String,
    #[serde(default)]
    footer: String,
    #[serde(default)]
    customer_copy: String,
    #[serde(default)]
    password: String,
}

pub async fn save(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: web::Form<SettingsForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    let lang = session.lang;
    let id = id.into_inner();
    let current = location_values(&state, &session, id).await?;
    let mut request = portal_change();
    // Only what the form changed: an untouched field stays as the location
    // (or the level above it) has it, so the terminals receive only the change.
    let mut text_field = |key: &str, was: &str, now: &str| {
        let now = now.replace("\r\n", "\n");
        if now == was {
        } else if now.trim().is_empty() {
            request.unset.push(key.to_owned());
        } else {
            request.set.insert(key.to_owned(), Value::String(now));
        }
    };
    text_field(HEADER, &current.header, &form.header);
    text_field(FOOTER, &current.footer, &form.footer);
    match (form.customer_copy.as_str(), current.customer_copy) {
        (wanted, was) if wanted == was => {}
        ("on", _) => drop(request.set.insert(CUSTOMER_COPY.into(), Value::Bool(true))),
        ("off", _) => drop(request.set.insert(CUSTOMER_COPY.into(), Value::Bool(false))),
        ("inherit", _) => request.unset.push(CUSTOMER_COPY.into()),
        _ => {}
    }
    let password = form.password.trim();
    if !password.is_empty() {
        // The portal refuses what the weak-password report would flag.
        if let Some(reason) = weak_pin_reason(password) {
            let message = lang.text(&format!("settings.weak_{reason}")).to_owned();
            let mut body = render(&state, &session, id, Some(message)).await?;
            body.values.header = form.header.clone();
            body.values.footer = form.footer.clone();
            return Ok(html(StatusCode::BAD_REQUEST, &body));
        }
        request.set.insert(MERCHANT_PASSWORD_KEY.into(), Value::String(password.to_owned()));
    }
    if request.set.is_empty() && request.unset.is_empty() {
        return Ok(redirect_with(&format!("/locations/{id}/settings"), "flash.nothing_changed"));
    }
    match apply(&state, &session, id, request).await {
        Ok(()) => Ok(redirect_with(&format!("/locations/{id}/settings"), "flash.settings_saved")),
        Err(e) if matches!(e.code(), ErrorCode::InvalidParameter | ErrorCode::ParameterLocked) => {
            let details: BTreeMap<String, String> = e.public_details();
            let key = details.get("key").cloned().unwrap_or_default();
            let message =
                lang.format(&format!("settings.refused_{}", e.code().as_str()), &[&key, &e.public_message()]);
            let mut body = render(&state, &session, id, Some(message)).await?;
            body.values.header = form.header.clone();
            body.values.footer = form.footer.clone();
            Ok(html(StatusCode::from_u16(e.code().status()).unwrap_or(StatusCode::BAD_REQUEST), &body))
        }
        Err(e) => Err(WebError::from_domain(lang, e)),
    }
}

/// The logo form (multipart: a file): a PNG of at most 64 KiB, or `remove`.
pub async fn save_logo(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    mut form: actix_multipart::Multipart,
) -> Result<HttpResponse, WebError> {
    use futures_util::StreamExt;
    let lang = session.lang;
    let id = id.into_inner();
    let (mut csrf, mut file, mut remove, mut too_big) = (String::new(), Vec::new(), false, false);
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|_| WebError::Page {
            lang,
            status: StatusCode::BAD_REQUEST,
            message: lang.text("error.bad_form").to_owned(),
        })?;
        let name = field.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|_| WebError::Page {
                lang,
                status: StatusCode::BAD_REQUEST,
                message: lang.text("error.bad_form").to_owned(),
            })?;
            // Read no further than the limit: the rest is refused anyway.
            if bytes.len() + chunk.len() > LOGO_MAX_BYTES + 1024 {
                too_big = true;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "logo" => file = bytes,
            "remove" => remove = true,
            _ => {}
        }
        if too_big {
            break;
        }
    }
    session.check_form(&csrf)?;
    let mut request = portal_change();
    let refusal = if remove {
        None
    } else if too_big || file.len() > LOGO_MAX_BYTES {
        Some("settings.logo_too_big")
    } else if file.is_empty() {
        Some("settings.logo_missing")
    } else if !file.starts_with(PNG_SIGNATURE) {
        Some("settings.logo_not_png")
    } else {
        None
    };
    if let Some(key) = refusal {
        let body = render(&state, &session, id, Some(lang.text(key).to_owned())).await?;
        return Ok(html(StatusCode::BAD_REQUEST, &body));
    }
    if remove {
        request.unset.push(LOGO.into());
    } else {
        use base64::Engine;
        request
            .set
            .insert(LOGO.into(), Value::String(base64::engine::general_purpose::STANDARD.encode(&file)));
    }
    apply(&state, &session, id, request).await.or_page(lang)?;
    Ok(redirect_with(&format!("/locations/{id}/settings"), "flash.settings_saved"))
}
