//! Users: logging in, sessions and API tokens, activation, two-step
//! verification, and managing a merchant's users.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Duration;
use diesel::prelude::*;
use serde_json::json;
use tms_packages::accounts::{
    OperatorRole, Permission, is_plausible_email, normalize_email, permissions_from_text, permissions_to_text,
};
use tms_packages::wire::accounts::{
    ApiTokenView, CreateApiTokenRequest, CreatedApiToken, InviteUserRequest, LoginRequest, LoginResponse,
    RecoveryCodes, TwoFactorEnrollment, UpdateUserRequest, UserView,
};

use super::access::{Actor, MerchantAccess, Role};
use super::rows::{self, KIND_MERCHANT, KIND_OPERATOR, USER_ACTIVE, USER_DISABLED, USER_INVITED, UserRow};
use super::throttle::{self, Attempt, Limits, Policy, Rule};
use super::{PendingMail, activation_mail};
use crate::auth::{password, tokens, totp};
use crate::db::schema::{
    activation_tokens, group_grants, group_members, merchants, recovery_codes, user_tokens, users,
};
use crate::db::{DbConnection, DbError, audit};
use crate::error::{Error, ErrorCode};
use crate::per_backend;
use crate::secrets::MasterKeys;
use crate::time::{now, rfc3339};

pub const TOKEN_SESSION: &str = "session";
pub const TOKEN_API: &str = "api";
/// Proof that a browser login passed the password and awaits its second
/// factor: never a credential for anything else.
pub const TOKEN_SECOND_FACTOR: &str = "second_factor";
/// The name of session tokens held by a browser (in an HttpOnly cookie):
/// they also end after `session_idle_minutes` without use.
pub const BROWSER_SESSION: &str = "browser";
const SECOND_FACTOR_TTL_MINUTES: i64 = 5;
const RECOVERY_CODE_COUNT: usize = 10;

/// The settings the account flows need, taken from the configuration.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub public_url: String,
    pub session_ttl_hours: u64,
    pub session_idle_minutes: u64,
    pub activation_ttl_hours: u64,
    pub throttle: Policy,
    /// Seals two-step secrets.
    pub master_keys: Arc<MasterKeys>,
}

impl AccountSettings {
    pub fn from_config(config: &crate::config::Config, master_keys: Arc<MasterKeys>) -> AccountSettings {
        AccountSettings {
            public_url: config.public_url(),
            session_ttl_hours: config.session_ttl_hours,
            session_idle_minutes: config.session_idle_minutes,
            activation_ttl_hours: config.activation_ttl_hours,
            master_keys,
            throttle: Policy {
                free_failures: config.login_free_failures,
                first_delay_secs: config.login_first_delay_secs,
                max_delay_secs: config.login_max_delay_secs,
                max_failures_per_account: config.login_max_failures_per_account,
                max_failures_per_address: config.login_max_failures_per_address,
                max_code_failures_per_account: config.login_max_code_failures_per_account,
                window_secs: config.login_failure_window_secs,
            },
        }
    }
}

/// The longest e-mail address there is (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

fn invalid_credentials() -> Error {
    Error::new(ErrorCode::InvalidCredentials, "wrong e-mail or password")
}

/// Records what a user did as themselves (subject `user:ID`, their
/// merchant's trail), from `source_ip`.
fn record_own(
    conn: &mut DbConnection,
    user: &UserRow,
    action: &str,
    detail: &serde_json::Value,
    source_ip: Option<&str>,
) -> Result<(), DbError> {
    let subject = format!("user:{}", user.id);
    audit::record(
        conn,
        &audit::NewAuditEvent {
            actor_user_id: Some(user.id),
            merchant_id: user.merchant_id,
            source_ip,
            ..audit::NewAuditEvent::now(&user.email, action, &subject, detail)
        },
    )?;
    Ok(())
}

/// A failed login, password or code, for the audit trail (never what was
/// typed: the account, how, why, from where).
struct Failure<'a> {
    user: Option<&'a UserRow>,
    /// The address typed, for an account that does not exist: only a
    /// digest of it is kept, to tell repeated guesses apart.
    email: &'a str,
    via: &'a str,
    reason: &'a str,
    source_ip: Option<&'a str>,
}

impl<'a> Failure<'a> {
    /// A failure on an account that exists.
    fn of(user: &'a UserRow, via: &'a str, reason: &'a str, source_ip: Option<&'a str>) -> Failure<'a> {
        Failure { user: Some(user), email: &user.email, via, reason, source_ip }
    }
}

/// Records a failed attempt: it stays counted, and the audit trail gets
/// `auth.login_failed`, plus `auth.throttled` when this failure makes the
/// next attempts wait.
fn record_failure(conn: &mut DbConnection, attempt: Attempt, failure: Failure<'_>) -> Result<(), Error> {
    let throttled = attempt.failed(conn)?;
    let (actor, subject) = match failure.user {
        Some(user) => (user.email.clone(), format!("user:{}", user.id)),
        None => ("(unknown account)".to_owned(), format!("account:{}", &tokens::hash(failure.email)[..12])),
    };
    let event = |action, detail: serde_json::Value| audit::NewAuditEvent {
        actor_user_id: failure.user.map(|u| u.id),
        merchant_id: failure.user.and_then(|u| u.merchant_id),
        source_ip: failure.source_ip,
        ..audit::NewAuditEvent::now(&actor, action, &subject, &detail)
    };
    audit::record(conn, &event("auth.login_failed", json!({"via": failure.via, "reason": failure.reason})))?;
    if let Some(retry_after_secs) = throttled {
        audit::record(
            conn,
            &event("auth.throttled", json!({"via": failure.via, "retry_after_secs": retry_after_secs})),
        )?;
    }
    Ok(())
}

/// Checks e-mail and password, with throttling; returns the active user.
/// Typed on `known_device` (a terminal activated already), only that
/// device's own failures count. Deliberately not a transaction: failures
/// must be recorded even though the attempt fails.
fn check_password(
    conn: &mut DbConnection,
    email: &str,
    password_given: &str,
    source_ip: Option<&str>,
    known_device: Option<i64>,
    via: &str,
    settings: &AccountSettings,
) -> Result<(UserRow, Attempt), Error> {
    let email = normalize_email(email);
    // Longer is no address (RFC 5321), and nothing of it is written down.
    if email.len() > MAX_EMAIL_LEN {
        return Err(Error::invalid(
            "email",
            format!("an e-mail address has at most {MAX_EMAIL_LEN} characters"),
        ));
    }
    let limits = match known_device {
        Some(device_id) => settings.throttle.known_device(&email, device_id),
        None => settings.throttle.password(&email, source_ip),
    };
    let attempt = throttle::begin(conn, &limits)?;
    let user = rows::find_user_by_email(conn, &email)?;
    let matches = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
        Some(stored) => password::verify(password_given, stored),
        None => {
            // Same cost as a real check, so timing does not reveal accounts.
            password::verify(password_given, password::dummy_hash());
            false
        }
    };
    let reason = match &user {
        Some(user) if matches && user.status == USER_ACTIVE => return Ok((user.clone(), attempt)),
        Some(user) if matches => format!("account_{}", user.status),
        Some(_) => "wrong_password".to_owned(),
        None => "unknown_account".to_owned(),
    };
    record_failure(
        conn,
        attempt,
        Failure { user: user.as_ref(), email: &email, via, reason: &reason, source_ip },
    )?;
    Err(invalid_credentials())
}

