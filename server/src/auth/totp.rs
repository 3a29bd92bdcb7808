//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps,
//! 6 digits), as authenticator apps implement them.

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const STEP_SECONDS: u64 = 30;
const DIGITS: u32 = 6;
/// Steps of clock difference tolerated either way.
const SKEW: u64 = 1;

/// A new 160-bit secret.
pub fn generate_secret() -> Vec<u8> {
    rand::random::<[u8; 20]>().to_vec()
}

/// The HOTP value (RFC 4226) of `secret` at counter `step`.
pub fn code_at(secret: &[u8], step: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

/// The step a code matches at time `now` (Unix seconds), if it matches one
/// within the tolerated skew that is later than `last_used_step`: a code is
/// accepted once.
pub fn verify(secret: &[u8], code: &str, now: u64, last_used_step: Option<i64>) -> Option<u64> {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wanted: u32 = code.parse().ok()?;
    let current = now / STEP_SECONDS;
    (current.saturating_sub(SKEW)..=current + SKEW)
        .filter(|step| last_used_step.is_none_or(|last| *step as i64 > last))
        .find(|step| code_at(secret, *step, DIGITS) == wanted)
}

/// The current code, for tests and tools that act as an authenticator.
pub fn current_code(secret: &[u8], now: u64) -> String {
    format!("{:0width$}", code_at(secret, now / STEP_SECONDS, DIGITS), width = DIGITS as usize)
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, the form authenticator apps take.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            out.push(BASE32[((bits >> (35 - i * 5)) & 0x1f) as usize] as char);
        }
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let value = BASE32.iter().position(|b| *b == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The `otpauth://` URL an authenticator app scans.
pub fn otpauth_url(issuer: &str, account: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        percent_encode(issuer),
        percent_encode(account),
        base32_encode(secret),
        percent_encode(issuer)
    )
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_sha1_vectors() {
        for (time, expected) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code_at(RFC_SECRET, time / STEP_SECONDS, 8), expected, "t={time}");
        }
    }

    #[test]
    fn rfc_4226_hotp_vectors() {
        let expected = [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        for (counter, value) in expected.iter().enumerate() {
            assert_eq!(code_at(RFC_SECRET, counter as u64, 6), *value);
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_within_the_skew() {
        let secret = generate_secret();
        let now = 1_800_000_000;
        let code = current_code(&secret, now);
        let step = verify(&secret, &code, now, None).expect("current code");
        assert_eq!(verify(&secret, &code, now, Some(step as i64)), None, "replay refused");
        assert!(verify(&secret, &code, now + STEP_SECONDS, None).is_some(), "one step late is fine");
        assert!(verify(&secret, &code, now + 3 * STEP_SECONDS, None).is_none(), "too late");
        assert!(verify(&secret, "12345", now, None).is_none());
        assert!(verify(&secret, "abcdef", now, None).is_none());
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_encode(b"f"), "MY");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        let secret = generate_secret();
        assert_eq!(base32_decode(&base32_encode(&secret)).unwrap(), secret);
        assert!(base32_decode("0189").is_none());
    }

    #[test]
    fn otpauth_url_escapes_labels() {
        let url = otpauth_url("CCV TMS", "anne@b.fr", b"foobar");
        assert_eq!(
            url,
            "otpauth://totp/CCV%20TMS:anne%40b.fr?secret=MZXW6YTBOI&issuer=CCV%20TMS&algorithm=SHA1&digits=6&period=30"
        );
    }
}
