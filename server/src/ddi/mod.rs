//! hawkBit's Direct Device Integration API, so Linux devices with an
//! existing update agent (SWUpdate's suricatta, rauc-hawkbit-updater, a DDI
//! client library) are served by the same planner as Android terminals: a
//! poll is a contact planned from the state the server keeps for the device,
//! a DDI action is a deployment (its id is the deployment's), feedback is the
//! terminal feedback in DDI words. A presentation layer: it parses, checks
//! the device's credentials, and calls the contact service and the domain.
//!
//! The fast path holds: a device polling with nothing to do is answered from
//! memory (its credentials and kept state here, its target in the contact
//! service), with no database write and no signature.

mod routes;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tms_packages::wire::contact::TerminalState;
use tms_signing::Sha256Digest;

use crate::blobs::BlobStore;
use crate::config::Config;
use crate::contact::{Caller, ContactService, Decided, Decision};
use crate::db::Db;
use crate::devices::linux::{self, LinuxDevice};
use crate::error::{Error, ErrorCode};

pub use routes::routes;

/// The DDI settings, from the server's configuration.
#[derive(Clone)]
pub struct DdiSettings {
    pub tenant: String,
    pub target_tokens: bool,
    /// sha256 of the gateway token: compared digest to digest.
    pub gateway_token: Option<Sha256Digest>,
    pub register_location: Option<i64>,
    pub register_model: String,
}

impl DdiSettings {
    pub fn from_config(config: &Config) -> DdiSettings {
        DdiSettings {
            tenant: config.ddi_tenant.clone(),
            target_tokens: config.ddi_target_tokens,
            gateway_token: config
                .ddi_gateway_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| Sha256Digest::of(t.as_bytes())),
            register_location: config.ddi_register_location,
            register_model: config.ddi_register_model.clone(),
        }
    }
}

/// How a device proved who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    Target(String),
    Gateway,
}

impl Credential {
    /// The caller as the contact service knows it.
    pub fn caller<'a>(&'a self, controller_id: &'a str) -> Caller<'a> {
        match self {
            Credential::Target(token) => Caller::Token(token),
            Credential::Gateway => Caller::Controller(controller_id),
        }
    }
}

/// A device this process served, kept while nothing touching it changes.
struct Known {
    device: Arc<LinuxDevice>,
    /// The change-log position when it was read.
    position: i64,
}

pub struct DdiService {
    settings: DdiSettings,
    db: Db,
    blobs: BlobStore,
    contact: Arc<ContactService>,
    known: RwLock<HashMap<[u8; 16], Arc<Known>>>,
    /// Whether a deployment's action waits for confirmation (set when it is
    /// created, never changed).
    confirmation: RwLock<HashMap<i64, bool>>,
}

/// What a poll found for a device: its kept state and the planner's decision.
pub struct Polled {
    pub device: Arc<LinuxDevice>,
    pub decided: Decided,
}

impl Polled {
    /// The firmware change offered now: (deployment, release id), if any.
    pub fn offered(&self) -> Option<&tms_packages::wire::contact::AppInstruction> {
        match &self.decided.decision {
            Decision::Changes(body) => body.firmware.as_ref().filter(|f| f.release.is_some()),
            Decision::InSync { .. } => None,
        }
    }
}