/// Where two-step secrets are kept, bound to their sealing.
pub const TOTP_SEALED_PURPOSE: &str = "users.totp_secret";

/// The user's two-step secret, opened.
fn totp_secret(user: &UserRow, keys: &MasterKeys) -> Result<Option<String>, DbError> {
    Ok(user.totp_secret.as_deref().map(|stored| keys.open_text(TOTP_SEALED_PURPOSE, stored)).transpose()?)
}

/// Whether `code` is the recovery code `stored` hashes: argon2id, or the
/// sha256 that codes made before had.
fn recovery_code_matches(code: &str, stored: &str) -> bool {
    if stored.starts_with("$argon2") { password::verify(code, stored) } else { tokens::hash(code) == stored }
}

/// Accepts a current TOTP code (once) or an unused recovery code.
fn check_second_factor(
    conn: &mut DbConnection,
    user: &UserRow,
    code: &str,
    keys: &MasterKeys,
    source_ip: Option<&str>,
) -> Result<bool, DbError> {
    let code = code.trim();
    if code.contains('-') {
        let code = code.to_lowercase();
        let unused: Vec<(i64, String)> = recovery_codes::table
            .filter(recovery_codes::user_id.eq(user.id))
            .filter(recovery_codes::used_at.is_null())
            .select((recovery_codes::id, recovery_codes::code_hash))
            .load(conn)?;
        let Some((id, _)) = unused.iter().find(|(_, stored)| recovery_code_matches(&code, stored)) else {
            return Ok(false);
        };
        // Conditional, so two requests racing with one code cannot both pass.
        let used = diesel::update(
            recovery_codes::table.filter(recovery_codes::id.eq(id)).filter(recovery_codes::used_at.is_null()),
        )
        .set(recovery_codes::used_at.eq(now()))
        .execute(conn)?;
        if used == 1 {
            let detail = json!({"remaining": unused.len() - 1});
            record_own(conn, user, "auth.recovery_code_used", &detail, source_ip)?;
        }
        return Ok(used == 1);
    }
    let Some(secret) = totp_secret(user, keys)?.as_deref().and_then(totp::base32_decode) else {
        return Ok(false);
    };
    let Some(step) = totp::verify(&secret, code, now().and_utc().timestamp() as u64, user.totp_last_step)
    else {
        return Ok(false);
    };
    // Conditional, so two requests racing with one code cannot both pass.
    let step = step as i64;
    let accepted = diesel::update(
        users::table
            .filter(users::id.eq(user.id))
            .filter(users::totp_last_step.is_null().or(users::totp_last_step.lt(step))),
    )
    .set(users::totp_last_step.eq(step))
    .execute(conn)?;
    Ok(accepted == 1)
}

fn new_token(
    conn: &mut DbConnection,
    user_id: i64,
    kind: &str,
    name: &str,
    ttl: Duration,
) -> Result<(i64, String, chrono::NaiveDateTime), DbError> {
    let (token, hash) = tokens::generate(if kind == TOKEN_SESSION { "tms_s_" } else { "tms_a_" });
    let created = now();
    let expires = created + ttl;
    let insert = diesel::insert_into(user_tokens::table).values((
        user_tokens::user_id.eq(user_id),
        user_tokens::kind.eq(kind),
        user_tokens::name.eq(name),
        user_tokens::token_hash.eq(hash),
        user_tokens::created_at.eq(created),
        user_tokens::expires_at.eq(expires),
    ));
    let id: i64 = per_backend!(conn, |c| insert.returning(user_tokens::id).get_result(c))?;
    Ok((id, token, expires))
}

/// Logs in to the management API: password, then the second factor when on.
pub fn login(
    conn: &mut DbConnection,
    request: &LoginRequest,
    source_ip: Option<&str>,
    settings: &AccountSettings,
) -> Result<LoginResponse, Error> {
    let (user, attempt) =
        check_password(conn, &request.email, &request.password, source_ip, None, "api", settings)?;
    if user.totp_enabled {
        let Some(code) = request.totp_code.as_deref().filter(|c| !c.trim().is_empty()) else {
            // The password was right: asking for the code is no failure,
            // and forgives none (codes guessed before stay counted).
            attempt.password_right(conn)?;
            return Err(Error::new(
                ErrorCode::TotpRequired,
                "two-step verification is on: send the current code from your authenticator app",
            ));
        };
        attempt.password_right(conn)?;
        // Codes are counted per account, from every address together.
        let attempt = throttle::begin(conn, &settings.throttle.second_factor(&user.email, source_ip))?;
        if !check_second_factor(conn, &user, code, &settings.master_keys, source_ip)? {
            let failure = Failure::of(&user, "api", "wrong_code", source_ip);
            record_failure(conn, attempt, failure)?;
            return Err(Error::new(ErrorCode::InvalidTotp, "wrong, expired or already used code"));
        }
        attempt.succeeded(conn)?;
        return open_session(conn, &user, "login", source_ip, settings);
    }
    attempt.succeeded(conn)?;
    open_session(conn, &user, "login", source_ip, settings)
}

/// A new session for a user who passed every check, audited.
fn open_session(
    conn: &mut DbConnection,
    user: &UserRow,
    name: &str,
    source_ip: Option<&str>,
    settings: &AccountSettings,
) -> Result<LoginResponse, Error> {
    let ttl = if name == BROWSER_SESSION {
        Duration::minutes(settings.session_idle_minutes as i64)
            .min(Duration::hours(settings.session_ttl_hours as i64))
    } else {
        Duration::hours(settings.session_ttl_hours as i64)
    };
    let (_, token, expires_at) = new_token(conn, user.id, TOKEN_SESSION, name, ttl)?;
    record_own(conn, user, "auth.login", &json!({"two_factor": user.totp_enabled}), source_ip)?;
    Ok(LoginResponse { token, expires_at: rfc3339(expires_at), user: rows::user_view(conn, user)? })
}

/// Where a browser login stands after its first step.
pub enum BrowserLogin {
    /// Signed in: the session.
    Signed(Box<LoginResponse>),
    /// The password was right and two-step verification is on: the code is
    /// asked next, with this short-lived proof of the first step.
    SecondFactor { pending: String },
}

/// The first step of a browser login: e-mail and password. The attempt
/// stays counted as a failure until the code is right too, so the second
/// step cannot be guessed at by repeating the first.
pub fn begin_browser_login(
    conn: &mut DbConnection,
    email: &str,
    password_given: &str,
    source_ip: Option<&str>,
    settings: &AccountSettings,
) -> Result<BrowserLogin, Error> {
    let (user, attempt) = check_password(conn, email, password_given, source_ip, None, "portal", settings)?;
    if user.totp_enabled {
        attempt.held();
        let ttl = Duration::minutes(SECOND_FACTOR_TTL_MINUTES);
        let (_, pending, _) = new_token(conn, user.id, TOKEN_SECOND_FACTOR, "login", ttl)?;
        return Ok(BrowserLogin::SecondFactor { pending });
    }
    attempt.succeeded(conn)?;
    Ok(BrowserLogin::Signed(Box::new(open_session(conn, &user, BROWSER_SESSION, source_ip, settings)?)))
}

