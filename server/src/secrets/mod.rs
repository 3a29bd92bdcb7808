//! Secrets at rest: the answer-signing private keys, TOTP secrets, secret
//! parameter values and acquirer documents are sealed (XChaCha20-Poly1305)
//! under the server's master key before they reach the database or the
//! blob store. The master key lives in a file of its own (mode 0600, created
//! on first start), never in the database, so a stolen dump or backup holds
//! nothing usable without it.
//!
//! The key file holds a key ring: the first key seals, the others only open
//! what they sealed before a rotation (`tms-server keys rotate-master`).
//! Every process re-reads the file when it changes, so a rotation needs no
//! restart.

pub mod reseal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// What every sealed value starts with; then the key id and a colon.
const SEALED_PREFIX: &str = "tmssealed:1:";
const NONCE_LEN: usize = 24;
/// How often a process looks whether the key file changed.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

const KEY_FILE_HEADER: &str = "\
# TMS master keys. Keep this file secret, and back it up apart from the database and the blob
# store: without it, the sealed secrets they hold (two-step secrets, the answer-signing keys,
# secret parameters, acquirer documents) cannot be read. The first key seals; the others only
# open what was sealed before a rotation (tms-server keys rotate-master).
";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("master key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("master key file {path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error(
        "a secret is sealed with master key {key_id}, which the key file {path} does not hold: \
         restore the key file from its backup"
    )]
    UnknownKey { key_id: String, path: PathBuf },
    #[error("a sealed secret ({purpose}) does not open: it was altered or moved")]
    Altered { purpose: String },
}

/// One master key and its id (a digest of the key, so two files with the
/// same key agree on it and the id tells nothing of the key).
#[derive(Clone)]
struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
    bytes: [u8; 32],
}

impl MasterKey {
    fn new(bytes: [u8; 32]) -> MasterKey {
        let digest = Sha256::new_with_prefix(b"tms master key id\0").chain_update(bytes).finalize();
        MasterKey { id: hex::encode(&digest[..6]), cipher: XChaCha20Poly1305::new(&bytes.into()), bytes }
    }
}

#[derive(Clone)]
struct KeyRing {
    keys: Vec<MasterKey>,
}

impl KeyRing {
    fn parse(path: &Path, text: &str) -> Result<KeyRing, SecretError> {
        let malformed = |message: String| SecretError::Malformed { path: path.to_owned(), message };
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, encoded) = line
                .split_once(' ')
                .ok_or_else(|| malformed(format!("line {}: expected `ID KEY`", n + 1)))?;
            let bytes: [u8; 32] = BASE64
                .decode(encoded.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| malformed(format!("line {}: a key is 32 bytes in base64", n + 1)))?;
            let key = MasterKey::new(bytes);
            if key.id != id {
                return Err(malformed(format!("line {}: the id {id} does not match its key", n + 1)));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(malformed("no key in the file".into()));
        }
        Ok(KeyRing { keys })
    }

    fn render(&self) -> String {
        let mut text = KEY_FILE_HEADER.to_owned();
        for key in &self.keys {
            text.push_str(&format!("{} {}\n", key.id, BASE64.encode(key.bytes)));
        }
        text
    }

    fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

struct Loaded {
    ring: Arc<KeyRing>,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// The master key ring of a server process, read from its key file.
pub struct MasterKeys {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys").field("path", &self.path).finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> SecretError + '_ {
    move |source| SecretError::Io { path: path.to_owned(), source }
}

/// Writes `text` to `path` readable by its owner only, replacing it whole
/// (a reader sees the old file or the new one, never half of one).
fn write_private(path: &Path, text: &str) -> Result<(), SecretError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

impl MasterKeys {
    /// Reads the key file, creating it with a new key (mode 0600) if there
    /// is none yet.
    pub fn open_or_create(path: &Path) -> Result<MasterKeys, SecretError> {
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
            let ring = KeyRing { keys: vec![MasterKey::new(rand::random())] };
            write_private(path, &ring.render())?;
            tracing::warn!(
                path = %path.display(),
                "created a new master key file: back it up apart from the database, which cannot be read without it"
            );
        }
        MasterKeys::open(path)
    }

