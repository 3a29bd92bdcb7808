//! The operator's staff (operator admins only): invite, change a role,
//! disable and enable again. The domain keeps at least one active
//! operator admin; the page says so when a change would remove the last.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::accounts::OperatorRole;
use tms_packages::wire::accounts::UserView;

use super::staff;
use crate::accounts::users::{self, OperatorChange};
use crate::error::ErrorCode;
use crate::http::AppState;
use crate::web::{Ctx, OrPage, Session, WebError, page, redirect_with};

pub const ROLES: [&str; 3] = ["operator_admin", "release_engineer", "support"];

#[derive(Template)]
#[template(path = "console/operators.html")]
struct OperatorsPage {
    ctx: Ctx,
    operators: Vec<UserView>,
    /// A refusal of the last change, in the reader's words.
    refusal: Option<String>,
    me: i64,
}

impl OperatorsPage {
    fn roles(&self) -> [&'static str; 3] {
        ROLES
    }
}

async fn render(
    state: &AppState,
    session: &Session,
    refusal: Option<String>,
) -> Result<HttpResponse, WebError> {
    let actor = session.actor.clone();
    let operators =
        state.db.run(move |conn| users::list_operators(conn, &actor)).await.or_page(session.lang)?;
    let body = OperatorsPage {
        ctx: session.ctx("console.operators"),
        operators,
        refusal,
        me: session.actor.user_id,
    };
    page(&body.ctx, &body)
}

pub async fn list(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    render(&state, &session, None).await
}

#[derive(Deserialize)]
pub struct InviteForm {
    csrf: String,
    email: String,
    role: String,
}

fn role_of(session: &Session, text: &str) -> Result<OperatorRole, WebError> {
    text.parse().map_err(|_| WebError::Page {
        lang: session.lang,
        status: actix_web::http::StatusCode::BAD_REQUEST,
        message: session.lang.text("error.bad_form").to_owned(),
    })
}

pub async fn invite(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let role = role_of(&session, &form.role)?;
    let (actor, settings, email) = (session.actor.clone(), state.accounts.clone(), form.email.clone());
    let invited =
        state.db.run(move |conn| users::invite_operator(conn, &actor, &email, role, &settings)).await;
    match invited {
        Ok((_, mail)) => {
            crate::http::accounts::deliver(&state, mail).await;
            Ok(redirect_with("/console/operators", "flash.operator_invited"))
        }
        Err(e) if super::refusable(&e) => {
            render(&state, &session, Some(crate::web::refusal_text(session.lang, "console.operators", &e)))
                .await
        }
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}

#[derive(Deserialize)]
pub struct ChangeForm {
    csrf: String,
    /// A new role, or empty.
    #[serde(default)]
    role: String,
    /// `disable` or `enable`, or empty.
    #[serde(default)]
    status: String,
}

pub async fn change(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: web::Form<ChangeForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let change = OperatorChange {
        role: if form.role.is_empty() { None } else { Some(role_of(&session, &form.role)?) },
        disabled: match form.status.as_str() {
            "disable" => Some(true),
            "enable" => Some(false),
            _ => None,
        },
    };
    let (actor, id) = (session.actor.clone(), id.into_inner());
    match state.db.run(move |conn| users::change_operator(conn, &actor, id, &change)).await {
        Ok(_) => Ok(redirect_with("/console/operators", "flash.operator_changed")),
        Err(e) if e.code() == ErrorCode::LastAdmin || e.code() == ErrorCode::NotFound => {
            render(&state, &session, Some(crate::web::refusal_text(session.lang, "console.operators", &e)))
                .await
        }
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}
