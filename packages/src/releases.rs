//! Release manifests: what a publisher signs about an app or firmware
//! version, how it is validated, and the ordering rules between releases.

use std::fmt;

use serde::{Deserialize, Serialize};
use tms_signing::{PrivateKey, PublicKey, SigningError, to_canonical_json};

/// The signed statement of a publisher about one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    /// Android package name, e.g. `eu.ccv.salespoint`.
    pub app_id: String,
    /// `app` or `firmware`.
    pub kind: String,
    /// Semantic version, e.g. `4.2.0`.
    pub version: String,
    /// Monotonic integer version, as Android's versionCode.
    pub version_code: u64,
    /// sha256 of the artifact, lower-case hex.
    pub artifact_sha256: String,
    /// Size of the artifact in bytes.
    pub artifact_size: u64,
    /// Terminal models it runs on, e.g. `A920`.
    pub models: Vec<String>,
    /// Lowest firmware version it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_firmware: Option<String>,
    #[serde(default)]
    pub release_notes: String,
    /// When it was signed (RFC 3339).
    pub created_at: String,
}

/// A manifest with the publisher's detached signature over its canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    pub manifest: ReleaseManifest,
    /// sha256 of the publisher's public key, hex.
    pub key_id: String,
    /// ed25519 signature, hex (128 characters).
    pub signature: String,
}

/// What is wrong with a manifest, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ManifestError {}

fn invalid(field: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError { field, reason: reason.into() }
}

pub const KINDS: [&str; 2] = ["app", "firmware"];

/// An Android package name: two or more dot-separated parts, each a letter
/// followed by letters, digits or underscores.
pub fn is_package_name(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    id.len() <= 150
        && parts.len() >= 2
        && parts.iter().all(|p| {
            let mut chars = p.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// A terminal model name: 1 to 20 upper-case letters, digits or dashes.
pub fn is_model(model: &str) -> bool {
    (1..=20).contains(&model.len())
        && model.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

impl ReleaseManifest {
    pub fn validate(&self) -> Result<semver::Version, ManifestError> {
        if !is_package_name(&self.app_id) {
            return Err(invalid(
                "app_id",
                format!("{:?} is not an Android package name (e.g. eu.ccv.salespoint)", self.app_id),
            ));
        }
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(invalid("kind", "app or firmware"));
        }
        let version = semver::Version::parse(&self.version)
            .map_err(|e| invalid("version", format!("{:?} is not a semantic version: {e}", self.version)))?;
        if !version.build.is_empty() {
            return Err(invalid("version", "build metadata (+…) does not order releases; drop it"));
        }
        if self.version_code == 0 || self.version_code > i64::MAX as u64 {
            return Err(invalid("version_code", "a positive integer"));
        }
        if self.artifact_sha256.len() != 64
            || !self.artifact_sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(invalid("artifact_sha256", "64 lower-case hex characters"));
        }
        if self.artifact_size == 0 || self.artifact_size > i64::MAX as u64 {
            return Err(invalid("artifact_size", "a positive number of bytes"));
        }
        if self.models.is_empty() {
            return Err(invalid("models", "at least one terminal model"));
        }
        if let Some(bad) = self.models.iter().find(|m| !is_model(m)) {
            return Err(invalid("models", format!("{bad:?} is not a model name (upper case, e.g. A920)")));
        }
        if let Some(fw) = &self.min_firmware
            && (fw.is_empty() || fw.len() > 64 || fw.chars().any(char::is_control))
        {
            return Err(invalid("min_firmware", "1 to 64 printable characters"));
        }
        if self.release_notes.len() > 10_000 {
            return Err(invalid("release_notes", "at most 10,000 bytes"));
        }
        chrono::DateTime::parse_from_rfc3339(&self.created_at)
            .map_err(|e| invalid("created_at", format!("not an RFC 3339 time: {e}")))?;
        Ok(version)
    }

    /// The bytes that are signed: the manifest's canonical JSON.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).expect("manifests serialise");
        to_canonical_json(&value).expect("manifests hold no floats")
    }
}

impl SignedManifest {
    pub fn sign(manifest: ReleaseManifest, key: &PrivateKey) -> SignedManifest {
        let signature = key.sign(&manifest.signing_bytes());
        SignedManifest { key_id: key.public_key().key_id(), signature: hex::encode(signature), manifest }
    }

    /// Strict ed25519 verification of the signature with `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), SigningError> {
        if key.key_id() != self.key_id {
            return Err(SigningError::BadSignature);
        }
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut signature).map_err(|_| SigningError::BadSignature)?;
        key.verify_strict(&self.manifest.signing_bytes(), &signature)
    }
}

