//! Parameters per scope (global, merchant, location, terminal): the app's
//! schema as a typed form, each value with the level it comes from and the
//! level above that locked it; a change shows what it does to the scope's
//! terminals and how many they are before it is saved, and a form changed
//! since that review is reviewed again rather than saved. The history of
//! versions says who changed what. The domain decides who may read and
//! change each scope (support and operator admins change any; release
//! engineers read the global level).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::Value;
use tms_packages::accounts::OperatorRole;
use tms_packages::parameters::{KeyDef, Level, ParamType, parse_value};
use tms_packages::wire::parameters::{
    ChangeParametersRequest, KeyChange, ParameterChangePreview, ParameterVersionView, ScopeParametersView,
};

use super::staff;
use crate::error::{Error, ErrorCode};
use crate::http::AppState;
use crate::web::{Ctx, Lang, OrPage, Session, WebError, page, redirect_with};

pub const LEVELS: [&str; 4] = ["global", "merchant", "location", "device"];

/// Who may lock keys: the payment provider's staff who change parameters.
fn locks_keys(role: OperatorRole) -> bool {
    matches!(role, OperatorRole::OperatorAdmin | OperatorRole::Support)
}

#[derive(Template)]
#[template(path = "console/parameters.html")]
struct ChoosePage {
    ctx: Ctx,
    apps: Vec<String>,
}

impl ChoosePage {
    fn levels(&self) -> [&'static str; 4] {
        LEVELS
    }
}

#[derive(Deserialize)]
pub struct ChooseQuery {
    app: Option<String>,
    level: Option<String>,
    scope: Option<String>,
}

/// Which app and scope: a form that goes to the scope's page.
pub async fn choose(
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<ChooseQuery>,
) -> Result<HttpResponse, WebError> {
    staff(&session)?;
    if let (Some(app), Some(level)) = (&query.app, &query.level) {
        let scope = if level == "global" { "0" } else { query.scope.as_deref().unwrap_or_default().trim() };
        if let (Ok(level), Ok(scope)) = (level.parse::<Level>(), scope.parse::<i64>()) {
            let to = format!("/console/parameters/{}/{}/{scope}", urlencoding(app), level.as_str());
            return Ok(HttpResponse::SeeOther().insert_header(("Location", to)).finish());
        }
    }
    let apps = state
        .db
        .run(|conn| crate::parameters::all_schemas(conn).map(|s| s.into_keys().collect::<Vec<_>>()))
        .await
        .map_err(crate::error::Error::from)
        .or_page(session.lang)?;
    let body = ChoosePage { ctx: session.ctx("console.parameters"), apps };
    page(&body.ctx, &body)
}

/// An app id in a path: the characters app ids use pass, others are escaped.
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One key of the form.
pub struct KeyRow {
    pub key: String,
    pub def: KeyDef,
    /// `string`, `integer`, `boolean`, `enum`, `secret` or `file`.
    pub kind: &'static str,
    /// What the field holds: the value set here (as typed after a review).
    pub field: String,
    pub set_here: bool,
    pub locked_here: bool,
    /// The level above that locked it: no field then.
    pub locked_above: Option<String>,
    /// What the scope's terminals get, as text, and from which level.
    pub effective: Option<String>,
    pub origin: Option<String>,
    /// Whether the remove box was ticked.
    pub unset_ticked: bool,
    /// Whether the lock box is ticked (as stored, or as submitted).
    pub lock_ticked: bool,
}

impl KeyRow {
    pub fn enum_values(&self) -> Vec<String> {
        match &self.def.ty {
            ParamType::Enum { values } => values.clone(),
            _ => Vec::new(),
        }
    }

    pub fn bounds(&self) -> Option<(i64, i64)> {
        match self.def.ty {
            ParamType::Integer { min, max } => Some((min, max)),
            _ => None,
        }
    }

    /// Whether this level may set the key at all.
    pub fn settable(&self, level: &str) -> bool {
        self.def.levels.iter().any(|l| l.as_str() == level)
    }
}

fn kind_of(ty: &ParamType) -> &'static str {
    match ty {
        ParamType::String { .. } => "string",
        ParamType::Integer { .. } => "integer",
        ParamType::Boolean => "boolean",
        ParamType::Enum { .. } => "enum",
        ParamType::Secret { .. } => "secret",
        ParamType::File { .. } => "file",
    }
}

