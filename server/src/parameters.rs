//! Parameter sets: what each level sets per scope, as immutable versions
//! whose content lives in object storage, and what a terminal ends up with.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde_json::{Value, json};
use tms_packages::accounts::{OperatorRole, Permission};
use tms_packages::parameters::{
    Change, ChangeRefusal, EffectiveVersion, Level, LevelSet, MERCHANT_PASSWORD_KEY, Origin, Schema,
    TERMINAL_APP, apply_change, diff, effective, locked_above, shown, weak_pin_reason,
};
use tms_packages::wire::parameters::*;
use tms_signing::{Sha256Digest, to_canonical_json};

use crate::accounts::access::Actor;
use crate::accounts::rows;
use crate::blobs::BlobStore;
use crate::db::schema::{apps, devices, parameter_schemas, parameter_set_versions};
use crate::db::{Db, DbConnection, DbError, audit};
use crate::error::{Error, ErrorCode};
use crate::time::{now, rfc3339};

const OPERATORS: &[OperatorRole] = &[OperatorRole::OperatorAdmin, OperatorRole::Support];

/// Parameter sets may hold secrets (passwords, PINs): their blobs are
/// sealed under the master key, and named by the digest of what is sealed.
pub const SEALED_PURPOSE: &str = "parameter_set";

pub(crate) fn invalid(e: tms_packages::parameters::ParamError) -> Error {
    Error::with_details(
        ErrorCode::InvalidParameter,
        e.to_string(),
        BTreeMap::from([("key".to_owned(), e.key)]),
    )
}

/// The schema values of `app_id` are checked against: the terminal's built-in
/// one, or the latest registered for the app.
pub fn schema_for(conn: &mut DbConnection, app_id: &str) -> Result<Schema, Error> {
    if app_id == TERMINAL_APP {
        return Ok(Schema::terminal());
    }
    let json: Option<String> = parameter_schemas::table
        .filter(parameter_schemas::app_id.eq(app_id))
        .order(parameter_schemas::version.desc())
        .select(parameter_schemas::schema_json)
        .first(conn)
        .optional()?;
    let json = json.ok_or_else(|| Error::not_found("parameter schema"))?;
    Ok(serde_json::from_str(&json).map_err(|e| DbError::Corrupt(format!("parameter schema: {e}")))?)
}

/// Registers a new schema version for an app (release engineers, operator admins).
pub fn put_schema(
    conn: &mut DbConnection,
    actor: &Actor,
    app_id: &str,
    schema: &Schema,
) -> Result<i64, Error> {
    actor.require_operator(&[OperatorRole::OperatorAdmin, OperatorRole::ReleaseEngineer])?;
    if app_id == TERMINAL_APP {
        return Err(Error::forbidden("the terminal's settings are built in"));
    }
    schema.validate().map_err(invalid)?;
    crate::db::write_tx(conn, |conn| {
        if apps::table.find(app_id).count().get_result::<i64>(conn)? == 0 {
            return Err(Error::not_found("app"));
        }
        let latest: Option<i64> = parameter_schemas::table
            .filter(parameter_schemas::app_id.eq(app_id))
            .select(diesel::dsl::max(parameter_schemas::version))
            .first(conn)?;
        let version = latest.unwrap_or(0) + 1;
        diesel::insert_into(parameter_schemas::table)
            .values((
                parameter_schemas::app_id.eq(app_id),
                parameter_schemas::version.eq(version),
                parameter_schemas::schema_json.eq(serde_json::to_string(schema).expect("schemas serialise")),
                parameter_schemas::created_at.eq(now()),
                parameter_schemas::created_by.eq(actor.user_id),
            ))
            .execute(conn)?;
        crate::contact::changes::record(
            conn,
            &[crate::contact::changes::Scope::Deployments, crate::contact::changes::Scope::Everyone],
        )?;
        let subject = format!("app:{app_id}");
        audit::record(
            conn,
            &actor.audit(
                "parameters.schema",
                &subject,
                None,
                &json!({"version": version, "keys": schema.keys.len()}),
            ),
        )?;
        Ok(version)
    })
}

