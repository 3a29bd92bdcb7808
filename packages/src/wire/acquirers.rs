//! Wire types of acquirers, contracts, parameter sets and sessions.

use serde_json::Value;

wire! {
    pub struct CreateAcquirerRequest {
        /// Short stable id, e.g. `ccv`.
        pub id: String,
        pub name: String,
    }

    pub struct AcquirerView {
        pub id: String,
        pub name: String,
        /// The newest parameter set, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub latest_version: Option<u64>,
    }

    pub struct CreateAcquirerParametersRequest {
        /// The acquirer's parameter document (EMV / card-scheme configuration), kept as given.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        pub document: Value,
        /// When these parameters expire (RFC 3339).
        pub valid_until: String,
    }

    pub struct AcquirerParametersView {
        pub acquirer_id: String,
        pub version: u64,
        pub valid_until: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revoked_at: Option<String>,
    }

    pub struct CreateContractRequest {
        pub acquirer_id: String,
        /// Only for this location (else the whole merchant, unless `device_id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub location_id: Option<i64>,
        /// Only for this device.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub device_id: Option<i64>,
        /// The merchant's id at the acquirer.
        pub acquirer_merchant_id: String,
        /// The terminal id at the acquirer.
        pub acquirer_terminal_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub valid_until: Option<String>,
    }

    pub struct ContractView {
        pub id: i64,
        pub acquirer_id: String,
        pub merchant_id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub location_id: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub device_id: Option<i64>,
        pub acquirer_merchant_id: String,
        pub acquirer_terminal_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub valid_until: Option<String>,
    }

    /// A successful acquirer parameter session.
    pub struct AcquirerSessionResult {
        pub acquirer_id: String,
        pub acquirer_merchant_id: String,
        pub acquirer_terminal_id: String,
        pub parameter_version: u64,
        pub valid_until: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        pub document: Value,
    }

    pub struct AcquirerSessionView {
        pub acquirer_id: String,
        /// `success`, `not_found`, `expired` or `failed`.
        pub outcome: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub parameter_version: Option<u64>,
        pub at: String,
    }
}