/// The second step: the code from the authenticator app (or a recovery
/// code), under the same throttle as passwords. The proof of the first step
/// is used up by a success and expires after a few minutes.
pub fn finish_browser_login(
    conn: &mut DbConnection,
    pending: &str,
    code: &str,
    source_ip: Option<&str>,
    settings: &AccountSettings,
) -> Result<LoginResponse, Error> {
    let expired = || Error::new(ErrorCode::Unauthorized, "the sign-in took too long: start again");
    let found: Option<(i64, UserRow)> = user_tokens::table
        .inner_join(users::table)
        .filter(user_tokens::token_hash.eq(tokens::hash(pending)))
        .filter(user_tokens::kind.eq(TOKEN_SECOND_FACTOR))
        .filter(user_tokens::revoked_at.is_null())
        .filter(user_tokens::expires_at.gt(now()))
        .select((user_tokens::id, UserRow::as_select()))
        .first(conn)
        .optional()?;
    let (pending_id, user) = found.ok_or_else(expired)?;
    if user.status != USER_ACTIVE {
        return Err(expired());
    }
    let attempt = throttle::begin(conn, &settings.throttle.second_factor(&user.email, source_ip))?;
    if !check_second_factor(conn, &user, code, &settings.master_keys, source_ip)? {
        let failure = Failure::of(&user, "portal", "wrong_code", source_ip);
        record_failure(conn, attempt, failure)?;
        return Err(Error::new(ErrorCode::InvalidTotp, "wrong, expired or already used code"));
    }
    let used = diesel::update(user_tokens::table.find(pending_id).filter(user_tokens::revoked_at.is_null()))
        .set(user_tokens::revoked_at.eq(now()))
        .execute(conn)?;
    if used != 1 {
        return Err(expired());
    }
    attempt.succeeded(conn)?;
    open_session(conn, &user, BROWSER_SESSION, source_ip, settings)
}

/// Ends every session of the user but `keep` (0: all of them); API tokens
/// stay, being the user's deliberate grants to programs.
fn end_other_sessions(conn: &mut DbConnection, user_id: i64, keep: i64) -> Result<usize, DbError> {
    Ok(diesel::update(
        user_tokens::table
            .filter(user_tokens::user_id.eq(user_id))
            .filter(user_tokens::kind.eq_any([TOKEN_SESSION, TOKEN_SECOND_FACTOR]))
            .filter(user_tokens::id.ne(keep))
            .filter(user_tokens::revoked_at.is_null()),
    )
    .set(user_tokens::revoked_at.eq(now()))
    .execute(conn)?)
}

/// "Sign out everywhere": every session of the caller ends, this one too.
pub fn logout_everywhere(conn: &mut DbConnection, actor: &Actor) -> Result<usize, Error> {
    let ended = end_other_sessions(conn, actor.user_id, 0)?;
    let subject = format!("user:{}", actor.user_id);
    audit::record(
        conn,
        &actor.audit("user.logout_everywhere", &subject, actor.merchant_id(), &json!({"sessions": ended})),
    )?;
    Ok(ended)
}

/// Records the portal language a user chose (`None`: follow the browser).
pub fn set_language(conn: &mut DbConnection, actor: &Actor, language: Option<&str>) -> Result<(), Error> {
    diesel::update(users::table.find(actor.user_id)).set(users::language.eq(language)).execute(conn)?;
    Ok(())
}

/// The credential check of terminal app activation and of logins on an
/// activated terminal (`known_device`): e-mail and password only.
/// Two-step verification does not apply (a merchant makes an account
/// "terminal-only" by turning it on), but the activation is audited.
pub fn check_terminal_activation_credentials(
    conn: &mut DbConnection,
    email: &str,
    password_given: &str,
    source_ip: Option<&str>,
    known_device: Option<i64>,
    settings: &AccountSettings,
) -> Result<UserRow, Error> {
    let via = if known_device.is_some() { "terminal_login" } else { "terminal_activation" };
    let (user, attempt) =
        check_password(conn, email, password_given, source_ip, known_device, via, settings)?;
    attempt.succeeded(conn)?;
    if user.merchant_id.is_none() {
        return Err(Error::forbidden("only a merchant's users activate the app"));
    }
    let access = merchant_access(conn, &user)?.expect("a merchant user");
    let may_somewhere = access.is_admin
        || access.permissions.contains(&Permission::ActivateApp)
        || access.locations.values().any(|p| p.contains(&Permission::ActivateApp));
    if !may_somewhere {
        return Err(Error::forbidden(
            "this user may not activate the app: it needs the activate_app permission",
        ));
    }
    let detail = json!({"two_factor_enabled": user.totp_enabled, "two_factor_applied": false});
    record_own(conn, &user, "auth.terminal_activation", &detail, source_ip)?;
    Ok(user)
}

/// The caller behind a bearer token, or 401.
pub fn resolve_token(
    conn: &mut DbConnection,
    token: &str,
    source_ip: Option<String>,
    settings: &AccountSettings,
) -> Result<Actor, Error> {
    Ok(resolve_session(conn, token, source_ip, settings)?.0)
}

/// [`resolve_token`], with the portal language the user chose (read with
/// the user, so a page costs no second query for it).
pub fn resolve_session(
    conn: &mut DbConnection,
    token: &str,
    source_ip: Option<String>,
    settings: &AccountSettings,
) -> Result<(Actor, Option<String>), Error> {
    let unauthorized = || Error::new(ErrorCode::Unauthorized, "missing, expired or revoked token");
    let at = now();
    type Found = (i64, String, String, chrono::NaiveDateTime, Option<chrono::NaiveDateTime>, UserRow);
    let found: Option<Found> = user_tokens::table
        .inner_join(users::table)
        .filter(user_tokens::token_hash.eq(tokens::hash(token)))
        .filter(user_tokens::kind.eq_any([TOKEN_SESSION, TOKEN_API]))
        .filter(user_tokens::revoked_at.is_null())
        .filter(user_tokens::expires_at.gt(at))
        .select((
            user_tokens::id,
            user_tokens::kind,
            user_tokens::name,
            user_tokens::created_at,
            user_tokens::last_used_at,
            UserRow::as_select(),
        ))
        .first(conn)
        .optional()?;
    let (token_id, token_kind, token_name, created_at, last_used, user) = found.ok_or_else(unauthorized)?;
    if user.status != USER_ACTIVE {
        return Err(unauthorized());
    }
    // Bounded write load: last use is kept to the minute, not per request.
    if last_used.is_none_or(|t| at - t > Duration::minutes(1)) {
        let token_row = user_tokens::table.find(token_id);
        if token_kind == TOKEN_SESSION && token_name == BROWSER_SESSION {
            // A browser session slides: idle minutes from now, never past its hours.
            let idle_end = at + Duration::minutes(settings.session_idle_minutes as i64);
            let absolute_end = created_at + Duration::hours(settings.session_ttl_hours as i64);
            diesel::update(token_row)
                .set((
                    user_tokens::last_used_at.eq(at),
                    user_tokens::expires_at.eq(idle_end.min(absolute_end)),
                ))
                .execute(conn)?;
        } else {
            diesel::update(token_row).set(user_tokens::last_used_at.eq(at)).execute(conn)?;
        }
    }
    let role = match (user.kind.as_str(), &user.operator_role, user.merchant_id) {
        (KIND_OPERATOR, Some(role), _) => Role::Operator(role.parse().map_err(|_| unauthorized())?),
        (KIND_MERCHANT, _, Some(_)) => {
            Role::Merchant(merchant_access(conn, &user)?.ok_or_else(unauthorized)?)
        }
        _ => return Err(unauthorized()),
    };
    let actor = Actor {
        user_id: user.id,
        email: user.email,
        role,
        token_id,
        session: token_kind == TOKEN_SESSION,
        source_ip,
    };
    Ok((actor, user.language))
}