/// The scopes from global down to the one named, checked against what the
/// caller may see and change.
#[derive(Debug, Clone)]
pub struct Chain {
    pub merchant_id: Option<i64>,
    /// (level, scope id), global first; the last is the target.
    pub scopes: Vec<(Level, i64)>,
}

fn chain_of(conn: &mut DbConnection, actor: &Actor, level: Level, scope_id: i64) -> Result<Chain, Error> {
    let mut scopes = vec![(Level::Global, 0)];
    let merchant_id = match level {
        Level::Global => {
            if scope_id != 0 || actor.operator_role().is_none() {
                return Err(Error::not_found("scope"));
            }
            None
        }
        Level::Merchant => {
            actor.check_merchant(scope_id, "merchant")?;
            rows::find_merchant(conn, scope_id)?.ok_or_else(|| Error::not_found("merchant"))?;
            scopes.push((Level::Merchant, scope_id));
            Some(scope_id)
        }
        Level::Location => {
            let location = crate::accounts::merchants::visible_location(conn, actor, scope_id)?;
            scopes.push((Level::Merchant, location.merchant_id));
            scopes.push((Level::Location, location.id));
            Some(location.merchant_id)
        }
        Level::Device => {
            let device = crate::devices::find(conn, scope_id)?
                .filter(|d| actor.sees_location(d.merchant_id, d.location_id))
                .ok_or_else(|| Error::not_found("device"))?;
            scopes.push((Level::Merchant, device.merchant_id));
            scopes.push((Level::Location, device.location_id));
            scopes.push((Level::Device, device.id));
            Some(device.merchant_id)
        }
    };
    Ok(Chain { merchant_id, scopes })
}

/// Who may change what a level sets: operators anything; a merchant's users
/// with `manage_settings` their merchant (merchant-wide) or the locations
/// and devices where they hold it.
fn require_change(conn: &mut DbConnection, actor: &Actor, chain: &Chain) -> Result<(), Error> {
    let (level, scope_id) = *chain.scopes.last().expect("a chain has a target");
    match (level, chain.merchant_id) {
        (Level::Global, _) => actor.require_operator(OPERATORS).map(|_| ()),
        // The merchant level reaches every location, so it takes someone who sees them all.
        (Level::Merchant, Some(m)) if actor.is_admin_of(m) => Ok(()),
        (Level::Merchant, Some(_)) => {
            Err(Error::forbidden("only the merchant's admins change merchant-wide parameters"))
        }
        (Level::Location, Some(m)) => actor.require(m, Some(scope_id), Permission::ManageSettings),
        (Level::Device, Some(m)) => {
            let location = chain.scopes.iter().find(|(l, _)| *l == Level::Location).map(|(_, id)| *id);
            let _ = conn;
            actor.require(m, location, Permission::ManageSettings)
        }
        _ => Err(Error::not_found("scope")),
    }
}

#[derive(Debug, Clone, Queryable)]
struct VersionRow {
    version: i64,
    sha256: String,
    created_at: chrono::NaiveDateTime,
    created_by_email: String,
    reason: String,
}

fn version_rows(
    conn: &mut DbConnection,
    app_id: &str,
    level: Level,
    scope_id: i64,
) -> Result<Vec<VersionRow>, DbError> {
    Ok(parameter_set_versions::table
        .filter(parameter_set_versions::app_id.eq(app_id))
        .filter(parameter_set_versions::level.eq(level.as_str()))
        .filter(parameter_set_versions::scope_id.eq(scope_id))
        .order(parameter_set_versions::version.desc())
        .select((
            parameter_set_versions::version,
            parameter_set_versions::sha256,
            parameter_set_versions::created_at,
            parameter_set_versions::created_by_email,
            parameter_set_versions::reason,
        ))
        .load(conn)?)
}

