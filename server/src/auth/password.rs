//! Password hashing (argon2id, OWASP parameters) and the password policy.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 128;

/// OWASP's minimum for argon2id: 19 MiB of memory, 2 iterations, 1 lane.
fn hasher() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("valid argon2 params"),
    )
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of a password.
pub fn hash(password: &str) -> String {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes make a valid salt");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing of a bounded password")
        .to_string()
}

/// Whether `password` matches a stored PHC string. A malformed stored hash
/// never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the account does not exist, so that a
/// login for an unknown e-mail takes as long as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("no account has this password"))
}

/// Passwords seen most often in breaches (and the terminal's default merchant
/// password), refused whatever their length.
const COMMON: &[&str] = &[
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "password",
    "password1",
    "password123",
    "passw0rd",
    "qwerty",
    "qwerty123",
    "qwertyuiop",
    "azerty",
    "azertyuiop",
    "111111",
    "1111111111",
    "000000",
    "0000000000",
    "abc123",
    "abcdefghij",
    "iloveyou",
    "admin",
    "admin123",
    "administrator",
    "welcome",
    "welcome123",
    "letmein",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "trustno1",
    "superman",
    "starwars",
    "whatever",
    "changeme",
    "motdepasse",
    "soleil",
    "bonjour",
    "doudou",
    "marseille",
    "chocolat",
    "loulou",
    "wachtwoord",
    "welkom",
    "welkom123",
    "passwort",
    "hallo123",
    "99999",
    "9999999999",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "zaq12wsx",
    "qazwsxedc",
    "asdfghjkl",
    "zxcvbnm",
    "p@ssw0rd",
    "p@ssword",
    "summer2024",
    "winter2024",
    "summer2025",
    "winter2025",
    "summer2026",
    "winter2026",
    "salespoint",
    "paxstore",
];

/// Why a password is refused, in words for the person choosing it.
pub fn check_policy(password: &str, email: &str) -> Result<(), Weakness> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(Weakness::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(Weakness::TooLong);
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Err(Weakness::Common);
    }
    if password.chars().all(|c| c == password.chars().next().unwrap_or(c)) {
        return Err(Weakness::Repeated);
    }
    let local = email.split('@').next().unwrap_or("").to_lowercase();
    if lower.contains(&email.to_lowercase()) {
        return Err(Weakness::ContainsEmail);
    }
    if local.chars().count() >= 4 && lower.contains(&local) {
        return Err(Weakness::ContainsName(local));
    }
    Ok(())
}

/// Which rule a refused password breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weakness {
    TooShort,
    TooLong,
    Common,
    Repeated,
    ContainsEmail,
    /// The part of the address before the `@`.
    ContainsName(String),
}

impl Weakness {
    /// A stable name for the rule (`details.rule` of a `weak_password` error).
    pub fn rule(&self) -> &'static str {
        match self {
            Weakness::TooShort => "too_short",
            Weakness::TooLong => "too_long",
            Weakness::Common => "common",
            Weakness::Repeated => "repeated",
            Weakness::ContainsEmail => "contains_email",
            Weakness::ContainsName(_) => "contains_name",
        }
    }

    /// The domain error, with the rule in its details.
    pub fn into_error(self) -> crate::error::Error {
        let details = std::collections::BTreeMap::from([("rule".to_owned(), self.rule().to_owned())]);
        crate::error::Error::with_details(crate::error::ErrorCode::WeakPassword, self.to_string(), details)
    }
}

impl std::fmt::Display for Weakness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Weakness::TooShort => write!(f, "the password must have at least {MIN_LENGTH} characters"),
            Weakness::TooLong => write!(f, "the password must have at most {MAX_LENGTH} characters"),
            Weakness::Common => f.write_str("this password is too common; choose another"),
            Weakness::Repeated => f.write_str("the password must not be one character repeated"),
            Weakness::ContainsEmail => f.write_str("the password must not contain the e-mail address"),
            Weakness::ContainsName(local) => {
                write!(f, "the password must not contain the name of the e-mail address ({local})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let stored = hash("correct horse battery");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("anything", "not a phc string"));
        assert_ne!(hash("same"), hash("same"), "salted");
    }

    #[test]
    fn policy() {
        assert!(check_policy("short", "a@b.fr").is_err());
        assert!(check_policy("Password123", "a@b.fr").is_err());
        assert!(check_policy("aaaaaaaaaaaa", "a@b.fr").is_err());
        // The message says which part of the address the password holds.
        let name = check_policy("anne.martin-2026", "anne.martin@b.fr").unwrap_err().to_string();
        assert!(name.contains("name of the e-mail address (anne.martin)"), "{name}");
        let whole = check_policy("x-anne@b.fr-x", "anne@b.fr").unwrap_err();
        assert_eq!(whole.to_string(), "the password must not contain the e-mail address");
        assert_eq!(whole.rule(), "contains_email");
        assert!(check_policy(&"x".repeat(129), "a@b.fr").is_err());
        assert!(check_policy("croissant au beurre", "anne@b.fr").is_ok());
    }
}
