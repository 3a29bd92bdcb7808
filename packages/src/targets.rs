//! A terminal's target as the deployments decide it, pure: the deployments
//! known at one moment (a [`Snapshot`]), which are in force at a time, the
//! planner's decisions turned into the instructions of an answer, and the
//! state the terminal has once it applied them. The server's contact fills
//! the snapshot from its database and calls [`plan_apps`] on the slow path
//! and on the in-memory re-plan alike, so both answer the same.

use std::collections::HashMap;

use crate::contact::{AppPlan, Change, Deployment, DeviceFacts, Payload, local_secs_of_day, plan};
use crate::wire::contact::{AppInstruction, DeltaOffer, InstalledApp, ReleaseOffer, TerminalState};

/// What the contact needs to know about one deployment beyond the plan.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub offer: Option<ReleaseOffer>,
    /// Deltas to the offered release, from earlier artifacts.
    pub deltas: Vec<DeltaOffer>,
    pub wifi_only: bool,
    pub starts_at: i64,
    pub expires_at: Option<i64>,
}

/// Every deployment that may deliver something, as of one read.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub deployments: Vec<Deployment>,
    pub deliveries: HashMap<i64, Delivery>,
    /// The latest parameter schema of every app that has one.
    pub schemas: std::collections::BTreeMap<String, crate::parameters::Schema>,
}

impl Snapshot {
    /// The deployments in force at `now` (Unix seconds), and the next time
    /// that set changes by the clock alone (a start or an expiry).
    pub fn in_force(&self, now: i64) -> (Vec<&Deployment>, Option<i64>) {
        let mut next: Option<i64> = None;
        let mut out = Vec::with_capacity(self.deployments.len());
        for d in &self.deployments {
            let Some(delivery) = self.deliveries.get(&d.id) else { continue };
            let edge = if delivery.starts_at > now {
                Some(delivery.starts_at)
            } else if let Some(e) = delivery.expires_at.filter(|e| *e > now) {
                out.push(d);
                Some(e)
            } else if delivery.expires_at.is_none() {
                out.push(d);
                None
            } else {
                None
            };
            if let Some(e) = edge {
                next = Some(next.map_or(e, |n: i64| n.min(e)));
            }
        }
        (out, next)
    }
}

/// What the deployments in force change on a terminal, before parameters
/// and acquirer sessions: the instructions and the state it has once it
/// applied them.
pub struct Deliveries {
    pub apps: Vec<AppInstruction>,
    pub firmware: Option<AppInstruction>,
    pub target: TerminalState,
    /// `valid_until` as given, or earlier when a window or a deployment's
    /// start or expiry changes the plan first.
    pub valid_until: i64,
    /// A maintenance window with a waiting change opens in this many seconds.
    pub window_opens_in: Option<u32>,
    /// Changes not offered because their deployment is held back, by app.
    pub held: Vec<(String, Hold)>,
    /// Changes not offered because the artifact does not fit in the free
    /// storage the terminal reported: (app, bytes needed, bytes free).
    pub short_of_space: Vec<(String, u64, u64)>,
}

/// A change held for want of storage is looked at again this often: the
/// terminal's free space is not part of its state, so nothing else would
/// bring its next report to the planner.
pub const STORAGE_RECHECK_SECS: i64 = 600;

impl Deliveries {
    /// Whether the target has an app with a parameter schema that the
    /// reported state lacks: its parameters need the database.
    pub fn installs_app_with_parameters(&self, snapshot: &Snapshot, state: &TerminalState) -> bool {
        self.target.apps.iter().any(|a| {
            snapshot.schemas.contains_key(&a.app_id) && !state.apps.iter().any(|s| s.app_id == a.app_id)
        })
    }
}

/// A terminal as the planner needs it besides its reported state.
pub struct Registered<'a> {
    pub device_id: i64,
    pub merchant_id: i64,
    pub location_id: i64,
    pub model: &'a str,
    /// Deployments whose release failed on it and waits before another offer.
    pub holds: &'a [Hold],
    /// The free storage it reported with this contact; 0 when it did not
    /// say (older terminals), which holds nothing back.
    pub free_storage_bytes: u64,
    /// A device that takes firmware images only (a Linux device speaking
    /// DDI): deployments of apps pass it by.
    pub firmware_only: bool,
}

