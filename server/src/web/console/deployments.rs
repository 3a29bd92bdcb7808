//! Deployments and their rollouts: the list, a deployment's stages with
//! a chart of where each stage's terminals stand (refreshed while the page
//! is open), the failures with the terminals' error codes, and the rollout
//! commands, each confirmed on a page that says what it will do and to how
//! many terminals.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tms_packages::accounts::OperatorRole;
use tms_packages::rollouts::{Position, RolloutCommand, RolloutStatus, on_command};
use tms_packages::wire::deployments::{
    DeploymentView, FailedDeviceView, RolloutHistoryView, RolloutView, StageStats,
};

use super::charts::{StackedArea, StackedBar};
use super::staff;
use crate::http::AppState;
use crate::rollouts::deployments::{self, SHIPPERS};
use crate::web::{Ctx, OrPage, Session, WebError, page, redirect_with};

#[derive(Template)]
#[template(path = "console/deployments.html")]
struct ListPage {
    ctx: Ctx,
    deployments: Vec<DeploymentView>,
    /// Whether this user creates deployments.
    shipper: bool,
}

pub async fn list(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, WebError> {
    let role = staff(&session)?;
    let actor = session.actor.clone();
    let deployments =
        state.db.run(move |conn| deployments::list(conn, &actor, None)).await.or_page(session.lang)?;
    let body =
        ListPage { ctx: session.ctx("console.deployments"), deployments, shipper: SHIPPERS.contains(&role) };
    page(&body.ctx, &body)
}

/// The failures a rollout's page lists (the API lists more).
const FAILURES_SHOWN: i64 = 100;

/// A stage as the page shows it.
pub struct StageRow {
    pub stats: StageStats,
    pub bar: StackedBar,
    pub current: bool,
    /// Where its terminals stood over time, when counted more than once.
    pub over_time: Option<StackedArea>,
    /// The counts behind that chart, newest first: (time as text, counts).
    pub counts: Vec<(String, StageStats)>,
}

/// A stage's parts, in the order of the bar, the chart and the legend.
const PARTS: [(&str, &str); 6] = [
    ("installed", "console.rollout.installed"),
    ("in-progress", "console.rollout.in_progress"),
    ("postponed", "console.rollout.postponed"),
    ("failed", "console.rollout.failed"),
    ("timed-out", "console.rollout.timed_out"),
    ("pending", "console.rollout.pending"),
];

fn parts_of(s: &StageStats) -> [u64; 6] {
    [s.installed, s.in_progress, s.postponed, s.failed.saturating_sub(s.timed_out), s.timed_out, s.pending]
}

#[derive(Template)]
#[template(path = "console/deployment.html")]
struct ShowPage {
    ctx: Ctx,
    deployment: DeploymentView,
    rollout: Option<RolloutView>,
    stages: Vec<StageRow>,
    /// Stages not reached yet: (number, percent).
    later: Vec<(usize, f64)>,
    failures: Vec<FailedDeviceView>,
    /// The commands this user may give the rollout now, and whether each
    /// undoes work (shown as a danger).
    commands: Vec<(&'static str, bool)>,
    /// Whether the rollout is moving, so the page refreshes itself.
    live: bool,
    /// When the stages shown were counted.
    counted_at: String,
}

impl ShowPage {
    /// Whether the failures listed are only the first of more.
    fn failures_cut(&self) -> bool {
        self.failures.len() as i64 >= FAILURES_SHOWN
    }

    /// The legend: the parts in the order the bars and charts stack them.
    fn parts(&self) -> &'static [(&'static str, &'static str)] {
        &PARTS
    }

    /// Why the rollout stands where it does, in the reader's language when
    /// the reason was kept as a code.
    fn reason(&self, rollout: &RolloutView) -> Option<String> {
        match &rollout.status_reason_detail {
            Some(detail) => {
                let args = detail.args();
                let args: Vec<&dyn std::fmt::Display> =
                    args.iter().map(|a| a as &dyn std::fmt::Display).collect();
                let key = format!("console.rollout.reason_{}", detail.code());
                Some(match self.ctx.lang.try_text(&key) {
                    Some(_) => self.ctx.lang.format(&key, &args),
                    None => detail.english(),
                })
            }
            None => rollout.status_reason.clone(),
        }
    }
}

fn position(rollout: &RolloutView) -> Position {
    Position {
        status: rollout.status.parse().unwrap_or(RolloutStatus::Paused),
        stage: rollout.current_stage as usize,
    }
}

/// The commands a user may give a rollout where it stands.
fn possible_commands(role: OperatorRole, rollout: Option<&RolloutView>) -> Vec<RolloutCommand> {
    let Some(rollout) = rollout else { return Vec::new() };
    if !SHIPPERS.contains(&role) {
        return Vec::new();
    }
    RolloutCommand::ALL
        .into_iter()
        .filter(|c| on_command(position(rollout), *c, rollout.stages.len()).is_some())
        .collect()
}

/// Halting and rolling back cannot be undone.
fn undoes_work(command: RolloutCommand) -> bool {
    matches!(command, RolloutCommand::Halt | RolloutCommand::Rollback)
}

fn stage_bar(s: &StageStats) -> StackedBar {
    let values = parts_of(s);
    let parts: Vec<_> = PARTS.iter().zip(values).map(|((class, key), n)| (*class, n, *key)).collect();
    StackedBar::new(&parts)
}

/// A stage's counts over time as a chart, and as the table beside it.
fn stage_over_time(
    lang: crate::web::Lang,
    history: &RolloutHistoryView,
    stage: u32,
) -> (Option<StackedArea>, Vec<(String, StageStats)>) {
    let mut times = Vec::new();
    let mut values = Vec::new();
    let mut rows = Vec::new();
    for count in &history.counts {
        let Some(s) = count.stages.iter().find(|s| s.stage == stage) else { continue };
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(&count.counted_at) else { continue };
        times.push(at.timestamp());
        values.push(parts_of(s).to_vec());
        rows.push((lang.date_time(at.naive_utc()), s.clone()));
    }
    rows.reverse();
    if times.len() < 2 {
        return (None, rows);
    }
    let long = times.last().unwrap_or(&0) - times.first().unwrap_or(&0) > 20 * 3600;
    let label = |t: i64| {
        let local = crate::web::i18n::paris::from_utc(crate::time::from_unix(t));
        local.format(if long { "%d/%m %H:%M" } else { "%H:%M" }).to_string()
    };
    (Some(StackedArea::new(&PARTS, &times, &values, 5, label)), rows)
}

/// What a deployment's pages show: the deployment and its rollout as last
/// counted (and when); for the `whole` page (not a confirmation) also the
/// counts over time and the failures.
struct Loaded {
    deployment: DeploymentView,
    rollout: Option<(RolloutView, chrono::NaiveDateTime)>,
    history: Option<RolloutHistoryView>,
    failures: Vec<FailedDeviceView>,
}

async fn load(state: &AppState, session: &Session, id: i64, whole: bool) -> Result<Loaded, WebError> {
    let actor = session.actor.clone();
    state
        .db
        .run(move |conn| {
            let deployment = deployments::show(conn, &actor, id)?;
            let (rollout, history) = match deployment.rollout {
                Some(_) => (
                    Some(crate::rollouts::status_counted(conn, &actor, id)?),
                    if whole { Some(crate::rollouts::counts::history(conn, &actor, id)?) } else { None },
                ),
                None => (None, None),
            };
            let failures = if whole {
                crate::rollouts::attempts::failures(conn, &actor, id, FAILURES_SHOWN)?
            } else {
                Vec::new()
            };
            Ok::<_, crate::error::Error>(Loaded { deployment, rollout, history, failures })
        })
        .await
        .or_page(session.lang)
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let role = staff(&session)?;
    let Loaded { deployment, rollout, history, failures } =
        load(&state, &session, id.into_inner(), true).await?;
    let lang = session.lang;
    let counted_at = rollout.as_ref().map(|(_, at)| lang.date_time(*at)).unwrap_or_default();
    let rollout = rollout.map(|(r, _)| r);
    let stages = rollout
        .iter()
        .flat_map(|r| {
            let history = history.as_ref();
            r.stage_stats.iter().map(move |s| {
                let (over_time, counts) =
                    history.map(|h| stage_over_time(lang, h, s.stage)).unwrap_or_default();
                StageRow {
                    bar: stage_bar(s),
                    current: s.stage == r.current_stage,
                    stats: s.clone(),
                    over_time,
                    counts,
                }
            })
        })
        .collect();
    let later = rollout
        .iter()
        .flat_map(|r| r.stages.iter().enumerate().skip(r.stage_stats.len()).map(|(i, p)| (i + 1, *p)))
        .collect();
    let live = rollout.as_ref().is_some_and(|r| matches!(r.status.as_str(), "running" | "waiting_approval"));
    let body = ShowPage {
        ctx: session.ctx("console.deployments"),
        commands: possible_commands(role, rollout.as_ref())
            .into_iter()
            .map(|c| (c.as_str(), undoes_work(c)))
            .collect(),
        deployment,
        rollout,
        stages,
        later,
        failures,
        live,
        counted_at,
    };
    page(&body.ctx, &body)
}

/// The figures a confirmation states.
pub struct Reach {
    /// Terminals in the stages reached that have not installed the release.
    pub waiting: u64,
    pub installed: u64,
    /// For an approval: the next stage's share and about how many terminals it adds.
    pub next_percent: f64,
    pub next_adds: u64,
}

fn reach(rollout: &RolloutView) -> Reach {
    let devices: u64 = rollout.stage_stats.iter().map(|s| s.devices).sum();
    let installed: u64 = rollout.stage_stats.iter().map(|s| s.installed).sum();
    let current = rollout.current_percent;
    let next_percent = rollout.stages.get(rollout.current_stage as usize + 1).copied().unwrap_or(100.0);
    // Terminals fall in stages by a uniform hash: a stage's share of the
    // target is its share of the whole, so the reached stages tell the size.
    let next_adds = if current > 0.0 {
        ((devices as f64) * (next_percent - current) / current).round().max(0.0) as u64
    } else {
        0
    };
    Reach { waiting: devices.saturating_sub(installed), installed, next_percent, next_adds }
}

#[derive(Template)]
#[template(path = "console/confirm_rollout.html")]
struct ConfirmPage {
    ctx: Ctx,
    deployment: DeploymentView,
    command: &'static str,
    danger: bool,
    /// What the command will do, in the reader's words.
    effect: String,
}

fn parse_command(session: &Session, text: &str) -> Result<RolloutCommand, WebError> {
    text.parse().map_err(|_| WebError::not_found(session.lang))
}

pub async fn confirm(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, WebError> {
    let role = staff(&session)?;
    let (id, command) = path.into_inner();
    let command = parse_command(&session, &command)?;
    let Loaded { deployment, rollout, .. } = load(&state, &session, id, false).await?;
    let lang = session.lang;
    let Some((rollout, _)) = rollout else { return Err(WebError::not_found(lang)) };
    if !possible_commands(role, Some(&rollout)).contains(&command) {
        // A stale page: the rollout moved on, or this role may not.
        return Ok(redirect_with(&format!("/console/deployments/{id}"), "flash.rollout_moved"));
    }
    let r = reach(&rollout);
    let release = format!("{} {}", deployment.app_id, deployment.version.clone().unwrap_or_default());
    let effect = match command {
        RolloutCommand::Pause => lang.format("console.rollout.effect_pause", &[&release, &r.waiting]),
        RolloutCommand::Resume => lang.format("console.rollout.effect_resume", &[&release, &r.waiting]),
        RolloutCommand::Halt => lang.format("console.rollout.effect_halt", &[&release, &r.waiting]),
        RolloutCommand::Approve => lang.format(
            "console.rollout.effect_approve",
            &[&(rollout.current_stage + 2), &r.next_percent, &r.next_adds, &release],
        ),
        RolloutCommand::Rollback => lang.format("console.rollout.effect_rollback", &[&release, &r.installed]),
    };
    let body = ConfirmPage {
        ctx: session.ctx("console.deployments"),
        deployment,
        command: command.as_str(),
        danger: undoes_work(command),
        effect,
    };
    page(&body.ctx, &body)
}

#[derive(Deserialize)]
pub struct CommandForm {
    csrf: String,
}

pub async fn command(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(i64, String)>,
    form: web::Form<CommandForm>,
) -> Result<HttpResponse, WebError> {
    session.check_form(&form.csrf)?;
    staff(&session)?;
    let (id, command) = path.into_inner();
    let command = parse_command(&session, &command)?;
    let actor = session.actor.clone();
    state
        .db
        .run(move |conn| crate::rollouts::command(conn, &actor, id, command))
        .await
        .or_page(session.lang)?;
    // Terminals learn of it at their next contact.
    state.contact.caught_up().await;
    let flash = match command {
        RolloutCommand::Pause => "flash.rollout_paused",
        RolloutCommand::Resume => "flash.rollout_resumed",
        RolloutCommand::Halt => "flash.rollout_halted",
        RolloutCommand::Approve => "flash.rollout_approved",
        RolloutCommand::Rollback => "flash.rollout_rolled_back",
    };
    Ok(redirect_with(&format!("/console/deployments/{id}"), flash))
}