impl DdiService {
    pub fn new(settings: DdiSettings, db: Db, blobs: BlobStore, contact: Arc<ContactService>) -> DdiService {
        DdiService {
            settings,
            db,
            blobs,
            contact,
            known: RwLock::new(HashMap::new()),
            confirmation: RwLock::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &DdiSettings {
        &self.settings
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn contact(&self) -> &ContactService {
        &self.contact
    }

    /// The tenant in the URL must be this server's (compared without case, as hawkBit does).
    pub fn check_tenant(&self, tenant: &str) -> Result<(), Error> {
        if tenant.eq_ignore_ascii_case(&self.settings.tenant) {
            Ok(())
        } else {
            Err(Error::not_found("tenant"))
        }
    }

    /// The credential an `Authorization` header carries, checked against
    /// what this server accepts (a gateway token here, a target token later
    /// against its device).
    pub fn credential(&self, authorization: Option<&str>) -> Result<Credential, Error> {
        let refused = |message: &str| Error::new(ErrorCode::InvalidDeviceToken, message.to_owned());
        let header = authorization.map(str::trim).unwrap_or_default();
        if let Some(token) = header.strip_prefix("TargetToken ").map(str::trim).filter(|t| !t.is_empty()) {
            if !self.settings.target_tokens {
                return Err(refused("target tokens are switched off on this server"));
            }
            return Ok(Credential::Target(token.to_owned()));
        }
        if let Some(token) = header.strip_prefix("GatewayToken ").map(str::trim).filter(|t| !t.is_empty()) {
            let Some(expected) = &self.settings.gateway_token else {
                return Err(refused("gateway tokens are switched off on this server"));
            };
            // Both sides hashed: the comparison takes the same time whatever
            // the token shares with the right one.
            if Sha256Digest::of(token.as_bytes()).as_bytes() != expected.as_bytes() {
                return Err(refused("wrong gateway token"));
            }
            return Ok(Credential::Gateway);
        }
        Err(refused("send Authorization: TargetToken <token> (or GatewayToken <token>)"))
    }

    fn key(credential: &Credential, controller_id: &str) -> [u8; 16] {
        let text = match credential {
            Credential::Target(token) => format!("t\n{token}\n{controller_id}"),
            Credential::Gateway => format!("g\n{controller_id}"),
        };
        let mut key = [0u8; 16];
        key.copy_from_slice(&Sha256Digest::of(text.as_bytes()).as_bytes()[..16]);
        key
    }

    /// The device a call comes from, with what the server keeps for it:
    /// from memory while nothing touching it changed, else from the
    /// database (registering it when the gateway token may).
    pub async fn device(
        &self,
        credential: &Credential,
        controller_id: &str,
    ) -> Result<Arc<LinuxDevice>, Error> {
        if !linux::valid_controller_id(controller_id) {
            return Err(Error::new(ErrorCode::UnknownController, "not a controller id"));
        }
        let key = Self::key(credential, controller_id);
        let cached = self.known.read().expect("not poisoned").get(&key).cloned();
        if let Some(known) = cached {
            let row = &known.device.row;
            if self.contact.still_holds(known.position, row.merchant_id, row.location_id, row.id) {
                return Ok(known.device.clone());
            }
        }
        // Taken before the read: a change committed meanwhile is seen later.
        let position = self.contact.position();
        let (credential, controller) = (credential.clone(), controller_id.to_owned());
        let register = self.settings.register_location.map(|l| (l, self.settings.register_model.clone()));
        let device = self
            .db
            .run(move |conn| {
                let row = match &credential {
                    Credential::Target(token) => linux::by_token(conn, token, &controller)?,
                    Credential::Gateway => match linux::by_controller(conn, &controller) {
                        Err(e) if e.code() == ErrorCode::UnknownController => match &register {
                            Some((location, model)) => {
                                linux::register_by_gateway(conn, &controller, *location, model)?
                            }
                            None => return Err(e),
                        },
                        found => found?,
                    },
                };
                linux::load(conn, row)
            })
            .await;
        let device = match device {
            Ok(d) => Arc::new(d),
            Err(e) => {
                self.known.write().expect("not poisoned").remove(&key);
                return Err(e);
            }
        };
        let mut known = self.known.write().expect("not poisoned");
        if known.len() >= 2_000_000 {
            known.clear();
        }
        known.insert(key, Arc::new(Known { device: device.clone(), position }));
        Ok(device)
    }

    /// Forgets what this process keeps of a device, after it changed it.
    pub fn forget(&self, credential: &Credential, controller_id: &str) {
        self.known.write().expect("not poisoned").remove(&Self::key(credential, controller_id));
    }

    /// Polls the planner for a device: what its state (the image it
    /// installed last) gets now.
    pub async fn poll(&self, credential: &Credential, controller_id: &str) -> Result<Polled, Error> {
        let device = self.device(credential, controller_id).await?;
        let state = TerminalState {
            model: device.row.model.clone(),
            firmware: device.installed.as_ref().map(|i| i.version.clone()).unwrap_or_default(),
            firmware_sha256: device.installed.as_ref().map(|i| i.sha256.clone()),
            apps: Vec::new(),
            parameters: Default::default(),
            acquirers: Default::default(),
        };
        let decided = self.contact.poll(credential.caller(controller_id), state).await?;
        Ok(Polled { device, decided })
    }

    /// Whether the action of a deployment waits for this device's
    /// confirmation: the deployment asks for one, and the device neither
    /// confirmed it nor confirms everything itself.
    pub async fn awaits_confirmation(&self, device: &LinuxDevice, deployment_id: i64) -> Result<bool, Error> {
        if device.auto_confirm || device.confirmed_deployment_id == Some(deployment_id) {
            return Ok(false);
        }
        let cached = self.confirmation.read().expect("not poisoned").get(&deployment_id).copied();
        let required = match cached {
            Some(r) => r,
            None => {
                let r = self.db.run(move |conn| linux::confirmation_required(conn, deployment_id)).await?;
                self.confirmation.write().expect("not poisoned").insert(deployment_id, r);
                r
            }
        };
        Ok(required)
    }

    /// The action a device should stop: the one it works on, when its
    /// deployment no longer delivers (cancelled, rolled back, finished) or
    /// another deployment now decides its image.
    pub fn to_cancel(&self, polled: &Polled) -> Option<i64> {
        let working = polled.device.action_deployment_id?;
        let offered = polled.offered().map(|i| i.deployment_id);
        let in_force = self.contact.deployment(working).is_some();
        (!in_force || offered.is_some_and(|o| o != working)).then_some(working)
    }
}
