//! Wire types of the account side: login, users, merchants, orders, locations,
//! groups, two-factor authentication, API tokens and the audit log.
//!
//! Timestamps are RFC 3339 strings in UTC.

wire! {
    pub struct LoginRequest {
        pub email: String,
        pub password: String,
        /// Current TOTP code, or an unused recovery code, when two-step verification is on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub totp_code: Option<String>,
    }

    pub struct LoginResponse {
        /// Session token: send as `Authorization: Bearer <token>`.
        pub token: String,
        pub expires_at: String,
        pub user: UserView,
    }

    pub struct UserView {
        pub id: i64,
        pub email: String,
        /// `operator` (payment provider staff) or `merchant`.
        pub kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub operator_role: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub merchant_id: Option<i64>,
        pub is_admin: bool,
        /// Merchant-wide permissions.
        pub permissions: Vec<String>,
        /// `invited` until a password is set, then `active`.
        pub status: String,
        pub two_factor_enabled: bool,
        /// Groups the user belongs to.
        pub groups: Vec<i64>,
        pub created_at: String,
        pub updated_at: String,
    }

    pub struct ActivateAccountRequest {
        /// The token from the activation or invitation e-mail.
        pub token: String,
        pub password: String,
    }

    /// `POST /api/v1/auth/password-reset`: "I forgot my password".
    pub struct PasswordResetRequest {
        pub email: String,
    }

    pub struct ChangePasswordRequest {
        pub current_password: String,
        pub new_password: String,
        /// Keep the account's API tokens working. By default a password
        /// change revokes them with the other sessions: a token taken by
        /// whoever knew the old password must not outlive it.
        #[serde(default)]
        pub keep_api_tokens: bool,
    }

    pub struct CreateApiTokenRequest {
        pub name: String,
        /// Lifetime in days (1 to 730).
        pub expires_in_days: u32,
    }

    pub struct CreatedApiToken {
        pub id: i64,
        pub name: String,
        /// Shown once; only its hash is stored.
        pub token: String,
        pub expires_at: String,
    }

    pub struct ApiTokenView {
        pub id: i64,
        pub name: String,
        /// `session` or `api`.
        pub kind: String,
        pub created_at: String,
        pub expires_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_used_at: Option<String>,
        pub revoked: bool,
    }

    pub struct TwoFactorEnrollment {
        /// Base32 secret, for authenticator apps that cannot scan the URL.
        pub secret: String,
        /// `otpauth://totp/…` URL to show as a QR code.
        pub otpauth_url: String,
    }

    pub struct TwoFactorCode {
        pub code: String,
    }

    pub struct RecoveryCodes {
        /// Single-use codes that stand in for a TOTP code; shown once.
        pub codes: Vec<String>,
    }

    pub struct DisableTwoFactorRequest {
        pub password: String,
        /// A current TOTP code or an unused recovery code.
        pub code: String,
    }

    pub struct Address {
        pub line1: String,
        #[serde(default)]
        pub line2: String,
        pub postal_code: String,
        pub city: String,
        /// ISO 3166-1 alpha-2 country code.
        pub country: String,
    }

    pub struct OrderedTerminal {
        pub serial: String,
        /// Terminal model, e.g. `A920`.
        pub model: String,
    }

    pub struct CreateOrderRequest {
        /// An existing merchant; omit for a first order, which creates the merchant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub merchant_id: Option<i64>,
        /// Company name (first order only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub company_name: Option<String>,
        /// E-mail of the merchant's first admin (first order only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub contact_email: Option<String>,
        pub delivery_address: Address,
        /// Name of the location if the address is new [default: the street and city].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub location_name: Option<String>,
        pub terminals: Vec<OrderedTerminal>,
    }

    pub struct OrderView {
        pub id: i64,
        pub merchant_id: i64,
        pub merchant_created: bool,
        pub location: LocationView,
        pub location_created: bool,
        pub terminals: Vec<TerminalView>,
        /// Where the account activation e-mail went, when this order created the merchant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub activation_email_sent_to: Option<String>,
        pub created_at: String,
    }

    pub struct MerchantView {
        pub id: i64,
        pub name: String,
        pub contact_email: String,
        /// `pending_activation` until the first admin sets a password, then `active`.
        pub status: String,
        pub created_at: String,
    }

    pub struct LocationView {
        pub id: i64,
        pub merchant_id: i64,
        pub name: String,
        pub address: Address,
        pub created_at: String,
    }

    pub struct RenameLocationRequest {
        pub name: String,
    }

    pub struct TerminalView {
        pub id: i64,
        pub merchant_id: i64,
        pub location_id: i64,
        pub serial: String,
        pub model: String,
        pub registered_at: String,
    }

    pub struct InviteUserRequest {
        pub email: String,
        #[serde(default)]
        pub is_admin: bool,
        /// Merchant-wide permissions.
        #[serde(default)]
        pub permissions: Vec<String>,
    }

    pub struct UpdateUserRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub is_admin: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub permissions: Option<Vec<String>>,
    }

    pub struct CreateGroupRequest {
        pub name: String,
    }

    pub struct LocationGrant {
        pub location_id: i64,
        pub permissions: Vec<String>,
    }

    pub struct GrantRequest {
        /// Permissions the group's members get at the location; empty removes the grant.
        pub permissions: Vec<String>,
    }

    pub struct GroupView {
        pub id: i64,
        pub merchant_id: i64,
        pub name: String,
        pub members: Vec<i64>,
        pub grants: Vec<LocationGrant>,
    }

    pub struct AuditEventView {
        pub id: i64,
        pub occurred_at: String,
        /// E-mail (or name) of who acted.
        pub actor: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub actor_user_id: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub merchant_id: Option<i64>,
        /// What happened, e.g. `user.update`.
        pub action: String,
        /// The object, e.g. `user:42`.
        pub subject: String,
        /// Before/after summary and other detail.
        pub detail: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source_ip: Option<String>,
    }
}
