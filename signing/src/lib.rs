//! Signing and hashing primitives for TMS releases.
//!
//! A pure leaf crate: no HTTP, no database. Everything that decides whether bytes
//! can be trusted lives here so that the server, the CLI and the tests share one
//! implementation.
#![forbid(unsafe_code)]

mod canonical;
mod digest;
mod keys;
mod webhook;

pub use canonical::{
    Member, to_canonical_json, write_canonical_json, write_canonical_object, write_json_string,
};
pub use digest::{Sha256Digest, Sha256Hasher, Sha256Reader, sha256_reader};
pub use keys::{PrivateKey, PublicKey};
pub use webhook::{WEBHOOK_TOLERANCE_SECS, webhook_signature, webhook_signature_valid};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("not a sha256 digest: expected 64 hex characters")]
    InvalidDigest,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("key: {0}")]
    Key(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("not canonical JSON: {0}")]
    NotCanonical(String),
}
