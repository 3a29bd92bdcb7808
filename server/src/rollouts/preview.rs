//! What a deployment would reach, before anyone saves it: the console's
//! "reaches 12,345 terminals; 40 are incompatible" and the live size of a
//! device group. Reads only; the same walk over the target as the rollout's
//! tally, so the preview and the counts that follow agree.

use std::collections::BTreeMap;

use diesel::prelude::*;
use tms_packages::contact::{Skip, compatibility_of};
use tms_packages::wire::deployments::{CreateDeploymentRequest, DeploymentPreview, IncompatibleTerminals};

use super::deployments::{self, ParsedTarget, READERS, SHIPPERS};
use super::each_targeted;
use crate::accounts::access::Actor;
use crate::db::schema::apps;
use crate::db::{DbConnection, DbError};
use crate::error::Error;

/// What `request` would reach if it were saved now. Refuses what
/// [`deployments::create`] would refuse (an unknown app, release or target,
/// a withdrawn release), so a preview that answers means the save can.
pub fn preview(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &CreateDeploymentRequest,
) -> Result<DeploymentPreview, Error> {
    actor.require_operator(SHIPPERS)?;
    let visibility: String = apps::table
        .find(&request.app_id)
        .select(apps::visibility)
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("app"))?;
    let candidate =
        deployments::release_to_deliver(conn, request)?.map(|r| deployments::candidate(&r)).transpose()?;
    let target = deployments::parse_target(conn, &request.target)?;
    // As the planner: an operator's release of a store or private app only
    // updates terminals that have it.
    let update_only = candidate.as_ref().is_some_and(|c| !c.firmware) && visibility != "system";
    let mut preview =
        DeploymentPreview { targeted: 0, receive: 0, already: 0, without_app: 0, incompatible: Vec::new() };
    let mut incompatible: BTreeMap<(String, &'static str, Option<String>), u64> = BTreeMap::new();
    each_targeted(
        conn,
        &request.app_id,
        &target,
        |_| true,
        |device| {
            preview.targeted += 1;
            let Some(c) = &candidate else {
                match device.installed_code {
                    Some(_) => preview.receive += 1,
                    None => preview.without_app += 1,
                }
                return;
            };
            match compatibility_of(device.model, device.firmware.unwrap_or_default(), c) {
                Some(Skip::FirmwareTooOld { needs, .. }) => {
                    *incompatible.entry((device.model.to_owned(), "firmware", Some(needs))).or_default() += 1;
                }
                Some(_) => *incompatible.entry((device.model.to_owned(), "model", None)).or_default() += 1,
                None if device.installed_code.is_some_and(|has| has >= c.version_code) => {
                    preview.already += 1
                }
                None if update_only && device.installed_code.is_none() => preview.without_app += 1,
                None => preview.receive += 1,
            }
        },
    )?;
    preview.incompatible = incompatible
        .into_iter()
        .map(|((model, reason, needs_firmware), terminals)| IncompatibleTerminals {
            model,
            reason: reason.to_owned(),
            needs_firmware,
            terminals,
        })
        .collect();
    Ok(preview)
}

/// How many active terminals a device group holds now: its list, or for a
/// dynamic group the terminals whose last report matches its filter.
pub fn group_size(conn: &mut DbConnection, actor: &Actor, group_id: i64) -> Result<u64, Error> {
    actor.require_operator(READERS)?;
    Ok(count(conn, &ParsedTarget { kind: "group", id: Some(group_id), devices: Vec::new() })?)
}

fn count(conn: &mut DbConnection, target: &ParsedTarget) -> Result<u64, DbError> {
    let mut n = 0u64;
    each_targeted(conn, "", target, |_| true, |_| n += 1)?;
    Ok(n)
}
