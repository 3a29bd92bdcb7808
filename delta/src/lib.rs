//! Binary deltas between two versions of an artifact, so a terminal on
//! metered data downloads only what changed.
//!
//! A delta is one zstd frame compressed in patch-from mode: the base
//! artifact is the frame's reference prefix, long-distance matching finds
//! what the target shares with it anywhere, and the window covers both, so
//! the delta is about the size of what changed (compressed). Applying it
//! needs exactly that base. The frame carries zstd's checksum of the target;
//! the terminal checks the target's sha256 against the publisher's signed
//! manifest on top, and downloads the full artifact when anything does not
//! match.
//!
//! Memory: building holds the base in memory and zstd's tables, about
//! `base + 2 × window` for the match finder at the levels used here (see
//! [`build_memory_bound`]); applying holds the base and the window. That is
//! why servers bound the base size they build deltas from.

#![forbid(unsafe_code)]

use std::io::{Read, Write};

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("reading or writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("the base is {0} bytes; deltas are built from bases of at most 2 GiB")]
    TooLarge(u64),
}

/// The compression level deltas are built at by default. Measured with
/// `tms-bench delta` (64 MiB APK-like archive, 256 MiB firmware-like image):
/// level 9 makes the same deltas as level 15, 35 times faster (0.45 s
/// against 16 s for the archive), since what the versions share is found
/// by long-distance matching, not by the level's search.
pub const DEFAULT_LEVEL: i32 = 9;

/// zstd's largest window (2 GiB) on 64-bit machines.
const MAX_WINDOW_LOG: u32 = 31;

/// The window (as a power of two) that covers both versions: the delta can
/// then refer to any byte of the base from any point of the target.
pub fn window_log(base_len: u64, target_len: u64) -> u32 {
    let largest = base_len.max(target_len).max(1);
    (u64::BITS - largest.leading_zeros() + 1).clamp(10, MAX_WINDOW_LOG)
}

/// About how much memory building a delta between versions of these sizes
/// takes: the base in memory, the window, and the match finder's tables.
pub fn build_memory_bound(base_len: u64, target_len: u64) -> u64 {
    let window = 1u64 << window_log(base_len, target_len);
    base_len + 2 * window
}

/// Writes to `out` the delta that turns `base` into the `target_len` bytes
/// read from `target`; returns the delta's size.
pub fn build(
    base: &[u8],
    target: &mut impl Read,
    target_len: u64,
    level: i32,
    out: &mut impl Write,
) -> Result<u64, DeltaError> {
    if base.len() as u64 > 1 << MAX_WINDOW_LOG {
        return Err(DeltaError::TooLarge(base.len() as u64));
    }
    let mut counted = Counted { inner: out, written: 0 };
    let mut encoder = zstd::stream::write::Encoder::with_ref_prefix(&mut counted, level, base)?;
    encoder.long_distance_matching(true)?;
    encoder.window_log(window_log(base.len() as u64, target_len))?;
    encoder.include_checksum(true)?;
    encoder.set_pledged_src_size(Some(target_len))?;
    std::io::copy(target, &mut encoder)?;
    encoder.finish()?;
    Ok(counted.written)
}

/// Writes to `out` what `delta` turns `base` into; returns its size. A delta
/// built from another base, or damaged, fails (zstd's checksum), or yields
/// bytes whose sha256 the caller's check refuses.
pub fn apply(base: &[u8], delta: &mut impl Read, out: &mut impl Write) -> Result<u64, DeltaError> {
    let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(std::io::BufReader::new(delta), base)?;
    decoder.window_log_max(MAX_WINDOW_LOG)?;
    Ok(std::io::copy(&mut decoder, out)?)
}

/// A writer that counts what went through it.
struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn delta(base: &[u8], target: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        build(base, &mut &target[..], target.len() as u64, 3, &mut out).unwrap();
        out
    }

    /// Bytes that do not compress on their own (a xorshift stream).
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    #[test]
    fn a_delta_is_about_the_size_of_what_changed() {
        let base = noise(4 << 20, 7);
        let mut target = base.clone();
        target[1_000_000..1_016_384].copy_from_slice(&noise(16_384, 9));
        target.extend_from_slice(&noise(8_192, 11));
        let d = delta(&base, &target);
        assert!(d.len() < 40_000, "{} bytes for 24 KiB of change in 4 MiB", d.len());
        let mut back = Vec::new();
        assert_eq!(apply(&base, &mut &d[..], &mut back).unwrap(), target.len() as u64);
        assert_eq!(back, target);
    }

    #[test]
    fn another_base_or_a_damaged_delta_does_not_yield_the_target() {
        let base = noise(256 << 10, 1);
        let mut target = base.clone();
        target[100..200].fill(0);
        let d = delta(&base, &target);
        let other_base = noise(256 << 10, 2);
        let mut out = Vec::new();
        let wrong = apply(&other_base, &mut &d[..], &mut out);
        assert!(wrong.is_err() || out != target, "another base never gives the target");
        let mut damaged = d.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0xff;
        let mut out = Vec::new();
        let broken = apply(&base, &mut &damaged[..], &mut out);
        assert!(broken.is_err() || out != target, "a damaged delta never gives the target");
    }

    #[test]
    fn the_window_covers_both_versions() {
        assert_eq!(window_log(0, 0), 10);
        assert_eq!(window_log(100 << 20, 90 << 20), 28);
        assert_eq!(window_log(1 << 30, 1 << 30), 31);
        assert_eq!(window_log(u64::MAX, 0), 31);
        assert!(build_memory_bound(1 << 30, 1 << 30) <= 5 << 30);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn applying_a_delta_gives_back_the_target_exactly(
            base in proptest::collection::vec(any::<u8>(), 0..4096),
            edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..32),
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut target = base.clone();
            for (at, byte) in edits {
                if !target.is_empty() {
                    let i = at as usize % target.len();
                    target[i] = byte;
                }
            }
            target.extend_from_slice(&tail);
            let d = delta(&base, &target);
            let mut back = Vec::new();
            apply(&base, &mut &d[..], &mut back).unwrap();
            prop_assert_eq!(back, target);
        }
    }
}
