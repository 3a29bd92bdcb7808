//! A new deployment, for release engineers and operator admins: the release,
//! the target (everyone, a merchant, a location, a device group — static or
//! dynamic — or a list of terminals), how it installs, and its stages. The
//! form shows what it would reach before it can be saved, and a form changed
//! since its preview is previewed again rather than saved.

use std::hash::{Hash, Hasher};

use actix_web::{HttpResponse, http::StatusCode, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::contact::ActionType;
use tms_packages::wire::deployments::{
    CreateDeploymentRequest, DeploymentPreview, DeviceGroupView, StartRolloutRequest,
};

use super::staff;
use crate::error::Error;
use crate::http::AppState;
use crate::rollouts::deployments::{self, SHIPPERS};
use crate::web::{Ctx, Lang, OrPage, Session, WebError, page, redirect_with};

pub const TARGETS: [&str; 5] = ["everyone", "merchant", "location", "group", "devices"];
pub const ACTIONS: [&str; 3] = ["soft", "forced", "download_only"];

/// The form as submitted; every field is text so a refused form comes back
/// as the user typed it.
#[derive(Deserialize, Default, Clone, Hash)]
pub struct DeploymentForm {
    #[serde(default)]
    csrf: String,
    /// `app_id@version`.
    #[serde(default)]
    pub release: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub merchant: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub group: String,
    /// Terminal ids, separated by commas or spaces.
    #[serde(default)]
    pub devices: String,
    #[serde(default)]
    pub action: String,
    /// `HH:MM-HH:MM` in the terminal's time, or empty.
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub wifi_only: Option<String>,
    #[serde(default)]
    pub confirmation_required: Option<String>,
    /// Percentages rising to 100, e.g. `10, 50, 100`; empty for no stages.
    #[serde(default)]
    pub stages: String,
    #[serde(default)]
    pub success_percent: String,
    #[serde(default)]
    pub max_failures: String,
    #[serde(default)]
    pub auto_advance: Option<String>,
    /// `preview` or `create`.
    #[serde(default)]
    step: String,
    /// The fingerprint of the form as last previewed.
    #[serde(default)]
    previewed: String,
}

impl DeploymentForm {
    fn fresh() -> DeploymentForm {
        DeploymentForm {
            target: "everyone".into(),
            action: "soft".into(),
            stages: "10, 50, 100".into(),
            success_percent: "95".into(),
            max_failures: "5%".into(),
            ..DeploymentForm::default()
        }
    }

    /// What the form asks for, as a change detector: two forms with the same
    /// fingerprint make the same deployment.
    fn fingerprint(&self) -> String {
        let mut asked = self.clone();
        asked.csrf.clear();
        asked.step.clear();
        asked.previewed.clear();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        asked.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    fn target_text(&self) -> String {
        let ids = |text: &str| {
            text.split([',', ' ', ';', '\n', '\r', '\t'])
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.target.as_str() {
            "merchant" => format!("merchant:{}", self.merchant.trim()),
            "location" => format!("location:{}", self.location.trim()),
            "group" => format!("group:{}", self.group.trim()),
            "devices" => format!("devices:{}", ids(&self.devices)),
            _ => "everyone".into(),
        }
    }

    /// The deployment and its rollout, as the API takes them.
    fn requests(&self) -> Result<(CreateDeploymentRequest, Option<StartRolloutRequest>), Error> {
        let (app_id, version) = self
            .release
            .split_once('@')
            .ok_or_else(|| Error::invalid("release", "choose the release to deliver"))?;
        let deployment = CreateDeploymentRequest {
            app_id: app_id.to_owned(),
            version: Some(version.to_owned()),
            remove: false,
            target: self.target_text(),
            action: Some(
                ActionType::parse(&self.action).ok_or_else(|| Error::invalid("action", "unknown action"))?,
            ),
            starts_at: None,
            expires_at: None,
            window: Some(self.window.trim().to_owned()).filter(|w| !w.is_empty()),
            wifi_only: self.wifi_only.is_some(),
            hold: false,
            retry_delays: None,
            max_postpones: None,
            confirmation_required: self.confirmation_required.is_some(),
        };
        let stages: Vec<f64> = self
            .stages
            .split([',', ';', ' ', '%'])
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<f64>().map_err(|_| Error::invalid("stages", format!("{s:?} is not a percentage")))
            })
            .collect::<Result<_, _>>()?;
        if stages.is_empty() {
            return Ok((deployment, None));
        }
        let success_percent = self
            .success_percent
            .trim()
            .trim_end_matches('%')
            .trim()
            .replace(',', ".")
            .parse::<f64>()
            .map_err(|_| Error::invalid("success_percent", "the success threshold is a percentage"))?;
        let rollout = StartRolloutRequest {
            stages,
            success_percent,
            max_failures: self.max_failures.trim().replace(' ', ""),
            auto_advance: self.auto_advance.is_some(),
        };
        Ok((deployment, Some(rollout)))
    }
}

#[derive(Template)]
#[template(path = "console/new_deployment.html")]
struct NewPage {
    ctx: Ctx,
    form: DeploymentForm,
    /// (value, label) of every release that may be deployed.
    releases: Vec<(String, String)>,
    groups: Vec<DeviceGroupView>,
    preview: Option<PreviewText>,
    /// A refusal of the form, in the reader's words.
    refusal: Option<String>,
    /// The fingerprint of the form previewed, when the preview is current.
    fingerprint: String,
}

impl NewPage {
    fn targets(&self) -> [&'static str; 5] {
        TARGETS
    }

    fn actions(&self) -> [&'static str; 3] {
        ACTIONS
    }

    fn group_label(&self, g: &DeviceGroupView) -> String {
        match &g.filter {
            Some(f) => format!("{} — {f}", g.name),
            None => self.ctx.lang.count_format(
                "console.new_deployment.group_static",
                g.devices.len() as i64,
                &[&g.name],
            ),
        }
    }
}

/// The preview in the reader's words.
pub struct PreviewText {
    pub headline: String,
    /// One line per reason a terminal will not get it.
    pub details: Vec<String>,
    /// About how many the first stage takes, when staged.
    pub first_stage: Option<String>,
    pub reaches_nobody: bool,
}

fn preview_text(lang: Lang, p: &DeploymentPreview, rollout: Option<&StartRolloutRequest>) -> PreviewText {
    let incompatible: u64 = p.incompatible.iter().map(|i| i.terminals).sum();
    let headline = lang.count_format(
        "console.new_deployment.reaches",
        p.targeted as i64,
        &[&lang.number(p.receive as i64), &lang.number(incompatible as i64)],
    );
    let mut details = Vec::new();
    if p.already > 0 {
        details.push(lang.count_format("console.new_deployment.already", p.already as i64, &[]));
    }
    if p.without_app > 0 {
        details.push(lang.count_format("console.new_deployment.without_app", p.without_app as i64, &[]));
    }
    for i in &p.incompatible {
        details.push(match &i.needs_firmware {
            Some(needs) => lang.count_format(
                "console.new_deployment.old_firmware",
                i.terminals as i64,
                &[&i.model, needs],
            ),
            None => lang.count_format("console.new_deployment.other_model", i.terminals as i64, &[&i.model]),
        });
    }
    let first_stage = rollout.and_then(|r| r.stages.first()).map(|first| {
        // Terminals fall in stages by a uniform hash of the rollout and the
        // terminal: the first stage takes about its share.
        let about = (p.receive as f64 * first / 100.0).round() as i64;
        lang.count_format("console.new_deployment.first_stage", about, &[first])
    });
    PreviewText { headline, details, first_stage, reaches_nobody: p.receive == 0 }
}

fn shipper(session: &Session) -> Result<(), WebError> {
    let role = staff(session)?;
    if SHIPPERS.contains(&role) {
        return Ok(());
    }
    Err(WebError::Page {
        lang: session.lang,
        status: StatusCode::FORBIDDEN,
        message: session.lang.text("console.new_deployment.refused").to_owned(),
    })
}

async fn render(
    state: &AppState,
    session: &Session,
    form: DeploymentForm,
    preview: Option<PreviewText>,
    refusal: Option<String>,
    fingerprint: String,
) -> Result<HttpResponse, WebError> {
    let actor = session.actor.clone();
    let (releases, groups) = state
        .db
        .run(move |conn| {
            let mut releases = Vec::new();
            for app in crate::releases::list_apps(conn, &actor)? {
                for r in crate::releases::list_releases(conn, &actor, &app.id)? {
                    if r.withdrawn_at.is_none() {
                        releases.push((
                            format!("{}@{}", r.app_id, r.version),
                            format!("{} {}", r.app_id, r.version),
                        ));
                    }
                }
            }
            let groups = deployments::list_groups(conn, &actor)?;
            Ok::<_, Error>((releases, groups))
        })
        .await
        .or_page(session.lang)?;
    let body = NewPage {
        ctx: session.ctx("console.deployments"),
        form,
        releases,
        groups,
        preview,
        refusal,
        fingerprint,
    };
    page(&body.ctx, &body)
}

#[derive(Deserialize)]
pub struct NewQuery {
    /// `app_id@version`, from a release's page.
    release: Option<String>,
    /// A device group's id, from the group's page.
    group: Option<i64>,
}

pub async fn new(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<NewQuery>,
) -> Result<HttpResponse, WebError> {
    shipper(&session)?;
    let mut form = DeploymentForm::fresh();
    if let Some(r) = &query.release {
        form.release = r.clone();
    }
    if let Some(g) = query.group {
        form.target = "group".into();
        form.group = g.to_string();
    }
    render(&state, &session, form, None, None, String::new()).await
}

/// Previews the form, or saves it when it is the form just previewed.
pub async fn submit(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<DeploymentForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    shipper(&session)?;
    let form = form.into_inner();
    let lang = session.lang;
    let refused = |e: &Error| crate::web::form_refusal(lang, "console.new_deployment", e);
    let requests = form.requests().and_then(|(d, r)| {
        r.as_ref().map(crate::rollouts::check_rules).transpose()?;
        Ok((d, r))
    });
    let (deployment, rollout) = match requests {
        Ok(r) => r,
        Err(e) => {
            let text = refused(&e);
            return render(&state, &session, form, None, Some(text), String::new()).await;
        }
    };
    let fingerprint = form.fingerprint();
    let actor = session.actor.clone();
    if form.step == "create" && form.previewed == fingerprint {
        let (d, r) = (deployment.clone(), rollout.clone());
        let created =
            state.db.run(move |conn| crate::rollouts::create_staged(conn, &actor, &d, r.as_ref())).await;
        return match created {
            Ok(view) => {
                state.contact.caught_up().await;
                Ok(redirect_with(&format!("/console/deployments/{}", view.id), "flash.deployment_created"))
            }
            Err(e) if !e.is_internal() && e.code() != crate::error::ErrorCode::Forbidden => {
                let text = refused(&e);
                render(&state, &session, form, None, Some(text), String::new()).await
            }
            Err(e) => Err(WebError::from_domain(lang, e)),
        };
    }
    // A preview, or a form changed since its preview: what it reaches now.
    let asked = deployment.clone();
    let previewed = state.db.run(move |conn| crate::rollouts::preview::preview(conn, &actor, &asked)).await;
    match previewed {
        Ok(p) => {
            let text = preview_text(lang, &p, rollout.as_ref());
            let changed =
                (form.step == "create").then(|| lang.text("console.new_deployment.changed").to_owned());
            render(&state, &session, form, Some(text), changed, fingerprint).await
        }
        Err(e) if !e.is_internal() && e.code() != crate::error::ErrorCode::Forbidden => {
            let text = refused(&e);
            render(&state, &session, form, None, Some(text), String::new()).await
        }
        Err(e) => Err(WebError::from_domain(lang, e)),
    }
}
