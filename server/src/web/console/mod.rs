//! The operator console: the fleet, its terminals and its rollouts for the
//! operator's staff (operator admins, release engineers, support), on the
//! portal's frame (sign-in, sessions, form tokens, languages), under
//! `/console/`. Each page shows what the user's role allows; the domain
//! functions check the role again.

mod acquirers;
mod apps;
mod audit;
mod charts;
mod deployments;
mod groups;
mod merchants;
mod new_deployment;
mod operators;
mod overview;
mod parameters;
mod terminals;

use actix_web::http::StatusCode;
use actix_web::web;
use tms_packages::accounts::OperatorRole;

use super::{Session, WebError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{get, post, resource};
    cfg.service(resource("/console").route(get().to(overview::to_console)))
        .service(resource("/console/").route(get().to(overview::show)))
        .service(resource("/console/terminals").route(get().to(terminals::search)))
        .service(resource("/console/terminals/{id}").route(get().to(terminals::show)))
        .service(resource("/console/deployments").route(get().to(deployments::list)))
        // Before `{id}`, which would take `new` for an id.
        .service(
            resource("/console/deployments/new")
                .route(get().to(new_deployment::new))
                .route(post().to(new_deployment::submit)),
        )
        .service(resource("/console/deployments/{id}").route(get().to(deployments::show)))
        .service(resource("/console/groups").route(get().to(groups::list)).route(post().to(groups::create)))
        .service(resource("/console/groups/{id}").route(get().to(groups::show)))
        .service(resource("/console/groups/{id}/delete").route(post().to(groups::delete)))
        .service(
            resource("/console/deployments/{id}/rollout/{command}")
                .route(get().to(deployments::confirm))
                .route(post().to(deployments::command)),
        )
        .service(
            resource("/console/operators")
                .route(get().to(operators::list))
                .route(post().to(operators::invite)),
        )
        .service(resource("/console/operators/{id}").route(post().to(operators::change)))
        .service(resource("/console/audit").route(get().to(audit::list)))
        .service(resource("/console/merchants").route(get().to(merchants::list)))
        .service(resource("/console/merchants/{id}").route(get().to(merchants::show)))
        .service(resource("/console/merchants/{id}/contracts").route(post().to(acquirers::add_contract)))
        .service(
            resource("/console/merchants/{id}/linux-devices").route(post().to(merchants::register_linux)),
        )
        .service(
            resource("/console/acquirers")
                .route(get().to(acquirers::list))
                .route(post().to(acquirers::create)),
        )
        .service(
            resource("/console/acquirers/{id}/parameter-sets").route(post().to(acquirers::add_parameters)),
        )
        .service(
            resource("/console/acquirers/{id}/parameter-sets/{version}/revoke")
                .route(get().to(acquirers::confirm_revoke))
                .route(post().to(acquirers::revoke)),
        )
        .service(resource("/console/orders/new").route(get().to(merchants::new_order)))
        .service(resource("/console/orders").route(post().to(merchants::create_order)))
        .service(resource("/console/parameters").route(get().to(parameters::choose)))
        .service(
            resource("/console/parameters/{app_id}/{level}/{scope_id}")
                .route(get().to(parameters::show))
                .route(post().to(parameters::submit)),
        )
        .service(resource("/console/apps").route(get().to(apps::list)))
        .service(resource("/console/apps/{app_id}").route(get().to(apps::show)))
        .service(resource("/console/apps/{app_id}/keys").route(post().to(apps::add_key)))
        .service(resource("/console/apps/{app_id}/releases").route(post().to(apps::publish)))
        .service(
            resource("/console/apps/{app_id}/keys/{key_id}/revoke")
                .route(get().to(apps::confirm_revoke))
                .route(post().to(apps::revoke)),
        )
        .service(
            resource("/console/apps/{app_id}/releases/{version}/withdraw")
                .route(get().to(apps::confirm_withdraw))
                .route(post().to(apps::withdraw)),
        );
}

/// The console's sections a role opens.
pub fn sections(role: OperatorRole) -> Vec<&'static str> {
    // Every operator role reads the fleet, its terminals, its rollouts and
    // the apps;
    // what a role may change is checked by the domain where it changes.
    let mut sections = vec![
        "console.overview",
        "console.terminals",
        "console.deployments",
        "console.apps",
        "console.parameters",
    ];
    if matches!(role, OperatorRole::OperatorAdmin | OperatorRole::Support) {
        sections.insert(2, "console.merchants");
        sections.push("console.acquirers");
        sections.push("console.audit");
    }
    if role == OperatorRole::OperatorAdmin {
        sections.push("console.operators");
    }
    sections
}

/// Whether a refused request is one the user can act on from the form
/// (said beside it, the form kept) rather than an error page: not an
/// internal error, nor a right the user lacks.
pub fn refusable(e: &crate::error::Error) -> bool {
    !e.is_internal() && e.code() != crate::error::ErrorCode::Forbidden
}

/// The signed-in user's operator role; a merchant's user is refused.
pub fn staff(session: &Session) -> Result<OperatorRole, WebError> {
    session.actor.operator_role().ok_or_else(|| WebError::Page {
        lang: session.lang,
        status: StatusCode::FORBIDDEN,
        message: session.lang.text("console.merchants_refused").to_owned(),
    })
}

/// A page that says what an act that cannot be undone will do, with the
/// button that does it and a way back.
#[derive(askama::Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub ctx: super::Ctx,
    /// The page's heading and button, as catalogue keys.
    pub heading: &'static str,
    pub button: &'static str,
    /// What the act will do, in the reader's words.
    pub effect: String,
    /// Where the button posts.
    pub action: String,
    /// Where cancelling goes.
    pub back: String,
}

/// A size as people read it: bytes, KiB, MiB or GiB with one decimal.
pub fn byte_size(lang: crate::web::Lang, bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = if unit == 0 { format!("{bytes}") } else { format!("{value:.1}") };
    let text = match lang {
        crate::web::Lang::Fr => text.replace('.', ","),
        crate::web::Lang::En => text,
    };
    let unit = match (lang, UNITS[unit]) {
        (crate::web::Lang::Fr, "B") => "o",
        (crate::web::Lang::Fr, "KiB") => "Kio",
        (crate::web::Lang::Fr, "MiB") => "Mio",
        (crate::web::Lang::Fr, "GiB") => "Gio",
        (_, u) => u,
    };
    format!("{text}\u{a0}{unit}")
}
