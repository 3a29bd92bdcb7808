//! The one error envelope of the HTTP APIs.
//!
//! Every error response is `{"error": {"code", "message", "request_id"}}` with a
//! stable snake_case code. A 500 says only "internal error" and the request id;
//! its cause goes to the log under that id.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tms_packages::wire::{ErrorBody, ErrorEnvelope};

use crate::db::DbError;
use crate::http::observe::current_request_id;
use crate::mail::MailError;
use crate::storage::StorageError;

/// Stable machine-readable error codes. Clients match on these strings, so a
/// code is never renamed or reused for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    InvalidJson,
    InvalidRequest,
    WeakPassword,
    ActivationTokenInvalid,
    ActivationTicketInvalid,
    PanNotAllowed,
    InvalidManifest,
    SignatureInvalid,
    HashMismatch,
    SizeMismatch,
    UploadInterrupted,
    InvalidParameter,
    Unauthorized,
    InvalidCredentials,
    TotpRequired,
    InvalidTotp,
    DeviceDeactivated,
    InvalidDeviceToken,
    Forbidden,
    NotFound,
    UnknownTerminal,
    AcquirerSessionNotFound,
    MethodNotAllowed,
    Conflict,
    EmailTaken,
    TerminalAlreadyRegistered,
    ProfileInUse,
    LastAdmin,
    DeviceNameTaken,
    DeviceAlreadyActive,
    ManualStatusNotAllowed,
    NotLoggedIn,
    UnknownPublisherKey,
    KeyRevoked,
    VersionNotHigher,
    ReleaseExists,
    ParameterLocked,
    AcquirerSessionFailed,
    AcquirerSessionExpired,
    TwoFactorAlreadyEnabled,
    TwoFactorNotEnabled,
    PayloadTooLarge,
    ArtifactTooLarge,
    RangeNotSatisfiable,
    UnsupportedMediaType,
    TooManyAttempts,
    NotReady,
    InvalidTarget,
    StateDigestMismatch,
    RolloutState,
    NoPreviousRelease,
    AppNotRemovable,
    AppIncompatible,
    Internal,
}

