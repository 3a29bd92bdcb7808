//! Wire types of apps, publisher keys and releases.

/// The header that carries the signed manifest (base64 of its JSON) with an
/// artifact upload, so the body can be the artifact itself, streamed.
pub const MANIFEST_HEADER: &str = "x-tms-signed-manifest";

wire! {
    pub struct CreateAppRequest {
        /// Android package name, e.g. `eu.ccv.salespoint`.
        pub id: String,
        pub name: String,
        /// `app` or `firmware`.
        pub kind: String,
        /// `system` (pushed by the operator; merchants cannot remove it), `store`
        /// (in the merchants' catalogue) or `private` (for named merchants).
        pub visibility: String,
    }

    pub struct PublisherKeyView {
        /// sha256 of the public key, hex.
        pub key_id: String,
        pub name: String,
        /// The ed25519 public key, hex.
        pub public_key: String,
        pub added_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revoked_at: Option<String>,
    }

    pub struct AppView {
        pub id: String,
        pub name: String,
        pub kind: String,
        pub visibility: String,
        pub created_at: String,
        pub keys: Vec<PublisherKeyView>,
        /// The store listing.
        #[serde(default)]
        pub summary: String,
        #[serde(default)]
        pub description: String,
        #[serde(default)]
        pub category: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub icon_path: Option<String>,
        #[serde(default)]
        pub screenshot_paths: Vec<String>,
        /// The merchants a private app is offered to.
        #[serde(default)]
        pub merchants: Vec<i64>,
    }

    pub struct AddPublisherKeyRequest {
        pub name: String,
        /// ed25519 public key: 64 hex characters or a PEM block.
        pub public_key: String,
    }

    pub struct ReleaseView {
        pub id: i64,
        pub app_id: String,
        pub kind: String,
        pub version: String,
        pub version_code: u64,
        pub artifact_sha256: String,
        pub artifact_size: u64,
        pub models: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub min_firmware: Option<String>,
        pub release_notes: String,
        /// The publisher key that signed it.
        pub key_id: String,
        /// The publisher's signature over the manifest, hex.
        pub signature: String,
        pub published_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub withdrawn_at: Option<String>,
        /// Where the artifact downloads from (Range requests welcome).
        pub download_path: String,
        /// The manifest exactly as signed, to verify `signature` against the
        /// publisher key (its canonical JSON is what was signed).
        pub manifest: crate::releases::ReleaseManifest,
        /// Deltas from earlier releases to this one (on `show` only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub deltas: Vec<DeltaView>,
    }
}

wire! {
    /// A delta that turns an earlier release's artifact into this one's.
    pub struct DeltaView {
        /// The release it applies to (what the terminal runs).
        pub base_version: String,
        /// The artifact it applies to, exactly.
        pub base_sha256: String,
        pub sha256: String,
        pub size: u64,
    }
}
