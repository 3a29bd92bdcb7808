//! Users and groups: invite and remove users (a user logged in on a terminal
//! cannot be removed until logged out there), groups with a matrix of
//! locations and permissions, and their members.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use tms_packages::accounts::Permission;
use tms_packages::wire::accounts::{GroupView, InviteUserRequest, LocationView, UserView};

use super::fields::{Fields, all, field};
use super::{Ctx, OrPage, Session, WebError, html, page, redirect_with};
use crate::accounts::{groups, merchants, users};
use crate::error::{Error, ErrorCode};
use crate::http::AppState;

pub struct UserRow {
    pub view: UserView,
    /// Terminals where the user is logged in to the app.
    pub logged_in_on: Vec<String>,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    ctx: Ctx,
    users: Vec<UserRow>,
    groups: Vec<GroupView>,
    locations: Vec<LocationView>,
    permissions: Vec<&'static str>,
    error: Option<String>,
}

impl UsersPage {
    fn granted(&self, group: &GroupView, location: impl super::Count, permission: &str) -> bool {
        let location = location.count();
        group
            .grants
            .iter()
            .any(|g| g.location_id == location && g.permissions.iter().any(|p| p == permission))
    }

    fn email_of(&self, user_id: impl super::Count) -> String {
        let id = user_id.count();
        self.users.iter().find(|u| u.view.id == id).map(|u| u.view.email.clone()).unwrap_or_default()
    }

    fn non_members<'a>(&'a self, group: &GroupView) -> Vec<&'a UserRow> {
        self.users.iter().filter(|u| !u.view.is_admin && !group.members.contains(&u.view.id)).collect()
    }
}

async fn render(state: &AppState, session: &Session, error: Option<String>) -> Result<UsersPage, WebError> {
    let merchant_id = session.merchant_id()?;
    let actor = session.actor.clone();
    let (views, groups, locations, sessions) = state
        .db
        .run(move |conn| {
            let views = users::list_users(conn, &actor, merchant_id)?;
            let groups = groups::list_groups(conn, &actor, merchant_id)?;
            let locations = merchants::list_locations(conn, &actor, merchant_id)?;
            let mut sessions = Vec::new();
            for v in &views {
                sessions
                    .push(merchants::logged_in_on(conn, v.id)?.into_iter().map(|(_, name)| name).collect());
            }
            Ok::<_, Error>((views, groups, locations, sessions))
        })
        .await
        .or_page(session.lang)?;
    let users =
        views.into_iter().zip(sessions).map(|(view, logged_in_on)| UserRow { view, logged_in_on }).collect();
    Ok(UsersPage {
        ctx: session.ctx("users"),
        users,
        groups,
        locations,
        permissions: Permission::ALL.iter().map(|p| p.as_str()).collect(),
        error,
    })
}

pub async fn list(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    let body = render(&state, &session, None).await?;
    page(&body.ctx, &body)
}

