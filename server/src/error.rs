//! The domain's one error type.
//!
//! Domain functions say what went wrong in the domain's words: a problem
//! the caller can act on (with a stable [`ErrorCode`] and a message shown as
//! is), a throttled attempt, or a failure of a component underneath. Each
//! presentation layer maps it: `http::error` to the JSON envelope, the web
//! pages to an HTML page. Neither leaks the cause of an internal failure.

use std::collections::BTreeMap;

pub use tms_packages::wire::ErrorCode;

use crate::blobs::StorageError;
use crate::db::DbError;
use crate::mail::MailError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
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

impl From<crate::secrets::SecretError> for Error {
    fn from(e: crate::secrets::SecretError) -> Error {
        Error::Db(DbError::Secret(e))
    }
}

/// A DDI report the mapping refuses: the field at fault.
impl From<tms_packages::ddi::FeedbackError> for Error {
    fn from(e: tms_packages::ddi::FeedbackError) -> Error {
        Error::invalid(e.field, e.message)
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Error {
        Error::Db(DbError::Query(e))
    }
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Client { code, message: message.into(), details: BTreeMap::new() }
    }

    pub fn with_details(
        code: ErrorCode,
        message: impl Into<String>,
        details: BTreeMap<String, String>,
    ) -> Error {
        Error::Client { code, message: message.into(), details }
    }

    /// The code a client sees: a failure underneath is `internal`, except
    /// a uniqueness race lost to a concurrent change (`conflict`, worth a
    /// retry) and a missing blob (`not_found`).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Client { code, .. } => *code,
            Error::Throttled { .. } => ErrorCode::TooManyAttempts,
            Error::Storage(StorageError::NotFound(_)) => ErrorCode::NotFound,
            Error::Db(e) if e.is_unique_violation() => ErrorCode::Conflict,
            Error::Db(_) | Error::Storage(_) | Error::Mail(_) => ErrorCode::Internal,
        }
    }

    /// Whether the cause is the server's own (logged, never shown).
    pub fn is_internal(&self) -> bool {
        self.code() == ErrorCode::Internal
    }

    /// The message a client may see: an internal failure says only that.
    pub fn public_message(&self) -> String {
        match self {
            Error::Db(e) if e.is_unique_violation() => {
                "a concurrent change conflicted with this one; try again".into()
            }
            e if e.is_internal() => "internal error".into(),
            e => e.to_string(),
        }
    }

    /// Details a client may see beside the message.
    pub fn public_details(&self) -> BTreeMap<String, String> {
        match self {
            Error::Client { details, .. } => details.clone(),
            Error::Throttled { retry_after_secs, .. } => {
                BTreeMap::from([("retry_after_secs".to_owned(), retry_after_secs.to_string())])
            }
            _ => BTreeMap::new(),
        }
    }

    pub fn not_found(what: &str) -> Error {
        Error::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Forbidden, message)
    }

    /// A request field that fails validation, named in `details.field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::with_details(
            ErrorCode::InvalidRequest,
            message,
            BTreeMap::from([("field".to_owned(), field.to_owned())]),
        )
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
    fn internal_failures_keep_their_cause_to_themselves() {
        let err = Error::Db(DbError::Corrupt("secret table layout".into()));
        assert_eq!(err.code(), ErrorCode::Internal);
        assert_eq!(err.public_message(), "internal error");
        assert!(err.public_details().is_empty());
        assert!(ErrorChain(&err).to_string().contains("secret table layout"));
    }

    #[test]
    fn a_client_error_says_what_and_where() {
        let err = Error::invalid("name", "the name is empty");
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert_eq!(err.public_message(), "the name is empty");
        assert_eq!(err.public_details()["field"], "name");
    }
}