impl ErrorCode {
    /// Every code; the first of a status is what the framework's own errors
    /// of that status get.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::WeakPassword,
        ErrorCode::ActivationTokenInvalid,
        ErrorCode::ActivationTicketInvalid,
        ErrorCode::PanNotAllowed,
        ErrorCode::InvalidManifest,
        ErrorCode::SignatureInvalid,
        ErrorCode::HashMismatch,
        ErrorCode::SizeMismatch,
        ErrorCode::UploadInterrupted,
        ErrorCode::InvalidParameter,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidCredentials,
        ErrorCode::TotpRequired,
        ErrorCode::InvalidTotp,
        ErrorCode::DeviceDeactivated,
        ErrorCode::InvalidDeviceToken,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UnknownTerminal,
        ErrorCode::AcquirerSessionNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::EmailTaken,
        ErrorCode::TerminalAlreadyRegistered,
        ErrorCode::ProfileInUse,
        ErrorCode::LastAdmin,
        ErrorCode::DeviceNameTaken,
        ErrorCode::DeviceAlreadyActive,
        ErrorCode::ManualStatusNotAllowed,
        ErrorCode::NotLoggedIn,
        ErrorCode::UnknownPublisherKey,
        ErrorCode::KeyRevoked,
        ErrorCode::VersionNotHigher,
        ErrorCode::ReleaseExists,
        ErrorCode::ParameterLocked,
        ErrorCode::AcquirerSessionFailed,
        ErrorCode::AcquirerSessionExpired,
        ErrorCode::TwoFactorAlreadyEnabled,
        ErrorCode::TwoFactorNotEnabled,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ArtifactTooLarge,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::TooManyAttempts,
        ErrorCode::NotReady,
        ErrorCode::InvalidTarget,
        ErrorCode::StateDigestMismatch,
        ErrorCode::RolloutState,
        ErrorCode::NoPreviousRelease,
        ErrorCode::AppNotRemovable,
        ErrorCode::AppIncompatible,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NoPreviousRelease => "no_previous_release",
            ErrorCode::AppNotRemovable => "app_not_removable",
            ErrorCode::AppIncompatible => "app_incompatible",
            ErrorCode::RolloutState => "rollout_state",
            ErrorCode::StateDigestMismatch => "state_digest_mismatch",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::UploadInterrupted => "upload_interrupted",
            ErrorCode::SizeMismatch => "size_mismatch",
            ErrorCode::HashMismatch => "hash_mismatch",
            ErrorCode::SignatureInvalid => "signature_invalid",
            ErrorCode::InvalidManifest => "invalid_manifest",
            ErrorCode::PanNotAllowed => "pan_not_allowed",
            ErrorCode::ActivationTicketInvalid => "activation_ticket_invalid",
            ErrorCode::ActivationTokenInvalid => "activation_token_invalid",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::TotpRequired => "totp_required",
            ErrorCode::InvalidDeviceToken => "invalid_device_token",
            ErrorCode::DeviceDeactivated => "device_deactivated",
            ErrorCode::InvalidTotp => "invalid_totp",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AcquirerSessionNotFound => "acquirer_session_not_found",
            ErrorCode::UnknownTerminal => "unknown_terminal",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::EmailTaken => "email_taken",
            ErrorCode::TerminalAlreadyRegistered => "terminal_already_registered",
            ErrorCode::ProfileInUse => "profile_in_use",
            ErrorCode::AcquirerSessionExpired => "acquirer_session_expired",
            ErrorCode::AcquirerSessionFailed => "acquirer_session_failed",
            ErrorCode::ParameterLocked => "parameter_locked",
            ErrorCode::ReleaseExists => "release_exists",
            ErrorCode::VersionNotHigher => "version_not_higher",
            ErrorCode::KeyRevoked => "key_revoked",
            ErrorCode::UnknownPublisherKey => "unknown_publisher_key",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::ManualStatusNotAllowed => "manual_status_not_allowed",
            ErrorCode::DeviceAlreadyActive => "device_already_active",
            ErrorCode::DeviceNameTaken => "device_name_taken",
            ErrorCode::LastAdmin => "last_admin",
            ErrorCode::TwoFactorAlreadyEnabled => "two_factor_already_enabled",
            ErrorCode::TwoFactorNotEnabled => "two_factor_not_enabled",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::ArtifactTooLarge => "artifact_too_large",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::WeakPassword
            | ErrorCode::ActivationTokenInvalid
            | ErrorCode::ActivationTicketInvalid
            | ErrorCode::PanNotAllowed
            | ErrorCode::InvalidManifest
            | ErrorCode::SignatureInvalid
            | ErrorCode::HashMismatch
            | ErrorCode::SizeMismatch
            | ErrorCode::UploadInterrupted
            | ErrorCode::InvalidParameter
            | ErrorCode::InvalidTarget
            | ErrorCode::StateDigestMismatch => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized
            | ErrorCode::InvalidCredentials
            | ErrorCode::TotpRequired
            | ErrorCode::InvalidTotp
            | ErrorCode::DeviceDeactivated
            | ErrorCode::InvalidDeviceToken => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::UnknownTerminal | ErrorCode::AcquirerSessionNotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::AcquirerSessionExpired => StatusCode::GONE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict
            | ErrorCode::EmailTaken
            | ErrorCode::TerminalAlreadyRegistered
            | ErrorCode::ProfileInUse
            | ErrorCode::LastAdmin
            | ErrorCode::DeviceNameTaken
            | ErrorCode::DeviceAlreadyActive
            | ErrorCode::ManualStatusNotAllowed
            | ErrorCode::NotLoggedIn
            | ErrorCode::UnknownPublisherKey
            | ErrorCode::KeyRevoked
            | ErrorCode::VersionNotHigher
            | ErrorCode::ReleaseExists
            | ErrorCode::ParameterLocked
            | ErrorCode::AcquirerSessionFailed
            | ErrorCode::TwoFactorAlreadyEnabled
            | ErrorCode::TwoFactorNotEnabled
            | ErrorCode::RolloutState
            | ErrorCode::NoPreviousRelease
            | ErrorCode::AppNotRemovable
            | ErrorCode::AppIncompatible => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge | ErrorCode::ArtifactTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code for a bare status produced outside our handlers (the
    /// framework's own 404, 405, 413, …).
    pub fn for_status(status: StatusCode) -> ErrorCode {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.status() == status)
            .unwrap_or(if status.is_server_error() { ErrorCode::Internal } else { ErrorCode::BadRequest })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A problem the client can act on; its message is shown as is.
    #[error("{message}")]
    Client { code: ErrorCode, message: String, details: BTreeMap<String, String> },
    /// Too many attempts; the client may try again after `retry_after_secs`.
    #[error("{message}")]
    Throttled { message: String, retry_after_secs: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Mail(#[from] MailError),
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> ApiError {
        ApiError::Db(DbError::Query(e))
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::Client { code, message: message.into(), details: BTreeMap::new() }
    }

    pub fn with_details(
        code: ErrorCode,
        message: impl Into<String>,
        details: BTreeMap<String, String>,
    ) -> ApiError {
        ApiError::Client { code, message: message.into(), details }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Client { code, .. } => *code,
            ApiError::Throttled { .. } => ErrorCode::TooManyAttempts,
            ApiError::Storage(StorageError::NotFound(_)) => ErrorCode::NotFound,
            ApiError::Db(e) if e.is_unique_violation() => ErrorCode::Conflict,
            ApiError::Db(_) | ApiError::Storage(_) | ApiError::Mail(_) => ErrorCode::Internal,
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    /// A request field that fails validation, named in `details.field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::with_details(
            ErrorCode::InvalidRequest,
            message,
            BTreeMap::from([("field".to_owned(), field.to_owned())]),
        )
    }
}

/// The envelope for a code and message, stamped with the current request id.
pub fn envelope(code: ErrorCode, message: &str, details: BTreeMap<String, String>) -> HttpResponse {
    HttpResponse::build(code.status()).json(ErrorEnvelope {
        error: ErrorBody {
            code: code.as_str().to_owned(),
            message: message.to_owned(),
            request_id: current_request_id(),
            details,
        },
    })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Client { code, message, details } => envelope(*code, message, details.clone()),
            ApiError::Throttled { message, retry_after_secs } => {
                let mut res = envelope(
                    ErrorCode::TooManyAttempts,
                    message,
                    BTreeMap::from([("retry_after_secs".to_owned(), retry_after_secs.to_string())]),
                );
                res.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from(*retry_after_secs),
                );
                res
            }
            ApiError::Storage(StorageError::NotFound(_)) => {
                envelope(ErrorCode::NotFound, &self.to_string(), BTreeMap::new())
            }
            // A uniqueness race lost to a concurrent change: the client may retry.
            ApiError::Db(e) if e.is_unique_violation() => {
                tracing::info!(error = %ErrorChain(self), "conflicting concurrent change");
                envelope(
                    ErrorCode::Conflict,
                    "a concurrent change conflicted with this one; try again",
                    BTreeMap::new(),
                )
            }
            ApiError::Db(_) | ApiError::Storage(_) | ApiError::Mail(_) => {
                tracing::error!(
                    request_id = current_request_id().as_deref().unwrap_or("-"),
                    error = %ErrorChain(self),
                    "internal error"
                );
                envelope(ErrorCode::Internal, "internal error", BTreeMap::new())
            }
        }
    }
}