    /// Reads an existing key file.
    pub fn open(path: &Path) -> Result<MasterKeys, SecretError> {
        let (ring, modified) = Self::read(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io_error(path))?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777),
                    "the master key file can be read by others than its owner: chmod 600 it");
            }
        }
        Ok(MasterKeys {
            path: path.to_owned(),
            loaded: RwLock::new(Loaded { ring: Arc::new(ring), modified, checked: Instant::now() }),
        })
    }

    fn read(path: &Path) -> Result<(KeyRing, Option<SystemTime>), SecretError> {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok((KeyRing::parse(path, &text)?, modified))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ring, re-read if the file changed (looked at once a second, or
    /// now when `force`).
    fn ring(&self, force: bool) -> Arc<KeyRing> {
        {
            let loaded = self.loaded.read().expect("key ring lock");
            if !force && loaded.checked.elapsed() < RELOAD_CHECK {
                return loaded.ring.clone();
            }
        }
        let mut loaded = self.loaded.write().expect("key ring lock");
        loaded.checked = Instant::now();
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified != loaded.modified || force {
            match Self::read(&self.path) {
                Ok((ring, modified)) => {
                    loaded.ring = Arc::new(ring);
                    loaded.modified = modified;
                }
                // A file being replaced, or broken: keep the keys in hand.
                Err(e) => tracing::error!(error = %e, "re-reading the master key file"),
            }
        }
        loaded.ring.clone()
    }

    /// The id of the key that seals now.
    pub fn current_id(&self) -> String {
        self.ring(false).current().id.clone()
    }

    /// The id of the key that sealed, and the nonce and ciphertext.
    fn seal_parts(&self, purpose: &str, plain: &[u8]) -> (String, Vec<u8>) {
        let ring = self.ring(false);
        let key = ring.current();
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = key
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: purpose.as_bytes() })
            .expect("sealing in memory cannot fail");
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        (key.id.clone(), body)
    }

    /// Seals `plain` for `purpose` (a name for where it is kept, bound to
    /// the ciphertext so a sealed value moved elsewhere does not open).
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Vec<u8> {
        let (key_id, body) = self.seal_parts(purpose, plain);
        let mut out = sealed_text_prefix(&key_id).into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// Seals text into text (for database columns).
    pub fn seal_text(&self, purpose: &str, plain: &str) -> String {
        let (key_id, body) = self.seal_parts(purpose, plain.as_bytes());
        format!("{}{}", sealed_text_prefix(&key_id), BASE64.encode(body))
    }

    /// Opens what [`MasterKeys::seal`] sealed. Bytes that are not sealed
    /// (written before secrets were sealed) come back as they are, until
    /// the start-up pass seals them.
    pub fn open_sealed(&self, purpose: &str, stored: &[u8]) -> Result<Vec<u8>, SecretError> {
        let Some((key_id, body)) = split_sealed(stored) else { return Ok(stored.to_vec()) };
        let mut ring = self.ring(false);
        if ring.get(key_id).is_none() {
            ring = self.ring(true);
        }
        let key = ring
            .get(key_id)
            .ok_or_else(|| SecretError::UnknownKey { key_id: key_id.to_owned(), path: self.path.clone() })?;
        let altered = || SecretError::Altered { purpose: purpose.to_owned() };
        if body.len() < NONCE_LEN {
            return Err(altered());
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        key.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: purpose.as_bytes() })
            .map_err(|_| altered())
    }

    /// Opens what [`MasterKeys::seal_text`] sealed (or clear text written
    /// before sealing).
    pub fn open_text(&self, purpose: &str, stored: &str) -> Result<String, SecretError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else { return Ok(stored.to_owned()) };
        let altered = || SecretError::Altered { purpose: purpose.to_owned() };
        let (key_id, encoded) = rest.split_once(':').ok_or_else(altered)?;
        let body = BASE64.decode(encoded).map_err(|_| altered())?;
        let mut bytes = format!("{SEALED_PREFIX}{key_id}:").into_bytes();
        bytes.extend_from_slice(&body);
        String::from_utf8(self.open_sealed(purpose, &bytes)?).map_err(|_| altered())
    }

    /// Makes a new key the one that seals; the others stay to open what
    /// they sealed. Every process picks the file up within a second or two.
    pub fn add_key(&self) -> Result<String, SecretError> {
        let ring = self.ring(true);
        let mut keys = vec![MasterKey::new(rand::random())];
        keys.extend(ring.keys.iter().cloned());
        let ring = KeyRing { keys };
        write_private(&self.path, &ring.render())?;
        Ok(self.ring(true).current().id.clone())
    }

    /// Drops every key but the current one (once nothing is sealed under
    /// them any more); returns the ids dropped.
    pub fn drop_old_keys(&self) -> Result<Vec<String>, SecretError> {
        let ring = self.ring(true);
        let dropped: Vec<String> = ring.keys[1..].iter().map(|k| k.id.clone()).collect();
        if !dropped.is_empty() {
            write_private(&self.path, &KeyRing { keys: vec![ring.current().clone()] }.render())?;
            self.ring(true);
        }
        Ok(dropped)
    }
}