/// A value as a form field holds it.
fn as_field(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The submitted form: field name to value (`v.KEY`, `unset.KEY`,
/// `lock.KEY`, and the form's own fields).
type Submitted = BTreeMap<String, String>;

fn submitted(fields: Vec<(String, String)>) -> Submitted {
    fields.into_iter().collect()
}

#[derive(Template)]
#[template(path = "console/parameter_scope.html")]
struct ScopePage {
    ctx: Ctx,
    app_id: String,
    level: String,
    scope_id: i64,
    overview: ScopeParametersView,
    rows: Vec<KeyRow>,
    history: Vec<ParameterVersionView>,
    /// Whether this user sees and changes locks.
    locks: bool,
    review: Option<Review>,
    refusal: Option<String>,
    /// The fingerprint of the form reviewed, when the review is current.
    fingerprint: String,
    reason: String,
}

impl ScopePage {
    fn origin_text(&self, origin: &str) -> String {
        if origin == self.level {
            return self.ctx.t("console.parameters.set_here").to_owned();
        }
        self.ctx.t_of("console.parameters.origin_", origin).to_owned()
    }

    fn scope_title(&self) -> String {
        if self.level == "global" {
            return self.ctx.t("console.parameters.scope_global").to_owned();
        }
        self.ctx.lang.format(&format!("console.parameters.scope_{}", self.level), &[&self.scope_id])
    }

    fn version_text(&self) -> String {
        self.ctx.lang.format("console.parameters.version", &[&self.overview.set.version])
    }

    fn locked_by(&self, level: &str) -> String {
        self.ctx.lang.format("console.parameters.locked_by", &[&self.origin_text(level)])
    }

    fn terminals(&self) -> String {
        self.ctx.lang.count_format("console.parameters.terminals", self.overview.terminals as i64, &[])
    }
}

/// A change reviewed: its lines and the count of terminals it reaches.
pub struct Review {
    pub lines: Vec<ReviewLine>,
    pub reaches: String,
    pub nothing: bool,
}

pub struct ReviewLine {
    pub key: String,
    pub before: String,
    pub after: String,
    pub lock: Option<String>,
}

/// A value with where it comes from: "set here" when from the scope's own level.
fn value_text(lang: Lang, level: Level, value: &Option<Value>, origin: &Option<String>) -> String {
    match (value, origin) {
        (Some(v), Some(o)) => {
            let from = if o == level.as_str() {
                lang.text("console.parameters.set_here")
            } else {
                lang.try_text(&format!("console.parameters.origin_{o}")).unwrap_or(o)
            };
            format!("{} ({from})", as_field(v))
        }
        (Some(v), None) => as_field(v),
        (None, _) => lang.text("console.parameters.no_value").to_owned(),
    }
}

fn review_of(lang: Lang, level: Level, p: &ParameterChangePreview) -> Review {
    let line = |c: &KeyChange| ReviewLine {
        key: c.key.clone(),
        before: value_text(lang, level, &c.before, &c.before_origin),
        after: value_text(lang, level, &c.after, &c.after_origin),
        lock: c.lock.as_ref().map(|l| lang.text(&format!("console.parameters.lock_{l}")).to_owned()),
    };
    Review {
        lines: p.changes.iter().map(line).collect(),
        reaches: lang.count_format("console.parameters.reaches", p.terminals as i64, &[]),
        nothing: p.changes.is_empty(),
    }
}

fn rows_of(overview: &ScopeParametersView, form: Option<&Submitted>) -> Vec<KeyRow> {
    overview
        .schema
        .keys
        .iter()
        .map(|(key, def)| {
            let here = overview.set.values.get(key);
            let effective = overview.effective.get(key);
            let kind = kind_of(&def.ty);
            let stored_field = match (kind, here) {
                ("secret" | "file", _) | (_, None) => String::new(),
                (_, Some(v)) => as_field(v),
            };
            let locked_here = overview.set.locked.contains(key);
            KeyRow {
                key: key.clone(),
                def: def.clone(),
                kind,
                field: form.and_then(|f| f.get(&format!("v.{key}")).cloned()).unwrap_or(stored_field),
                set_here: here.is_some(),
                locked_here,
                locked_above: effective.and_then(|e| e.locked_above.clone()),
                effective: effective.and_then(|e| e.value.as_ref()).map(as_field),
                origin: effective.and_then(|e| e.origin.clone()),
                unset_ticked: form.is_some_and(|f| f.contains_key(&format!("unset.{key}"))),
                lock_ticked: match form {
                    Some(f) if f.contains_key("locks") => f.contains_key(&format!("lock.{key}")),
                    _ => locked_here,
                },
            }
        })
        .collect()
}

/// The change the form asks for, against what the level sets now.
fn change_of(overview: &ScopeParametersView, form: &Submitted) -> Result<ChangeParametersRequest, Error> {
    let schema = &overview.schema;
    let mut change = ChangeParametersRequest {
        set: BTreeMap::new(),
        unset: Vec::new(),
        lock: Vec::new(),
        unlock: Vec::new(),
        reason: form.get("reason").map(|r| r.trim().to_owned()).unwrap_or_default(),
    };
    for (key, def) in &schema.keys {
        let here = overview.set.values.get(key);
        if form.contains_key(&format!("unset.{key}")) {
            if here.is_some() {
                change.unset.push(key.clone());
            }
        } else if let Some(text) = form.get(&format!("v.{key}")) {
            let secret = matches!(def.ty, ParamType::Secret { .. });
            if text.trim().is_empty() && !secret {
                // An emptied field: the level stops setting the key.
                if here.is_some() {
                    change.unset.push(key.clone());
                }
            } else if !(secret && text.is_empty()) {
                let text = if secret { text.as_str() } else { text.trim() };
                let value = parse_value(schema, key, text).map_err(crate::parameters::invalid)?;
                if here != Some(&value) {
                    change.set.insert(key.clone(), value);
                }
            }
        }
        if form.contains_key("locks") {
            let locked_here = overview.set.locked.contains(key);
            match (locked_here, form.contains_key(&format!("lock.{key}"))) {
                (false, true) => change.lock.push(key.clone()),
                (true, false) => change.unlock.push(key.clone()),
                _ => {}
            }
        }
    }
    Ok(change)
}

/// The form's fingerprint: two forms with the same one ask the same change.
fn fingerprint(form: &Submitted) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (k, v) in form {
        if !matches!(k.as_str(), "csrf" | "step" | "reviewed" | "reason") {
            (k, v).hash(&mut hasher);
        }
    }
    format!("{:016x}", hasher.finish())
}

fn scope_path(app_id: &str, level: &str, scope_id: i64) -> String {
    format!("/console/parameters/{}/{level}/{scope_id}", urlencoding(app_id))
}

fn parse_level(session: &Session, text: &str) -> Result<Level, WebError> {
    text.parse().map_err(|_| WebError::not_found(session.lang))
}

struct Shown {
    /// What the level sets, when the caller read it already.
    overview: Option<ScopeParametersView>,
    form: Option<Submitted>,
    review: Option<Review>,
    refusal: Option<String>,
    fingerprint: String,
}

async fn overview_of(
    state: &AppState,
    session: &Session,
    (app_id, level, scope_id): (&str, Level, i64),
) -> Result<ScopeParametersView, WebError> {
    let actor = session.actor.clone();
    crate::parameters::scope_overview(&state.db, &state.blobs, actor, app_id.to_owned(), level, scope_id)
        .await
        .or_page(session.lang)
}

async fn render(
    state: &AppState,
    session: &Session,
    (app_id, level, scope_id): (String, Level, i64),
    shown: Shown,
) -> Result<HttpResponse, WebError> {
    let role = staff(session)?;
    let overview = match shown.overview {
        Some(o) => o,
        None => overview_of(state, session, (&app_id, level, scope_id)).await?,
    };
    let history = crate::parameters::history(
        &state.db,
        &state.blobs,
        session.actor.clone(),
        app_id.clone(),
        level,
        scope_id,
    )
    .await
    .or_page(session.lang)?;
    let rows = rows_of(&overview, shown.form.as_ref());
    let reason = shown.form.as_ref().and_then(|f| f.get("reason").cloned()).unwrap_or_default();
    let body = ScopePage {
        ctx: session.ctx("console.parameters"),
        app_id,
        level: level.as_str().to_owned(),
        scope_id,
        overview,
        rows,
        history,
        locks: locks_keys(role),
        review: shown.review,
        refusal: shown.refusal,
        fingerprint: shown.fingerprint,
        reason,
    };
    page(&body.ctx, &body)
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, String, i64)>,
) -> Result<HttpResponse, WebError> {
    let (app_id, level, scope_id) = path.into_inner();
    let level = parse_level(&session, &level)?;
    let shown = Shown { overview: None, form: None, review: None, refusal: None, fingerprint: String::new() };
    render(&state, &session, (app_id, level, scope_id), shown).await
}