/// What a merchant user may see and do: their own permissions and those their
/// groups grant per location. `None` for an operator.
pub fn merchant_access(conn: &mut DbConnection, user: &UserRow) -> Result<Option<MerchantAccess>, DbError> {
    let Some(merchant_id) = user.merchant_id else { return Ok(None) };
    let grants: Vec<(i64, String)> = group_grants::table
        .inner_join(group_members::table.on(group_members::group_id.eq(group_grants::group_id)))
        .filter(group_members::user_id.eq(user.id))
        .select((group_grants::location_id, group_grants::permissions))
        .load(conn)?;
    let mut locations: BTreeMap<i64, BTreeSet<Permission>> = BTreeMap::new();
    for (location, perms) in grants {
        locations.entry(location).or_default().extend(permissions_from_text(&perms).unwrap_or_default());
    }
    Ok(Some(MerchantAccess {
        merchant_id,
        is_admin: user.is_admin,
        permissions: permissions_from_text(&user.permissions).unwrap_or_default(),
        locations,
    }))
}

/// The user as an `Actor`, for checks made on their behalf outside the
/// management API (the terminal app).
pub fn actor_for(conn: &mut DbConnection, user: &UserRow, source_ip: Option<String>) -> Result<Actor, Error> {
    let role = match (&user.operator_role, merchant_access(conn, user)?) {
        (_, Some(access)) => Role::Merchant(access),
        (Some(role), None) => {
            Role::Operator(role.parse().map_err(|_| Error::forbidden("unknown operator role"))?)
        }
        (None, None) => return Err(Error::forbidden("this account has no role")),
    };
    Ok(Actor { user_id: user.id, email: user.email.clone(), role, token_id: 0, session: false, source_ip })
}

pub fn logout(conn: &mut DbConnection, actor: &Actor) -> Result<(), Error> {
    diesel::update(user_tokens::table.find(actor.token_id))
        .set(user_tokens::revoked_at.eq(now()))
        .execute(conn)?;
    Ok(())
}

pub fn me(conn: &mut DbConnection, actor: &Actor) -> Result<UserView, Error> {
    let user = rows::find_user(conn, actor.user_id)?.ok_or_else(|| Error::not_found("user"))?;
    Ok(rows::user_view(conn, &user)?)
}

/// Sets the password of an invited user from the token of their e-mail.
pub fn activate_account(
    conn: &mut DbConnection,
    token: &str,
    new_password: &str,
    source_ip: Option<&str>,
) -> Result<(), Error> {
    crate::db::write_tx(conn, |conn| {
        let invalid = || {
            Error::new(ErrorCode::ActivationTokenInvalid, "this activation link is invalid, used or expired")
        };
        let found: Option<(i64, i64)> = activation_tokens::table
            .filter(activation_tokens::token_hash.eq(tokens::hash(token.trim())))
            .filter(activation_tokens::used_at.is_null())
            .filter(activation_tokens::expires_at.gt(now()))
            .select((activation_tokens::id, activation_tokens::user_id))
            .first(conn)
            .optional()?;
        let (token_id, user_id) = found.ok_or_else(invalid)?;
        let user = rows::find_user(conn, user_id)?.ok_or_else(invalid)?;
        password::check_policy(new_password, &user.email).map_err(password::Weakness::into_error)?;
        // Hashed before the first write, so no write lock is held meanwhile.
        let hash = password::hash(new_password);
        let at = now();
        let spent = diesel::update(activation_tokens::table.find(token_id))
            .filter(activation_tokens::used_at.is_null())
            .set(activation_tokens::used_at.eq(at))
            .execute(conn)?;
        if spent != 1 {
            return Err(invalid());
        }
        diesel::update(users::table.find(user_id))
            .set((users::password_hash.eq(hash), users::status.eq(USER_ACTIVE), users::updated_at.eq(at)))
            .execute(conn)?;
        // A new password from a link (a reset) ends every session the old one opened.
        end_other_sessions(conn, user_id, 0)?;
        if let Some(merchant_id) = user.merchant_id {
            diesel::update(merchants::table.find(merchant_id))
                .filter(merchants::status.eq(rows::MERCHANT_PENDING))
                .set(merchants::status.eq(rows::MERCHANT_ACTIVE))
                .execute(conn)?;
        }
        record_own(conn, &user, "user.activate", &json!({}), source_ip)?;
        Ok(())
    })
}

const RESET_PER_ACCOUNT: u32 = 3;
const RESET_PER_ADDRESS: u32 = 20;
const RESET_WINDOW_SECS: u64 = 3600;
const RESET_TTL_HOURS: u64 = 1;

/// "Forgotten password": the mail with a one-hour link to set a new one, if
/// the address is an active account's. The caller answers the same whatever
/// this returns, so the answer does not tell which addresses have accounts;
/// requests beyond a few per hour and address send nothing.
pub fn request_password_reset(
    conn: &mut DbConnection,
    email: &str,
    source_ip: Option<&str>,
    settings: &AccountSettings,
) -> Result<Option<PendingMail>, Error> {
    let email = normalize_email(email);
    if email.len() > 254 || !is_plausible_email(&email) {
        return Ok(None);
    }
    // Hashed: a key of fixed size whatever was typed.
    let mut rules =
        vec![Rule::Ceiling { key: format!("reset:{}", tokens::hash(&email)), max: RESET_PER_ACCOUNT }];
    if let Some(ip) = source_ip {
        rules.push(Rule::Ceiling {
            key: format!("reset-address:{}", tokens::hash(ip)),
            max: RESET_PER_ADDRESS,
        });
    }
    match throttle::begin(conn, &Limits { rules, window_secs: RESET_WINDOW_SECS, forgives: Vec::new() }) {
        Ok(attempt) => attempt.held(),
        Err(Error::Throttled { .. }) => return Ok(None),
        Err(e) => return Err(e),
    }
    let Some(user) = rows::find_user_by_email(conn, &email)? else { return Ok(None) };
    if user.status != USER_ACTIVE {
        // An invited user's way in is the invitation (which can be sent again).
        return Ok(None);
    }
    let token = issue_activation_token(conn, user.id, RESET_TTL_HOURS)?;
    record_own(conn, &user, "user.password_reset_request", &json!({}), source_ip)?;
    Ok(Some(super::password_reset_mail(&settings.public_url, &user.email, &token, RESET_TTL_HOURS)))
}

