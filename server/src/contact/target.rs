//! A terminal's target, computed from the database: which deployment decides
//! each app, its parameters and due acquirer sessions, and the difference
//! from what it reported. The contact's slow path and `device plan` share it.

use std::collections::BTreeMap;

use serde_json::Value;
use tms_packages::contact::AppPlan;
use tms_packages::parameters::{
    CONTACT_INTERVAL_KEY, EffectiveVersion, Level, LevelSet, Schema, TERMINAL_APP, diff, effective,
};
use tms_packages::wire::contact::{ContactBody, ParameterUpdate, TerminalState};

use crate::blobs::BlobStore;
use crate::db::Db;
use crate::devices::CallingDevice;
use crate::error::Error;
use crate::parameters::SetCache;
use crate::rollouts::deployments::Snapshot;

/// Used when the terminal's parameters name no interval.
pub const DEFAULT_INTERVAL_SECS: u64 = 300;
/// A computed target is looked at again at least this often, for what
/// changes with time alone (an acquirer's parameters expiring, say).
const MAX_VALIDITY_SECS: i64 = 3_600;

/// The registered device, as the contact needs it.
#[derive(Debug, Clone)]
pub struct Device {
    pub calling: CallingDevice,
    pub model: String,
    /// A Linux device on DDI: firmware images only; no app, parameter,
    /// acquirer session or command reaches it.
    pub firmware_only: bool,
    /// Deployments held back from it after failed attempts.
    pub holds: Vec<Hold>,
    /// Its open commands, oldest first (read with the device).
    pub commands: Vec<tms_packages::wire::commands::CommandInstruction>,
    /// The free storage it reported (0: not reported).
    pub free_storage_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Computed {
    pub plans: Vec<AppPlan>,
    /// Per app with parameters: (the version the terminal holds, the current one).
    pub parameter_versions: Vec<(String, Option<String>, String)>,
    pub acquirers_due: Vec<String>,
    pub body: ContactBody,
    pub in_sync: bool,
    /// Until when (Unix seconds) this holds if nothing is changed.
    pub valid_until: i64,
    pub interval_secs: u64,
    /// A maintenance window with a waiting change opens in this many seconds.
    pub window_opens_in: Option<u32>,
    /// Changes held back after failed attempts, by app.
    pub held: Vec<(String, Hold)>,
    /// Changes held back for want of storage: (app, bytes needed, bytes free).
    pub short_of_space: Vec<(String, u64, u64)>,
}

async fn values_of(
    sets: &SetCache,
    blobs: &BlobStore,
    schema: &Schema,
    levels: &[(Level, &str)],
) -> Result<BTreeMap<String, Value>, Error> {
    let mut loaded = Vec::with_capacity(levels.len());
    for (level, sha) in levels {
        loaded.push((*level, sets.get(blobs, sha).await?));
    }
    let refs: Vec<(Level, &LevelSet)> = loaded.iter().map(|(l, s)| (*l, s.as_ref())).collect();
    Ok(effective(schema, &refs).into_iter().map(|(k, (v, _))| (k, v)).collect())
}

pub use tms_packages::targets::{Deliveries, Hold, Registered, plan_apps};

#[allow(clippy::too_many_arguments)]
pub async fn compute(
    db: &Db,
    blobs: &BlobStore,
    sets: &SetCache,
    snapshot: &Snapshot,
    device: &Device,
    state: &TerminalState,
    utc_offset_minutes: i32,
    now: i64,
) -> Result<Computed, Error> {
    let registered = Registered {
        device_id: device.calling.id,
        merchant_id: device.calling.merchant_id,
        location_id: device.calling.location_id,
        model: &device.model,
        holds: &device.holds,
        free_storage_bytes: device.free_storage_bytes,
        firmware_only: device.firmware_only,
    };
    let (
        plans,
        Deliveries {
            apps,
            firmware,
            mut target,
            mut valid_until,
            window_opens_in,
            held: held_back,
            short_of_space,
        },
    ) = plan_apps(snapshot, &registered, state, utc_offset_minutes, now, now + MAX_VALIDITY_SECS);
    let mut body = ContactBody { apps, firmware, ..ContactBody::default() };

    // Parameters: the terminal's own, and those of every app it will have
    // that has a schema; every version at its four scopes in one query, the
    // sets themselves from the content-addressed cache.
    let mut apps: Vec<String> = vec![TERMINAL_APP.to_owned()];
    apps.extend(
        target
            .apps
            .iter()
            .map(|a| a.app_id.clone())
            .filter(|a| a != TERMINAL_APP && snapshot.schemas.contains_key(a)),
    );
    let c = &device.calling;
    let scopes = [
        (Level::Global, 0),
        (Level::Merchant, c.merchant_id),
        (Level::Location, c.location_id),
        (Level::Device, c.id),
    ];
    let rows = {
        let apps = apps.clone();
        db.run(move |conn| crate::parameters::versions_at_scopes(conn, &apps, &scopes)).await?
    };
    let mut interval_secs = DEFAULT_INTERVAL_SECS;
    let mut parameter_versions = Vec::new();
    for app_id in apps {
        let Some(schema) = snapshot.schemas.get(&app_id) else { continue };
        let of_app: Vec<&(String, Level, u64, String)> = rows.iter().filter(|r| r.0 == app_id).collect();
        // The sets at given version numbers per level (0: none); None when one is unknown.
        let at = |numbers: [u64; 4]| -> Option<Vec<(Level, &str)>> {
            let mut out = Vec::new();
            for level in Level::ALL {
                let n = numbers[level.index()];
                if n == 0 {
                    continue;
                }
                let row = of_app.iter().find(|r| r.1 == level && r.2 == n)?;
                out.push((level, row.3.as_str()));
            }
            Some(out)
        };
        let mut latest = [0u64; 4];
        for r in &of_app {
            latest[r.1.index()] = latest[r.1.index()].max(r.2);
        }
        let current = EffectiveVersion(latest);
        let values = values_of(sets, blobs, schema, &at(latest).expect("latest versions exist")).await?;
        if app_id == TERMINAL_APP
            && let Some(n) = values.get(CONTACT_INTERVAL_KEY).and_then(Value::as_u64)
        {
            interval_secs = n;
        }
        if device.firmware_only {
            // Its interval alone counts: it takes no parameters.
            continue;
        }
        let held = state.parameters.get(&app_id).cloned();
        let current_text = current.to_string();
        parameter_versions.push((app_id.clone(), held.clone(), current_text.clone()));
        if held.as_deref() == Some(current_text.as_str()) {
            continue;
        }
        let before = held.as_deref().and_then(|h| h.parse::<EffectiveVersion>().ok()).and_then(|v| at(v.0));
        let update = match before {
            Some(levels) => {
                let old = values_of(sets, blobs, schema, &levels).await?;
                let d = diff(&old, &values);
                ParameterUpdate {
                    app_id: app_id.clone(),
                    version: current_text.clone(),
                    full: false,
                    changed: d.changed,
                    removed: d.removed,
                }
            }
            None => ParameterUpdate {
                app_id: app_id.clone(),
                version: current_text.clone(),
                full: true,
                changed: values,
                removed: Vec::new(),
            },
        };
        target.parameters.insert(app_id, current_text);
        body.parameters.push(update);
    }

    let calling = device.calling.clone();
    let held = state.acquirers.clone();
    let firmware_only = device.firmware_only;
    let (due, expiry) = db
        .run(move |conn| {
            if firmware_only {
                return Ok((Vec::new(), None));
            }
            let due = crate::acquirers::due_sessions(conn, &calling, &held)?;
            Ok::<_, Error>((due, crate::acquirers::next_expiry(conn, calling.merchant_id)?))
        })
        .await?;
    if let Some(at) = expiry {
        valid_until = valid_until.min(at.and_utc().timestamp() + 1);
    }
    for (acquirer, version) in &due {
        target.acquirers.insert(acquirer.clone(), *version);
        body.acquirer_sessions.push(acquirer.clone());
    }

    // Commands from support or the merchant. A terminal with one open is
    // answered from the database at every contact until it reports (its
    // target is not kept valid); one without pays nothing on the fast path.
    if !device.firmware_only {
        body.commands = device.commands.clone();
    }
    if !body.commands.is_empty() {
        valid_until = now;
    }

    let in_sync = body.apps.is_empty()
        && body.firmware.is_none()
        && body.parameters.is_empty()
        && body.acquirer_sessions.is_empty()
        && body.commands.is_empty();
    body.target_digest = target.digest();
    if !in_sync {
        body.device_id = Some(device.calling.id);
        body.state_digest = Some(state.digest());
    }
    Ok(Computed {
        plans,
        parameter_versions,
        acquirers_due: due.into_iter().map(|(a, _)| a).collect(),
        body,
        in_sync,
        valid_until,
        interval_secs,
        window_opens_in,
        held: held_back,
        short_of_space,
    })
}
