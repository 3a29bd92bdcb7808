//! Bearer tokens: 256 random bits, shown once, stored as their sha256.

use tms_signing::Sha256Digest;

/// A new token with a prefix that says what it is (`tms_s_` session, `tms_a_`
/// API token, …), and the hash to store.
pub fn generate(prefix: &str) -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{prefix}{}", hex::encode(bytes));
    let stored = hash(&token);
    (token, stored)
}

/// What is stored for a token. Tokens carry 256 bits of entropy, so a fast
/// hash suffices: there is nothing to brute-force.
pub fn hash(token: &str) -> String {
    Sha256Digest::of(token.as_bytes()).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, ha) = generate("tms_s_");
        let (b, _) = generate("tms_s_");
        assert_ne!(a, b);
        assert!(a.starts_with("tms_s_") && a.len() == 6 + 64);
        assert_eq!(hash(&a), ha);
        assert_ne!(ha, a);
    }
}