/// (version, blob digest) of each scope: the latest, or the one asked for.
fn versions_of(
    conn: &mut DbConnection,
    app_id: &str,
    scopes: &[(Level, i64)],
    wanted: Option<EffectiveVersion>,
) -> Result<Vec<(Level, u64, Option<String>)>, Error> {
    let mut out = Vec::new();
    for (level, scope_id) in scopes {
        let rows = version_rows(conn, app_id, *level, *scope_id)?;
        let pick = match wanted {
            None => rows.first(),
            Some(v) => {
                let n = v.0[level.index()];
                if n == 0 {
                    None
                } else {
                    Some(
                        rows.iter()
                            .find(|r| r.version as u64 == n)
                            .ok_or_else(|| Error::not_found(&format!("{level} parameter version {n}")))?,
                    )
                }
            }
        };
        out.push((*level, pick.map(|r| r.version as u64).unwrap_or(0), pick.map(|r| r.sha256.clone())));
    }
    Ok(out)
}

async fn load_set(blobs: &BlobStore, sha256: Option<&str>) -> Result<LevelSet, Error> {
    let Some(sha) = sha256 else { return Ok(LevelSet::default()) };
    let digest: Sha256Digest =
        sha.parse().map_err(|_| DbError::Corrupt(format!("parameter set digest {sha:?}")))?;
    let bytes = blobs.get_opened(SEALED_PURPOSE, &digest).await?;
    Ok(serde_json::from_slice(&bytes)
        .map_err(|e| DbError::Corrupt(format!("parameter set blob {sha}: {e}")))?)
}

async fn load_sets(
    blobs: &BlobStore,
    versions: &[(Level, u64, Option<String>)],
) -> Result<Vec<(Level, LevelSet)>, Error> {
    let mut out = Vec::with_capacity(versions.len());
    for (level, _, sha) in versions {
        out.push((*level, load_set(blobs, sha.as_deref()).await?));
    }
    Ok(out)
}

fn masked(schema: &Schema, values: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    values.iter().map(|(k, v)| (k.clone(), shown(schema, k, v))).collect()
}

fn set_view(
    schema: &Schema,
    app_id: &str,
    level: Level,
    scope_id: i64,
    version: u64,
    set: &LevelSet,
) -> ParameterSetView {
    ParameterSetView {
        app_id: app_id.to_owned(),
        level: level.as_str().to_owned(),
        scope_id,
        version,
        values: masked(schema, &set.values),
        locked: set.locked.clone(),
    }
}

/// What one level sets for one scope: now, or at an older version.
pub async fn show_scope(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    app_id: String,
    level: Level,
    scope_id: i64,
    version: Option<u64>,
) -> Result<ParameterSetView, Error> {
    // An older version stays readable: ask for it by number.
    let wanted = version.map(|n| {
        let mut numbers = [0u64; 4];
        numbers[level.index()] = n;
        EffectiveVersion(numbers)
    });
    let (schema, versions) = {
        let app_id = app_id.clone();
        db.run(move |conn| {
            let schema = schema_for(conn, &app_id)?;
            let chain = chain_of(conn, &actor, level, scope_id)?;
            let target = *chain.scopes.last().expect("target");
            Ok::<_, Error>((schema, versions_of(conn, &app_id, &[target], wanted)?))
        })
        .await?
    };
    let sets = load_sets(blobs, &versions).await?;
    Ok(set_view(&schema, &app_id, level, scope_id, versions[0].1, &sets[0].1))
}

/// What a change works from: the schema, the scopes from global down to
/// the target, and each one's latest version and set (global first).
struct Prepared {
    schema: Schema,
    chain: Chain,
    versions: Vec<(Level, u64, Option<String>)>,
    sets: Vec<(Level, LevelSet)>,
}

impl Prepared {
    /// The target's version and set.
    fn current(&self) -> (u64, &LevelSet) {
        (self.versions.last().expect("target").1, &self.sets.last().expect("target").1)
    }

    /// What the less specific levels set.
    fn above(&self) -> Vec<(Level, &LevelSet)> {
        self.sets[..self.sets.len() - 1].iter().map(|(l, s)| (*l, s)).collect()
    }

    fn levels(&self) -> Vec<(Level, &LevelSet)> {
        self.sets.iter().map(|(l, s)| (*l, s)).collect()
    }
}