/// A new single-use activation token for a user (older ones stop working).
pub fn issue_activation_token(
    conn: &mut DbConnection,
    user_id: i64,
    ttl_hours: u64,
) -> Result<String, DbError> {
    diesel::update(activation_tokens::table.filter(activation_tokens::user_id.eq(user_id)))
        .filter(activation_tokens::used_at.is_null())
        .set(activation_tokens::used_at.eq(now()))
        .execute(conn)?;
    let (token, hash) = tokens::generate("");
    diesel::insert_into(activation_tokens::table)
        .values((
            activation_tokens::user_id.eq(user_id),
            activation_tokens::token_hash.eq(hash),
            activation_tokens::expires_at.eq(now() + Duration::hours(ttl_hours as i64)),
        ))
        .execute(conn)?;
    Ok(token)
}

/// What a new user is.
pub struct NewUser<'a> {
    pub email: &'a str,
    pub kind: &'a str,
    pub operator_role: Option<OperatorRole>,
    pub merchant_id: Option<i64>,
    pub is_admin: bool,
    pub permissions: BTreeSet<Permission>,
    pub password_hash: Option<String>,
}

/// Inserts a user; `email_taken` if the address is in use.
pub fn insert_user(conn: &mut DbConnection, new: NewUser<'_>) -> Result<i64, Error> {
    let email = normalize_email(new.email);
    if !is_plausible_email(&email) {
        return Err(Error::invalid("email", format!("{:?} is not an e-mail address", new.email)));
    }
    if rows::find_user_by_email(conn, &email)?.is_some() {
        return Err(Error::new(ErrorCode::EmailTaken, format!("{email} already has an account")));
    }
    let at = now();
    let status = if new.password_hash.is_some() { USER_ACTIVE } else { USER_INVITED };
    let insert = diesel::insert_into(users::table).values((
        users::email.eq(&email),
        users::password_hash.eq(new.password_hash),
        users::kind.eq(new.kind),
        users::operator_role.eq(new.operator_role.map(|r| r.as_str())),
        users::merchant_id.eq(new.merchant_id),
        users::is_admin.eq(new.is_admin),
        users::permissions.eq(permissions_to_text(&new.permissions)),
        users::status.eq(status),
        users::created_at.eq(at),
        users::updated_at.eq(at),
    ));
    match per_backend!(conn, |c| insert.returning(users::id).get_result::<i64>(c)) {
        Ok(id) => Ok(id),
        Err(e) => {
            let e = DbError::from(e);
            if e.is_unique_violation() {
                Err(Error::new(ErrorCode::EmailTaken, format!("{email} already has an account")))
            } else {
                Err(e.into())
            }
        }
    }
}

/// The first operator, created on the server host (`tms-server operator create`).
pub fn create_operator(
    conn: &mut DbConnection,
    email: &str,
    role: OperatorRole,
    new_password: &str,
) -> Result<i64, Error> {
    password::check_policy(new_password, email).map_err(password::Weakness::into_error)?;
    crate::db::write_tx(conn, |conn| {
        let id = insert_user(
            conn,
            NewUser {
                email,
                kind: KIND_OPERATOR,
                operator_role: Some(role),
                merchant_id: None,
                is_admin: false,
                permissions: BTreeSet::new(),
                password_hash: Some(password::hash(new_password)),
            },
        )?;
        let subject = format!("user:{id}");
        audit::record(
            conn,
            &audit::NewAuditEvent::now(
                "tms-server operator create",
                "operator.create",
                &subject,
                &json!({"role": role.as_str()}),
            ),
        )?;
        Ok(id)
    })
}

/// The view and the activation e-mail of a user just invited.
fn invitation(
    conn: &mut DbConnection,
    user_id: i64,
    settings: &AccountSettings,
) -> Result<(UserView, PendingMail), Error> {
    let token = issue_activation_token(conn, user_id, settings.activation_ttl_hours)?;
    let user = rows::find_user(conn, user_id)?.ok_or_else(|| Error::not_found("user"))?;
    let mail =
        activation_mail(&settings.public_url, &user.email, &token, None, settings.activation_ttl_hours);
    Ok((rows::user_view(conn, &user)?, mail))
}

/// Invites another operator (operator admins only); they set their password
/// from the e-mail.
pub fn invite_operator(
    conn: &mut DbConnection,
    actor: &Actor,
    email: &str,
    role: OperatorRole,
    settings: &AccountSettings,
) -> Result<(UserView, PendingMail), Error> {
    actor.require_operator(&[OperatorRole::OperatorAdmin])?;
    crate::db::write_tx(conn, |conn| {
        let id = insert_user(
            conn,
            NewUser {
                email,
                kind: KIND_OPERATOR,
                operator_role: Some(role),
                merchant_id: None,
                is_admin: false,
                permissions: BTreeSet::new(),
                password_hash: None,
            },
        )?;
        let subject = format!("user:{id}");
        audit::record(
            conn,
            &actor.audit("operator.invite", &subject, None, &json!({"role": role.as_str()})),
        )?;
        invitation(conn, id, settings)
    })
}