/// A deployment held back from one terminal after failed attempts: its
/// change is not offered until `until` (Unix seconds), or never again when
/// the attempts ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub deployment_id: i64,
    pub attempts: u32,
    /// `None`: failed for good.
    pub until: Option<i64>,
}

impl Hold {
    pub fn holds_at(&self, now: i64) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// Plans a terminal's apps from the state it reports and turns the plans
/// into instructions: the part of its target the deployments decide. The
/// slow path and the in-memory re-plan share it, so both answer alike.
pub fn plan_apps(
    snapshot: &Snapshot,
    device: &Registered<'_>,
    state: &TerminalState,
    utc_offset_minutes: i32,
    now: i64,
    valid_until: i64,
) -> (Vec<AppPlan>, Deliveries) {
    let facts = DeviceFacts {
        device_id: device.device_id,
        merchant_id: device.merchant_id,
        location_id: device.location_id,
        model: device.model.to_owned(),
        firmware: state.firmware.clone(),
        installed: state
            .apps
            .iter()
            .map(|a| (a.app_id.clone(), (a.version.clone(), a.version_code)))
            .collect(),
    };
    let local = local_secs_of_day(now, utc_offset_minutes);
    let mut in_force = snapshot.in_force(now);
    if device.firmware_only {
        in_force.0.retain(|d| matches!(&d.payload, Payload::Release(c) if c.firmware));
    }
    let plans = plan(&facts, &in_force.0, local);
    let found = deliveries(
        snapshot,
        &in_force,
        &plans,
        state,
        (device.holds, device.free_storage_bytes),
        local,
        now,
        valid_until,
    );
    (plans, found)
}

/// The release offer of a delivery for this terminal: with the delta from
/// exactly the artifact it runs of this app, if there is one. Matched by
/// sha256, never by version: a terminal whose artifact differs gets none.
fn offer_for(delivery: &Delivery, state: &TerminalState, app_id: &str) -> Option<ReleaseOffer> {
    let mut offer = delivery.offer.clone()?;
    let installed = if offer.manifest.kind == "firmware" {
        state.firmware_sha256.as_deref()
    } else {
        state.apps.iter().find(|a| a.app_id == app_id).map(|a| a.sha256.as_str())
    };
    offer.delta = installed.and_then(|sha| delivery.deltas.iter().find(|d| d.base_sha256 == sha)).cloned();
    Some(offer)
}

/// Turns the planner's decisions into instructions. `in_force` is as
/// [`Snapshot::in_force`] gives it. A change whose deployment is held back
/// waits, as for a maintenance window: nothing else is offered for its app
/// meanwhile, so a failing release is not swapped for an older one.
#[allow(clippy::too_many_arguments)]
fn deliveries(
    snapshot: &Snapshot,
    (in_force, next_edge): &(Vec<&Deployment>, Option<i64>),
    plans: &[AppPlan],
    state: &TerminalState,
    (holds, free_storage_bytes): (&[Hold], u64),
    local_secs: u32,
    now: i64,
    valid_until: i64,
) -> Deliveries {
    let mut out = Deliveries {
        apps: Vec::new(),
        firmware: None,
        target: state.clone(),
        valid_until: next_edge.map_or(valid_until, |edge| valid_until.min(edge)),
        window_opens_in: None,
        held: Vec::new(),
        short_of_space: Vec::new(),
    };
    for p in plans {
        let Some(decided) = p.deployment_id else { continue };
        let deployment = in_force.iter().find(|d| d.id == decided).expect("plans name deployments in force");
        if let Some(w) = deployment.window {
            out.valid_until = out.valid_until.min(now + i64::from(w.secs_to_next_edge(local_secs)));
        }
        let Some(change) = &p.change else { continue };
        if let Some(secs) = p.deferred_secs {
            out.window_opens_in = Some(out.window_opens_in.map_or(secs, |s| s.min(secs)));
            continue;
        }
        if let Some(hold) = holds.iter().find(|h| h.deployment_id == decided && h.holds_at(now)) {
            if let Some(until) = hold.until {
                out.valid_until = out.valid_until.min(until);
            }
            out.held.push((p.app_id.clone(), *hold));
            continue;
        }
        let delivery = snapshot.deliveries.get(&decided).expect("deliveries follow deployments");
        let action = match change {
            Change::Install { action, .. }
            | Change::Update { action, .. }
            | Change::Rollback { action, .. } => *action,
            Change::Remove => deployment.action,
        };
        let instruction = AppInstruction {
            app_id: p.app_id.clone(),
            change: change.kind(),
            deployment_id: decided,
            action,
            wifi_only: delivery.wifi_only,
            release: if matches!(change, Change::Remove) {
                None
            } else {
                offer_for(delivery, state, &p.app_id)
            },
        };
        // The artifact is written whole even when a delta brings it.
        if let Some(offer) = &instruction.release
            && free_storage_bytes > 0
            && offer.size > free_storage_bytes
        {
            out.short_of_space.push((p.app_id.clone(), offer.size, free_storage_bytes));
            out.valid_until = out.valid_until.min(now + STORAGE_RECHECK_SECS);
            continue;
        }
        let target = &mut out.target;
        match (&instruction.release, change) {
            (_, Change::Remove) => target.apps.retain(|a| a.app_id != p.app_id),
            (Some(offer), _) if offer.manifest.kind == "firmware" => {
                target.firmware = offer.version.clone();
                // A terminal that reports its image's sha256 reports the new one.
                if target.firmware_sha256.is_some() {
                    target.firmware_sha256 = Some(offer.sha256.clone());
                }
            }
            (Some(offer), _) => {
                target.apps.retain(|a| a.app_id != p.app_id);
                target.apps.push(InstalledApp {
                    app_id: p.app_id.clone(),
                    version: offer.version.clone(),
                    version_code: offer.version_code,
                    sha256: offer.sha256.clone(),
                });
            }
            (None, _) => continue,
        }
        let is_firmware = instruction.release.as_ref().is_some_and(|o| o.manifest.kind == "firmware");
        if is_firmware {
            out.firmware.get_or_insert(instruction);
        } else {
            out.apps.push(instruction);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::contact::{ActionType, Candidate, DeliveryMode, Payload, Target};
    use crate::releases::ReleaseManifest;

    const APPS: [&str; 3] = ["eu.ccv.salespoint", "eu.ccv.tips", "eu.ccv.loyalty"];

    /// Terminal 5, free of holds, that reported no free storage.
    fn device_5() -> Registered<'static> {
        Registered {
            device_id: 5,
            merchant_id: 1,
            location_id: 10,
            model: "A920",
            holds: &[],
            free_storage_bytes: 0,
            firmware_only: false,
        }
    }

    fn offer(c: &Candidate) -> ReleaseOffer {
        ReleaseOffer {
            release_id: c.release_id,
            version: c.version.to_string(),
            version_code: c.version_code,
            size: c.version_code,
            sha256: format!("{:064x}", c.release_id),
            manifest: ReleaseManifest {
                app_id: c.app_id.clone(),
                kind: "app".into(),
                version: c.version.to_string(),
                version_code: c.version_code,
                artifact_sha256: format!("{:064x}", c.release_id),
                artifact_size: c.version_code,
                models: c.models.clone(),
                min_firmware: None,
                release_notes: String::new(),
                created_at: "2026-11-30T00:00:00Z".into(),
            },
            signature: String::new(),
            key_id: String::new(),
            download_path: String::new(),
            delta: None,
        }
    }

    /// A snapshot of release and removal deployments for everyone or for device 5,
    /// and the state device 5 reports.
    fn snapshot_and_state() -> impl Strategy<Value = (Snapshot, TerminalState)> {
        let deployment = (prop::sample::select(APPS.to_vec()), 1u64..6, any::<bool>(), any::<bool>(), 0u8..8);
        (
            prop::collection::vec(deployment, 0..6),
            prop::collection::btree_map(prop::sample::select(APPS.to_vec()), 1u64..6, 0..=3),
        )
            .prop_map(|(list, installed)| {
                let mut snapshot = Snapshot::default();
                for (i, (app, code, for_device, pinned, kind)) in list.into_iter().enumerate() {
                    let id = i as i64 + 1;
                    let candidate = Candidate {
                        release_id: id * 10,
                        app_id: app.to_owned(),
                        version: semver::Version::new(code, 0, 0),
                        version_code: code * 100,
                        models: vec!["A920".into()],
                        min_firmware: None,
                        withdrawn: false,
                        firmware: false,
                    };
                    let offer = (kind != 0).then(|| offer(&candidate));
                    snapshot.deployments.push(Deployment {
                        id,
                        payload: if kind == 0 {
                            Payload::Removal { app_id: app.to_owned() }
                        } else {
                            Payload::Release(candidate)
                        },
                        target: if for_device { Target::Devices([5].into()) } else { Target::Everyone },
                        action: ActionType::Soft,
                        sequence: id,
                        pinned,
                        rollout: None,
                        window: None,
                        wifi_only: false,
                        rollback_from: None,
                        mode: DeliveryMode::InstallOrUpdate,
                    });
                    snapshot.deliveries.insert(
                        id,
                        Delivery {
                            offer,
                            deltas: Vec::new(),
                            wifi_only: false,
                            starts_at: 0,
                            expires_at: None,
                        },
                    );
                }
                let state = TerminalState {
                    model: "A920".into(),
                    firmware: "9.0.0".into(),
                    firmware_sha256: None,
                    apps: installed
                        .into_iter()
                        .map(|(app, code)| InstalledApp {
                            app_id: app.to_owned(),
                            version: format!("{code}.0.0"),
                            version_code: code * 100,
                            sha256: String::new(),
                        })
                        .collect(),
                    parameters: Default::default(),
                    acquirers: Default::default(),
                };
                (snapshot, state)
            })
    }

    #[test]
    fn a_delta_is_offered_only_against_exactly_the_image_the_terminal_reports() {
        let candidate = Candidate {
            release_id: 20,
            app_id: "firmware".into(),
            version: semver::Version::new(10, 0, 0),
            version_code: 1000,
            models: vec!["A920".into()],
            min_firmware: None,
            withdrawn: false,
            firmware: true,
        };
        let mut full = offer(&candidate);
        full.manifest.kind = "firmware".into();
        let delta = DeltaOffer {
            base_sha256: "aa".repeat(32),
            sha256: "dd".repeat(32),
            size: 10,
            download_path: "/api/v1/terminal/deltas/dd".into(),
        };
        let mut snapshot = Snapshot::default();
        snapshot.deployments.push(Deployment {
            id: 1,
            payload: Payload::Release(candidate),
            target: Target::Everyone,
            action: ActionType::Soft,
            sequence: 1,
            pinned: false,
            rollout: None,
            window: None,
            wifi_only: false,
            rollback_from: None,
            mode: DeliveryMode::InstallOrUpdate,
        });
        snapshot.deliveries.insert(
            1,
            Delivery {
                offer: Some(full),
                deltas: vec![delta.clone()],
                wifi_only: false,
                starts_at: 0,
                expires_at: None,
            },
        );
        let device = device_5();
        let on = |sha: Option<String>| TerminalState {
            model: "A920".into(),
            firmware: "9.0.0".into(),
            firmware_sha256: sha,
            apps: Vec::new(),
            parameters: Default::default(),
            acquirers: Default::default(),
        };
        let offered = |state: &TerminalState| {
            let (_, found) = plan_apps(&snapshot, &device, state, 0, 1_800_000_000, 1_800_003_600);
            let offer = found.firmware.and_then(|i| i.release).expect("the firmware offered");
            (offer.delta, found.target)
        };
        let (got, target) = offered(&on(Some("aa".repeat(32))));
        assert_eq!(got, Some(delta));
        assert_eq!(target.firmware, "10.0.0");
        assert_eq!(target.firmware_sha256, Some(format!("{:064x}", 20)), "the image's sha256 once flashed");
        let (got, _) = offered(&on(Some("bb".repeat(32))));
        assert_eq!(got, None, "another image gets the full download");
        let (got, target) = offered(&on(None));
        assert_eq!(got, None, "a terminal that does not say which image it runs gets the full download");
        assert_eq!(target.firmware_sha256, None, "and is not expected to report one");
    }

    proptest! {
        #[test]
        fn nothing_larger_than_the_free_storage_is_offered(
            (snapshot, state) in snapshot_and_state(),
            free in 0u64..700,
        ) {
            let now = 1_800_000_000;
            let unknown = device_5();
            let device = Registered { free_storage_bytes: free, ..unknown };
            let (_, unbounded) = plan_apps(&snapshot, &unknown, &state, 0, now, now + 3_600);
            let (_, found) = plan_apps(&snapshot, &device, &state, 0, now, now + 3_600);
            // The fixture's artifacts have as many bytes as their version code.
            for instruction in &unbounded.apps {
                let fits = free == 0 || instruction.release.as_ref().is_none_or(|o| o.size <= free);
                prop_assert_eq!(found.apps.contains(instruction), fits);
                if !fits {
                    let needs = instruction.release.as_ref().map_or(0, |o| o.size);
                    let held = found
                        .short_of_space
                        .iter()
                        .any(|(app, n, has)| *app == instruction.app_id && *n == needs && *has == free);
                    prop_assert!(held, "held for space");
                    prop_assert!(found.valid_until <= now + STORAGE_RECHECK_SECS);
                    // Not applied: the target keeps what the terminal has.
                    let reported = state.apps.iter().find(|a| a.app_id == instruction.app_id);
                    let target = found.target.apps.iter().find(|a| a.app_id == instruction.app_id);
                    prop_assert_eq!(target, reported);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn instructions_follow_the_plans_and_the_target_is_the_state_once_applied(
            (snapshot, state) in snapshot_and_state(),
        ) {
            let device = device_5();
            let (plans, found) = plan_apps(&snapshot, &device, &state, 0, 1_800_000_000, 1_800_003_600);
            prop_assert!(found.valid_until <= 1_800_003_600);
            for instruction in &found.apps {
                let p = plans.iter().find(|p| p.app_id == instruction.app_id).unwrap();
                prop_assert_eq!(p.deployment_id, Some(instruction.deployment_id));
                prop_assert_eq!(p.change.as_ref().map(Change::kind), Some(instruction.change));
            }
            for app in APPS {
                let instruction = found.apps.iter().find(|i| i.app_id == app);
                let reported = state.apps.iter().find(|a| a.app_id == app);
                let target = found.target.apps.iter().find(|a| a.app_id == app);
                match instruction {
                    None => prop_assert_eq!(target, reported),
                    Some(i) if i.change == crate::contact::ChangeKind::Remove => prop_assert!(target.is_none()),
                    Some(i) => {
                        let offered = i.release.as_ref().unwrap();
                        prop_assert_eq!(target.map(|a| a.version_code), Some(offered.version_code));
                    }
                }
            }
            // Planned twice from the same inputs, the same answer.
            let (again, found_again) = plan_apps(&snapshot, &device, &state, 0, 1_800_000_000, 1_800_003_600);
            prop_assert_eq!(plans, again);
            prop_assert_eq!(found.apps, found_again.apps);
        }

        #[test]
        fn a_firmware_only_device_is_offered_no_app(
            (snapshot, state) in snapshot_and_state(),
        ) {
            let linux = Registered { firmware_only: true, ..device_5() };
            let (plans, found) = plan_apps(&snapshot, &linux, &state, 0, 1_800_000_000, 1_800_003_600);
            prop_assert!(found.apps.is_empty());
            prop_assert!(plans.iter().all(|p| p.change.is_none()));
            prop_assert_eq!(found.target, state);
        }

        #[test]
        fn a_held_deployment_is_not_offered_until_its_hold_ends(
            (snapshot, state) in snapshot_and_state(),
            held in prop::collection::vec((1i64..7, prop::option::of(0i64..7_200)), 0..4),
        ) {
            let now = 1_800_000_000;
            let holds: Vec<Hold> = held
                .iter()
                .map(|(id, until)| Hold { deployment_id: *id, attempts: 1, until: until.map(|u| now - 3_600 + u) })
                .collect();
            let free = device_5();
            let device = Registered { holds: &holds, ..free };
            let (_, unheld) = plan_apps(&snapshot, &free, &state, 0, now, now + 3_600);
            let (_, found) = plan_apps(&snapshot, &device, &state, 0, now, now + 3_600);
            for instruction in &unheld.apps {
                let hold = holds.iter().find(|h| h.deployment_id == instruction.deployment_id && h.holds_at(now));
                let offered = found.apps.iter().any(|i| i == instruction);
                prop_assert_eq!(offered, hold.is_none());
                if let Some(Hold { until: Some(until), .. }) = hold {
                    prop_assert!(found.valid_until <= *until, "looked at again when the hold ends");
                }
            }
            prop_assert!(found.apps.iter().all(|i| unheld.apps.contains(i)), "a hold never brings another offer");
            prop_assert_eq!(found.held.len() + found.apps.len(), unheld.apps.len());
        }
    }
}