/// Loads what a scope's parameters are worked out from; with a `change`,
/// checks first that the actor may make it.
async fn prepare(
    db: &Db,
    blobs: &BlobStore,
    actor: &Actor,
    app_id: &str,
    level: Level,
    scope_id: i64,
    change: Option<&ChangeParametersRequest>,
) -> Result<Prepared, Error> {
    let (schema, chain, versions) = {
        let (actor, app_id) = (actor.clone(), app_id.to_owned());
        let lock_change = change.is_some_and(|r| !r.lock.is_empty() || !r.unlock.is_empty());
        let changing = change.is_some();
        db.run(move |conn| {
            let schema = schema_for(conn, &app_id)?;
            let chain = chain_of(conn, &actor, level, scope_id)?;
            if changing {
                require_change(conn, &actor, &chain)?;
            }
            if lock_change {
                actor
                    .require_operator(OPERATORS)
                    .map_err(|_| Error::forbidden("only the payment provider's staff lock parameters"))?;
            }
            let versions = versions_of(conn, &app_id, &chain.scopes, None)?;
            Ok::<_, Error>((schema, chain, versions))
        })
        .await?
    };
    let sets = load_sets(blobs, &versions).await?;
    Ok(Prepared { schema, chain, versions, sets })
}

/// What the level would set after `request`, checked as a change is.
async fn planned(
    db: &Db,
    blobs: &BlobStore,
    actor: &Actor,
    app_id: &str,
    level: Level,
    scope_id: i64,
    request: &ChangeParametersRequest,
) -> Result<(Prepared, LevelSet), Error> {
    let p = prepare(db, blobs, actor, app_id, level, scope_id, Some(request)).await?;
    let operator = actor.operator_role().is_some_and(|r| OPERATORS.contains(&r));
    let next = apply_change(&p.schema, &p.above(), p.current().1, level, operator, change_of(request))
        .map_err(refusal)?;
    Ok((p, next))
}

fn origin_text(origin: Origin) -> String {
    serde_json::to_value(origin).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Active terminals a scope holds: what a change there may reach.
fn terminals_in_scope(conn: &mut DbConnection, level: Level, scope_id: i64) -> Result<u64, DbError> {
    let active = devices::table.filter(devices::status.eq("active")).into_boxed();
    let scoped = match level {
        Level::Global => active,
        Level::Merchant => active.filter(devices::merchant_id.eq(scope_id)),
        Level::Location => active.filter(devices::location_id.eq(scope_id)),
        Level::Device => active.filter(devices::id.eq(scope_id)),
    };
    let n: i64 = scoped.count().get_result(conn)?;
    Ok(n as u64)
}

/// A scope's parameters for a person: what the level sets here, what a
/// terminal of the scope without values of its own gets, the level each
/// value comes from, the level above that locked a key, and how many
/// terminals the scope holds.
pub async fn scope_overview(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    app_id: String,
    level: Level,
    scope_id: i64,
) -> Result<ScopeParametersView, Error> {
    let p = prepare(db, blobs, &actor, &app_id, level, scope_id, None).await?;
    let levels = p.levels();
    let effective_values = effective(&p.schema, &levels);
    let values = p
        .schema
        .keys
        .keys()
        .map(|key| {
            let found = effective_values.get(key);
            (
                key.clone(),
                ScopedValue {
                    value: found.map(|(v, _)| shown(&p.schema, key, v)),
                    origin: found.map(|(_, o)| origin_text(*o)),
                    locked_above: locked_above(&levels, key, level).map(|l| l.as_str().to_owned()),
                },
            )
        })
        .collect();
    let (version, set) = p.current();
    let set = set_view(&p.schema, &app_id, level, scope_id, version, set);
    let terminals = db.run(move |conn| terminals_in_scope(conn, level, scope_id)).await?;
    Ok(ScopeParametersView { set, schema: p.schema, effective: values, terminals })
}

/// What a change would do, saving nothing: each key whose value for the
/// scope's terminals, value set here or lock changes, before and after, and
/// how many terminals the scope holds. Refuses what [`change`] would refuse.
pub async fn preview_change(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    app_id: String,
    level: Level,
    scope_id: i64,
    request: ChangeParametersRequest,
) -> Result<ParameterChangePreview, Error> {
    let (p, next) = planned(db, blobs, &actor, &app_id, level, scope_id, &request).await?;
    let (version, current) = p.current();
    let before = effective(&p.schema, &p.levels());
    let mut after_levels = p.above();
    after_levels.push((level, &next));
    let after = effective(&p.schema, &after_levels);
    let show = |key: &str, found: Option<&(Value, Origin)>| {
        (found.map(|(v, _)| shown(&p.schema, key, v)), found.map(|(_, o)| origin_text(*o)))
    };
    let mut changes = Vec::new();
    for key in p.schema.keys.keys() {
        let lock = match (current.locked.contains(key), next.locked.contains(key)) {
            (false, true) => Some("locked".to_owned()),
            (true, false) => Some("unlocked".to_owned()),
            _ => None,
        };
        let (b, a) = (before.get(key), after.get(key));
        if b == a && lock.is_none() && current.values.get(key) == next.values.get(key) {
            continue;
        }
        let ((before, before_origin), (after, after_origin)) = (show(key, b), show(key, a));
        changes.push(KeyChange { key: key.clone(), before, before_origin, after, after_origin, lock });
    }
    let terminals = db.run(move |conn| terminals_in_scope(conn, level, scope_id)).await?;
    Ok(ParameterChangePreview {
        version: if next == *current { version } else { version + 1 },
        changes,
        terminals,
    })
}

fn change_of(request: &ChangeParametersRequest) -> Change<'_> {
    Change { set: &request.set, unset: &request.unset, lock: &request.lock, unlock: &request.unlock }
}

