//! The server's answer-signing keys, as published to terminals.

wire! {
    pub struct ServerKeyView {
        /// sha256 of the public key, hex: the `key_id` of signed answers.
        pub key_id: String,
        /// ed25519 public key, hex.
        pub public_key: String,
        pub created_at: String,
        /// Set once rotated out: it signs nothing new but still verifies
        /// answers it signed until they expire.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retired_at: Option<String>,
    }

    pub struct ServerKeys {
        /// The key new answers are signed with.
        pub current: String,
        pub keys: Vec<ServerKeyView>,
    }
}
