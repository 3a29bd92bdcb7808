//! The stable error codes of every API error response.
//!
//! Clients match on these codes, so a code is never renamed or reused for
//! another meaning. Each is declared once, with the HTTP status it travels
//! with; its snake_case name is what goes over the wire.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $name:ident = $wire:literal, $status:literal;)*) => {
        /// Stable, machine-readable error code (for example `not_found`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $name,)*
            /// A code this client does not know (a newer server's); never sent.
            #[serde(other)]
            Unknown,
        }

        impl ErrorCode {
            /// Every code a server sends, in declaration order: the first of
            /// a status is what the framework's own errors of that status get.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code as it travels on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $wire,)*
                    ErrorCode::Unknown => "unknown",
                }
            }

            /// The HTTP status an error with this code is answered with.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $status,)*
                    ErrorCode::Unknown => 500,
                }
            }
        }
    };
}

error_codes! {
    /// A malformed request the server could not read.
    BadRequest = "bad_request", 400;
    /// The body is not the JSON the endpoint expects.
    InvalidJson = "invalid_json", 400;
    /// A field fails validation; `details.field` names it.
    InvalidRequest = "invalid_request", 400;
    /// The new password does not meet the password policy.
    WeakPassword = "weak_password", 400;
    ActivationTokenInvalid = "activation_token_invalid", 400;
    ActivationTicketInvalid = "activation_ticket_invalid", 400;
    /// A transaction upload carried a full card number.
    PanNotAllowed = "pan_not_allowed", 400;
    InvalidManifest = "invalid_manifest", 400;
    SignatureInvalid = "signature_invalid", 400;
    HashMismatch = "hash_mismatch", 400;
    SizeMismatch = "size_mismatch", 400;
    UploadInterrupted = "upload_interrupted", 400;
    /// A parameter value fails its schema.
    InvalidParameter = "invalid_parameter", 400;
    /// A deployment target that names nothing valid.
    InvalidTarget = "invalid_target", 400;
    /// The reported state does not hash to the digest sent with it.
    StateDigestMismatch = "state_digest_mismatch", 400;
    /// Acquirer parameters already past their `valid_until`.
    AlreadyExpired = "already_expired", 400;
    Unauthorized = "unauthorized", 401;
    InvalidCredentials = "invalid_credentials", 401;
    /// The password was right; the account needs a 2FA code as well.
    TotpRequired = "totp_required", 401;
    InvalidTotp = "invalid_totp", 401;
    DeviceDeactivated = "device_deactivated", 401;
    InvalidDeviceToken = "invalid_device_token", 401;
    Forbidden = "forbidden", 403;
    NotFound = "not_found", 404;
    UnknownTerminal = "unknown_terminal", 404;
    /// A DDI controller id this server has no device for (and registers none for).
    UnknownController = "unknown_controller", 404;
    AcquirerSessionNotFound = "acquirer_session_not_found", 404;
    MethodNotAllowed = "method_not_allowed", 405;
    Conflict = "conflict", 409;
    EmailTaken = "email_taken", 409;
    TerminalAlreadyRegistered = "terminal_already_registered", 409;
    ProfileInUse = "profile_in_use", 409;
    LastAdmin = "last_admin", 409;
    /// Another active terminal of the merchant has this name (compared
    /// without case and surrounding spaces).
    DeviceNameTaken = "device_name_taken", 409;
    DeviceAlreadyActive = "device_already_active", 409;
    ManualStatusNotAllowed = "manual_status_not_allowed", 409;
    NotLoggedIn = "not_logged_in", 409;
    UnknownPublisherKey = "unknown_publisher_key", 409;
    KeyRevoked = "key_revoked", 409;
    VersionNotHigher = "version_not_higher", 409;
    ReleaseExists = "release_exists", 409;
    ParameterLocked = "parameter_locked", 409;
    AcquirerSessionFailed = "acquirer_session_failed", 409;
    TwoFactorAlreadyEnabled = "two_factor_already_enabled", 409;
    TwoFactorNotEnabled = "two_factor_not_enabled", 409;
    /// The command was already carried out, failed, expired or was cancelled.
    CommandFinished = "command_finished", 409;
    /// The rollout is not in a state that allows this action.
    RolloutState = "rollout_state", 409;
    NoPreviousRelease = "no_previous_release", 409;
    AppNotRemovable = "app_not_removable", 409;
    AppIncompatible = "app_incompatible", 409;
    AcquirerSessionExpired = "acquirer_session_expired", 410;
    /// The release was withdrawn since it was offered: report the install
    /// as failed with this code (it does not count as the terminal's failure).
    ReleaseWithdrawn = "release_withdrawn", 410;
    /// A DDI action that is no longer active for the device.
    ActionGone = "action_gone", 410;
    PayloadTooLarge = "payload_too_large", 413;
    ArtifactTooLarge = "artifact_too_large", 413;
    RangeNotSatisfiable = "range_not_satisfiable", 416;
    UnsupportedMediaType = "unsupported_media_type", 415;
    TooManyAttempts = "too_many_attempts", 429;
    /// This address holds too many connections to the terminal API.
    TooManyConnections = "too_many_connections", 429;
    /// The request's body came too slowly, or stopped.
    RequestTimeout = "request_timeout", 408;
    NotReady = "not_ready", 503;
    Internal = "internal", 500;
}

impl ErrorCode {
    /// The code for a bare status produced outside the handlers (the
    /// framework's own 404, 405, 413, …).
    pub fn for_status(status: u16) -> ErrorCode {
        ErrorCode::ALL.iter().copied().find(|code| code.status() == status).unwrap_or(if status >= 500 {
            ErrorCode::Internal
        } else {
            ErrorCode::BadRequest
        })
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_name_is_the_declared_one() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let wire = code.as_str();
            assert!(wire.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{wire}");
            assert!(seen.insert(wire), "duplicate code {wire}");
            assert_eq!(serde_json::to_value(code).unwrap(), wire);
            assert_eq!(serde_json::from_value::<ErrorCode>(wire.into()).unwrap(), *code);
        }
    }

    #[test]
    fn a_newer_servers_code_reads_as_unknown() {
        assert_eq!(
            serde_json::from_str::<ErrorCode>(r#""code_from_the_future""#).unwrap(),
            ErrorCode::Unknown
        );
        assert!(!ErrorCode::ALL.contains(&ErrorCode::Unknown));
    }

    #[test]
    fn framework_statuses_map_to_codes() {
        assert_eq!(ErrorCode::for_status(404), ErrorCode::NotFound);
        assert_eq!(ErrorCode::for_status(400), ErrorCode::BadRequest);
        assert_eq!(ErrorCode::for_status(405), ErrorCode::MethodNotAllowed);
        assert_eq!(ErrorCode::for_status(502), ErrorCode::Internal);
        assert_eq!(ErrorCode::for_status(418), ErrorCode::BadRequest);
    }
}
