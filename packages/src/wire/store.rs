//! The merchant app store: the operator's listing of an app, the catalogue a
//! merchant browses, and install and uninstall requests.

use crate::contact::ActionType;

wire! {
    /// Changes to an app (operators); absent fields keep their value.
    pub struct UpdateAppRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        /// `system` (the operator pushes it; merchants cannot remove it),
        /// `store` (in the catalogue) or `private` (only to named merchants).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub visibility: Option<String>,
        /// One line, up to 200 characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub summary: Option<String>,
        /// Up to 10,000 characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<String>,
        /// A label such as `tipping`, `loyalty` or `parking`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub category: Option<String>,
    }

    /// One app of a merchant's catalogue.
    pub struct StoreAppSummary {
        pub app_id: String,
        pub name: String,
        pub summary: String,
        pub category: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub icon_path: Option<String>,
        /// The newest release compatible with one of the merchant's terminals.
        pub current_version: String,
        pub size: u64,
        /// How many of the merchant's terminals have it, are asked to get
        /// it, and failed to install it.
        pub installed_on: u64,
        pub requested_on: u64,
        pub failed_on: u64,
    }

    /// An app as the store shows it to one merchant.
    pub struct StoreAppView {
        pub app_id: String,
        pub name: String,
        pub summary: String,
        pub description: String,
        pub category: String,
        pub visibility: String,
        /// False for system apps: merchants cannot uninstall them.
        pub removable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub icon_path: Option<String>,
        pub screenshot_paths: Vec<String>,
        pub current_version: String,
        pub version_code: u64,
        pub size: u64,
        pub compatible_models: Vec<String>,
        pub release_notes: String,
        /// Every terminal of the merchant the caller sees.
        pub terminals: Vec<StoreTerminalView>,
    }

    pub struct StoreTerminalView {
        pub device_id: i64,
        pub name: String,
        pub location_id: i64,
        pub model: String,
        /// The release the store would install on it; absent when none fits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub installable_version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub installed_version: Option<String>,
        /// `not_installed`, `requested`, `installed`, `failed`,
        /// `removal_requested` or `removal_failed`.
        pub status: String,
        /// The terminal's last report on the request (`downloading`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub report: Option<String>,
        /// The terminal's error, when it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub requested_at: Option<String>,
    }

    /// Install or uninstall a store app on terminals or whole locations.
    pub struct StoreRequest {
        /// The merchant, for operators acting for one; merchant users may omit it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub merchant_id: Option<i64>,
        #[serde(default)]
        pub devices: Vec<i64>,
        #[serde(default)]
        pub locations: Vec<i64>,
        /// How the terminal installs it (`soft` by default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub action: Option<ActionType>,
    }

    pub struct StoreRequestView {
        pub app_id: String,
        /// `install` or `uninstall`.
        pub kind: String,
        /// The deployments created (one per release installed).
        pub deployment_ids: Vec<i64>,
        pub terminals: Vec<StoreRequestedTerminal>,
        /// Terminals of a chosen location that no release fits (terminals
        /// chosen one by one are refused instead).
        #[serde(default)]
        pub skipped: Vec<StoreSkippedTerminal>,
    }

    pub struct StoreSkippedTerminal {
        pub device_id: i64,
        pub model: String,
        pub reason: String,
    }

    pub struct StoreRequestedTerminal {
        pub device_id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub version: Option<String>,
    }
}