/// Displays an error with all its causes, for the log. Many errors already
/// repeat their source in their own message; such causes are not shown twice.
pub struct ErrorChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.contains(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!(seen.insert(s), "duplicate code {s}");
        }
    }

    #[test]
    fn framework_statuses_map_to_codes() {
        assert_eq!(ErrorCode::for_status(StatusCode::NOT_FOUND), ErrorCode::NotFound);
        assert_eq!(ErrorCode::for_status(StatusCode::BAD_REQUEST), ErrorCode::BadRequest);
        assert_eq!(ErrorCode::for_status(StatusCode::METHOD_NOT_ALLOWED), ErrorCode::MethodNotAllowed);
        assert_eq!(ErrorCode::for_status(StatusCode::BAD_GATEWAY), ErrorCode::Internal);
        assert_eq!(ErrorCode::for_status(StatusCode::IM_A_TEAPOT), ErrorCode::BadRequest);
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let err = ApiError::Db(DbError::Migration("secret table layout".into()));
        let res = crate::http::observe::with_request_id("req-1234", || err.error_response());
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = actix_web::body::to_bytes(res.into_body());
        let body = futures_util::FutureExt::now_or_never(body).unwrap().unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("\"code\":\"internal\""), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains(r#""message":"internal error""#), "{text}");
        assert!(text.contains(r#""request_id":"req-1234""#), "{text}");
    }
}
