//! Apps, their publisher keys and their signed releases.
//!
//! Publishing is split so that nothing unverified is ever visible:
//! `check_publishable` runs before any byte of the artifact is read (so a bad
//! manifest costs no upload), the artifact is staged and hashed, and only
//! then `record` commits the release row.

pub mod deltas;
pub mod digests;
pub mod publish;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::OperatorRole;
use tms_packages::releases::{OrderError, SignedManifest, check_order, is_package_name};
use tms_packages::wire::releases::{
    AddPublisherKeyRequest, AppView, CreateAppRequest, PublisherKeyView, ReleaseView,
};
use tms_signing::PublicKey;

use crate::accounts::access::Actor;
use crate::db::schema::{app_merchants, app_screenshots, apps, publisher_keys, releases};
use crate::db::{DbConnection, DbError, audit};
use crate::error::{Error, ErrorCode};
use crate::per_backend;
use crate::time::{now, rfc3339};

/// Who publishes: release engineers and operator admins.
pub const PUBLISHERS: &[OperatorRole] = &[OperatorRole::OperatorAdmin, OperatorRole::ReleaseEngineer];
pub const VISIBILITIES: [&str; 3] = ["system", "store", "private"];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = apps)]
pub struct AppRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub visibility: String,
    pub created_at: NaiveDateTime,
    pub created_by: i64,
    pub summary: String,
    pub description: String,
    pub category: String,
    pub icon_sha256: Option<String>,
    pub icon_content_type: Option<String>,
}

impl AppRow {
    pub fn icon_path(&self) -> Option<String> {
        self.icon_sha256.as_ref().map(|_| format!("/api/v1/store/apps/{}/icon", self.id))
    }
}

/// Where the store serves a screenshot.
pub fn screenshot_path(app_id: &str, screenshot_id: i64) -> String {
    format!("/api/v1/store/apps/{app_id}/screenshots/{screenshot_id}")
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = publisher_keys)]
pub struct KeyRow {
    pub id: i64,
    pub app_id: String,
    pub key_id: String,
    pub public_key: String,
    pub name: String,
    pub added_at: NaiveDateTime,
    pub added_by: i64,
    pub revoked_at: Option<NaiveDateTime>,
    pub revoked_by: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = releases)]
pub struct ReleaseRow {
    pub id: i64,
    pub app_id: String,
    pub kind: String,
    pub version: String,
    pub version_code: i64,
    pub artifact_sha256: String,
    pub artifact_size: i64,
    pub models: String,
    pub min_firmware: Option<String>,
    pub release_notes: String,
    pub signed_manifest: String,
    pub key_id: String,
    pub published_at: NaiveDateTime,
    pub published_by: i64,
    pub withdrawn_at: Option<NaiveDateTime>,
    pub withdrawn_by: Option<i64>,
}

impl ReleaseRow {
    pub fn view(&self) -> ReleaseView {
        let signed: SignedManifest = serde_json::from_str(&self.signed_manifest)
            .expect("stored manifests were parsed before they were stored");
        ReleaseView {
            id: self.id,
            app_id: self.app_id.clone(),
            kind: self.kind.clone(),
            version: self.version.clone(),
            version_code: self.version_code as u64,
            artifact_sha256: self.artifact_sha256.clone(),
            artifact_size: self.artifact_size as u64,
            models: self.models.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect(),
            min_firmware: self.min_firmware.clone(),
            release_notes: self.release_notes.clone(),
            key_id: self.key_id.clone(),
            signature: signed.signature,
            manifest: signed.manifest,
            published_at: rfc3339(self.published_at),
            withdrawn_at: self.withdrawn_at.map(rfc3339),
            download_path: format!("/api/v1/apps/{}/releases/{}/artifact", self.app_id, self.version),
            deltas: Vec::new(),
        }
    }
}

fn key_view(k: &KeyRow) -> PublisherKeyView {
    PublisherKeyView {
        key_id: k.key_id.clone(),
        name: k.name.clone(),
        public_key: k.public_key.clone(),
        added_at: rfc3339(k.added_at),
        revoked_at: k.revoked_at.map(rfc3339),
    }
}

