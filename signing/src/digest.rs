use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::SigningError;

/// A sha256 digest; its text form is 64 lower-case hex characters, which is also
/// the content address of a blob in object storage.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = SigningError;

    /// Accepts lower-case hex only, so that one digest has exactly one text form
    /// (content addresses must not alias).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(SigningError::InvalidDigest);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| SigningError::InvalidDigest)?;
        Ok(Self(out))
    }
}

/// Incremental sha256 over pieces of data that arrive one by one.
#[derive(Clone, Default)]
pub struct Sha256Hasher {
    hasher: Sha256,
    bytes: u64,
}

impl Sha256Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    pub fn finish(self) -> Sha256Digest {
        Sha256Digest(self.hasher.finalize().into())
    }
}

/// Hashes everything read through it, so a stream can be hashed while it is
/// copied elsewhere, in constant memory.
pub struct Sha256Reader<R> {
    inner: R,
    hasher: Sha256Hasher,
}

impl<R: Read> Sha256Reader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256Hasher::new() }
    }

    /// The digest and length of what has been read so far.
    pub fn finish(self) -> (Sha256Digest, u64) {
        let len = self.hasher.len();
        (self.hasher.finish(), len)
    }
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Digest and length of a whole reader, read in fixed-size chunks.
pub fn sha256_reader<R: Read>(reader: R) -> Result<(Sha256Digest, u64), SigningError> {
    let mut hashing = Sha256Reader::new(reader);
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(hashing.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_vectors() {
        assert_eq!(Sha256Digest::of(b"").to_hex(), EMPTY);
        assert_eq!(
            Sha256Digest::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn streaming_matches_one_shot_across_chunk_boundaries() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (digest, len) = sha256_reader(&data[..]).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(digest, Sha256Digest::of(&data));
    }

    #[test]
    fn text_form_round_trips_and_is_strict() {
        let d: Sha256Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert!(EMPTY.to_uppercase().parse::<Sha256Digest>().is_err());
        assert!(EMPTY[..63].parse::<Sha256Digest>().is_err());
        assert!(format!("{EMPTY}0").parse::<Sha256Digest>().is_err());
        assert!(EMPTY.replace('e', "g").parse::<Sha256Digest>().is_err());
    }
}
