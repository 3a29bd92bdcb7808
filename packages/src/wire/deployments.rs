//! Wire types of deployments, rollouts, device groups, feedback history and
//! the support tool's plan of a device.

use serde_json::Value;

use crate::contact::ActionType;

wire! {
    /// `POST /api/v1/deployments`.
    pub struct CreateDeploymentRequest {
        pub app_id: String,
        /// The release to deliver; leave out with `remove`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub version: Option<String>,
        /// Remove the app instead of delivering a release.
        #[serde(default)]
        pub remove: bool,
        /// `everyone`, `merchant:M`, `location:L`, `group:G` or `devices:D1,D2,…`.
        pub target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub action: Option<ActionType>,
        /// RFC 3339; now when left out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub starts_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expires_at: Option<String>,
        /// `HH:MM-HH:MM` in the terminal's local time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub window: Option<String>,
        #[serde(default)]
        pub wifi_only: bool,
        /// Create it held: nothing is delivered until a rollout starts.
        #[serde(default)]
        pub hold: bool,
        /// Delays before offering a failed (or timed-out) install again, one
        /// per retry, e.g. `0,1h,6h,24h` (the default); after the last, the
        /// terminal has failed for good. `none`: no retry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_delays: Option<String>,
        /// Times a terminal may postpone the change before a postponement
        /// counts as a failed attempt [default: 10].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_postpones: Option<u32>,
        /// Linux devices on the DDI API confirm the action before it is
        /// delivered (hawkBit's confirmation flow; a device with auto-confirm
        /// on confirms at once); Android terminals pass it by.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub confirmation_required: bool,
    }

    pub struct DeploymentView {
        pub id: i64,
        pub app_id: String,
        /// `release` or `removal`.
        pub kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub release_id: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub version: Option<String>,
        pub target: String,
        pub action: ActionType,
        /// A rollback: delivered even over a higher installed version.
        pub pinned: bool,
        pub starts_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expires_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub window: Option<String>,
        pub wifi_only: bool,
        /// Delays before each retry of a failed install, e.g. `0,1h,6h,1d`, or `none`.
        #[serde(default = "default_retry_delays")]
        pub retry_delays: String,
        /// Postponements allowed before one counts as a failed attempt.
        #[serde(default = "default_max_postpones")]
        pub max_postpones: u32,
        /// DDI devices confirm its action before it is delivered.
        #[serde(default)]
        pub confirmation_required: bool,
        /// `held` (waits for its rollout), `active`, `cancelled` or
        /// `superseded` (a store request replaced by a later one).
        pub status: String,
        /// `operator`, or `store` for a merchant's install or uninstall.
        #[serde(default = "operator_origin")]
        pub origin: String,
        /// The merchant that asked, for a store request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub merchant_id: Option<i64>,
        pub created_at: String,
        pub created_by: String,
        /// The deployment this one rolls back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rollback_of: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rollout: Option<RolloutView>,
    }

    /// `POST /api/v1/deployments/{id}/rollout`.
    pub struct StartRolloutRequest {
        /// Percentages of the target, rising, the last one 100, e.g. `[1, 10, 50, 100]`.
        pub stages: Vec<f64>,
        /// Percentage of a stage's devices that must report `installed` before
        /// the next stage starts.
        pub success_percent: f64,
        /// Failures that pause the rollout: a count (`3`) or a percentage of
        /// the stage's devices (`2%`).
        pub max_failures: String,
        /// Advance by itself when a stage succeeds (else wait for `approve`).
        #[serde(default = "yes")]
        pub auto_advance: bool,
    }

    pub struct RolloutView {
        pub id: i64,
        pub deployment_id: i64,
        /// `running`, `waiting_approval`, `paused`, `halted`, `completed` or `rolled_back`.
        pub status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub status_reason: Option<String>,
        /// The same reason as a code and its values, for readers in other
        /// languages (absent for rollouts moved before codes were kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub status_reason_detail: Option<crate::rollouts::StatusReason>,
        pub stages: Vec<f64>,
        /// Index into `stages`.
        pub current_stage: u32,
        pub current_percent: f64,
        pub success_percent: f64,
        pub max_failures: String,
        pub auto_advance: bool,
        /// Per stage reached so far: the devices that entered at that stage.
        pub stage_stats: Vec<StageStats>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rollback_deployment_id: Option<i64>,
        pub updated_at: String,
    }

    pub struct StageStats {
        pub stage: u32,
        pub percent: f64,
        /// Targeted devices in this stage (compatible or not).
        pub devices: u64,
        /// Not started yet (includes devices that cannot take the release).
        pub pending: u64,
        pub in_progress: u64,
        pub installed: u64,
        /// Terminals that failed at least once and have not installed since
        /// (retrying, timed out or failed for good).
        pub failed: u64,
        /// Of the failed, those whose last attempt timed out.
        #[serde(default)]
        pub timed_out: u64,
        /// Of the failed, those with no retry left.
        #[serde(default)]
        pub failed_for_good: u64,
        pub postponed: u64,
    }

    /// Where a rollout's stages stood at one count (the supervisor counts
    /// each active rollout every pass while it runs, once a minute while it
    /// is paused or waits for approval, and keeps the last count of each
    /// minute).
    pub struct RolloutCountsView {
        pub counted_at: String,
        /// Per stage reached at that count.
        pub stages: Vec<StageStats>,
    }

    /// `GET /api/v1/deployments/{id}/rollout/history`: the rollout's counts
    /// over time, oldest first, at most a few hundred of them, evenly
    /// spaced over the rollout's life, the latest always included.
    pub struct RolloutHistoryView {
        pub deployment_id: i64,
        /// Minutes between two counts listed (1 for a young rollout).
        pub step_minutes: u32,
        pub counts: Vec<RolloutCountsView>,
    }

    /// `GET /api/v1/deployments/{id}/failures`: a terminal that failed to
    /// install the deployment's release and has not installed it since.
    pub struct FailedDeviceView {
        pub device_id: i64,
        pub device_name: String,
        pub model: String,
        /// `failed`, `timed_out`, or where its retry stands (`offered`, `downloading`, …).
        pub status: String,
        /// Failed attempts (failures, timeouts, postponements past the limit).
        pub attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<String>,
        /// When it is offered the release again (RFC 3339).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_at: Option<String>,
        /// No retry left: it is not offered the release again.
        pub failed_for_good: bool,
        pub updated_at: String,
    }

    /// `POST /api/v1/deployments/preview`: what a deployment would reach,
    /// before it is saved.
    pub struct DeploymentPreview {
        /// Active terminals the target holds.
        pub targeted: u64,
        /// Of those, terminals it would deliver to (or remove the app from).
        pub receive: u64,
        /// Terminals that run this release or a later one already.
        pub already: u64,
        /// Terminals without the app: an operator's release of a store or
        /// private app only updates it where merchants installed it, and a
        /// removal has nothing to remove there.
        pub without_app: u64,
        /// Terminals the release does not fit, by model and reason.
        pub incompatible: Vec<IncompatibleTerminals>,
    }

    pub struct IncompatibleTerminals {
        pub model: String,
        /// `model` (the release names other models) or `firmware` (older
        /// than the release needs).
        pub reason: String,
        /// The firmware the release needs, when that is the reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub needs_firmware: Option<String>,
        pub terminals: u64,
    }

    /// `POST /api/v1/device-groups`: a static list or a dynamic filter.
    pub struct CreateDeviceGroupRequest {
        pub name: String,
        /// For example `model=A920 and firmware<12` (see the contact docs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub filter: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub devices: Vec<i64>,
    }

    pub struct DeviceGroupView {
        pub id: i64,
        pub name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub filter: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub devices: Vec<i64>,
        /// Active terminals in the group now (a dynamic group's count reads
        /// every terminal's last report): given by the group's own page only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub terminals: Option<u64>,
        pub created_at: String,
    }

    /// One step a terminal reported about a deployment.
    pub struct ActionEventView {
        pub device_id: i64,
        pub deployment_id: i64,
        pub app_id: String,
        pub status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub progress_percent: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<String>,
        /// `delta` or `full`, as the terminal reported it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub download: Option<String>,
        pub at: String,
    }

    /// What a device would receive on its next contact, and why.
    pub struct DevicePlanView {
        pub device_id: i64,
        pub model: String,
        /// As last reported (`unknown` before the first contact).
        pub firmware: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reported_at: Option<String>,
        pub apps: Vec<AppPlanView>,
        pub parameters: Vec<ParameterPlanView>,
        pub acquirer_sessions: Vec<String>,
        /// Whether its last reported state is its target.
        pub in_sync: bool,
    }

    pub struct AppPlanView {
        pub app_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub installed: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub deployment_id: Option<i64>,
        /// Absent when nothing is to do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub change: Option<crate::contact::ChangeKind>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub release: Option<String>,
        /// The change waits for a maintenance window opening in this many seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub deferred_secs: Option<u32>,
        /// The change is held back after failed attempts: offered again at
        /// this time (RFC 3339), or never when `failed_for_good`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_at: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub failed_for_good: bool,
        /// The change is held: its artifact needs this many bytes and the
        /// terminal reported `storage_free_bytes` free.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub storage_needed_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub storage_free_bytes: Option<u64>,
        pub considered: Vec<ConsideredDeployment>,
    }

    pub struct ConsideredDeployment {
        pub deployment_id: i64,
        /// `devices`, `group`, `location`, `merchant` or `everyone`.
        pub precedence: String,
        /// `decides`, or why it does not.
        pub outcome: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        pub detail: Value,
    }

    pub struct ParameterPlanView {
        pub app_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub holds: Option<String>,
        pub current: String,
    }
}

fn yes() -> bool {
    true
}

fn default_retry_delays() -> String {
    crate::rollouts::RetryPolicy::default().to_text()
}

fn default_max_postpones() -> u32 {
    crate::rollouts::DEFAULT_MAX_POSTPONES
}

fn operator_origin() -> String {
    "operator".into()
}