pub fn app_view(conn: &mut DbConnection, app: &AppRow) -> Result<AppView, DbError> {
    let keys: Vec<KeyRow> = publisher_keys::table
        .filter(publisher_keys::app_id.eq(&app.id))
        .order(publisher_keys::id)
        .select(KeyRow::as_select())
        .load(conn)?;
    let screenshots: Vec<i64> = app_screenshots::table
        .filter(app_screenshots::app_id.eq(&app.id))
        .order(app_screenshots::id)
        .select(app_screenshots::id)
        .load(conn)?;
    let merchants: Vec<i64> = app_merchants::table
        .filter(app_merchants::app_id.eq(&app.id))
        .order(app_merchants::merchant_id)
        .select(app_merchants::merchant_id)
        .load(conn)?;
    Ok(AppView {
        id: app.id.clone(),
        name: app.name.clone(),
        kind: app.kind.clone(),
        visibility: app.visibility.clone(),
        created_at: rfc3339(app.created_at),
        keys: keys.iter().map(key_view).collect(),
        summary: app.summary.clone(),
        description: app.description.clone(),
        category: app.category.clone(),
        icon_path: app.icon_path(),
        screenshot_paths: screenshots.iter().map(|s| screenshot_path(&app.id, *s)).collect(),
        merchants,
    })
}

pub fn find_app(conn: &mut DbConnection, id: &str) -> Result<AppRow, Error> {
    apps::table
        .find(id)
        .select(AppRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("app"))
}

/// Apps are the operator's: every operator role reads them, merchants never
/// through this API (the store has its own view).
fn require_operator_reader(actor: &Actor) -> Result<(), Error> {
    if actor.operator_role().is_some() { Ok(()) } else { Err(Error::not_found("app")) }
}

pub fn create_app(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &CreateAppRequest,
) -> Result<AppView, Error> {
    actor.require_operator(PUBLISHERS)?;
    if !is_package_name(&request.id) {
        return Err(Error::invalid("id", "an Android package name, e.g. eu.ccv.salespoint"));
    }
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name", "1 to 100 characters"));
    }
    if !tms_packages::releases::KINDS.contains(&request.kind.as_str()) {
        return Err(Error::invalid("kind", "app or firmware"));
    }
    if !VISIBILITIES.contains(&request.visibility.as_str()) {
        return Err(Error::invalid("visibility", "system, store or private"));
    }
    crate::db::write_tx(conn, |conn| {
        if apps::table.find(&request.id).count().get_result::<i64>(conn)? > 0 {
            return Err(Error::new(ErrorCode::Conflict, format!("app {} exists", request.id)));
        }
        diesel::insert_into(apps::table)
            .values((
                apps::id.eq(&request.id),
                apps::name.eq(name),
                apps::kind.eq(&request.kind),
                apps::visibility.eq(&request.visibility),
                apps::created_at.eq(now()),
                apps::created_by.eq(actor.user_id),
            ))
            .execute(conn)?;
        let subject = format!("app:{}", request.id);
        audit::record(
            conn,
            &actor.audit(
                "app.create",
                &subject,
                None,
                &json!({"name": name, "kind": request.kind, "visibility": request.visibility}),
            ),
        )?;
        let app = find_app(conn, &request.id)?;
        Ok(app_view(conn, &app)?)
    })
}