fn refusal(r: ChangeRefusal) -> Error {
    match r {
        ChangeRefusal::Locked { key, at } => Error::with_details(
            ErrorCode::ParameterLocked,
            format!("{key} is locked at the {at} level"),
            BTreeMap::from([("key".to_owned(), key), ("level".to_owned(), at.as_str().to_owned())]),
        ),
        ChangeRefusal::Invalid(e) => invalid(e),
    }
}

/// Applies a change as a new version of what the level sets for the scope.
pub async fn change(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    app_id: String,
    level: Level,
    scope_id: i64,
    request: ChangeParametersRequest,
) -> Result<ParameterSetView, Error> {
    let (prepared, next) = planned(db, blobs, &actor, &app_id, level, scope_id, &request).await?;
    let (current_version, current) = (prepared.current().0, prepared.current().1.clone());
    let Prepared { schema, chain, .. } = prepared;
    if next == current {
        return Ok(set_view(&schema, &app_id, level, scope_id, current_version, &current));
    }
    let json =
        to_canonical_json(&serde_json::to_value(&next).expect("sets serialise")).map_err(DbError::Signing)?;
    let (digest, sealed_with) = blobs.put_sealed(SEALED_PURPOSE, &json).await?;

    let changed = diff(&current.values, &next.values);
    let version = current_version + 1;
    let view = set_view(&schema, &app_id, level, scope_id, version, &next);
    let merchant_id = chain.merchant_id;
    let reason = request.reason.trim().to_owned();
    let detail = json!({
        "app_id": app_id, "level": level.as_str(), "scope_id": scope_id, "version": version, "reason": reason,
        "changed": masked(&schema, &changed.changed), "removed": changed.removed,
        "locked": request.lock, "unlocked": request.unlock,
    });
    db.run(move |conn| {
        crate::db::write_tx(conn, |conn| {
            diesel::insert_into(parameter_set_versions::table)
                .values((
                    parameter_set_versions::app_id.eq(&app_id),
                    parameter_set_versions::level.eq(level.as_str()),
                    parameter_set_versions::scope_id.eq(scope_id),
                    parameter_set_versions::version.eq(version as i64),
                    parameter_set_versions::sha256.eq(digest.to_hex()),
                    parameter_set_versions::created_at.eq(now()),
                    parameter_set_versions::created_by.eq(actor.user_id),
                    parameter_set_versions::created_by_email.eq(&actor.email),
                    parameter_set_versions::reason.eq(&reason),
                    parameter_set_versions::sealed_with.eq(&sealed_with),
                ))
                .execute(conn)?;
            use crate::contact::changes::{self, Scope};
            let scope = match level {
                Level::Global => Scope::Everyone,
                Level::Merchant => Scope::Merchant(scope_id),
                Level::Location => Scope::Location(scope_id),
                Level::Device => Scope::Device(scope_id),
            };
            changes::record(conn, &[scope])?;
            let subject = format!("parameters:{app_id}:{}:{scope_id}", level.as_str());
            audit::record(conn, &actor.audit("parameters.change", &subject, merchant_id, &detail))?;
            Ok::<_, Error>(())
        })
    })
    .await?;
    Ok(view)
}