/// The payment provider's staff, for operator admins.
pub fn list_operators(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<UserView>, Error> {
    actor.require_operator(&[OperatorRole::OperatorAdmin])?;
    let operators: Vec<UserRow> = users::table
        .filter(users::kind.eq(KIND_OPERATOR))
        .order(users::id)
        .select(UserRow::as_select())
        .load(conn)?;
    Ok(operators.iter().map(|u| rows::user_view(conn, u)).collect::<Result<_, _>>()?)
}

/// What an operator admin changes about another operator (or themselves).
#[derive(Debug, Clone, Default)]
pub struct OperatorChange {
    pub role: Option<OperatorRole>,
    /// `true`: disable (every session and API token ends); `false`: enable
    /// again.
    pub disabled: Option<bool>,
}

/// Changes an operator's role, or disables or re-enables them; never
/// leaves the TMS without an active operator admin. Audited.
pub fn change_operator(
    conn: &mut DbConnection,
    actor: &Actor,
    user_id: i64,
    change: &OperatorChange,
) -> Result<UserView, Error> {
    actor.require_operator(&[OperatorRole::OperatorAdmin])?;
    crate::db::write_tx(conn, |conn| {
        let user = rows::find_user(conn, user_id)?
            .filter(|u| u.kind == KIND_OPERATOR)
            .ok_or_else(|| Error::not_found("operator"))?;
        let admin = OperatorRole::OperatorAdmin.as_str();
        let role = change.role.map(|r| r.as_str().to_owned()).or_else(|| user.operator_role.clone());
        let status = match change.disabled {
            Some(true) => USER_DISABLED,
            Some(false) if user.status == USER_DISABLED => {
                if user.password_hash.is_some() {
                    USER_ACTIVE
                } else {
                    USER_INVITED
                }
            }
            _ => user.status.as_str(),
        };
        let was_admin = user.operator_role.as_deref() == Some(admin) && user.status == USER_ACTIVE;
        if was_admin && !(role.as_deref() == Some(admin) && status == USER_ACTIVE) {
            keep_an_operator_admin(conn, user.id)?;
        }
        if role == user.operator_role && status == user.status {
            return Ok(rows::user_view(conn, &user)?);
        }
        diesel::update(users::table.find(user.id))
            .set((users::operator_role.eq(&role), users::status.eq(status), users::updated_at.eq(now())))
            .execute(conn)?;
        let subject = format!("user:{}", user.id);
        if role != user.operator_role {
            let detail = json!({"from": user.operator_role, "to": role});
            audit::record(conn, &actor.audit("operator.role_change", &subject, None, &detail))?;
        }
        if status == USER_DISABLED && user.status != USER_DISABLED {
            let sessions = end_other_sessions(conn, user.id, 0)?;
            let api_tokens = revoke_api_tokens(conn, user.id)?;
            let detail = json!({"sessions_ended": sessions, "api_tokens_revoked": api_tokens});
            audit::record(conn, &actor.audit("operator.disable", &subject, None, &detail))?;
        } else if user.status == USER_DISABLED && status != USER_DISABLED {
            audit::record(conn, &actor.audit("operator.enable", &subject, None, &json!({"status": status})))?;
        }
        let user = rows::find_user(conn, user.id)?.ok_or_else(|| Error::not_found("operator"))?;
        Ok(rows::user_view(conn, &user)?)
    })
}

/// Refuses a change that would leave no active operator admin but `user_id`.
fn keep_an_operator_admin(conn: &mut DbConnection, user_id: i64) -> Result<(), Error> {
    let admins = users::table
        .filter(users::kind.eq(KIND_OPERATOR))
        .filter(users::operator_role.eq(OperatorRole::OperatorAdmin.as_str()))
        .filter(users::status.eq(USER_ACTIVE))
        .order(users::id)
        .select(users::id);
    // Two admins disabling each other at once must not both succeed: on
    // PostgreSQL every admin's row is locked, in one order, so the second
    // waits for the first and then counts one admin fewer (SQLite writes
    // are serialised).
    let admins: Vec<i64> = match conn {
        DbConnection::Postgres(c) => admins.for_update().load(c)?,
        _ => admins.load(conn)?,
    };
    if admins.iter().all(|id| *id == user_id) {
        return Err(Error::new(ErrorCode::LastAdmin, "the TMS keeps at least one active operator admin"));
    }
    Ok(())
}

/// Nobody hands out more than they hold: a non-admin grants only permissions
/// they have themselves (merchant-wide, or at `location`).
pub fn refuse_beyond_own(
    actor: &Actor,
    merchant_id: i64,
    location: Option<i64>,
    wanted: &BTreeSet<Permission>,
) -> Result<(), Error> {
    match wanted.iter().find(|p| !actor.may(merchant_id, location, **p)) {
        Some(p) => Err(Error::forbidden(format!("you cannot grant {p}: you do not hold it yourself"))),
        None => Ok(()),
    }
}

pub fn parse_permissions(field: &str, names: &[String]) -> Result<BTreeSet<Permission>, Error> {
    names.iter().map(|n| n.parse::<Permission>().map_err(|e| Error::invalid(field, e.to_string()))).collect()
}

/// Invites a user into a merchant (admins, or users with `manage_users`;
/// only admins may make admins).
pub fn invite_user(
    conn: &mut DbConnection,
    actor: &Actor,
    merchant_id: i64,
    request: &InviteUserRequest,
    settings: &AccountSettings,
) -> Result<(UserView, PendingMail), Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    actor.require(merchant_id, None, Permission::ManageUsers)?;
    if request.is_admin && !actor.is_admin_of(merchant_id) {
        return Err(Error::forbidden("only an admin may make another user an admin"));
    }
    let permissions = parse_permissions("permissions", &request.permissions)?;
    refuse_beyond_own(actor, merchant_id, None, &permissions)?;
    crate::db::write_tx(conn, |conn| {
        rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
        let id = insert_user(
            conn,
            NewUser {
                email: &request.email,
                kind: KIND_MERCHANT,
                operator_role: None,
                merchant_id: Some(merchant_id),
                is_admin: request.is_admin,
                permissions: permissions.clone(),
                password_hash: None,
            },
        )?;
        let subject = format!("user:{id}");
        audit::record(
            conn,
            &actor.audit(
                "user.invite",
                &subject,
                Some(merchant_id),
                &json!({"email": normalize_email(&request.email), "is_admin": request.is_admin,
                        "permissions": permissions_to_text(&permissions)}),
            ),
        )?;
        invitation(conn, id, settings)
    })
}

/// A merchant user the caller may see, or 404.
fn visible_merchant_user(
    conn: &mut DbConnection,
    actor: &Actor,
    user_id: i64,
) -> Result<(UserRow, i64), Error> {
    let user = rows::find_user(conn, user_id)?.ok_or_else(|| Error::not_found("user"))?;
    match user.merchant_id {
        Some(merchant_id) if actor.sees_merchant(merchant_id) => Ok((user, merchant_id)),
        // Operators' own accounts are visible to operator admins only.
        None if actor.operator_role() == Some(OperatorRole::OperatorAdmin) || actor.user_id == user.id => {
            Err(Error::forbidden("operator accounts are managed on the server host"))
        }
        _ => Err(Error::not_found("user")),
    }
}

pub fn show_user(conn: &mut DbConnection, actor: &Actor, user_id: i64) -> Result<UserView, Error> {
    if user_id == actor.user_id {
        return me(conn, actor);
    }
    let (user, _) = visible_merchant_user(conn, actor, user_id)?;
    Ok(rows::user_view(conn, &user)?)
}

/// A merchant's users, with their e-mail, 2FA state and groups: for those
/// who manage users (as the groups are), not every user of the merchant.
pub fn list_users(conn: &mut DbConnection, actor: &Actor, merchant_id: i64) -> Result<Vec<UserView>, Error> {
    actor.check_merchant(merchant_id, "merchant")?;
    actor.require(merchant_id, None, Permission::ManageUsers)?;
    rows::find_merchant(conn, merchant_id)?.ok_or_else(|| Error::not_found("merchant"))?;
    let found: Vec<UserRow> = users::table
        .filter(users::merchant_id.eq(merchant_id))
        .order(users::id)
        .select(UserRow::as_select())
        .load(conn)?;
    found.iter().map(|u| rows::user_view(conn, u).map_err(Error::from)).collect()
}

/// Refuses a change that would leave a merchant without an admin.
fn keep_an_admin(conn: &mut DbConnection, merchant_id: i64, user: &UserRow) -> Result<(), Error> {
    if !user.is_admin {
        return Ok(());
    }
    // Two admins demoting each other at once must not both succeed: on
    // PostgreSQL the merchant row is locked (SQLite writes are serialised).
    if let DbConnection::Postgres(c) = conn {
        merchants::table.find(merchant_id).select(merchants::id).for_update().first::<i64>(c)?;
    }
    let admins: i64 = users::table
        .filter(users::merchant_id.eq(merchant_id))
        .filter(users::is_admin.eq(true))
        .filter(users::status.eq(USER_ACTIVE))
        .filter(users::id.ne(user.id))
        .count()
        .get_result(conn)?;
    if admins == 0 {
        return Err(Error::new(ErrorCode::LastAdmin, "a merchant keeps at least one active admin"));
    }
    Ok(())
}