pub fn list_apps(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<AppView>, Error> {
    require_operator_reader(actor)?;
    let found: Vec<AppRow> = apps::table.order(apps::id).select(AppRow::as_select()).load(conn)?;
    found.iter().map(|a| app_view(conn, a).map_err(Error::from)).collect()
}

pub fn show_app(conn: &mut DbConnection, actor: &Actor, id: &str) -> Result<AppView, Error> {
    require_operator_reader(actor)?;
    let app = find_app(conn, id)?;
    Ok(app_view(conn, &app)?)
}

pub fn add_key(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    request: &AddPublisherKeyRequest,
) -> Result<AppView, Error> {
    actor.require_operator(PUBLISHERS)?;
    let key =
        PublicKey::parse(&request.public_key).map_err(|e| Error::invalid("public_key", e.to_string()))?;
    if key.is_weak() {
        return Err(Error::invalid("public_key", "a weak (small-order) key would accept forged signatures"));
    }
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name", "1 to 100 characters"));
    }
    crate::db::write_tx(conn, |conn| {
        let app = find_app(conn, app_id)?;
        let key_id = key.key_id();
        let exists: i64 = publisher_keys::table
            .filter(publisher_keys::app_id.eq(app_id))
            .filter(publisher_keys::key_id.eq(&key_id))
            .count()
            .get_result(conn)?;
        if exists > 0 {
            return Err(Error::new(
                ErrorCode::Conflict,
                "this key is already registered for the app (a revoked key cannot come back)",
            ));
        }
        diesel::insert_into(publisher_keys::table)
            .values((
                publisher_keys::app_id.eq(app_id),
                publisher_keys::key_id.eq(&key_id),
                publisher_keys::public_key.eq(key.to_hex()),
                publisher_keys::name.eq(name),
                publisher_keys::added_at.eq(now()),
                publisher_keys::added_by.eq(actor.user_id),
            ))
            .execute(conn)?;
        let subject = format!("app:{app_id}");
        audit::record(
            conn,
            &actor.audit("app.key_add", &subject, None, &json!({"key_id": key_id, "name": name})),
        )?;
        Ok(app_view(conn, &app)?)
    })
}

/// A revoked key signs nothing new; releases it signed before stay valid
/// unless withdrawn.
pub fn revoke_key(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    key_id: &str,
) -> Result<AppView, Error> {
    actor.require_operator(PUBLISHERS)?;
    crate::db::write_tx(conn, |conn| {
        let app = find_app(conn, app_id)?;
        let revoked = diesel::update(
            publisher_keys::table
                .filter(publisher_keys::app_id.eq(app_id))
                .filter(publisher_keys::key_id.eq(key_id))
                .filter(publisher_keys::revoked_at.is_null()),
        )
        .set((publisher_keys::revoked_at.eq(now()), publisher_keys::revoked_by.eq(actor.user_id)))
        .execute(conn)?;
        if revoked == 0 {
            return Err(Error::not_found("active publisher key"));
        }
        let subject = format!("app:{app_id}");
        audit::record(conn, &actor.audit("app.key_revoke", &subject, None, &json!({"key_id": key_id})))?;
        Ok(app_view(conn, &app)?)
    })
}

/// Everything that can be checked before the artifact is read: the app, the
/// manifest, the key, the signature and the version rules.
pub fn check_publishable(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    signed: &SignedManifest,
) -> Result<(), Error> {
    actor.require_operator(PUBLISHERS)?;
    let app = find_app(conn, app_id)?;
    let version = signed.manifest.validate().map_err(|e| {
        Error::with_details(
            ErrorCode::InvalidManifest,
            e.to_string(),
            std::collections::BTreeMap::from([("field".to_owned(), e.field.to_owned())]),
        )
    })?;
    if signed.manifest.app_id != app.id {
        return Err(Error::with_details(
            ErrorCode::InvalidManifest,
            format!("the manifest is for {}, not {}", signed.manifest.app_id, app.id),
            std::collections::BTreeMap::from([("field".to_owned(), "app_id".to_owned())]),
        ));
    }
    if signed.manifest.kind != app.kind {
        return Err(Error::with_details(
            ErrorCode::InvalidManifest,
            format!("{} is an {}, the manifest says {}", app.id, app.kind, signed.manifest.kind),
            std::collections::BTreeMap::from([("field".to_owned(), "kind".to_owned())]),
        ));
    }
    let key = active_key(conn, app_id, &signed.key_id)?;
    let public = PublicKey::parse(&key.public_key)
        .map_err(|e| Error::Db(DbError::Corrupt(format!("publisher key {}: {e}", key.key_id))))?;
    signed.verify(&public).map_err(|_| {
        Error::new(ErrorCode::SignatureInvalid, "the signature does not verify against the publisher key")
    })?;
    check_version(conn, app_id, &version, signed.manifest.version_code)
}

/// A publisher key of the app that may still sign.
fn active_key(conn: &mut DbConnection, app_id: &str, key_id: &str) -> Result<KeyRow, Error> {
    let key: KeyRow = publisher_keys::table
        .filter(publisher_keys::app_id.eq(app_id))
        .filter(publisher_keys::key_id.eq(key_id))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownPublisherKey,
                format!("key {key_id} is not a publisher key of {app_id}"),
            )
        })?;
    if key.revoked_at.is_some() {
        return Err(Error::new(
            ErrorCode::KeyRevoked,
            format!("key {key_id} was revoked: it signs nothing new"),
        ));
    }
    Ok(key)
}

