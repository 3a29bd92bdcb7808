//! hawkBit's Direct Device Integration (DDI) API v1, as its documentation
//! spells the JSON: camelCase names, `_links` with `href`s. Devices running
//! an existing update agent (SWUpdate, rauc-hawkbit-updater, a client
//! library) talk to this server through these types unchanged. Fields the
//! server does not use are ignored on input, as hawkBit ignores them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
}

impl Link {
    pub fn to(href: impl Into<String>) -> Link {
        Link { href: href.into() }
    }
}

/// `GET /{tenant}/controller/v1/{controllerId}`: when to call again and
/// what waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerBase {
    pub config: ControllerConfig,
    #[serde(rename = "_links", default, skip_serializing_if = "ControllerLinks::is_empty")]
    pub links: ControllerLinks,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    pub polling: Polling,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polling {
    /// `HH:MM:SS`.
    pub sleep: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerLinks {
    #[serde(rename = "deploymentBase", default, skip_serializing_if = "Option::is_none")]
    pub deployment_base: Option<Link>,
    #[serde(rename = "cancelAction", default, skip_serializing_if = "Option::is_none")]
    pub cancel_action: Option<Link>,
    #[serde(rename = "confirmationBase", default, skip_serializing_if = "Option::is_none")]
    pub confirmation_base: Option<Link>,
    #[serde(rename = "installedBase", default, skip_serializing_if = "Option::is_none")]
    pub installed_base: Option<Link>,
    #[serde(rename = "configData", default, skip_serializing_if = "Option::is_none")]
    pub config_data: Option<Link>,
}

impl ControllerLinks {
    pub fn is_empty(&self) -> bool {
        *self == ControllerLinks::default()
    }
}

/// `GET …/deploymentBase/{actionId}` and `GET …/installedBase/{actionId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentBase {
    pub id: String,
    pub deployment: Deployment,
    #[serde(rename = "actionHistory", default, skip_serializing_if = "Option::is_none")]
    pub action_history: Option<ActionHistory>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// `skip`, `attempt` or `forced`.
    pub download: String,
    pub update: String,
    /// `available` or `unavailable`; absent when the action has no window.
    #[serde(rename = "maintenanceWindow", default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<String>,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The software module's type: `os` for a firmware image.
    pub part: String,
    pub version: String,
    pub name: String,
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<Metadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub filename: String,
    pub hashes: Hashes,
    pub size: u64,
    /// `download`, `download-http`, `md5sum`, `md5sum-http`.
    #[serde(rename = "_links")]
    pub links: BTreeMap<String, Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    pub sha1: String,
    pub md5: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionHistory {
    pub status: String,
    #[serde(default)]
    pub messages: Vec<String>,
}

/// `POST …/deploymentBase/{actionId}/feedback` and
/// `POST …/cancelAction/{actionId}/feedback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionFeedback {
    /// The action id again (older clients); the path's id decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: FeedbackStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackStatus {
    /// `closed`, `proceeding`, `canceled`, `scheduled`, `rejected`,
    /// `resumed`, `downloaded` or `download`.
    pub execution: String,
    pub result: FeedbackResult,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// A device-specific code (hawkBit 0.3.0 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackResult {
    /// `success`, `failure` or `none`.
    pub finished: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub cnt: u64,
    pub of: u64,
}

/// `GET …/cancelAction/{actionId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelActionBase {
    pub id: String,
    #[serde(rename = "cancelAction")]
    pub cancel_action: CancelAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAction {
    #[serde(rename = "stopId")]
    pub stop_id: String,
}

/// `PUT …/configData`: attributes the device reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigData {
    /// `merge` (the default), `replace` or `remove`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub data: BTreeMap<String, String>,
}

/// `GET …/confirmationBase/{actionId}`: the action that waits for the
/// device's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationAction {
    pub id: String,
    pub confirmation: Deployment,
}

/// `POST …/confirmationBase/{actionId}/feedback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationFeedback {
    /// `confirmed` or `denied`.
    pub confirmation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// `GET …/confirmationBase`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationBase {
    #[serde(rename = "autoConfirm")]
    pub auto_confirm: AutoConfirm,
    #[serde(rename = "_links", default)]
    pub links: BTreeMap<String, Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoConfirm {
    /// `active` or `inactive`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_with_nothing_to_do_has_no_links() {
        let base = ControllerBase {
            config: ControllerConfig { polling: Polling { sleep: "00:05:00".into() } },
            links: ControllerLinks::default(),
        };
        assert_eq!(serde_json::to_string(&base).unwrap(), r#"{"config":{"polling":{"sleep":"00:05:00"}}}"#);
    }

    #[test]
    fn feedback_as_hawkbit_documents_it_reads_with_unknown_fields() {
        // hawkBit's documented example, with its `time` and an unknown field.
        let json = r#"{"id":"42","time":"20140511T121314","status":{"execution":"proceeding",
            "result":{"finished":"none","progress":{"cnt":2,"of":5}},"details":["Some feedback"],
            "code":200},"extra":true}"#;
        let f: ActionFeedback = serde_json::from_str(json).unwrap();
        assert_eq!(f.status.execution, "proceeding");
        assert_eq!(f.status.result.progress, Some(Progress { cnt: 2, of: 5 }));
        assert_eq!(f.status.code, Some(200));
    }
}