/// The key id and body of a sealed value, or `None` for clear bytes.
fn split_sealed(stored: &[u8]) -> Option<(&str, &[u8])> {
    let rest = stored.strip_prefix(SEALED_PREFIX.as_bytes())?;
    let colon = rest.iter().take(32).position(|b| *b == b':')?;
    let key_id = std::str::from_utf8(&rest[..colon]).ok()?;
    Some((key_id, &rest[colon + 1..]))
}

/// The key a stored value is sealed with (`None`: in clear).
pub fn sealed_with(stored: &[u8]) -> Option<&str> {
    split_sealed(stored).map(|(id, _)| id)
}

/// What clear text starts with when sealed under `key_id`, for queries that
/// look for values not sealed under the current key.
pub fn sealed_text_prefix(key_id: &str) -> String {
    format!("{SEALED_PREFIX}{key_id}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (tempfile::TempDir, MasterKeys) {
        let dir = tempfile::tempdir().unwrap();
        let keys = MasterKeys::open_or_create(&dir.path().join("master.key")).unwrap();
        (dir, keys)
    }

    #[test]
    fn sealed_secrets_open_only_for_their_purpose_and_unaltered() {
        let (_dir, keys) = keys();
        let sealed = keys.seal_text("users.totp_secret", "JBSWY3DPEHPK3PXP");
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert!(sealed.starts_with(&sealed_text_prefix(&keys.current_id())));
        assert_eq!(keys.open_text("users.totp_secret", &sealed).unwrap(), "JBSWY3DPEHPK3PXP");
        assert!(matches!(keys.open_text("acquirer.document", &sealed), Err(SecretError::Altered { .. })));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(keys.open_text("users.totp_secret", &String::from_utf8(tampered).unwrap()).is_err());
        assert_ne!(
            sealed,
            keys.seal_text("users.totp_secret", "JBSWY3DPEHPK3PXP"),
            "a fresh nonce each time"
        );
        // Written before sealing: read as it is.
        assert_eq!(keys.open_text("users.totp_secret", "CLEAR").unwrap(), "CLEAR");
        let blob = keys.seal("parameter_set", b"{\"pin\":\"1234\"}");
        assert_eq!(sealed_with(&blob), Some(keys.current_id().as_str()));
        assert_eq!(keys.open_sealed("parameter_set", &blob).unwrap(), b"{\"pin\":\"1234\"}");
    }

    #[test]
    fn the_key_file_is_private_and_a_rotation_keeps_old_secrets_readable() {
        let (dir, keys) = keys();
        let path = dir.path().join("master.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let old = keys.current_id();
        let sealed = keys.seal_text("p", "secret");
        // Another process sharing the file.
        let other = MasterKeys::open(&path).unwrap();
        let new = keys.add_key().unwrap();
        assert_ne!(old, new);
        assert_eq!(keys.open_text("p", &sealed).unwrap(), "secret");
        let resealed = keys.seal_text("p", "secret");
        assert!(resealed.starts_with(&sealed_text_prefix(&new)));
        assert_eq!(other.open_text("p", &resealed).unwrap(), "secret", "an unknown key id re-reads the file");
        assert_eq!(keys.drop_old_keys().unwrap(), vec![old.clone()]);
        match MasterKeys::open(&path).unwrap().open_text("p", &sealed) {
            Err(SecretError::UnknownKey { key_id, .. }) => assert_eq!(key_id, old),
            other => panic!("{other:?}"),
        }
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("# TMS master keys"));
    }

    #[test]
    fn a_damaged_key_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "abc notbase64\n").unwrap();
        let err = MasterKeys::open(&path).unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        std::fs::write(&path, "# only comments\n").unwrap();
        assert!(MasterKeys::open(&path).unwrap_err().to_string().contains("no key"));
    }
}
