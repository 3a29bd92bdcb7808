//! The TMS contact: the call every terminal makes every few minutes.
//!
//! The fast path: a terminal whose reported state equals the target this
//! process last computed for it (and nothing it depends on changed since, as
//! the change log says) gets the short signed answer shared by every
//! terminal with that target — an in-memory comparison, no database write
//! and no object-store read. Last contact times and reported inventories are
//! written in batches by a background task. Everything else takes the slow
//! path: the target is computed from the database ([`target::compute`]).

pub mod answers;
pub mod changes;
pub mod feedback;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tms_packages::contact::{Change, DeviceFacts, Skip, signed_answer_json};
use tms_packages::rollouts::offer_deadline_secs;
use tms_packages::wire::contact::{
    ContactBody, ContactRequest, FeedbackRequest, TerminalHealth, TerminalState,
};
use tms_packages::wire::deployments::{AppPlanView, ConsideredDeployment, DevicePlanView, ParameterPlanView};
use tms_signing::{PrivateKey, Sha256Digest};

use crate::accounts::access::Actor;
use crate::blobs::BlobStore;
use crate::config::Config;
use crate::contact::changes::{Scope, Seen};
use crate::contact::target::{Computed, Device};
use crate::db::schema::{deployment_actions, device_health, device_inventory};
use crate::db::{Db, DbConnection, DbError, WriteTurn};
use crate::devices::CallingDevice;
use crate::error::{Error, ErrorCode};
use crate::parameters::SetCache;
use crate::rollouts;
use crate::rollouts::attempts::Offer;
use crate::rollouts::deployments::{self, Snapshot};
use crate::time::{now, rfc3339};

#[derive(Debug, Clone)]
pub struct ContactSettings {
    pub answer_ttl_secs: i64,
    pub answer_step_secs: i64,
    pub sync_interval: Duration,
    pub flush_interval: Duration,
    pub rollout_check: Duration,
    pub action_timeout: chrono::Duration,
    /// The download speed an offer's deadline allows for, in bytes a second.
    pub slow_link_bytes_per_sec: u64,
}

impl ContactSettings {
    pub fn from_config(config: &Config) -> ContactSettings {
        ContactSettings {
            answer_ttl_secs: config.answer_ttl_secs.max(60) as i64,
            answer_step_secs: config.answer_step_secs.clamp(1, 3_600) as i64,
            sync_interval: Duration::from_millis(config.contact_sync_ms.max(10)),
            flush_interval: Duration::from_millis(config.contact_flush_ms.max(10)),
            rollout_check: Duration::from_secs(config.rollout_check_secs.max(1)),
            action_timeout: chrono::Duration::seconds(config.action_timeout_secs.max(1) as i64),
            slow_link_bytes_per_sec: config.slow_link_bytes_per_sec.max(1),
        }
    }
}

/// What this process remembers of one terminal: kept small, for a fleet of
/// a million is a million of these.
#[derive(Clone)]
struct Entry {
    device_id: i64,
    merchant_id: i64,
    location_id: i64,
    /// The change-log position when its target was computed.
    computed_at: i64,
    valid_until: i64,
    utc_offset_minutes: i32,
    interval_secs: u32,
    /// The state it reported, and the state it has once it applied the answer.
    state_digest: Digest128,
    target_digest: Digest128,
    /// (when computed, seconds until a window with waiting work opens).
    window_opens_in: Option<(i64, u32)>,
    /// The registered model (shared: a fleet has a handful), to plan again
    /// in memory when only deployments changed.
    model: Arc<str>,
    /// A deployment is held back from it after failed attempts: it is
    /// planned from the database, which knows until when.
    held: bool,
    /// A device that takes firmware images only (a Linux device on DDI).
    firmware_only: bool,
    /// A change waits for storage: the free KiB it was planned with (0:
    /// none waits). More free space reported is planned again at once.
    /// (A u32 in the padding after `held`: entries stay the same size.)
    space_planned_kib: u32,
}

/// What a contact reports of its health, for [`ContactService::note`].
fn health_of(request: &ContactRequest) -> Option<(&TerminalHealth, u64)> {
    request.health.as_ref().map(|h| (h, request.free_storage_bytes))
}

/// KiB as an entry keeps them.
fn kib(bytes: u64) -> u32 {
    (bytes / 1024).min(u64::from(u32::MAX)) as u32
}

/// The first half of a sha256 is plenty to tell states and tokens apart
/// (finding another input with the same 128 bits is beyond reach), and a
/// million entries keep 48 bytes less each.
type Digest128 = [u8; 16];

fn raw_digest(hex_digest: &str) -> Digest128 {
    let mut out = [0u8; 16];
    // Digests here come from TerminalState::digest: always 64 hex digits.
    let _ = hex::decode_to_slice(hex_digest.get(..32).unwrap_or_default(), &mut out);
    out
}

/// Reported state waiting to be written: kept as the JSON it is written
/// as, for a round of a million terminals applying a change may queue a
/// report from each before the next flush.
struct Report {
    state_json: String,
    firmware: String,
    digest: String,
    wifi: bool,
    time_zone: String,
    utc_offset_minutes: i32,
    free_storage_bytes: u64,
    at: NaiveDateTime,
}

/// Reports waiting that wake the flush before its interval.
const FLUSH_EARLY_REPORTS: usize = 20_000;

#[derive(Default)]
struct Pending {
    contacts: HashMap<i64, NaiveDateTime>,
    reports: HashMap<i64, Report>,
    /// Offers made, by (deployment, device): the latest of a flush is
    /// written (a retry offered before the flush is a new attempt).
    offers: HashMap<(i64, i64), Offer>,
    /// Health reports as JSON with the free storage reported beside them
    /// (0: not known here), the latest per device.
    health: HashMap<i64, (String, u64)>,
    /// Contacts counted per minute (unix minute): the console's chart.
    contact_minutes: BTreeMap<i64, i64>,
}

/// Who calls: a device by its token, or a DDI device by its controller id
/// (the DDI layer checked the tenant's gateway token).
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    Token(&'a str),
    Controller(&'a str),
}

enum OwnedCaller {
    Token(String),
    Controller(String),
}

impl Caller<'_> {
    /// The key of the target kept for the caller.
    fn key(self) -> Digest128 {
        match self {
            Caller::Token(token) => token_key(token),
            Caller::Controller(id) => token_key(&format!("ddi-controller:{id}")),
        }
    }

    fn owned(self) -> OwnedCaller {
        match self {
            Caller::Token(t) => OwnedCaller::Token(t.to_owned()),
            Caller::Controller(c) => OwnedCaller::Controller(c.to_owned()),
        }
    }
}