/// The versions of what a level set for a scope, newest first.
pub async fn history(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    app_id: String,
    level: Level,
    scope_id: i64,
) -> Result<Vec<ParameterVersionView>, Error> {
    let rows = {
        let app_id = app_id.clone();
        db.run(move |conn| {
            schema_for(conn, &app_id)?;
            chain_of(conn, &actor, level, scope_id)?;
            Ok::<_, Error>(version_rows(conn, &app_id, level, scope_id)?)
        })
        .await?
    };
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let this = load_set(blobs, Some(&row.sha256)).await?;
        let before = match rows.get(i + 1) {
            Some(prev) => load_set(blobs, Some(&prev.sha256)).await?,
            None => LevelSet::default(),
        };
        let d = diff(&before.values, &this.values);
        let mut keys: Vec<String> = d.changed.keys().cloned().chain(d.removed).collect();
        keys.extend(this.locked.symmetric_difference(&before.locked).cloned());
        keys.sort();
        keys.dedup();
        out.push(ParameterVersionView {
            version: row.version as u64,
            created_at: rfc3339(row.created_at),
            created_by: row.created_by_email.clone(),
            reason: row.reason.clone(),
            keys_changed: keys,
        });
    }
    Ok(out)
}

/// The device's effective parameters, latest or at a given version, unmasked
/// (for terminals) with where each value came from.
pub async fn effective_for_device(
    db: &Db,
    blobs: &BlobStore,
    actor: Option<Actor>,
    device_id: i64,
    app_id: String,
    at: Option<EffectiveVersion>,
) -> Result<(Schema, EffectiveVersion, BTreeMap<String, (Value, Origin)>), Error> {
    let (schema, versions) = {
        let app_id = app_id.clone();
        db.run(move |conn| {
            let schema = schema_for(conn, &app_id)?;
            let device = crate::devices::find(conn, device_id)?.ok_or_else(|| Error::not_found("device"))?;
            if let Some(actor) = &actor
                && !actor.sees_location(device.merchant_id, device.location_id)
            {
                return Err(Error::not_found("device"));
            }
            let scopes = [
                (Level::Global, 0),
                (Level::Merchant, device.merchant_id),
                (Level::Location, device.location_id),
                (Level::Device, device.id),
            ];
            Ok::<_, Error>((schema, versions_of(conn, &app_id, &scopes, at)?))
        })
        .await?
    };
    let sets = load_sets(blobs, &versions).await?;
    let mut numbers = [0u64; 4];
    for (level, n, _) in &versions {
        numbers[level.index()] = *n;
    }
    let levels: Vec<(Level, &LevelSet)> = sets.iter().map(|(l, s)| (*l, s)).collect();
    Ok((schema.clone(), EffectiveVersion(numbers), effective(&schema, &levels)))
}

pub async fn device_view(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    device_id: i64,
    app_id: String,
) -> Result<EffectiveParametersView, Error> {
    let (schema, version, values) =
        effective_for_device(db, blobs, Some(actor), device_id, app_id.clone(), None).await?;
    Ok(EffectiveParametersView {
        app_id,
        device_id,
        version: version.to_string(),
        values: values
            .iter()
            .map(|(k, (v, origin))| {
                let origin = serde_json::to_value(origin)
                    .ok()
                    .and_then(|o| o.as_str().map(str::to_owned))
                    .unwrap_or_default();
                (k.clone(), EffectiveValue { value: shown(&schema, k, v), origin })
            })
            .collect(),
    })
}

