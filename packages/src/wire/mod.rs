//! Types that travel over HTTP between the server and its clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Wire types derive the same traits everywhere (and an OpenAPI schema for
/// the server); declared once here for every module below.
macro_rules! wire {
    ($($item:item)*) => {
        $(
            #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
            #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
            $item
        )*
    };
}

pub mod accounts;
pub mod acquirers;
pub mod commands;
pub mod contact;
pub mod ddi;
pub mod deployments;
pub mod devices;
mod errors;
pub mod parameters;
pub mod releases;
pub mod server_keys;
pub mod store;
pub mod webhooks;

pub use errors::ErrorCode;

/// The body of every error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Human-readable explanation; may change between versions.
    pub message: String,
    /// The id of the request, also sent in the `x-request-id` header; quote it
    /// when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Per-part detail where the code alone is not enough (for example which
    /// dependency made the server not ready).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

/// Answer of `GET /healthz`: the process is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Version of the server build.
    pub version: String,
}

/// Answer of `GET /readyz` when every dependency is reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// Always `ready`.
    pub status: String,
    /// Version of the server build.
    pub version: String,
    /// One entry per dependency (`database`, `object_store`), each `ok`.
    pub checks: BTreeMap<String, String>,
}

/// `POST /api/v1/test/clock`: moves an adjustable clock forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdvanceClockRequest {
    pub advance_secs: u64,
}

/// The server's time after it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockView {
    /// RFC 3339, UTC.
    pub now: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_omits_empty_optional_parts() {
        let env = ErrorEnvelope {
            error: ErrorBody {
                code: ErrorCode::NotFound,
                message: "no such route".into(),
                request_id: None,
                details: BTreeMap::new(),
            },
        };
        assert_eq!(
            serde_json::to_string(&env).unwrap(),
            r#"{"error":{"code":"not_found","message":"no such route"}}"#
        );
    }
}