/// What the planner decided for one call, before it is written in the
/// caller's protocol (a signed contact answer, a DDI poll).
#[derive(Debug, Clone)]
pub struct Decided {
    pub device_id: i64,
    pub decision: Decision,
    /// The configured interval with jitter, sooner when a window opens.
    pub next_contact_secs: u64,
}

#[derive(Debug, Clone)]
pub enum Decision {
    /// Nothing to change: the target is the reported state.
    InSync {
        target_digest: String,
    },
    Changes(Box<ContactBody>),
}

pub struct ContactService {
    settings: ContactSettings,
    db: Db,
    blobs: BlobStore,
    seen: RwLock<Seen>,
    snapshot: RwLock<Arc<Snapshot>>,
    entries: RwLock<HashMap<Digest128, Arc<Entry>>>,
    /// In-sync answers by target digest: (issue time, the signed answer as JSON).
    shared: Mutex<HashMap<String, (i64, Arc<str>)>>,
    key: RwLock<Arc<PrivateKey>>,
    master_keys: Arc<crate::secrets::MasterKeys>,
    pending: Mutex<Pending>,
    sets: SetCache,
    /// One sync at a time: two could otherwise publish snapshots out of order.
    sync_lock: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
    last_prune: AtomicI64,
    models: Mutex<std::collections::HashSet<Arc<str>>>,
    feedback: Arc<feedback::Queue>,
    turn: WriteTurn,
    bodies: answers::BodyWriter,
    flush_now: tokio::sync::Notify,
    /// When a failure report last made this process apply a rollout's
    /// rules, per deployment (a share limit needs the full tally).
    early_evaluations: Mutex<HashMap<i64, std::time::Instant>>,
}

fn unix_now() -> i64 {
    crate::time::unix_now()
}

fn token_key(token: &str) -> Digest128 {
    let mut key = [0u8; 16];
    key.copy_from_slice(&Sha256Digest::of(token.as_bytes()).as_bytes()[..16]);
    key
}

impl ContactService {
    /// Reads the deployments, the signing key and the change log's position.
    pub fn open(
        db: Db,
        blobs: BlobStore,
        master_keys: Arc<crate::secrets::MasterKeys>,
        settings: ContactSettings,
    ) -> Result<ContactService, DbError> {
        let mut conn = db.get()?;
        let last = changes::current(&mut conn)?;
        let snapshot = deployments::load_snapshot(&mut conn)?;
        let key = crate::server_keys::current_signing_key(&mut conn, &master_keys)?;
        drop(conn);
        let turn = WriteTurn::default();
        Ok(ContactService {
            settings,
            db,
            blobs,
            seen: RwLock::new(Seen::starting_at(last)),
            snapshot: RwLock::new(Arc::new(snapshot)),
            entries: RwLock::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
            key: RwLock::new(Arc::new(key)),
            master_keys,
            pending: Mutex::new(Pending::default()),
            sets: SetCache::default(),
            sync_lock: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            last_prune: AtomicI64::new(0),
            models: Mutex::new(std::collections::HashSet::new()),
            feedback: Arc::new(feedback::Queue::new(turn.clone())),
            turn,
            bodies: answers::BodyWriter::default(),
            flush_now: tokio::sync::Notify::new(),
            early_evaluations: Mutex::new(HashMap::new()),
        })
    }