/// Key-level difference between two versions of what a device sees.
pub async fn device_diff(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    device_id: i64,
    app_id: String,
    from: EffectiveVersion,
    to: EffectiveVersion,
) -> Result<ParameterDiffView, Error> {
    let (schema, _, old) =
        effective_for_device(db, blobs, Some(actor.clone()), device_id, app_id.clone(), Some(from)).await?;
    let (_, _, new) = effective_for_device(db, blobs, Some(actor), device_id, app_id, Some(to)).await?;
    let values = |m: BTreeMap<String, (Value, Origin)>| {
        m.into_iter().map(|(k, (v, _))| (k, v)).collect::<BTreeMap<_, _>>()
    };
    let d = diff(&values(old), &values(new));
    Ok(ParameterDiffView {
        from: from.to_string(),
        to: to.to_string(),
        changed: masked(&schema, &d.changed),
        removed: d.removed,
    })
}

/// Active terminals whose merchant-menu password is weak: still the
/// default, one repeated digit or a run of consecutive digits.
pub async fn weak_password_report(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    merchant_id: Option<i64>,
) -> Result<Vec<ReportedDevice>, Error> {
    let merchant_filter = match (actor.merchant_id(), merchant_id) {
        (Some(own), Some(m)) if own != m => return Err(Error::not_found("merchant")),
        (Some(own), _) => {
            if !actor.is_admin_of(own) && !actor.may(own, None, Permission::ManageSettings) {
                return Err(Error::forbidden("this needs the manage_settings permission"));
            }
            Some(own)
        }
        (None, m) => {
            actor.require_operator(OPERATORS)?;
            m
        }
    };
    let (found, scope_versions) = db
        .run(move |conn| {
            let mut query = devices::table.filter(devices::status.eq(crate::devices::ACTIVE)).into_boxed();
            if let Some(m) = merchant_filter {
                query = query.filter(devices::merchant_id.eq(m));
            }
            let found: Vec<(i64, String, i64, i64)> = query
                .order(devices::id)
                .select((devices::id, devices::name, devices::merchant_id, devices::location_id))
                .load(conn)?;
            // The latest version of every scope that ever set terminal parameters.
            let latest: Vec<(String, i64, i64, String)> = parameter_set_versions::table
                .filter(parameter_set_versions::app_id.eq(TERMINAL_APP))
                .order((
                    parameter_set_versions::level,
                    parameter_set_versions::scope_id,
                    parameter_set_versions::version.desc(),
                ))
                .select((
                    parameter_set_versions::level,
                    parameter_set_versions::scope_id,
                    parameter_set_versions::version,
                    parameter_set_versions::sha256,
                ))
                .load(conn)?;
            Ok::<_, Error>((found, latest))
        })
        .await?;
    let mut sets: BTreeMap<(String, i64), LevelSet> = BTreeMap::new();
    for (level, scope, _, sha) in scope_versions {
        if let std::collections::btree_map::Entry::Vacant(e) = sets.entry((level, scope)) {
            e.insert(load_set(blobs, Some(&sha)).await?);
        }
    }
    let schema = Schema::terminal();
    let empty = LevelSet::default();
    let get = |level: Level, scope: i64| sets.get(&(level.as_str().to_owned(), scope)).unwrap_or(&empty);
    Ok(found
        .into_iter()
        .filter(|(_, _, merchant, location)| actor.sees_location(*merchant, *location))
        .filter_map(|(device_id, name, merchant_id, location_id)| {
            let levels = [
                (Level::Global, get(Level::Global, 0)),
                (Level::Merchant, get(Level::Merchant, merchant_id)),
                (Level::Location, get(Level::Location, location_id)),
                (Level::Device, get(Level::Device, device_id)),
            ];
            let effective = effective(&schema, &levels);
            // A value set before passwords were checked may be empty or
            // not digits: as weak as the default.
            let reason = match effective.get(MERCHANT_PASSWORD_KEY).map(|(v, _)| v) {
                Some(Value::String(pin)) => weak_pin_reason(pin).or_else(|| {
                    let malformed =
                        schema.check(MERCHANT_PASSWORD_KEY, &Value::from(pin.as_str()), Level::Device);
                    malformed.is_err().then_some("malformed")
                }),
                _ => Some("unset"),
            }?;
            Some(ReportedDevice { device_id, name, merchant_id, location_id, reason: reason.to_owned() })
        })
        .collect())
}