pub fn update_user(
    conn: &mut DbConnection,
    actor: &Actor,
    user_id: i64,
    request: &UpdateUserRequest,
) -> Result<UserView, Error> {
    crate::db::write_tx(conn, |conn| {
        let (user, merchant_id) = visible_merchant_user(conn, actor, user_id)?;
        actor.require(merchant_id, None, Permission::ManageUsers)?;
        if (user.is_admin || request.is_admin == Some(true)) && !actor.is_admin_of(merchant_id) {
            return Err(Error::forbidden("only an admin may change an admin or make one"));
        }
        if user.id == actor.user_id && !actor.is_admin_of(merchant_id) {
            return Err(Error::forbidden("ask an admin to change your own permissions"));
        }
        super::merchants::refuse_if_in_use(conn, &user)?;
        let permissions = match &request.permissions {
            Some(names) => {
                let wanted = parse_permissions("permissions", names)?;
                refuse_beyond_own(actor, merchant_id, None, &wanted)?;
                wanted
            }
            None => permissions_from_text(&user.permissions).unwrap_or_default(),
        };
        let is_admin = request.is_admin.unwrap_or(user.is_admin);
        if user.is_admin && !is_admin {
            keep_an_admin(conn, merchant_id, &user)?;
        }
        diesel::update(users::table.find(user_id))
            .set((
                users::is_admin.eq(is_admin),
                users::permissions.eq(permissions_to_text(&permissions)),
                users::updated_at.eq(now()),
            ))
            .execute(conn)?;
        let subject = format!("user:{user_id}");
        audit::record(
            conn,
            &actor.audit(
                "user.update",
                &subject,
                Some(merchant_id),
                &json!({
                    "before": {"is_admin": user.is_admin, "permissions": user.permissions},
                    "after": {"is_admin": is_admin, "permissions": permissions_to_text(&permissions)},
                }),
            ),
        )?;
        let user = rows::find_user(conn, user_id)?.ok_or_else(|| Error::not_found("user"))?;
        Ok(rows::user_view(conn, &user)?)
    })
}

pub fn delete_user(conn: &mut DbConnection, actor: &Actor, user_id: i64) -> Result<(), Error> {
    crate::db::write_tx(conn, |conn| {
        let (user, merchant_id) = visible_merchant_user(conn, actor, user_id)?;
        actor.require(merchant_id, None, Permission::ManageUsers)?;
        if user.is_admin && !actor.is_admin_of(merchant_id) {
            return Err(Error::forbidden("only an admin may delete an admin"));
        }
        super::merchants::refuse_if_in_use(conn, &user)?;
        keep_an_admin(conn, merchant_id, &user)?;
        diesel::delete(users::table.find(user_id)).execute(conn)?;
        let subject = format!("user:{user_id}");
        audit::record(
            conn,
            &actor.audit(
                "user.delete",
                &subject,
                Some(merchant_id),
                &json!({"before": {"email": user.email, "is_admin": user.is_admin, "permissions": user.permissions}}),
            ),
        )?;
        Ok(())
    })
}

/// A new activation e-mail for a user who has not set a password yet.
pub fn resend_activation(
    conn: &mut DbConnection,
    actor: &Actor,
    user_id: i64,
    settings: &AccountSettings,
) -> Result<PendingMail, Error> {
    crate::db::write_tx(conn, |conn| {
        let (user, merchant_id) = visible_merchant_user(conn, actor, user_id)?;
        actor.require(merchant_id, None, Permission::ManageUsers)?;
        if user.status != USER_INVITED {
            return Err(Error::new(ErrorCode::Conflict, "this user has already set a password"));
        }
        let token = issue_activation_token(conn, user_id, settings.activation_ttl_hours)?;
        let subject = format!("user:{user_id}");
        audit::record(conn, &actor.audit("user.resend_activation", &subject, Some(merchant_id), &json!({})))?;
        Ok(activation_mail(&settings.public_url, &user.email, &token, None, settings.activation_ttl_hours))
    })
}

/// Changes one's own password (from a login session, with the current
/// password; failures count like failed logins). Every other session ends,
/// and the API tokens are revoked unless `keep_api_tokens`.
pub fn change_password(
    conn: &mut DbConnection,
    actor: &Actor,
    current: &str,
    new_password: &str,
    keep_api_tokens: bool,
    settings: &AccountSettings,
) -> Result<(), Error> {
    actor.require_session()?;
    let user = rows::find_user(conn, actor.user_id)?.ok_or_else(|| Error::not_found("user"))?;
    let attempt = throttle::begin(conn, &settings.throttle.signed_in(&user.email))?;
    if !user.password_hash.as_deref().is_some_and(|h| password::verify(current, h)) {
        let source_ip = actor.source_ip.as_deref();
        let failure = Failure::of(&user, "password_change", "wrong_password", source_ip);
        record_failure(conn, attempt, failure)?;
        return Err(invalid_credentials());
    }
    attempt.succeeded(conn)?;
    password::check_policy(new_password, &user.email).map_err(password::Weakness::into_error)?;
    let hash = password::hash(new_password);
    crate::db::write_tx(conn, |conn| {
        let at = now();
        diesel::update(users::table.find(user.id))
            .set((users::password_hash.eq(&hash), users::updated_at.eq(at)))
            .execute(conn)?;
        end_other_sessions(conn, user.id, actor.token_id)?;
        let revoked = if keep_api_tokens { 0 } else { revoke_api_tokens(conn, user.id)? };
        let subject = format!("user:{}", user.id);
        let detail = json!({"api_tokens_revoked": revoked});
        audit::record(conn, &actor.audit("user.password_change", &subject, user.merchant_id, &detail))?;
        Ok(())
    })
}

/// Revokes every API token of a user still in force; says how many.
fn revoke_api_tokens(conn: &mut DbConnection, user_id: i64) -> Result<usize, DbError> {
    Ok(diesel::update(
        user_tokens::table
            .filter(user_tokens::user_id.eq(user_id))
            .filter(user_tokens::kind.eq(TOKEN_API))
            .filter(user_tokens::revoked_at.is_null()),
    )
    .set(user_tokens::revoked_at.eq(now()))
    .execute(conn)?)
}

pub fn create_api_token(
    conn: &mut DbConnection,
    actor: &Actor,
    request: &CreateApiTokenRequest,
) -> Result<CreatedApiToken, Error> {
    actor.require_session()?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::invalid("name", "a token needs a name of 1 to 100 characters"));
    }
    if !(1..=730).contains(&request.expires_in_days) {
        return Err(Error::invalid("expires_in_days", "a token lives 1 to 730 days"));
    }
    let (id, token, expires_at) =
        new_token(conn, actor.user_id, TOKEN_API, name, Duration::days(i64::from(request.expires_in_days)))?;
    let subject = format!("token:{id}");
    audit::record(
        conn,
        &actor.audit(
            "token.create",
            &subject,
            actor.merchant_id(),
            &json!({"name": name, "expires_at": rfc3339(expires_at)}),
        ),
    )?;
    Ok(CreatedApiToken { id, name: name.to_owned(), token, expires_at: rfc3339(expires_at) })
}