    /// Runs the background tasks: follow the change log, write contact
    /// records in batches, evaluate rollouts.
    pub fn spawn_tasks(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.sync().await {
                    tracing::warn!(error = %e, "could not follow the contact change log");
                }
                let _ = tokio::time::timeout(this.settings.sync_interval, this.wake.notified()).await;
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(this.settings.flush_interval, this.flush_now.notified()).await;
                if let Err(e) = this.flush().await {
                    tracing::warn!(error = %e, "could not record terminal contacts");
                }
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            let mut pause = this.settings.rollout_check;
            loop {
                tokio::time::sleep(pause).await;
                let timeout = this.settings.action_timeout;
                let started = std::time::Instant::now();
                if let Err(e) = this.db.run(move |conn| rollouts::supervise(conn, timeout)).await {
                    tracing::warn!(error = %e, "could not evaluate rollouts");
                }
                // A pass reads every terminal a running rollout reached: over
                // a large fleet it waits nine times as long as it took, so the
                // supervisor keeps to a tenth of a core while the fleet calls
                // (a pass of 3 s at a million terminals: a check every 30 s).
                pause = this.settings.rollout_check.max(started.elapsed() * 9);
                this.wake.notify_one();
            }
        });
    }

    /// Follows the change log now, after a change made through this process,
    /// so that its own next answers already reflect it.
    pub async fn caught_up(&self) {
        if let Err(e) = self.sync().await {
            tracing::warn!(error = %e, "could not follow the contact change log");
            self.wake.notify_one();
        }
    }

    /// Reads new changes; reloads deployments or keys first when they
    /// changed, then publishes the new position, so a target computed at the
    /// new position is computed from the new deployments.
    pub async fn sync(&self) -> Result<(), Error> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let after = self.seen.read().expect("not poisoned").last;
        let prune = unix_now() - self.last_prune.load(Ordering::Relaxed) > 600;
        let master_keys = self.master_keys.clone();
        let (found, snapshot, key) = self
            .db
            .run(move |conn| {
                let mut found = changes::since(conn, after, 10_000)?;
                // Changes this process never saw were pruned (it was away for
                // longer than the log keeps them): forget everything.
                if let Some((first, _)) = found.first()
                    && *first > after + 1
                {
                    let seq = *first;
                    found.splice(
                        0..0,
                        [(seq, Scope::Everyone), (seq, Scope::Deployments), (seq, Scope::Keys)],
                    );
                }
                let snapshot = if found.iter().any(|(_, s)| *s == Scope::Deployments) {
                    Some(deployments::load_snapshot(conn)?)
                } else {
                    None
                };
                let key = if found.iter().any(|(_, s)| *s == Scope::Keys) {
                    Some(crate::server_keys::current_signing_key(conn, &master_keys)?)
                } else {
                    None
                };
                if prune {
                    changes::prune(conn, chrono::Duration::days(1))?;
                }
                Ok::<_, DbError>((found, snapshot, key))
            })
            .await?;
        if prune {
            self.last_prune.store(unix_now(), Ordering::Relaxed);
        }
        if let Some(s) = snapshot {
            *self.snapshot.write().expect("not poisoned") = Arc::new(s);
        }
        if let Some(k) = key {
            *self.key.write().expect("not poisoned") = Arc::new(k);
            self.shared.lock().expect("not poisoned").clear();
        }
        if !found.is_empty() {
            let mut seen = self.seen.write().expect("not poisoned");
            for (seq, scope) in found {
                seen.apply(seq, scope);
            }
        }
        Ok(())
    }

    /// Answers a contact, with the `ContactAnswer` as JSON.
    pub async fn contact(&self, token: &str, request: ContactRequest) -> Result<String, Error> {
        let now = unix_now();
        let decided = self.decide(Caller::Token(token), request, now).await?;
        self.signed(decided, now)
    }

    /// Plans a DDI device's poll: the same decision as a contact, from the
    /// state the server keeps for it (a DDI device reports none), unsigned
    /// (DDI has no signed answers; the artifacts stay publisher-signed).
    pub async fn poll(&self, caller: Caller<'_>, state: TerminalState) -> Result<Decided, Error> {
        let digest = state.digest();
        let request = ContactRequest {
            state,
            digest,
            wifi: true,
            time_zone: String::new(),
            utc_offset_minutes: 0,
            free_storage_bytes: 0,
            health: None,
        };
        self.decide(caller, request, unix_now()).await
    }

    /// The change-log position now: a cache of the DDI layer filled now
    /// holds while [`ContactService::still_holds`] says so.
    pub fn position(&self) -> i64 {
        self.seen.read().expect("not poisoned").last
    }

    /// Whether nothing touching a device changed since `position`.
    pub fn still_holds(&self, position: i64, merchant_id: i64, location_id: i64, device_id: i64) -> bool {
        self.seen.read().expect("not poisoned").still_holds(position, merchant_id, location_id, device_id)
    }

    /// The signed `ContactAnswer` of a decision, as JSON.
    fn signed(&self, decided: Decided, now: i64) -> Result<String, Error> {
        match decided.decision {
            Decision::InSync { target_digest } => {
                self.in_sync(&target_digest, now, decided.next_contact_secs)
            }
            Decision::Changes(mut body) => {
                let answer = self.sign(&mut body, self.shared_issued_at(now))?;
                // A `ContactAnswer`, written around the signed answer's JSON.
                Ok(format!(
                    r#"{{"status":"changes","next_contact_secs":{},"answer":{answer}}}"#,
                    decided.next_contact_secs
                ))
            }
        }
    }

    async fn decide(&self, caller: Caller<'_>, request: ContactRequest, now: i64) -> Result<Decided, Error> {
        if let Some((field, message)) = request.health.as_ref().and_then(TerminalHealth::invalid_field) {
            return Err(Error::invalid(field, message));
        }
        let digest = request.state.digest();
        if !digest.eq_ignore_ascii_case(request.digest.trim()) {
            return Err(Error::new(
                ErrorCode::StateDigestMismatch,
                "the digest does not match the reported state (sha256 of its canonical JSON, apps sorted by id)",
            ));
        }
        let key = caller.key();
        let reported = raw_digest(&digest);
        let cached = self.entries.read().expect("not poisoned").get(&key).cloned();
        if let Some(entry) = cached
            && now < entry.valid_until
            && entry.utc_offset_minutes == request.utc_offset_minutes
            && reported == entry.target_digest
            && (entry.space_planned_kib == 0 || kib(request.free_storage_bytes) <= entry.space_planned_kib)
        {
            if reported != entry.state_digest {
                // It applied the answer it got: its new firmware or apps may
                // open further changes, which a plan in memory finds.
                if let Some(answer) = self.replan(key, &entry, &request, &digest, now) {
                    self.note(entry.device_id, true, Some((&request, &digest)), health_of(&request));
                    return Ok(answer);
                }
                return self.slow_path(key, caller, request, digest, now).await;
            }
            // In sync with the target computed from this very state.
            let (others_hold, deployments_hold) = {
                let seen = self.seen.read().expect("not poisoned");
                (
                    seen.still_holds(
                        entry.computed_at,
                        entry.merchant_id,
                        entry.location_id,
                        entry.device_id,
                    ),
                    seen.deployments_hold(entry.computed_at),
                )
            };
            if others_hold && deployments_hold {
                self.note(entry.device_id, true, None, health_of(&request));
                return Ok(self.decided_in_sync(digest, now, &entry));
            }
            if others_hold && let Some(answer) = self.replan(key, &entry, &request, &digest, now) {
                self.note(entry.device_id, true, None, health_of(&request));
                return Ok(answer);
            }
        }
        self.slow_path(key, caller, request, digest, now).await
    }

    async fn slow_path(
        &self,
        key: Digest128,
        caller: Caller<'_>,
        request: ContactRequest,
        digest: String,
        now: i64,
    ) -> Result<Decided, Error> {
        let computed_at = self.seen.read().expect("not poisoned").last;
        let snapshot = self.snapshot.read().expect("not poisoned").clone();
        let caller = caller.owned();
        let found = self
            .db
            .run(move |conn| {
                let device = match &caller {
                    OwnedCaller::Token(token) => crate::devices::authenticate(conn, token)?,
                    OwnedCaller::Controller(id) => crate::devices::linux::by_controller(conn, id)?,
                };
                let at = crate::time::now();
                let holds = rollouts::attempts::holds_of(conn, device.id, at)?;
                let commands = crate::commands::open_for_device(conn, device.id, at)?;
                Ok::<_, Error>((device, holds, commands))
            })
            .await;
        let device = match found {
            Ok((d, holds, commands)) => Device {
                model: d.model.clone(),
                firmware_only: d.kind == crate::devices::LINUX,
                calling: CallingDevice::from(d),
                holds,
                commands,
                free_storage_bytes: request.free_storage_bytes,
            },
            Err(e) => {
                self.entries.write().expect("not poisoned").remove(&key);
                return Err(e);
            }
        };
        // A terminal reporting another model than the one registered is a
        // swapped or misreporting device: audited once per reported state in
        // this process (what it may get stays decided on the registered model).
        if !request.state.model.eq_ignore_ascii_case(&device.model) {
            let seen = self
                .entries
                .read()
                .expect("not poisoned")
                .get(&key)
                .is_some_and(|e| e.state_digest == raw_digest(&digest));
            if !seen {
                let (id, merchant) = (device.calling.id, device.calling.merchant_id);
                let detail = serde_json::json!({"registered": device.model, "reported": request.state.model});
                self.db
                    .run(move |conn| {
                        let subject = format!("device:{id}");
                        let mut event = crate::db::audit::NewAuditEvent::now(
                            "system",
                            "device.model_mismatch",
                            &subject,
                            &detail,
                        );
                        event.merchant_id = Some(merchant);
                        crate::db::audit::record(conn, &event).map_err(Error::from)
                    })
                    .await?;
            }
        }
        let mut computed = target::compute(
            &self.db,
            &self.blobs,
            &self.sets,
            &snapshot,
            &device,
            &request.state,
            request.utc_offset_minutes,
            now,
        )
        .await?;
        let entry = Entry {
            device_id: device.calling.id,
            merchant_id: device.calling.merchant_id,
            location_id: device.calling.location_id,
            computed_at,
            valid_until: computed.valid_until,
            utc_offset_minutes: request.utc_offset_minutes,
            interval_secs: computed.interval_secs.min(u64::from(u32::MAX)) as u32,
            state_digest: raw_digest(&digest),
            target_digest: raw_digest(&computed.body.target_digest),
            window_opens_in: computed.window_opens_in.map(|s| (now, s)),
            model: self.intern_model(&device.model),
            held: !device.holds.is_empty(),
            firmware_only: device.firmware_only,
            space_planned_kib: if computed.short_of_space.is_empty() {
                0
            } else {
                kib(request.free_storage_bytes).max(1)
            },
        };
        if !computed.body.commands.is_empty() {
            let ids: Vec<i64> = computed.body.commands.iter().map(|c| c.id).collect();
            let at = crate::time::from_unix(now);
            self.db.run(move |conn| crate::commands::mark_delivered(conn, &ids, at)).await?;
        }
        self.note(device.calling.id, true, Some((&request, &digest)), health_of(&request));
        // A terminal with something to do calls again once it did it; its
        // answer is not kept (a million of them would not fit in memory).
        let answer = if computed.in_sync {
            self.decided_in_sync(std::mem::take(&mut computed.body.target_digest), now, &entry)
        } else {
            self.decided_changes(computed.body, now, &entry, request.wifi)
        };
        self.entries.write().expect("not poisoned").insert(key, Arc::new(entry));
        Ok(answer)
    }

    /// Plans a terminal again in memory, when only deployments changed since
    /// its target was computed (or it applied that target): its parameters
    /// and acquirer sessions are then as the target left them, so only the
    /// apps and firmware can differ. None when the database is needed: a
    /// change to its other scopes, or an app with parameters to install.
    fn replan(
        &self,
        key: Digest128,
        entry: &Entry,
        request: &ContactRequest,
        digest: &str,
        now: i64,
    ) -> Option<Decided> {
        let computed_at = {
            // Checked again under the lock that gives the position: a change
            // to its other scopes may have arrived since.
            let seen = self.seen.read().expect("not poisoned");
            if !seen.still_holds(entry.computed_at, entry.merchant_id, entry.location_id, entry.device_id) {
                return None;
            }
            seen.last
        };
        if entry.held {
            return None;
        }
        // Published before the position: at least as new as `computed_at`.
        let snapshot = self.snapshot.read().expect("not poisoned").clone();
        let state = &request.state;
        let registered = target::Registered {
            device_id: entry.device_id,
            merchant_id: entry.merchant_id,
            location_id: entry.location_id,
            model: &entry.model,
            holds: &[],
            free_storage_bytes: request.free_storage_bytes,
            firmware_only: entry.firmware_only,
        };
        let (_, found) = target::plan_apps(
            &snapshot,
            &registered,
            state,
            entry.utc_offset_minutes,
            now,
            entry.valid_until,
        );
        if found.installs_app_with_parameters(&snapshot, state) {
            return None;
        }
        let in_sync = found.apps.is_empty() && found.firmware.is_none();
        let target_digest = if in_sync { digest.to_owned() } else { found.target.digest() };
        let fresh = Entry {
            computed_at,
            valid_until: found.valid_until,
            state_digest: raw_digest(digest),
            target_digest: raw_digest(&target_digest),
            window_opens_in: found.window_opens_in.map(|s| (now, s)),
            space_planned_kib: if found.short_of_space.is_empty() {
                0
            } else {
                kib(request.free_storage_bytes).max(1)
            },
            ..entry.clone()
        };
        let answer = if in_sync {
            self.decided_in_sync(target_digest, now, &fresh)
        } else {
            let body = ContactBody {
                target_digest,
                device_id: Some(entry.device_id),
                state_digest: Some(digest.to_owned()),
                apps: found.apps,
                firmware: found.firmware,
                ..ContactBody::default()
            };
            self.decided_changes(body, now, &fresh, request.wifi)
        };
        self.entries.write().expect("not poisoned").insert(key, Arc::new(fresh));
        Some(answer)
    }

    fn intern_model(&self, model: &str) -> Arc<str> {
        let mut models = self.models.lock().expect("not poisoned");
        if let Some(m) = models.get(model) {
            return m.clone();
        }
        let m: Arc<str> = Arc::from(model);
        models.insert(m.clone());
        m
    }

    /// Answers are dated at the end of the current step of a grid: one
    /// shared signature serves a whole step, and no answer is dated before
    /// one the terminal got earlier. (Two answers of one step carry the same
    /// date; an older one cannot be replayed after a newer one all the same,
    /// for each names the state it answers.)
    fn shared_issued_at(&self, now: i64) -> i64 {
        let step = self.settings.answer_step_secs;
        now - now.rem_euclid(step) + step - 1
    }

    /// The in-sync answer: the shared signed part is kept serialised, so a
    /// terminal in sync costs a lookup and one small `format!`.
    fn in_sync(&self, target_digest: &str, now: i64, next_contact_secs: u64) -> Result<String, Error> {
        let issued = self.shared_issued_at(now);
        let cached = self.shared.lock().expect("not poisoned").get(target_digest).cloned();
        let answer = match cached {
            Some((at, json)) if at == issued => json,
            _ => {
                let mut body =
                    ContactBody { target_digest: target_digest.to_owned(), ..ContactBody::default() };
                let json: Arc<str> = self.sign(&mut body, issued)?.into();
                let mut shared = self.shared.lock().expect("not poisoned");
                if shared.len() >= 100_000 {
                    shared.clear();
                }
                shared.insert(target_digest.to_owned(), (issued, json.clone()));
                json
            }
        };
        Ok(format!(r#"{{"status":"in_sync","next_contact_secs":{next_contact_secs},"answer":{answer}}}"#))
    }

    fn decided_in_sync(&self, target_digest: String, now: i64, entry: &Entry) -> Decided {
        Decided {
            device_id: entry.device_id,
            decision: Decision::InSync { target_digest },
            next_contact_secs: self.next_contact(entry, now),
        }
    }

    /// Changes to answer with: the offers they make are kept for the flush.
    fn decided_changes(&self, body: ContactBody, now: i64, entry: &Entry, on_wifi: bool) -> Decided {
        self.note_offers(entry.device_id, &body, on_wifi);
        Decided {
            device_id: entry.device_id,
            decision: Decision::Changes(Box::new(body)),
            next_contact_secs: self.next_contact(entry, now),
        }
    }

    /// The `SignedAnswer` of a body, as JSON.
    fn sign(&self, body: &mut ContactBody, issued_at: i64) -> Result<String, Error> {
        let key = self.key.read().expect("not poisoned").clone();
        let canonical = self.bodies.canonical(body).map_err(|e| Error::from(DbError::Signing(e)))?;
        Ok(signed_answer_json(&canonical, issued_at, self.settings.answer_ttl_secs, &key))
    }

    /// The configured interval with ±10 % jitter (so a fleet started at once
    /// spreads out), sooner when a maintenance window with work opens first.
    fn next_contact(&self, entry: &Entry, now: i64) -> u64 {
        let interval = u64::from(entry.interval_secs.max(30));
        let spread = interval / 5;
        let mix = Sha256Digest::of(&[entry.device_id.to_be_bytes(), now.to_be_bytes()].concat());
        let r = u64::from_be_bytes(mix.as_bytes()[..8].try_into().expect("8 bytes"));
        let mut next = interval - interval / 10 + if spread > 0 { r % spread } else { 0 };
        if let Some((at, opens_in)) = entry.window_opens_in {
            let left = (at + i64::from(opens_in) - now).max(0) as u64;
            next = next.min(left + r % 60 + 1);
        }
        next.max(1)
    }

    /// Records what a terminal reports about a change (in a transaction
    /// shared with other terminals' reports); returns once it is committed.
    pub async fn feedback(
        &self,
        caller: Caller<'_>,
        report: tms_packages::wire::contact::FeedbackRequest,
    ) -> Result<(), Error> {
        let known = self.known_entry(caller.key());
        let device_id = match &known {
            Some(entry) => entry.device_id,
            None => {
                let caller = caller.owned();
                self.db
                    .run(move |conn| match &caller {
                        OwnedCaller::Token(token) => crate::devices::authenticate(conn, token),
                        OwnedCaller::Controller(id) => crate::devices::linux::by_controller(conn, id),
                    })
                    .await?
                    .id
            }
        };
        self.note(device_id, false, None, None);
        if !self.may_report(known.as_deref(), device_id, &report).await? {
            // Another terminal's deployment and one that does not exist
            // answer alike: ids reveal nothing.
            return Err(Error::not_found("deployment"));
        }
        // A failure, or a postponement (past the deployment's limit it is
        // a failure too), is weighed (one count) once it is written.
        let setback = feedback::setback_of(&report).is_some();
        let deployment_id = report.deployment_id;
        // A setback is weighed against the offer it answers: an offer this
        // process has not written yet is written first.
        if setback {
            let offer = self.pending.lock().expect("not poisoned").offers.remove(&(deployment_id, device_id));
            if let Some(offer) = offer {
                let turn = self.turn.clone();
                self.db
                    .run(move |conn| {
                        let _turn = turn.take(conn);
                        crate::db::write_tx(conn, |conn| rollouts::attempts::record_offers(conn, &[offer]))
                    })
                    .await?;
            }
        }
        self.feedback.record(&self.db, device_id, report).await?;
        if setback {
            self.after_failure(deployment_id).await?;
        }
        Ok(())
    }

    /// After a failure report is committed, and before it is answered: the
    /// rollout's rules are applied at once when its failures may have
    /// crossed the limit, so that no offer follows the report that crosses
    /// it (this process follows the pause at once, the others within the
    /// change-log delay). A count limit is checked with one count of the
    /// failures; a share of the stages' terminals needs the full tally,
    /// taken at most once a second per rollout here, the supervisor doing
    /// the rest.
    async fn after_failure(&self, deployment_id: i64) -> Result<(), Error> {
        let share_check = {
            let mut last = self.early_evaluations.lock().expect("not poisoned");
            let due =
                last.get(&deployment_id).is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
            if due {
                last.insert(deployment_id, std::time::Instant::now());
            }
            due
        };
        let timeout = self.settings.action_timeout;
        let paused = self
            .db
            .run(move |conn| rollouts::evaluate_after_failure(conn, deployment_id, timeout, share_check))
            .await?;
        if paused {
            self.caught_up().await;
        }
        Ok(())
    }

    /// Whether a terminal may report about a deployment: the deployment
    /// reaches it (its target holds the terminal and its rollout stage
    /// includes it), decided from memory for a terminal whose target this
    /// process holds; else from the database, where it also may if it
    /// reported about the deployment before, or if the deployment was meant
    /// for it by its registration whatever has become of it since (a
    /// rollback cancelled it, its rollout paused while the terminal
    /// installed, a dynamic group it left by installing, a deployment this
    /// process has not seen yet).
    async fn may_report(
        &self,
        known: Option<&Entry>,
        device_id: i64,
        report: &FeedbackRequest,
    ) -> Result<bool, Error> {
        if let Some(entry) = known {
            let snapshot = self.snapshot.read().expect("not poisoned").clone();
            let facts = DeviceFacts {
                device_id,
                merchant_id: entry.merchant_id,
                location_id: entry.location_id,
                model: entry.model.to_string(),
                firmware: String::new(),
                installed: Default::default(),
            };
            let reaches = snapshot.deployments.iter().any(|d| {
                d.id == report.deployment_id
                    && !d.depends_on_reported_state()
                    && d.reaches(&facts)
                    && d.payload.app_id() == report.app_id
            });
            if reaches {
                return Ok(true);
            }
        }
        let (deployment_id, app_id) = (report.deployment_id, report.app_id.clone());
        self.db
            .run(move |conn| {
                let reported_before = deployment_actions::table
                    .find((deployment_id, device_id))
                    .select(deployment_actions::device_id)
                    .first::<i64>(conn)
                    .optional()?
                    .is_some();
                if reported_before {
                    return Ok(true);
                }
                let device =
                    crate::devices::find(conn, device_id)?.ok_or_else(|| Error::not_found("device"))?;
                let registration = (device.id, device.merchant_id, device.location_id);
                Ok::<_, Error>(rollouts::deployments::reached_by_registration(
                    conn,
                    deployment_id,
                    &app_id,
                    registration,
                )?)
            })
            .await
    }

    /// Which of `release_ids` a terminal may download: one the planner
    /// offers it now, from the state it last reported (the one waiting for
    /// the flush, else the stored one). Another merchant's private app, an
    /// incompatible release or one no deployment offers the terminal is
    /// none. A deployment made through another process that this one has not
    /// followed yet is looked for once more after following the change log.
    pub async fn offered_release(
        &self,
        device: &CallingDevice,
        release_ids: &[i64],
    ) -> Result<Option<i64>, Error> {
        let device_id = device.id;
        let mut facts = self.db.run(move |conn| stored_facts(conn, device_id)).await?;
        let waiting =
            self.pending.lock().expect("not poisoned").reports.get(&device_id).map(|r| r.state_json.clone());
        if let Some(state) = waiting.and_then(|json| serde_json::from_str::<TerminalState>(&json).ok()) {
            facts.firmware = state.firmware;
            facts.installed =
                state.apps.into_iter().map(|a| (a.app_id, (a.version, a.version_code))).collect();
        }
        for attempt in 0..2 {
            let snapshot = self.snapshot.read().expect("not poisoned").clone();
            let (in_force, _) = snapshot.in_force(unix_now());
            // The window decides when, not what: any local time will do.
            let offered =
                tms_packages::contact::plan(&facts, &in_force, 0).into_iter().find_map(|p| match p.change {
                    Some(
                        Change::Install { release_id, .. }
                        | Change::Update { release_id, .. }
                        | Change::Rollback { release_id, .. },
                    ) if release_ids.contains(&release_id) => Some(release_id),
                    _ => None,
                });
            if offered.is_some() || attempt == 1 {
                return Ok(offered);
            }
            self.caught_up().await;
        }
        Ok(None)
    }

    /// The device behind a token, from memory while a target computed for
    /// it holds: a rollout makes every terminal report right after its
    /// contact, and reading the device again for each is a large part of
    /// the work. A deactivation is a change to the device's scope, so its
    /// reports are refused as soon as this process follows the change log,
    /// as its contacts are.
    fn known_entry(&self, key: Digest128) -> Option<Arc<Entry>> {
        let entry = self.entries.read().expect("not poisoned").get(&key).cloned()?;
        let holds = unix_now() < entry.valid_until
            && self.seen.read().expect("not poisoned").still_holds(
                entry.computed_at,
                entry.merchant_id,
                entry.location_id,
                entry.device_id,
            );
        holds.then_some(entry)
    }

    /// The deployment with this id among those that may deliver now (an
    /// active deployment, whatever its rollout's stage).
    pub fn deployment(&self, id: i64) -> Option<tms_packages::contact::Deployment> {
        self.snapshot.read().expect("not poisoned").deployments.iter().find(|d| d.id == id).cloned()
    }

    /// Remembers that a terminal called another terminal endpoint, for the
    /// next batch of last-contact times.
    pub fn heard_from(&self, device_id: i64) {
        self.note(device_id, false, None, None);
    }

    /// Remembers a contact (and a reported state) for the next batch.
    /// `contact`: a contact (counted per minute), not another call.
    /// `health`: the health report and the free storage sent with it.
    fn note(
        &self,
        device_id: i64,
        contact: bool,
        report: Option<(&ContactRequest, &str)>,
        health: Option<(&TerminalHealth, u64)>,
    ) {
        let at = now();
        let health =
            health.map(|(h, free)| (serde_json::to_string(h).expect("health reports serialise"), free));
        let report = report.map(|(r, digest)| Report {
            state_json: serde_json::to_string(&r.state).expect("states serialise"),
            firmware: r.state.firmware.clone(),
            digest: digest.to_owned(),
            wifi: r.wifi,
            time_zone: r.time_zone.chars().take(64).collect(),
            utc_offset_minutes: r.utc_offset_minutes,
            free_storage_bytes: r.free_storage_bytes,
            at,
        });
        let mut pending = self.pending.lock().expect("not poisoned");
        pending.contacts.insert(device_id, at);
        if contact {
            *pending.contact_minutes.entry(at.and_utc().timestamp().div_euclid(60)).or_default() += 1;
        }
        if let Some(health) = health {
            pending.health.insert(device_id, health);
        }
        if let Some(report) = report {
            pending.reports.insert(device_id, report);
            if pending.reports.len() == FLUSH_EARLY_REPORTS {
                self.flush_now.notify_one();
            }
        }
    }

    /// Keeps the releases an answer offers, for the flush to write with
    /// their deadline: the configured time plus the download at a slow
    /// link's speed. An offer for Wi-Fi only made to a terminal on mobile
    /// data is not one it can act on: its clock does not start.
    fn note_offers(&self, device_id: i64, body: &ContactBody, on_wifi: bool) {
        let at = now();
        let offers = body.apps.iter().chain(body.firmware.as_ref()).filter_map(|instruction| {
            let release = instruction.release.as_ref()?;
            if instruction.wifi_only && !on_wifi {
                return None;
            }
            let secs = offer_deadline_secs(
                self.settings.action_timeout.num_seconds().max(1) as u64,
                release.size,
                self.settings.slow_link_bytes_per_sec,
            );
            Some(Offer {
                deployment_id: instruction.deployment_id,
                device_id,
                offered_at: at,
                deadline_at: at + chrono::Duration::seconds(secs.min(i64::MAX as u64 / 1_000) as i64),
            })
        });
        let mut pending = self.pending.lock().expect("not poisoned");
        for offer in offers {
            // The latest: a retry made before the flush is a new attempt.
            pending.offers.insert((offer.deployment_id, offer.device_id), offer);
        }
    }

    /// Writes the contacts and reports gathered since the last flush.
    pub async fn flush(&self) -> Result<(), Error> {
        let batch = Arc::new(std::mem::take(&mut *self.pending.lock().expect("not poisoned")));
        if batch.contacts.is_empty()
            && batch.reports.is_empty()
            && batch.offers.is_empty()
            && batch.health.is_empty()
            && batch.contact_minutes.is_empty()
        {
            return Ok(());
        }
        let written = {
            let batch = batch.clone();
            let turn = self.turn.clone();
            self.db.run(move |conn| write_batch(conn, &batch, &turn)).await
        };
        if let Err(e) = written {
            // Keep what was not written for the next flush; newer news wins.
            let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| Pending {
                contacts: shared.contacts.clone(),
                reports: HashMap::new(),
                offers: shared.offers.clone(),
                health: HashMap::new(),
                contact_minutes: shared.contact_minutes.clone(),
            });
            let mut pending = self.pending.lock().expect("not poisoned");
            for (id, at) in batch.contacts {
                pending.contacts.entry(id).or_insert(at);
            }
            for (id, report) in batch.reports {
                pending.reports.entry(id).or_insert(report);
            }
            for (key, offer) in batch.offers {
                pending.offers.entry(key).or_insert(offer);
            }
            for (id, health) in batch.health {
                pending.health.entry(id).or_insert(health);
            }
            for (minute, n) in batch.contact_minutes {
                *pending.contact_minutes.entry(minute).or_default() += n;
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// What a device would receive on its next contact and why, from the
    /// state it last reported.
    pub async fn plan(&self, actor: &Actor, device_id: i64) -> Result<DevicePlanView, Error> {
        actor.require_operator(deployments::READERS)?;
        // What this process heard from terminals and has not written yet.
        self.flush().await?;
        let (device, (holds, commands, health), inventory) = self
            .db
            .run(move |conn| {
                let row = crate::devices::find(conn, device_id)?.ok_or_else(|| Error::not_found("device"))?;
                let holds = rollouts::attempts::holds_of(conn, device_id, crate::time::now())?;
                let commands = crate::commands::open_for_device(conn, device_id, crate::time::now())?;
                let inventory: Option<(String, i32, NaiveDateTime, i64)> = device_inventory::table
                    .find(device_id)
                    .select((
                        device_inventory::state_json,
                        device_inventory::utc_offset_minutes,
                        device_inventory::reported_at,
                        device_inventory::free_storage_bytes,
                    ))
                    .first(conn)
                    .optional()?;
                let health: Option<(i64, NaiveDateTime)> = device_health::table
                    .find(device_id)
                    .select((device_health::free_storage_bytes, device_health::reported_at))
                    .first(conn)
                    .optional()?;
                Ok::<_, Error>((row, (holds, commands, health), inventory))
            })
            .await?;
        let free_storage_bytes =
            crate::devices::latest_free_storage(inventory.as_ref().map(|i| (i.3, i.2)), health)
                .unwrap_or(0)
                .max(0) as u64;
        let state: Option<(TerminalState, i32, NaiveDateTime)> = inventory
            .and_then(|(json, offset, at, _)| serde_json::from_str(&json).ok().map(|s| (s, offset, at)));
        let reported_at = state.as_ref().map(|(_, _, at)| rfc3339(*at));
        let (state, offset) = match state {
            Some((s, offset, _)) => (s, offset),
            None => (
                TerminalState {
                    model: device.model.clone(),
                    firmware: "unknown".into(),
                    firmware_sha256: None,
                    apps: Vec::new(),
                    parameters: Default::default(),
                    acquirers: Default::default(),
                },
                0,
            ),
        };
        let device = Device {
            calling: CallingDevice {
                id: device.id,
                merchant_id: device.merchant_id,
                location_id: device.location_id,
                name: device.name.clone(),
                hardware_id: device.hardware_id.clone(),
            },
            model: device.model.clone(),
            firmware_only: device.kind == crate::devices::LINUX,
            holds,
            commands,
            free_storage_bytes,
        };
        let snapshot = self.snapshot.read().expect("not poisoned").clone();
        let computed = target::compute(
            &self.db,
            &self.blobs,
            &self.sets,
            &snapshot,
            &device,
            &state,
            offset,
            unix_now(),
        )
        .await?;
        Ok(plan_view(&snapshot, &device, &state, reported_at, &computed))
    }
}

/// A device as the planner sees it, from its registration and the state it
/// last reported (written by the last flush).
fn stored_facts(conn: &mut DbConnection, device_id: i64) -> Result<DeviceFacts, Error> {
    let row = crate::devices::find(conn, device_id)?.ok_or_else(|| Error::not_found("device"))?;
    let state: Option<String> = device_inventory::table
        .find(device_id)
        .select(device_inventory::state_json)
        .first(conn)
        .optional()?;
    let state: Option<TerminalState> = state.and_then(|json| serde_json::from_str(&json).ok());
    Ok(DeviceFacts {
        device_id,
        merchant_id: row.merchant_id,
        location_id: row.location_id,
        model: row.model,
        firmware: state.as_ref().map(|s| s.firmware.clone()).unwrap_or_default(),
        installed: state
            .map(|s| s.apps.into_iter().map(|a| (a.app_id, (a.version, a.version_code))).collect())
            .unwrap_or_default(),
    })
}

fn plan_view(
    snapshot: &Snapshot,
    device: &Device,
    state: &TerminalState,
    reported_at: Option<String>,
    computed: &Computed,
) -> DevicePlanView {
    let precedence = |id: i64| {
        snapshot
            .deployments
            .iter()
            .find(|d| d.id == id)
            .map_or("unknown", |d| d.target.precedence_name())
            .to_owned()
    };
    let apps = computed
        .plans
        .iter()
        .map(|p| {
            let release =
                p.deployment_id.and_then(|id| snapshot.deliveries.get(&id)).and_then(|d| d.offer.clone());
            let mut considered: Vec<ConsideredDeployment> = Vec::new();
            if let Some(id) = p.deployment_id {
                considered.push(ConsideredDeployment {
                    deployment_id: id,
                    precedence: precedence(id),
                    outcome: "decides".into(),
                    detail: serde_json::json!({}),
                });
            }
            considered.extend(p.skipped.iter().map(|(id, skip): &(i64, Skip)| ConsideredDeployment {
                deployment_id: *id,
                precedence: precedence(*id),
                outcome: skip.to_string(),
                detail: serde_json::to_value(skip).unwrap_or_default(),
            }));
            considered.sort_by_key(|c| c.deployment_id);
            let held = computed.held.iter().find(|(app, _)| *app == p.app_id).map(|(_, h)| h);
            let short = computed.short_of_space.iter().find(|(app, _, _)| *app == p.app_id);
            AppPlanView {
                app_id: p.app_id.clone(),
                installed: state
                    .apps
                    .iter()
                    .find(|a| a.app_id == p.app_id)
                    .map(|a| format!("{} ({})", a.version, a.version_code)),
                deployment_id: p.deployment_id,
                change: p.change.as_ref().map(|c| c.kind()),
                release: p.change.as_ref().and(release).map(|o| o.version),
                deferred_secs: p.deferred_secs,
                retry_at: held.and_then(|h| h.until).map(|t| rfc3339(crate::time::from_unix(t))),
                failed_for_good: held.is_some_and(|h| h.until.is_none()),
                storage_needed_bytes: short.map(|(_, needs, _)| *needs),
                storage_free_bytes: short.map(|(_, _, free)| *free),
                considered,
            }
        })
        .collect();
    DevicePlanView {
        device_id: device.calling.id,
        model: device.model.clone(),
        firmware: state.firmware.clone(),
        reported_at,
        apps,
        parameters: computed
            .parameter_versions
            .iter()
            .map(|(app_id, holds, current)| ParameterPlanView {
                app_id: app_id.clone(),
                holds: holds.clone(),
                current: current.clone(),
            })
            .collect(),
        acquirer_sessions: computed.acquirers_due.clone(),
        in_sync: computed.in_sync,
    }
}

/// Contact times per statement: one statement, prepared once, carries
/// thousands (diesel would build and prepare an upsert per chunk of rows).
const CONTACTS_PER_STATEMENT: usize = 10_000;

/// Reported states per transaction: terminal feedback waits for one
/// transaction of the flush at most, not for the whole flush (a round of
/// installs brings tens of thousands of new states per flush).
const REPORTS_PER_TRANSACTION: usize = 1_000;

/// Writes a flush in transactions of its own (contact times and reported
/// states are rows independent of one another; a flush that fails part way
/// is written again whole, newer news first).
fn write_batch(conn: &mut DbConnection, batch: &Pending, turn: &WriteTurn) -> Result<(), DbError> {
    use diesel::sql_types::{Array, BigInt, Text, Timestamp};
    // The batch's latest moment stands for all (at most one flush interval off).
    let at = batch.contacts.values().max().copied().unwrap_or_else(now);
    let ids: Vec<i64> = batch.contacts.keys().copied().collect();
    for chunk in ids.chunks(CONTACTS_PER_STATEMENT) {
        let _turn = turn.take(conn);
        // An upsert changes only the time of a device seen before: no row
        // moves and its reference to the device is not checked again.
        // The hour of the last contact changes once an hour per terminal:
        // its upsert writes nothing (and touches no index) the other times.
        let hour = at.and_utc().timestamp().div_euclid(3_600);
        crate::db::write_tx(conn, |conn| match conn {
            DbConnection::Sqlite(c) => {
                let ids = serde_json::to_string(chunk).expect("ids serialise");
                diesel::sql_query(
                    "INSERT INTO device_contacts (device_id, contacted_at) \
                     SELECT value, ? FROM json_each(?) WHERE true \
                     ON CONFLICT (device_id) DO UPDATE SET contacted_at = excluded.contacted_at",
                )
                .bind::<Timestamp, _>(at)
                .bind::<Text, _>(&ids)
                .execute(c)?;
                diesel::sql_query(
                    "INSERT INTO device_contact_hours (device_id, hour) \
                     SELECT value, ? FROM json_each(?) WHERE true \
                     ON CONFLICT (device_id) DO UPDATE SET hour = excluded.hour \
                     WHERE device_contact_hours.hour <> excluded.hour",
                )
                .bind::<BigInt, _>(hour)
                .bind::<Text, _>(&ids)
                .execute(c)
            }
            DbConnection::Postgres(c) => {
                diesel::sql_query(
                    "INSERT INTO device_contacts (device_id, contacted_at) \
                     SELECT unnest($1), $2 \
                     ON CONFLICT (device_id) DO UPDATE SET contacted_at = excluded.contacted_at",
                )
                .bind::<Array<BigInt>, _>(chunk)
                .bind::<Timestamp, _>(at)
                .execute(c)?;
                diesel::sql_query(
                    "INSERT INTO device_contact_hours (device_id, hour) \
                     SELECT unnest($1), $2 \
                     ON CONFLICT (device_id) DO UPDATE SET hour = excluded.hour \
                     WHERE device_contact_hours.hour <> excluded.hour",
                )
                .bind::<Array<BigInt>, _>(chunk)
                .bind::<BigInt, _>(hour)
                .execute(c)
            }
        })?;
    }
    let health: Vec<(i64, &str, i64)> = batch
        .health
        .iter()
        .map(|(id, (h, free))| (*id, h.as_str(), (*free).min(i64::MAX as u64) as i64))
        .collect();
    for chunk in health.chunks(CONTACTS_PER_STATEMENT) {
        let _turn = turn.take(conn);
        crate::db::write_tx(conn, |conn| match conn {
            DbConnection::Sqlite(c) => diesel::sql_query(
                "INSERT INTO device_health (device_id, health_json, free_storage_bytes, reported_at) \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                 json_extract(value, '$[2]'), ? FROM json_each(?) WHERE true \
                 ON CONFLICT (device_id) DO UPDATE SET health_json = excluded.health_json, \
                 free_storage_bytes = excluded.free_storage_bytes, reported_at = excluded.reported_at",
            )
            .bind::<Timestamp, _>(at)
            .bind::<Text, _>(serde_json::to_string(chunk).expect("reports serialise"))
            .execute(c),
            DbConnection::Postgres(c) => {
                let ids: Vec<i64> = chunk.iter().map(|h| h.0).collect();
                let reports: Vec<&str> = chunk.iter().map(|h| h.1).collect();
                let free: Vec<i64> = chunk.iter().map(|h| h.2).collect();
                diesel::sql_query(
                    "INSERT INTO device_health (device_id, health_json, free_storage_bytes, reported_at) \
                     SELECT unnest($1), unnest($2), unnest($3), $4 \
                     ON CONFLICT (device_id) DO UPDATE SET health_json = excluded.health_json, \
                     free_storage_bytes = excluded.free_storage_bytes, reported_at = excluded.reported_at",
                )
                .bind::<Array<BigInt>, _>(ids)
                .bind::<Array<Text>, _>(reports)
                .bind::<Array<BigInt>, _>(free)
                .bind::<Timestamp, _>(at)
                .execute(c)
            }
        })?;
    }
    let reports: Vec<(&i64, &Report)> = batch.reports.iter().collect();
    for chunk in reports.chunks(REPORTS_PER_TRANSACTION) {
        let _turn = turn.take(conn);
        crate::db::write_tx(conn, |conn| {
            for (device_id, r) in chunk {
                write_report(conn, **device_id, r)?;
            }
            Ok::<_, DbError>(())
        })?;
    }
    // After the reports: an offer whose first report came in meanwhile
    // then finds it, and only dates it.
    let offers: Vec<Offer> = batch.offers.values().copied().collect();
    for chunk in offers.chunks(REPORTS_PER_TRANSACTION) {
        let _turn = turn.take(conn);
        crate::db::write_tx(conn, |conn| rollouts::attempts::record_offers(conn, chunk))?;
    }
    // Last: a failed flush keeps its counts for the next one, which must
    // not add them twice.
    if !batch.contact_minutes.is_empty() {
        let _turn = turn.take(conn);
        crate::devices::overview::add_contact_minutes(conn, &batch.contact_minutes)?;
    }
    Ok(())
}

fn write_report(conn: &mut DbConnection, device_id: i64, r: &Report) -> Result<(), DbError> {
    let values = (
        device_inventory::firmware.eq(&r.firmware),
        device_inventory::state_json.eq(&r.state_json),
        device_inventory::digest.eq(&r.digest),
        device_inventory::wifi.eq(r.wifi),
        device_inventory::time_zone.eq(&r.time_zone),
        device_inventory::utc_offset_minutes.eq(r.utc_offset_minutes),
        device_inventory::free_storage_bytes.eq(r.free_storage_bytes.min(i64::MAX as u64) as i64),
        device_inventory::reported_at.eq(r.at),
    );
    // Another process may write the same device's first report at once: an
    // upsert, or a REPLACE, which SQLite prepares only once.
    match conn {
        DbConnection::Sqlite(c) => diesel::replace_into(device_inventory::table)
            .values((device_inventory::device_id.eq(device_id), values))
            .execute(c)?,
        DbConnection::Postgres(c) => diesel::insert_into(device_inventory::table)
            .values((device_inventory::device_id.eq(device_id), values))
            .on_conflict(device_inventory::device_id)
            .do_update()
            .set(values)
            .execute(c)?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_target_stays_128_bytes() {
        // A million terminals keep one each: a field added must fit the padding.
        assert!(std::mem::size_of::<Entry>() <= 128, "{} bytes", std::mem::size_of::<Entry>());
    }

    #[test]
    fn free_storage_is_kept_in_kib() {
        assert_eq!(kib(10_000), 9);
        assert_eq!(kib(u64::MAX), u32::MAX);
    }
}
