//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps,
//! 6 digits), as authenticator apps implement them, through `totp-rs`. What
//! the library leaves to its caller is here: a code is accepted once (the
//! step it matched is kept, RFC 6238 section 5.2).

use totp_rs::{Algorithm, Builder, Secret, Totp};

pub const STEP_SECONDS: u64 = 30;
const DIGITS: u8 = 6;
/// Steps of clock difference tolerated either way.
const SKEW: u16 = 1;

/// A new 160-bit secret.
pub fn generate_secret() -> Vec<u8> {
    rand::random::<[u8; 20]>().to_vec()
}

fn totp(secret: &[u8], digits: u8, issuer: Option<&str>, account: &str) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_skew(SKEW)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .with_issuer(issuer)
        .with_account_name(account)
        .build()
        .ok()
}

/// The step a code matches at time `now` (Unix seconds), if it matches one
/// within the tolerated skew that is later than `last_used_step`: a code is
/// accepted once.
pub fn verify(secret: &[u8], code: &str, now: u64, last_used_step: Option<i64>) -> Option<u64> {
    let code = code.trim().replace(' ', "");
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = totp(secret, DIGITS, None, "")?.check(&code, now)?;
    last_used_step.is_none_or(|last| step as i64 > last).then_some(step)
}

/// The current code, for tests and tools that act as an authenticator.
pub fn current_code(secret: &[u8], now: u64) -> String {
    totp(secret, DIGITS, None, "").map(|t| t.generate(now).to_string()).unwrap_or_default()
}

/// RFC 4648 base32 without padding, the form authenticator apps take.
pub fn base32_encode(bytes: &[u8]) -> String {
    Secret::from(bytes.to_vec()).to_base32()
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=').to_ascii_uppercase();
    Secret::try_from_base32(text).ok().map(|s| s.as_bytes().to_vec())
}

/// The `otpauth://` URL an authenticator app scans.
pub fn otpauth_url(issuer: &str, account: &str, secret: &[u8]) -> String {
    totp(secret, DIGITS, Some(issuer), account).and_then(|t| t.to_url().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_sha1_vectors() {
        for (time, expected) in [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ] {
            let totp = totp(RFC_SECRET, 8, None, "").unwrap();
            assert_eq!(totp.generate(time).to_string(), expected, "t={time}");
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_within_the_skew() {
        let secret = generate_secret();
        let now = 1_800_000_000;
        let code = current_code(&secret, now);
        assert_eq!(code.len(), 6);
        let step = verify(&secret, &code, now, None).expect("current code");
        assert_eq!(step, now / STEP_SECONDS);
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
    fn otpauth_url_names_the_issuer_and_the_account() {
        let secret = generate_secret();
        let url = otpauth_url("CCV TMS", "anne@b.fr", &secret);
        assert!(url.starts_with("otpauth://totp/CCV%20TMS:anne%40b.fr?"), "{url}");
        assert!(url.contains(&format!("secret={}", base32_encode(&secret))), "{url}");
        assert!(url.contains("issuer=CCV%20TMS"), "{url}");
    }
}
