//! The domain error as a JSON API answer.
//!
//! Every error response is `{"error": {"code", "message", "request_id"}}` with a
//! stable snake_case code. A 500 says only "internal error" and the request id;
//! its cause goes to the log under that id.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tms_packages::wire::{ErrorBody, ErrorEnvelope};

pub use crate::error::{Error, ErrorChain, ErrorCode};
use crate::http::observe::current_request_id;

/// The HTTP status of a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The envelope for a code and message, stamped with the current request id.
pub fn envelope(code: ErrorCode, message: &str, details: BTreeMap<String, String>) -> HttpResponse {
    HttpResponse::build(status_of(code)).json(ErrorEnvelope {
        error: ErrorBody { code, message: message.to_owned(), request_id: current_request_id(), details },
    })
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        status_of(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        if self.is_internal() {
            tracing::error!(
                request_id = current_request_id().as_deref().unwrap_or("-"),
                error = %ErrorChain(self),
                "internal error"
            );
        } else if let Error::Db(_) = self {
            tracing::info!(error = %ErrorChain(self), "conflicting concurrent change");
        }
        let mut res = envelope(self.code(), &self.public_message(), self.public_details());
        if let Error::Throttled { retry_after_secs, .. } = self {
            res.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(*retry_after_secs),
            );
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbError;

    #[test]
    fn every_code_has_a_real_status() {
        for code in ErrorCode::ALL {
            assert_eq!(status_of(*code).as_u16(), code.status(), "{code}");
        }
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let err = Error::Db(DbError::Corrupt("secret table layout".into()));
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

    #[test]
    fn a_throttled_attempt_says_when_to_come_back() {
        let err = Error::Throttled { message: "slow down".into(), retry_after_secs: 30 };
        let res = err.error_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers().get(actix_web::http::header::RETRY_AFTER).unwrap(), "30");
    }
}