/// Every version of the parameter sets of `apps` at a device's scopes:
/// (app id, level, version, blob digest).
pub fn versions_at_scopes(
    conn: &mut DbConnection,
    apps: &[String],
    scopes: &[(Level, i64); 4],
) -> Result<Vec<(String, Level, u64, String)>, DbError> {
    use parameter_set_versions as p;
    let mut rows: Vec<(String, String, i64, String)> = Vec::new();
    if matches!(conn, DbConnection::Postgres(_)) {
        // PostgreSQL plans the scopes OR-ed as index seeks, and there every
        // query is a round trip: one for the whole contact (a sixth of the
        // server's CPU in a storm went to the sixteen it was).
        let [(l0, s0), (l1, s1), (l2, s2), (l3, s3)] = scopes;
        rows = p::table
            .filter(p::app_id.eq_any(apps))
            .filter(
                (p::level.eq(l0.as_str()).and(p::scope_id.eq(s0)))
                    .or(p::level.eq(l1.as_str()).and(p::scope_id.eq(s1)))
                    .or(p::level.eq(l2.as_str()).and(p::scope_id.eq(s2)))
                    .or(p::level.eq(l3.as_str()).and(p::scope_id.eq(s3))),
            )
            .select((p::app_id, p::level, p::version, p::sha256))
            .load(conn)?;
    } else {
        // SQLite: one query per app and scope (a terminal has a few apps
        // with parameters): each seeks the unique index on (app, level,
        // scope) and has a fixed shape, prepared once per connection. One
        // query per app with the four scopes OR-ed was planned as a scan of
        // every version of the app at every scope: after a change on 1,000
        // locations, half the server's CPU. (An `IN (…)` list on SQLite is
        // parsed again each call.)
        for app in apps {
            for (level, scope_id) in scopes {
                rows.extend(
                    p::table
                        .filter(p::app_id.eq(app))
                        .filter(p::level.eq(level.as_str()))
                        .filter(p::scope_id.eq(scope_id))
                        .select((p::app_id, p::level, p::version, p::sha256))
                        .load::<(String, String, i64, String)>(conn)?,
                );
            }
        }
    }
    Ok(rows
        .into_iter()
        .filter_map(|(app, level, version, sha)| {
            let level = Level::ALL.into_iter().find(|l| l.as_str() == level)?;
            Some((app, level, version as u64, sha))
        })
        .collect())
}

/// Parameter-set blobs by digest: content-addressed, so never stale. Bounded.
#[derive(Default)]
pub struct SetCache {
    sets: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<LevelSet>>>,
}

impl SetCache {
    const MAX: usize = 50_000;

    pub async fn get(&self, blobs: &BlobStore, sha256: &str) -> Result<std::sync::Arc<LevelSet>, Error> {
        if let Some(set) = self.sets.lock().expect("not poisoned").get(sha256) {
            return Ok(set.clone());
        }
        let set = std::sync::Arc::new(load_set(blobs, Some(sha256)).await?);
        let mut sets = self.sets.lock().expect("not poisoned");
        if sets.len() >= Self::MAX {
            sets.clear();
        }
        sets.insert(sha256.to_owned(), set.clone());
        Ok(set)
    }
}

/// Every registered app schema, latest version each (the terminal's is built in).
pub fn all_schemas(conn: &mut DbConnection) -> Result<BTreeMap<String, Schema>, DbError> {
    let rows: Vec<(String, i64, String)> = parameter_schemas::table
        .select((parameter_schemas::app_id, parameter_schemas::version, parameter_schemas::schema_json))
        .order((parameter_schemas::app_id, parameter_schemas::version))
        .load(conn)?;
    let mut out = BTreeMap::new();
    for (app, _, json) in rows {
        let schema: Schema =
            serde_json::from_str(&json).map_err(|e| DbError::Corrupt(format!("parameter schema: {e}")))?;
        out.insert(app, schema);
    }
    out.insert(TERMINAL_APP.to_owned(), Schema::terminal());
    Ok(out)
}