pub fn list_tokens(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<ApiTokenView>, Error> {
    #[derive(Queryable)]
    struct Row {
        id: i64,
        name: String,
        kind: String,
        created_at: chrono::NaiveDateTime,
        expires_at: chrono::NaiveDateTime,
        last_used_at: Option<chrono::NaiveDateTime>,
        revoked_at: Option<chrono::NaiveDateTime>,
    }
    let found: Vec<Row> = user_tokens::table
        .filter(user_tokens::user_id.eq(actor.user_id))
        .filter(user_tokens::kind.eq_any([TOKEN_SESSION, TOKEN_API]))
        .filter(user_tokens::expires_at.gt(now()))
        .order(user_tokens::id)
        .select((
            user_tokens::id,
            user_tokens::name,
            user_tokens::kind,
            user_tokens::created_at,
            user_tokens::expires_at,
            user_tokens::last_used_at,
            user_tokens::revoked_at,
        ))
        .load(conn)?;
    Ok(found
        .into_iter()
        .map(|r| ApiTokenView {
            id: r.id,
            name: r.name,
            kind: r.kind,
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            last_used_at: r.last_used_at.map(rfc3339),
            revoked: r.revoked_at.is_some(),
        })
        .collect())
}

pub fn revoke_token(conn: &mut DbConnection, actor: &Actor, token_id: i64) -> Result<(), Error> {
    let revoked = diesel::update(
        user_tokens::table
            .filter(user_tokens::id.eq(token_id))
            .filter(user_tokens::user_id.eq(actor.user_id)),
    )
    .set(user_tokens::revoked_at.eq(now()))
    .execute(conn)?;
    if revoked == 0 {
        return Err(Error::not_found("token"));
    }
    let subject = format!("token:{token_id}");
    audit::record(conn, &actor.audit("token.revoke", &subject, actor.merchant_id(), &json!({})))?;
    Ok(())
}

pub fn enroll_two_factor(
    conn: &mut DbConnection,
    actor: &Actor,
    settings: &AccountSettings,
) -> Result<TwoFactorEnrollment, Error> {
    actor.require_session()?;
    let user = rows::find_user(conn, actor.user_id)?.ok_or_else(|| Error::not_found("user"))?;
    if user.totp_enabled {
        return Err(Error::new(ErrorCode::TwoFactorAlreadyEnabled, "two-step verification is already on"));
    }
    let secret = totp::generate_secret();
    let encoded = totp::base32_encode(&secret);
    diesel::update(users::table.find(user.id))
        .set((
            users::totp_secret.eq(settings.master_keys.seal_text(TOTP_SEALED_PURPOSE, &encoded)),
            users::totp_last_step.eq(None::<i64>),
            users::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(TwoFactorEnrollment { otpauth_url: totp::otpauth_url("TMS", &user.email, &secret), secret: encoded })
}

/// The enrolment started and not yet confirmed, to show again after a
/// mistyped first code (the authenticator app already holds its secret).
pub fn pending_two_factor(
    conn: &mut DbConnection,
    actor: &Actor,
    settings: &AccountSettings,
) -> Result<Option<TwoFactorEnrollment>, Error> {
    let user = rows::find_user(conn, actor.user_id)?.ok_or_else(|| Error::not_found("user"))?;
    if user.totp_enabled {
        return Ok(None);
    }
    Ok(totp_secret(&user, &settings.master_keys)?.and_then(|encoded| {
        let secret = totp::base32_decode(&encoded)?;
        Some(TwoFactorEnrollment {
            otpauth_url: totp::otpauth_url("TMS", &user.email, &secret),
            secret: encoded,
        })
    }))
}

pub fn confirm_two_factor(
    conn: &mut DbConnection,
    actor: &Actor,
    code: &str,
    settings: &AccountSettings,
) -> Result<RecoveryCodes, Error> {
    actor.require_session()?;
    crate::db::write_tx(conn, |conn| {
        let user = rows::find_user(conn, actor.user_id)?.ok_or_else(|| Error::not_found("user"))?;
        if user.totp_enabled {
            return Err(Error::new(
                ErrorCode::TwoFactorAlreadyEnabled,
                "two-step verification is already on",
            ));
        }
        if user.totp_secret.is_none() {
            return Err(Error::new(ErrorCode::TwoFactorNotEnabled, "start with enrolment"));
        }
        if code.contains('-')
            || !check_second_factor(conn, &user, code, &settings.master_keys, actor.source_ip.as_deref())?
        {
            return Err(Error::new(ErrorCode::InvalidTotp, "wrong or expired code"));
        }
        diesel::update(users::table.find(user.id))
            .set((users::totp_enabled.eq(true), users::updated_at.eq(now())))
            .execute(conn)?;
        // Sessions opened with the password alone end; this one stays.
        diesel::update(
            user_tokens::table
                .filter(user_tokens::user_id.eq(user.id))
                .filter(user_tokens::kind.eq(TOKEN_SESSION))
                .filter(user_tokens::id.ne(actor.token_id))
                .filter(user_tokens::revoked_at.is_null()),
        )
        .set(user_tokens::revoked_at.eq(now()))
        .execute(conn)?;
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user.id))).execute(conn)?;
        let codes: Vec<String> = (0..RECOVERY_CODE_COUNT)
            .map(|_| {
                let raw = totp::base32_encode(&rand::random::<[u8; 5]>()).to_lowercase();
                format!("{}-{}", &raw[..4], &raw[4..])
            })
            .collect();
        for code in &codes {
            diesel::insert_into(recovery_codes::table)
                .values((
                    recovery_codes::user_id.eq(user.id),
                    recovery_codes::code_hash.eq(password::hash(code)),
                ))
                .execute(conn)?;
        }
        // Sessions opened with the password alone end: only the one that
        // turned the second step on stays.
        end_other_sessions(conn, user.id, actor.token_id)?;
        let subject = format!("user:{}", user.id);
        audit::record(conn, &actor.audit("user.two_factor_enable", &subject, user.merchant_id, &json!({})))?;
        Ok(RecoveryCodes { codes })
    })
}

pub fn disable_two_factor(
    conn: &mut DbConnection,
    actor: &Actor,
    password_given: &str,
    code: &str,
    settings: &AccountSettings,
) -> Result<(), Error> {
    actor.require_session()?;
    let user = rows::find_user(conn, actor.user_id)?.ok_or_else(|| Error::not_found("user"))?;
    if !user.totp_enabled {
        return Err(Error::new(ErrorCode::TwoFactorNotEnabled, "two-step verification is not on"));
    }
    // Counted like logins: a stolen session must not become a password oracle.
    let attempt = throttle::begin(conn, &settings.throttle.signed_in(&user.email))?;
    let source_ip = actor.source_ip.as_deref();
    let via = "two_factor_disable";
    if !user.password_hash.as_deref().is_some_and(|h| password::verify(password_given, h)) {
        let failure = Failure::of(&user, via, "wrong_password", source_ip);
        record_failure(conn, attempt, failure)?;
        return Err(invalid_credentials());
    }
    if !check_second_factor(conn, &user, code, &settings.master_keys, source_ip)? {
        let failure = Failure::of(&user, via, "wrong_code", source_ip);
        record_failure(conn, attempt, failure)?;
        return Err(Error::new(ErrorCode::InvalidTotp, "wrong, expired or already used code"));
    }
    attempt.succeeded(conn)?;
    crate::db::write_tx(conn, |conn| {
        diesel::update(users::table.find(user.id))
            .set((
                users::totp_enabled.eq(false),
                users::totp_secret.eq(None::<String>),
                users::totp_last_step.eq(None::<i64>),
                users::updated_at.eq(now()),
            ))
            .execute(conn)?;
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user.id))).execute(conn)?;
        let subject = format!("user:{}", user.id);
        audit::record(conn, &actor.audit("user.two_factor_disable", &subject, user.merchant_id, &json!({})))?;
        Ok(())
    })
}