/// Why a release may not follow the existing ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError {
    /// The exact version exists already.
    Exists,
    /// Not above the highest existing version and version code.
    NotHigher { highest_version: String, highest_code: u64 },
}

/// A new release must be higher than every existing one of the app on both
/// the semantic version and the version code (Android refuses a lower code).
pub fn check_order(
    version: &semver::Version,
    code: u64,
    existing: &[(semver::Version, u64)],
) -> Result<(), OrderError> {
    if existing.iter().any(|(v, _)| v == version) {
        return Err(OrderError::Exists);
    }
    let highest_version = existing.iter().map(|(v, _)| v).max();
    let highest_code = existing.iter().map(|(_, c)| *c).max();
    match (highest_version, highest_code) {
        (Some(hv), Some(hc)) if version <= hv || code <= hc => {
            Err(OrderError::NotHigher { highest_version: hv.to_string(), highest_code: hc })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> ReleaseManifest {
        ReleaseManifest {
            app_id: "eu.ccv.salespoint".into(),
            kind: "app".into(),
            version: "4.2.0".into(),
            version_code: 420,
            artifact_sha256: "a".repeat(64),
            artifact_size: 1234,
            models: vec!["A920".into(), "A80".into()],
            min_firmware: Some("PayDroid_8.1".into()),
            release_notes: "Faster receipts".into(),
            created_at: "2026-11-27T10:00:00Z".into(),
        }
    }

    #[test]
    fn valid_manifest_and_precise_errors() {
        assert_eq!(manifest().validate().unwrap(), semver::Version::new(4, 2, 0));
        let field = |m: ReleaseManifest| m.validate().unwrap_err().field;
        assert_eq!(field(ReleaseManifest { app_id: "salespoint".into(), ..manifest() }), "app_id");
        assert_eq!(field(ReleaseManifest { version: "4.2".into(), ..manifest() }), "version");
        assert_eq!(field(ReleaseManifest { version: "4.2.0+build.7".into(), ..manifest() }), "version");
        assert_eq!(field(ReleaseManifest { version_code: 0, ..manifest() }), "version_code");
        assert_eq!(
            field(ReleaseManifest { artifact_sha256: "A".repeat(64), ..manifest() }),
            "artifact_sha256"
        );
        assert_eq!(field(ReleaseManifest { models: vec!["a920".into()], ..manifest() }), "models");
        assert_eq!(field(ReleaseManifest { models: vec![], ..manifest() }), "models");
        assert_eq!(field(ReleaseManifest { kind: "plugin".into(), ..manifest() }), "kind");
        assert_eq!(field(ReleaseManifest { created_at: "yesterday".into(), ..manifest() }), "created_at");
    }

    #[test]
    fn signatures_cover_every_field() {
        let key = PrivateKey::generate();
        let signed = SignedManifest::sign(manifest(), &key);
        signed.verify(&key.public_key()).unwrap();
        let mut tampered = signed.clone();
        tampered.manifest.artifact_size += 1;
        assert!(tampered.verify(&key.public_key()).is_err());
        let mut tampered = signed.clone();
        tampered.manifest.models.push("A35".into());
        assert!(tampered.verify(&key.public_key()).is_err());
        assert!(signed.verify(&PrivateKey::generate().public_key()).is_err());
        // The JSON form round-trips to the same signed bytes.
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedManifest = serde_json::from_str(&json).unwrap();
        back.verify(&key.public_key()).unwrap();
    }

    #[test]
    fn releases_only_go_up() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        let existing = vec![(v("4.1.0"), 410), (v("4.2.0"), 420)];
        assert_eq!(check_order(&v("4.3.0"), 430, &existing), Ok(()));
        assert_eq!(check_order(&v("4.2.0"), 999, &existing), Err(OrderError::Exists));
        assert!(matches!(check_order(&v("4.3.0"), 420, &existing), Err(OrderError::NotHigher { .. })));
        assert!(matches!(check_order(&v("4.1.5"), 500, &existing), Err(OrderError::NotHigher { .. })));
        assert_eq!(check_order(&v("1.0.0"), 1, &[]), Ok(()));
        assert!(matches!(
            check_order(&v("4.3.0-beta.1"), 425, &[(v("4.3.0"), 430)]),
            Err(OrderError::NotHigher { .. })
        ));
    }
}
