//! Credentials: password hashing, bearer tokens and TOTP. Pure functions;
//! who may do what lives in `accounts::access`.

pub mod password;
pub mod tokens;
pub mod totp;