fn check_version(
    conn: &mut DbConnection,
    app_id: &str,
    version: &semver::Version,
    code: u64,
) -> Result<(), Error> {
    let existing: Vec<(String, i64)> = releases::table
        .filter(releases::app_id.eq(app_id))
        .select((releases::version, releases::version_code))
        .load(conn)?;
    let existing: Vec<(semver::Version, u64)> = existing
        .into_iter()
        .filter_map(|(v, c)| semver::Version::parse(&v).ok().map(|v| (v, c as u64)))
        .collect();
    match check_order(version, code, &existing) {
        Ok(()) => Ok(()),
        Err(OrderError::Exists) => {
            Err(Error::new(ErrorCode::ReleaseExists, format!("{app_id} {version} is already published")))
        }
        Err(OrderError::NotHigher { highest_version, highest_code }) => Err(Error::new(
            ErrorCode::VersionNotHigher,
            format!(
                "a new release must be above {highest_version} (version code {highest_code}) on both version and version code"
            ),
        )),
    }
}

/// Commits the release row once its artifact is stored and verified; the
/// version rules are checked again inside the transaction.
pub fn record(conn: &mut DbConnection, actor: &Actor, signed: &SignedManifest) -> Result<ReleaseView, Error> {
    let m = &signed.manifest;
    let version = m.validate().map_err(|e| Error::new(ErrorCode::InvalidManifest, e.to_string()))?;
    crate::db::write_tx(conn, |conn| {
        // Publishes of one app take turns (SQLite's write lock does this by
        // itself), so two cannot both pass the version rules.
        if let DbConnection::Postgres(c) = conn {
            apps::table.find(&m.app_id).select(apps::id).for_update().first::<String>(c)?;
        }
        // The key may have been revoked while the artifact uploaded.
        active_key(conn, &m.app_id, &signed.key_id)?;
        check_version(conn, &m.app_id, &version, m.version_code)?;
        let insert = diesel::insert_into(releases::table).values((
            releases::app_id.eq(&m.app_id),
            releases::kind.eq(&m.kind),
            releases::version.eq(&m.version),
            releases::version_code.eq(m.version_code as i64),
            releases::artifact_sha256.eq(&m.artifact_sha256),
            releases::artifact_size.eq(m.artifact_size as i64),
            releases::models.eq(m.models.join(",")),
            releases::min_firmware.eq(&m.min_firmware),
            releases::release_notes.eq(&m.release_notes),
            releases::signed_manifest.eq(serde_json::to_string(signed).expect("manifests serialise")),
            releases::key_id.eq(&signed.key_id),
            releases::published_at.eq(now()),
            releases::published_by.eq(actor.user_id),
        ));
        let id: i64 = per_backend!(conn, |c| insert.returning(releases::id).get_result(c)).map_err(|e| {
            let e = DbError::from(e);
            if e.is_unique_violation() {
                Error::new(
                    ErrorCode::ReleaseExists,
                    format!("{} {} is already published", m.app_id, m.version),
                )
            } else {
                e.into()
            }
        })?;
        let subject = format!("release:{id}");
        audit::record(
            conn,
            &actor.audit(
                "release.publish",
                &subject,
                None,
                &json!({"app_id": m.app_id, "version": m.version, "sha256": m.artifact_sha256, "key_id": signed.key_id}),
            ),
        )?;
        let row: ReleaseRow = releases::table.find(id).select(ReleaseRow::as_select()).first(conn)?;
        Ok(row.view())
    })
}

pub fn list_releases(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
) -> Result<Vec<ReleaseView>, Error> {
    require_operator_reader(actor)?;
    find_app(conn, app_id)?;
    let found: Vec<ReleaseRow> = releases::table
        .filter(releases::app_id.eq(app_id))
        .order(releases::version_code.desc())
        .select(ReleaseRow::as_select())
        .load(conn)?;
    Ok(found.iter().map(ReleaseRow::view).collect())
}

