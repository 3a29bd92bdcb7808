//! Device groups: static lists of terminals and dynamic groups (a filter on
//! what terminals report), with how many terminals each holds now. Release
//! engineers and operator admins create and delete them; every operator
//! role reads them.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::wire::deployments::{CreateDeviceGroupRequest, DeviceGroupView};

use super::staff;
use crate::error::{Error, ErrorCode};
use crate::http::AppState;
use crate::rollouts::deployments::{self, SHIPPERS};
use crate::web::{Ctx, OrPage, Session, WebError, page, redirect_with};

/// The members a group's page lists; the count covers them all.
const MEMBERS_SHOWN: usize = 200;

#[derive(Template)]
#[template(path = "console/groups.html")]
struct ListPage {
    ctx: Ctx,
    groups: Vec<DeviceGroupView>,
    /// Whether this user creates and deletes groups.
    shipper: bool,
    refusal: Option<String>,
    form: GroupForm,
}

#[derive(Deserialize, Default)]
pub struct GroupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    /// `static` or `dynamic`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub filter: String,
    /// Terminal ids, separated by commas or spaces.
    #[serde(default)]
    pub devices: String,
}

impl ListPage {
    fn listed(&self, g: &DeviceGroupView) -> String {
        self.ctx.lang.count_format("console.groups.listed", g.devices.len() as i64, &[])
    }
}

async fn render_list(
    state: &AppState,
    session: &Session,
    refusal: Option<String>,
    form: GroupForm,
) -> Result<HttpResponse, WebError> {
    let role = staff(session)?;
    let actor = session.actor.clone();
    let groups =
        state.db.run(move |conn| deployments::list_groups(conn, &actor)).await.or_page(session.lang)?;
    let body = ListPage {
        ctx: session.ctx("console.deployments"),
        groups,
        shipper: SHIPPERS.contains(&role),
        refusal,
        form,
    };
    page(&body.ctx, &body)
}

pub async fn list(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    render_list(&state, &session, None, GroupForm { kind: "dynamic".into(), ..GroupForm::default() }).await
}

fn request_of(form: &GroupForm) -> Result<CreateDeviceGroupRequest, Error> {
    if form.kind == "dynamic" {
        return Ok(CreateDeviceGroupRequest {
            name: form.name.clone(),
            filter: Some(form.filter.trim().to_owned()),
            devices: Vec::new(),
        });
    }
    let devices = form
        .devices
        .split([',', ' ', ';', '\n', '\r', '\t'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>().map_err(|_| Error::invalid("devices", format!("{s:?} is not a terminal id")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if devices.is_empty() {
        return Err(Error::invalid("devices", "a static group lists at least one terminal"));
    }
    Ok(CreateDeviceGroupRequest { name: form.name.clone(), filter: None, devices })
}

pub async fn create(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<GroupForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let form = form.into_inner();
    let refused = |e: &Error| crate::web::form_refusal(session.lang, "console.groups", e);
    let request = match request_of(&form) {
        Ok(r) => r,
        Err(e) => return render_list(&state, &session, Some(refused(&e)), form).await,
    };
    let actor = session.actor.clone();
    match state.db.run(move |conn| deployments::create_group(conn, &actor, &request)).await {
        Ok(view) => Ok(redirect_with(&format!("/console/groups/{}", view.id), "flash.group_created")),
        Err(e) if super::refusable(&e) => render_list(&state, &session, Some(refused(&e)), form).await,
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}

#[derive(Template)]
#[template(path = "console/group.html")]
struct ShowPage {
    ctx: Ctx,
    group: DeviceGroupView,
    /// The first members, when the list is longer than the page shows.
    members: Vec<i64>,
    shipper: bool,
    refusal: Option<String>,
}

impl ShowPage {
    fn size(&self) -> String {
        self.ctx.lang.count_format(
            "console.groups.size",
            self.group.terminals.unwrap_or_default() as i64,
            &[],
        )
    }

    /// The members listed beyond those shown, as text, if any.
    fn more(&self) -> Option<String> {
        let more = self.group.devices.len().saturating_sub(self.members.len());
        (more > 0).then(|| self.ctx.lang.count_format("console.groups.more", more as i64, &[]))
    }
}

async fn render_group(
    state: &AppState,
    session: &Session,
    id: i64,
    refusal: Option<String>,
) -> Result<HttpResponse, WebError> {
    let role = staff(session)?;
    let actor = session.actor.clone();
    let group =
        state.db.run(move |conn| deployments::show_group(conn, &actor, id)).await.or_page(session.lang)?;
    let members = group.devices.iter().take(MEMBERS_SHOWN).copied().collect();
    let body = ShowPage {
        ctx: session.ctx("console.deployments"),
        group,
        members,
        shipper: SHIPPERS.contains(&role),
        refusal,
    };
    page(&body.ctx, &body)
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    render_group(&state, &session, id.into_inner(), None).await
}

#[derive(Deserialize)]
pub struct DeleteForm {
    csrf: String,
}

pub async fn delete(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
    form: web::Form<DeleteForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let (actor, id) = (session.actor.clone(), id.into_inner());
    match state.db.run(move |conn| deployments::delete_group(conn, &actor, id)).await {
        Ok(()) => Ok(redirect_with("/console/groups", "flash.group_deleted")),
        Err(e) if e.code() == ErrorCode::Conflict => {
            let text = crate::web::form_refusal(session.lang, "console.groups", &e);
            render_group(&state, &session, id, Some(text)).await
        }
        Err(e) => Err(WebError::from_domain(session.lang, e)),
    }
}
