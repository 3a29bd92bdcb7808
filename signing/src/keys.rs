//! Publisher keys: ed25519, saved as PKCS#8 PEM (private, mode 0600) and as
//! PEM or hex (public); a key id is the sha256 of the public key.

use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::{Sha256Digest, SigningError};

/// A publisher's signing key.
pub struct PrivateKey(SigningKey);

/// A publisher's public key, as registered for an app.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public_key().key_id())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PrivateKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> PrivateKey {
        PrivateKey(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    pub fn to_pem(&self) -> Result<String, SigningError> {
        Ok(self.0.to_pkcs8_pem(LineEnding::LF).map_err(|e| SigningError::Key(e.to_string()))?.to_string())
    }

    pub fn from_pem(pem: &str) -> Result<PrivateKey, SigningError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(PrivateKey)
            .map_err(|e| SigningError::Key(format!("not an ed25519 PKCS#8 key: {e}")))
    }

    /// Writes the key to a new file readable by its owner only; refuses to
    /// overwrite an existing file.
    pub fn save_new(&self, path: &Path) -> Result<(), SigningError> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        file.write_all(self.to_pem()?.as_bytes())?;
        file.sync_all()?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<PrivateKey, SigningError> {
        PrivateKey::from_pem(&std::fs::read_to_string(path)?)
    }
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, SigningError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| SigningError::Key("not a valid ed25519 public key".into()))
    }

    /// From 64 hex characters or a PEM `PUBLIC KEY` block.
    pub fn parse(text: &str) -> Result<PublicKey, SigningError> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return VerifyingKey::from_public_key_pem(text)
                .map(PublicKey)
                .map_err(|e| SigningError::Key(format!("not an ed25519 public key: {e}")));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| SigningError::Key("expected 64 hex characters or a PEM public key".into()))?;
        PublicKey::from_bytes(&bytes)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    pub fn to_pem(&self) -> Result<String, SigningError> {
        self.0.to_public_key_pem(LineEnding::LF).map_err(|e| SigningError::Key(e.to_string()))
    }

    /// The key's id: sha256 of its 32 bytes, in hex.
    pub fn key_id(&self) -> String {
        Sha256Digest::of(&self.to_bytes()).to_hex()
    }

    /// A key of small order accepts forged signatures; it is never registered.
    pub fn is_weak(&self) -> bool {
        self.0.is_weak()
    }

    /// Strict verification: rejects malleable and small-order signatures.
    pub fn verify_strict(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), SigningError> {
        let signature = Signature::from_bytes(signature);
        self.0.verify_strict(message, &signature).map_err(|_| SigningError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let key = PrivateKey::generate();
        let public = key.public_key();
        let signature = key.sign(b"manifest");
        public.verify_strict(b"manifest", &signature).unwrap();
        assert!(public.verify_strict(b"manifesT", &signature).is_err());
        let mut bad = signature;
        bad[0] ^= 1;
        assert!(public.verify_strict(b"manifest", &bad).is_err());
        let other = PrivateKey::generate().public_key();
        assert!(other.verify_strict(b"manifest", &signature).is_err());
    }

    #[test]
    fn keys_round_trip_through_pem_and_hex() {
        let key = PrivateKey::generate();
        let again = PrivateKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = key.public_key();
        assert_eq!(PublicKey::parse(&public.to_hex()).unwrap(), public);
        assert_eq!(PublicKey::parse(&public.to_pem().unwrap()).unwrap(), public);
        assert_eq!(public.key_id().len(), 64);
        assert!(PublicKey::parse("zz").is_err());
    }

    #[test]
    fn small_order_keys_are_weak() {
        // The identity point: a small-order key that "verifies" forged signatures.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(&identity).unwrap().is_weak());
        assert!(!PrivateKey::generate().public_key().is_weak());
    }

    #[test]
    fn saved_keys_are_private_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!(
            "tms-key-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("publisher.key");
        let key = PrivateKey::generate();
        key.save_new(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(PrivateKey::generate().save_new(&path).is_err());
        assert_eq!(PrivateKey::load(&path).unwrap().public_key(), key.public_key());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