/// The page again with a change's refusal, in the reader's words where the
/// catalogue has them.
async fn refused(state: &AppState, session: &Session, e: Error) -> Result<HttpResponse, WebError> {
    let lang = session.lang;
    if e.is_internal() || matches!(e.code(), ErrorCode::NotFound) {
        return Err(WebError::from_domain(lang, e));
    }
    let message = match e.code() {
        ErrorCode::ProfileInUse => {
            let names = e.public_details().get("device_names").cloned().unwrap_or_default();
            lang.format("users.in_use", &[&names.replace(',', ", ")])
        }
        _ => super::refusal_text(lang, "users", &e),
    };
    let status = StatusCode::from_u16(e.code().status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = render(state, session, Some(message)).await?;
    Ok(html(status, &body))
}

pub async fn invite(
    state: web::Data<AppState>,
    session: Session,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    session.check_form(field(&form, "csrf"))?;
    let merchant_id = session.merchant_id()?;
    let request = InviteUserRequest {
        email: field(&form, "email").trim().to_owned(),
        is_admin: field(&form, "admin") == "1",
        permissions: all(&form, "permission").map(str::to_owned).collect(),
    };
    let (actor, settings) = (session.actor.clone(), state.accounts.clone());
    match state.db.run(move |conn| users::invite_user(conn, &actor, merchant_id, &request, &settings)).await {
        Ok((_, mail)) => {
            crate::http::accounts::deliver(&state, mail).await;
            Ok(redirect_with("/users", "flash.user_invited"))
        }
        Err(e) => refused(&state, &session, e).await,
    }
}

pub async fn remove(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    session.check_form(field(&form, "csrf"))?;
    let (actor, id) = (session.actor.clone(), id.into_inner());
    match state.db.run(move |conn| users::delete_user(conn, &actor, id)).await {
        Ok(()) => Ok(redirect_with("/users", "flash.user_removed")),
        Err(e) => refused(&state, &session, e).await,
    }
}

pub async fn create_group(
    state: web::Data<AppState>,
    session: Session,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    session.check_form(field(&form, "csrf"))?;
    let merchant_id = session.merchant_id()?;
    let (actor, name) = (session.actor.clone(), field(&form, "name").trim().to_owned());
    match state.db.run(move |conn| groups::create_group(conn, &actor, merchant_id, &name)).await {
        Ok(group) => Ok(redirect_with(&format!("/users#group-{}", group.id), "flash.group_created")),
        Err(e) => refused(&state, &session, e).await,
    }
}

/// The whole matrix of one group: `grant=<location>:<permission>` per ticked box.
pub async fn set_grants(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    session.check_form(field(&form, "csrf"))?;
    let merchant_id = session.merchant_id()?;
    let group_id = id.into_inner();
    let ticked: BTreeSet<(i64, String)> = all(&form, "grant")
        .filter_map(|g| g.split_once(':'))
        .filter_map(|(l, p)| Some((l.parse().ok()?, p.to_owned())))
        .collect();
    let actor = session.actor.clone();
    let outcome = state
        .db
        .run(move |conn| {
            let locations = merchants::list_locations(conn, &actor, merchant_id)?;
            let grants: Vec<(i64, Vec<String>)> = locations
                .iter()
                .map(|l| {
                    (l.id, ticked.iter().filter(|(at, _)| *at == l.id).map(|(_, p)| p.clone()).collect())
                })
                .collect();
            groups::set_grants(conn, &actor, group_id, &grants)
        })
        .await;
    match outcome {
        Ok(_) => Ok(redirect_with(&format!("/users#group-{group_id}"), "flash.group_saved")),
        Err(e) => refused(&state, &session, e).await,
    }
}

pub async fn add_member(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    session.check_form(field(&form, "csrf"))?;
    let group_id = id.into_inner();
    let Ok(user_id) = field(&form, "user").parse::<i64>() else {
        return Ok(redirect_with(&format!("/users#group-{group_id}"), "flash.nothing_changed"));
    };
    let actor = session.actor.clone();
    match state.db.run(move |conn| groups::set_member(conn, &actor, group_id, user_id, true)).await {
        Ok(_) => Ok(redirect_with(&format!("/users#group-{group_id}"), "flash.group_saved")),
        Err(e) => refused(&state, &session, e).await,
    }
}

pub async fn remove_member(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(i64, i64)>,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    session.check_form(field(&form, "csrf"))?;
    let (group_id, user_id) = path.into_inner();
    let actor = session.actor.clone();
    match state.db.run(move |conn| groups::set_member(conn, &actor, group_id, user_id, false)).await {
        Ok(_) => Ok(redirect_with(&format!("/users#group-{group_id}"), "flash.group_saved")),
        Err(e) => refused(&state, &session, e).await,
    }
}

pub async fn delete_group(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: Fields,
) -> Result<HttpResponse, WebError> {
    session.check_form(field(&form, "csrf"))?;
    let (actor, group_id) = (session.actor.clone(), id.into_inner());
    match state.db.run(move |conn| groups::delete_group(conn, &actor, group_id)).await {
        Ok(()) => Ok(redirect_with("/users", "flash.group_deleted")),
        Err(e) => refused(&state, &session, e).await,
    }
}