pub fn find_release(conn: &mut DbConnection, app_id: &str, version: &str) -> Result<ReleaseRow, Error> {
    releases::table
        .filter(releases::app_id.eq(app_id))
        .filter(releases::version.eq(version))
        .select(ReleaseRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("release"))
}

pub fn find_release_by_id(conn: &mut DbConnection, id: i64) -> Result<ReleaseRow, Error> {
    releases::table
        .find(id)
        .select(ReleaseRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("release"))
}

pub fn show_release(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    version: &str,
) -> Result<ReleaseRow, Error> {
    require_operator_reader(actor)?;
    find_release(conn, app_id, version)
}

/// What withdrawing a release would stop, for a confirmation: the release,
/// its deployments still delivering it, and their rollouts a withdrawal
/// halts.
pub fn withdraw_reach(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    version: &str,
) -> Result<(ReleaseView, i64, i64), Error> {
    actor.require_operator(PUBLISHERS)?;
    use crate::db::schema::{deployments, rollouts};
    use tms_packages::rollouts::RolloutStatus;
    let release = find_release(conn, app_id, version)?;
    let delivering: i64 = deployments::table
        .filter(deployments::release_id.eq(release.id))
        .filter(deployments::status.eq("active"))
        .count()
        .get_result(conn)?;
    let halted: i64 = rollouts::table
        .inner_join(deployments::table.on(deployments::id.eq(rollouts::deployment_id)))
        .filter(deployments::release_id.eq(release.id))
        .filter(rollouts::status.eq_any(RolloutStatus::halt_sources().map(RolloutStatus::as_str)))
        .count()
        .get_result(conn)?;
    Ok((release.view(), delivering, halted))
}

/// A withdrawn release is never offered again; terminals that have it keep it.
pub fn withdraw(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    version: &str,
) -> Result<ReleaseView, Error> {
    actor.require_operator(PUBLISHERS)?;
    crate::db::write_tx(conn, |conn| {
        let release = find_release(conn, app_id, version)?;
        if release.withdrawn_at.is_some() {
            return Err(Error::new(ErrorCode::Conflict, "this release is already withdrawn"));
        }
        diesel::update(releases::table.find(release.id))
            .set((releases::withdrawn_at.eq(now()), releases::withdrawn_by.eq(actor.user_id)))
            .execute(conn)?;
        // Its rollouts stop now rather than at the supervisor's next pass.
        use crate::db::schema::{deployments, rollouts};
        use tms_packages::rollouts::{RolloutStatus, StatusReason};
        let of_release =
            deployments::table.filter(deployments::release_id.eq(release.id)).select(deployments::id);
        diesel::update(
            rollouts::table
                .filter(rollouts::deployment_id.eq_any(of_release))
                .filter(rollouts::status.eq_any(RolloutStatus::halt_sources().map(RolloutStatus::as_str))),
        )
        .set((
            rollouts::status.eq(RolloutStatus::Halted.as_str()),
            rollouts::status_reason.eq(StatusReason::ReleaseWithdrawn.english()),
            rollouts::status_reason_code.eq(crate::rollouts::stored(&StatusReason::ReleaseWithdrawn)),
            rollouts::updated_at.eq(now()),
        ))
        .execute(conn)?;
        crate::contact::changes::record(
            conn,
            &[crate::contact::changes::Scope::Deployments, crate::contact::changes::Scope::Everyone],
        )?;
        let subject = format!("release:{}", release.id);
        audit::record(
            conn,
            &actor.audit("release.withdraw", &subject, None, &json!({"app_id": app_id, "version": version})),
        )?;
        let row: ReleaseRow = releases::table.find(release.id).select(ReleaseRow::as_select()).first(conn)?;
        Ok(row.view())
    })
}

/// The releases (not withdrawn) whose artifact has this digest, newest first.
pub fn releases_by_artifact(conn: &mut DbConnection, sha256: &str) -> Result<Vec<ReleaseRow>, DbError> {
    Ok(releases::table
        .filter(releases::artifact_sha256.eq(sha256))
        .filter(releases::withdrawn_at.is_null())
        .order(releases::id.desc())
        .select(ReleaseRow::as_select())
        .load(conn)?)
}