/// Reviews the form, or saves it when it is the form just reviewed.
pub async fn submit(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<(String, String, i64)>,
    fields: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, WebError> {
    let form = submitted(fields.into_inner());
    session.check_form(form.get("csrf").map(String::as_str).unwrap_or_default())?;
    staff(&session)?;
    let (app_id, level_text, scope_id) = path.into_inner();
    let level = parse_level(&session, &level_text)?;
    let lang = session.lang;
    let scope = (app_id.clone(), level, scope_id);
    let overview = overview_of(&state, &session, (&app_id, level, scope_id)).await?;
    let refused = |e: &Error| refusal_of(lang, e);
    let change = match change_of(&overview, &form) {
        Ok(c) => c,
        Err(e) => {
            let shown = Shown {
                overview: Some(overview),
                refusal: Some(refused(&e)),
                form: Some(form),
                review: None,
                fingerprint: String::new(),
            };
            return render(&state, &session, scope, shown).await;
        }
    };
    let print = fingerprint(&form);
    let step = form.get("step").map(String::as_str).unwrap_or_default();
    if step == "save" && form.get("reviewed") == Some(&print) {
        let saved = crate::parameters::change(
            &state.db,
            &state.blobs,
            session.actor.clone(),
            app_id.clone(),
            level,
            scope_id,
            change,
        )
        .await;
        return match saved {
            Ok(_) => {
                state.contact.caught_up().await;
                Ok(redirect_with(&scope_path(&app_id, level.as_str(), scope_id), "flash.parameters_saved"))
            }
            Err(e) if super::refusable(&e) => {
                // Read again: another change may have been saved meanwhile.
                let shown = Shown {
                    overview: None,
                    refusal: Some(refused(&e)),
                    form: Some(form),
                    review: None,
                    fingerprint: String::new(),
                };
                render(&state, &session, scope, shown).await
            }
            Err(e) => Err(WebError::from_domain(lang, e)),
        };
    }
    let previewed = crate::parameters::preview_change(
        &state.db,
        &state.blobs,
        session.actor.clone(),
        app_id.clone(),
        level,
        scope_id,
        change,
    )
    .await;
    match previewed {
        Ok(p) => {
            let changed = (step == "save").then(|| lang.text("console.parameters.changed").to_owned());
            let shown = Shown {
                overview: Some(overview),
                review: Some(review_of(lang, level, &p)),
                refusal: changed,
                form: Some(form),
                fingerprint: print,
            };
            render(&state, &session, scope, shown).await
        }
        Err(e) if super::refusable(&e) => {
            let shown = Shown {
                overview: Some(overview),
                refusal: Some(refused(&e)),
                form: Some(form),
                review: None,
                fingerprint: String::new(),
            };
            render(&state, &session, scope, shown).await
        }
        Err(e) => Err(WebError::from_domain(lang, e)),
    }
}

/// A refusal naming the key, in the reader's words.
fn refusal_of(lang: Lang, e: &Error) -> String {
    let details = e.public_details();
    let key = details.get("key").cloned().unwrap_or_default();
    match e.code() {
        ErrorCode::InvalidParameter => {
            lang.format("console.parameters.refused_invalid", &[&key, &e.public_message()])
        }
        ErrorCode::ParameterLocked => {
            let level = details.get("level").cloned().unwrap_or_default();
            let at = lang.try_text(&format!("console.parameters.origin_{level}")).unwrap_or(&level);
            lang.format("console.parameters.refused_locked", &[&key, &at])
        }
        _ => crate::web::refusal_text(lang, "console.parameters", e),
    }
}
