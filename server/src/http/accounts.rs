//! Management API of the account side. Handlers parse, resolve the caller,
//! and hand the whole change to `accounts`, which runs in one transaction.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use tms_packages::accounts::OperatorRole;
use tms_packages::wire::ErrorEnvelope;
use tms_packages::wire::accounts::*;
use utoipa::IntoParams;

use crate::accounts::access::Actor;
use crate::accounts::{PendingMail, groups, merchants, users};
use crate::db::audit::AuditFilter;
use crate::http::error::{Error, ErrorCode};
use crate::http::{AppState, bearer_token, client_ip};

/// The caller, from `Authorization: Bearer <token>`; 401 without a valid one.
impl FromRequest for Actor {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Actor, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        let ip = client_ip(req);
        Box::pin(async move {
            let state = state.expect("AppState is registered");
            let Some(token) = token else {
                return Err(Error::new(
                    ErrorCode::Unauthorized,
                    "send a token: Authorization: Bearer <token>",
                ));
            };
            let settings = state.accounts.clone();
            state.db.run(move |conn| users::resolve_token(conn, &token, ip, &settings)).await
        })
    }
}

/// Sends mail after the change committed. A failure does not undo the change
/// (the user can be sent a new link); it is logged and reported as not sent.
pub async fn deliver(state: &AppState, mail: PendingMail) -> bool {
    let to = mail.0.to.clone();
    match state.mailer.send(mail.0).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(to = %to, error = %crate::http::error::ErrorChain(&e), "e-mail not sent");
            false
        }
    }
}

// ---- sessions and tokens ----

/// Log in with e-mail and password (and a TOTP code when two-step verification is on).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "`invalid_credentials`, `totp_required` or `invalid_totp`", body = ErrorEnvelope),
        (status = 429, description = "`too_many_attempts`, with Retry-After", body = ErrorEnvelope),
    ))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<web::Json<LoginResponse>, Error> {
    let settings = state.accounts.clone();
    let ip = client_ip(&req);
    let res = state.db.run(move |conn| users::login(conn, &body, ip.as_deref(), &settings)).await?;
    Ok(web::Json(res))
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorEnvelope)))]
pub async fn logout(state: web::Data<AppState>, actor: Actor) -> Result<HttpResponse, Error> {
    state.db.run(move |conn| users::logout(conn, &actor)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorEnvelope)))]
pub async fn me(state: web::Data<AppState>, actor: Actor) -> Result<web::Json<UserView>, Error> {
    Ok(web::Json(state.db.run(move |conn| users::me(conn, &actor)).await?))
}

/// Set a password from an activation or invitation e-mail's token.
#[utoipa::path(post, path = "/api/v1/auth/activate", tag = "auth", request_body = ActivateAccountRequest,
    responses((status = 204),
        (status = 400, description = "`activation_token_invalid` or `weak_password`", body = ErrorEnvelope)))]
pub async fn activate(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ActivateAccountRequest>,
) -> Result<HttpResponse, Error> {
    let ip = client_ip(&req);
    state
        .db
        .run(move |conn| users::activate_account(conn, &body.token, &body.password, ip.as_deref()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// "I forgot my password": if the address is an active account's (a merchant's user or an
/// operator), a link valid one hour to choose a new one is e-mailed; set it with
/// `POST /api/v1/auth/activate` and the link's token. The answer is the same whether the address
/// has an account or not, and requests beyond a few per hour send nothing.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = PasswordResetRequest,
    responses((status = 202, description = "the same answer whatever the address")))]
pub async fn password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PasswordResetRequest>,
) -> Result<HttpResponse, Error> {
    let ip = client_ip(&req);
    let settings = state.accounts.clone();
    let mail = state
        .db
        .run(move |conn| users::request_password_reset(conn, &body.email, ip.as_deref(), &settings))
        .await?;
    if let Some(mail) = mail {
        deliver(&state, mail).await;
    }
    Ok(HttpResponse::Accepted().finish())
}

/// Change one's own password (ends every other session).
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, description = "`weak_password`", body = ErrorEnvelope),
        (status = 401, description = "`invalid_credentials`", body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn change_password(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, Error> {
    let settings = state.accounts.clone();
    state
        .db
        .run(move |conn| {
            users::change_password(
                conn,
                &actor,
                &body.current_password,
                &body.new_password,
                body.keep_api_tokens,
                &settings,
            )
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Create a long-lived API token for automation (shown once).
#[utoipa::path(post, path = "/api/v1/auth/tokens", tag = "auth", security(("bearer" = [])),
    request_body = CreateApiTokenRequest,
    responses((status = 201, body = CreatedApiToken), (status = 400, body = ErrorEnvelope)))]
pub async fn create_token(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<CreateApiTokenRequest>,
) -> Result<HttpResponse, Error> {
    let created = state.db.run(move |conn| users::create_api_token(conn, &actor, &body)).await?;
    Ok(HttpResponse::Created().json(created))
}

/// The caller's live sessions and API tokens.
#[utoipa::path(get, path = "/api/v1/auth/tokens", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = [ApiTokenView])))]
pub async fn list_tokens(
    state: web::Data<AppState>,
    actor: Actor,
) -> Result<web::Json<Vec<ApiTokenView>>, Error> {
    Ok(web::Json(state.db.run(move |conn| users::list_tokens(conn, &actor)).await?))
}

/// Revoke one of the caller's tokens.
#[utoipa::path(delete, path = "/api/v1/auth/tokens/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_token(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    state.db.run(move |conn| users::revoke_token(conn, &actor, id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Start enrolling in two-step verification: a secret for the authenticator app.
#[utoipa::path(post, path = "/api/v1/auth/2fa/enroll", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = TwoFactorEnrollment), (status = 409, body = ErrorEnvelope)))]
pub async fn enroll_two_factor(
    state: web::Data<AppState>,
    actor: Actor,
) -> Result<web::Json<TwoFactorEnrollment>, Error> {
    let settings = state.accounts.clone();
    Ok(web::Json(state.db.run(move |conn| users::enroll_two_factor(conn, &actor, &settings)).await?))
}

/// Turn two-step verification on with a first code; returns single-use recovery codes.
#[utoipa::path(post, path = "/api/v1/auth/2fa/confirm", tag = "auth", security(("bearer" = [])),
    request_body = TwoFactorCode,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn confirm_two_factor(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<TwoFactorCode>,
) -> Result<web::Json<RecoveryCodes>, Error> {
    let settings = state.accounts.clone();
    Ok(web::Json(
        state.db.run(move |conn| users::confirm_two_factor(conn, &actor, &body.code, &settings)).await?,
    ))
}

/// Turn two-step verification off (password and a current code).
#[utoipa::path(post, path = "/api/v1/auth/2fa/disable", tag = "auth", security(("bearer" = [])),
    request_body = DisableTwoFactorRequest,
    responses((status = 204), (status = 401, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn disable_two_factor(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<DisableTwoFactorRequest>,
) -> Result<HttpResponse, Error> {
    let settings = state.accounts.clone();
    state
        .db
        .run(move |conn| users::disable_two_factor(conn, &actor, &body.password, &body.code, &settings))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- operators ----

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InviteOperatorRequest {
    pub email: String,
    /// `operator_admin`, `release_engineer` or `support`.
    pub role: String,
}

/// Invite another member of the payment provider's staff (operator admins).
#[utoipa::path(post, path = "/api/v1/operators", tag = "accounts", security(("bearer" = [])),
    request_body = InviteOperatorRequest,
    responses((status = 201, body = UserView), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn invite_operator(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<InviteOperatorRequest>,
) -> Result<HttpResponse, Error> {
    let role: OperatorRole = body
        .role
        .parse()
        .map_err(|e: tms_packages::accounts::UnknownName| Error::invalid("role", e.to_string()))?;
    let settings = state.accounts.clone();
    let (user, mail) =
        state.db.run(move |conn| users::invite_operator(conn, &actor, &body.email, role, &settings)).await?;
    deliver(&state, mail).await;
    Ok(HttpResponse::Created().json(user))
}

/// The payment provider's staff (operator admins).
#[utoipa::path(get, path = "/api/v1/operators", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserView>), (status = 403, body = ErrorEnvelope)))]
pub async fn list_operators(
    state: web::Data<AppState>,
    actor: Actor,
) -> Result<web::Json<Vec<UserView>>, Error> {
    Ok(web::Json(state.db.run(move |conn| users::list_operators(conn, &actor)).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChangeOperatorRequest {
    /// `operator_admin`, `release_engineer` or `support`.
    pub role: Option<String>,
    /// `true` disables the operator (no login; every session and API token
    /// ends); `false` enables them again.
    pub disabled: Option<bool>,
}

/// Change an operator's role, or disable or enable them (operator admins);
/// the last active operator admin stays one.
#[utoipa::path(patch, path = "/api/v1/operators/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ChangeOperatorRequest,
    responses((status = 200, body = UserView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`last_admin`", body = ErrorEnvelope)))]
pub async fn change_operator(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<ChangeOperatorRequest>,
) -> Result<web::Json<UserView>, Error> {
    let role = body
        .role
        .as_deref()
        .map(str::parse::<OperatorRole>)
        .transpose()
        .map_err(|e: tms_packages::accounts::UnknownName| Error::invalid("role", e.to_string()))?;
    let change = users::OperatorChange { role, disabled: body.disabled };
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| users::change_operator(conn, &actor, id, &change)).await?))
}

// ---- orders, merchants, locations, terminals ----

/// Record an order: the first creates the merchant and mails its admin; a new
/// delivery address creates a location; the terminals are registered there.
#[utoipa::path(post, path = "/api/v1/orders", tag = "accounts", security(("bearer" = [])),
    request_body = CreateOrderRequest,
    responses((status = 201, body = OrderView),
        (status = 400, description = "`invalid_request` naming the field", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 409, description = "`terminal_already_registered` or `email_taken`", body = ErrorEnvelope)))]
pub async fn create_order(
    state: web::Data<AppState>,
    actor: Actor,
    body: web::Json<CreateOrderRequest>,
) -> Result<HttpResponse, Error> {
    let settings = state.accounts.clone();
    let (mut order, mail) =
        state.db.run(move |conn| merchants::create_order(conn, &actor, &body, &settings)).await?;
    if let Some(mail) = mail
        && !deliver(&state, mail).await
    {
        order.activation_email_sent_to = None;
    }
    Ok(HttpResponse::Created().json(order))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct MerchantQuery {
    /// A merchant id, part of the contact e-mail address, or part of the name.
    pub q: Option<String>,
    /// Only merchants after this id: the last id of the page before.
    pub after: Option<i64>,
    /// At most this many (1 to 500) [default: all].
    pub limit: Option<i64>,
}

/// Merchants the caller sees (operators: all; merchant users: their own),
/// in id order, optionally searched and a page at a time.
#[utoipa::path(get, path = "/api/v1/merchants", tag = "accounts", security(("bearer" = [])),
    params(MerchantQuery), responses((status = 200, body = [MerchantView])))]
pub async fn list_merchants(
    state: web::Data<AppState>,
    actor: Actor,
    query: web::Query<MerchantQuery>,
) -> Result<web::Json<Vec<MerchantView>>, Error> {
    let query = query.into_inner();
    let search = merchants::MerchantSearch { text: query.q, after: query.after, limit: query.limit };
    Ok(web::Json(state.db.run(move |conn| merchants::search_merchants(conn, &actor, &search)).await?))
}

#[utoipa::path(get, path = "/api/v1/merchants/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = MerchantView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_merchant(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<MerchantView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| merchants::show_merchant(conn, &actor, id)).await?))
}

/// The merchant's locations the caller sees.
#[utoipa::path(get, path = "/api/v1/merchants/{id}/locations", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = [LocationView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_locations(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<Vec<LocationView>>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| merchants::list_locations(conn, &actor, id)).await?))
}

/// Rename a location (`manage_settings` there). Locations cannot be created
/// directly: an order to a new address creates one.
#[utoipa::path(patch, path = "/api/v1/locations/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = RenameLocationRequest,
    responses((status = 200, body = LocationView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn rename_location(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<RenameLocationRequest>,
) -> Result<web::Json<LocationView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| merchants::rename_location(conn, &actor, id, &body.name)).await?))
}

/// The registered terminals at the locations the caller sees.
#[utoipa::path(get, path = "/api/v1/merchants/{id}/terminals", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = [TerminalView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_terminals(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<Vec<TerminalView>>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| merchants::list_terminals(conn, &actor, id)).await?))
}

// ---- users ----

/// Invite a user into the merchant; they set their password from the e-mail.
#[utoipa::path(post, path = "/api/v1/merchants/{id}/users", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = InviteUserRequest,
    responses((status = 201, body = UserView), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, description = "`email_taken`", body = ErrorEnvelope)))]
pub async fn invite_user(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<InviteUserRequest>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let settings = state.accounts.clone();
    let (user, mail) =
        state.db.run(move |conn| users::invite_user(conn, &actor, id, &body, &settings)).await?;
    deliver(&state, mail).await;
    Ok(HttpResponse::Created().json(user))
}

#[utoipa::path(get, path = "/api/v1/merchants/{id}/users", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = [UserView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_users(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<Vec<UserView>>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| users::list_users(conn, &actor, id)).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = UserView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_user(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<UserView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| users::show_user(conn, &actor, id)).await?))
}

/// Change a user's admin flag or merchant-wide permissions.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`profile_in_use` (logged in on a terminal) or `last_admin`", body = ErrorEnvelope)))]
pub async fn update_user(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<UpdateUserRequest>,
) -> Result<web::Json<UserView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| users::update_user(conn, &actor, id, &body)).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`profile_in_use` (logged in on a terminal) or `last_admin`", body = ErrorEnvelope)))]
pub async fn delete_user(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    state.db.run(move |conn| users::delete_user(conn, &actor, id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Send a new activation e-mail to a user who has not set a password yet.
#[utoipa::path(post, path = "/api/v1/users/{id}/activation-email", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn resend_activation(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let settings = state.accounts.clone();
    let mail = state.db.run(move |conn| users::resend_activation(conn, &actor, id, &settings)).await?;
    if deliver(&state, mail).await {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(Error::new(ErrorCode::NotReady, "the e-mail could not be sent; try again later"))
    }
}

// ---- groups ----

#[utoipa::path(post, path = "/api/v1/merchants/{id}/groups", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = CreateGroupRequest,
    responses((status = 201, body = GroupView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn create_group(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<CreateGroupRequest>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    let group = state.db.run(move |conn| groups::create_group(conn, &actor, id, &body.name)).await?;
    Ok(HttpResponse::Created().json(group))
}

#[utoipa::path(get, path = "/api/v1/merchants/{id}/groups", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = [GroupView]), (status = 404, body = ErrorEnvelope)))]
pub async fn list_groups(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<Vec<GroupView>>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| groups::list_groups(conn, &actor, id)).await?))
}

#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = GroupView), (status = 404, body = ErrorEnvelope)))]
pub async fn show_group(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<web::Json<GroupView>, Error> {
    let id = id.into_inner();
    Ok(web::Json(state.db.run(move |conn| groups::show_group(conn, &actor, id)).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_group(
    state: web::Data<AppState>,
    actor: Actor,
    id: web::Path<i64>,
) -> Result<HttpResponse, Error> {
    let id = id.into_inner();
    state.db.run(move |conn| groups::delete_group(conn, &actor, id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Set the permissions a group's members have at a location (empty: remove).
#[utoipa::path(put, path = "/api/v1/groups/{id}/grants/{location_id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path), ("location_id" = i64, Path)), request_body = GrantRequest,
    responses((status = 200, body = GroupView), (status = 404, body = ErrorEnvelope)))]
pub async fn set_grant(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(i64, i64)>,
    body: web::Json<GrantRequest>,
) -> Result<web::Json<GroupView>, Error> {
    let (group, location) = path.into_inner();
    Ok(web::Json(
        state.db.run(move |conn| groups::set_grant(conn, &actor, group, location, &body.permissions)).await?,
    ))
}

#[utoipa::path(put, path = "/api/v1/groups/{id}/members/{user_id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path), ("user_id" = i64, Path)),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorEnvelope)))]
pub async fn add_member(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(i64, i64)>,
) -> Result<web::Json<GroupView>, Error> {
    let (group, user) = path.into_inner();
    Ok(web::Json(state.db.run(move |conn| groups::set_member(conn, &actor, group, user, true)).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{id}/members/{user_id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path), ("user_id" = i64, Path)),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorEnvelope)))]
pub async fn remove_member(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(i64, i64)>,
) -> Result<web::Json<GroupView>, Error> {
    let (group, user) = path.into_inner();
    Ok(web::Json(state.db.run(move |conn| groups::set_member(conn, &actor, group, user, false)).await?))
}

// ---- audit ----

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only this merchant's events (merchant users always see only their own).
    pub merchant_id: Option<i64>,
    /// Only events by this user.
    pub user_id: Option<i64>,
    /// Only events about this object, e.g. `user:42`.
    pub subject: Option<String>,
    /// Only this action, e.g. `user.update`.
    pub action: Option<String>,
    /// Only events at or before this time (RFC 3339).
    pub until: Option<String>,
    /// Paging: only events older than this id.
    pub before_id: Option<i64>,
    /// At most this many (1 to 500) [default: 100].
    pub limit: Option<i64>,
}

/// The audit trail, newest first: operators see everything, merchant admins
/// their merchant's.
#[utoipa::path(get, path = "/api/v1/audit", tag = "accounts", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = [AuditEventView]), (status = 403, body = ErrorEnvelope)))]
pub async fn list_audit(
    state: web::Data<AppState>,
    actor: Actor,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<Vec<AuditEventView>>, Error> {
    let q = query.into_inner();
    let filter = AuditFilter {
        merchant_id: q.merchant_id,
        actor_user_id: q.user_id,
        subject: q.subject,
        action: q.action,
        before_id: q.before_id,
        until: q.until.as_deref().map(|t| crate::time::parse_time("until", t)).transpose()?,
        limit: q.limit.unwrap_or(100).clamp(1, 500),
    };
    let events = state.db.run(move |conn| crate::accounts::audit_trail(conn, &actor, filter)).await?;
    Ok(web::Json(
        events
            .into_iter()
            .map(|e| AuditEventView {
                id: e.id,
                occurred_at: crate::time::rfc3339(e.occurred_at),
                actor: e.actor,
                actor_user_id: e.actor_user_id,
                merchant_id: e.merchant_id,
                action: e.action,
                subject: e.subject,
                detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
                source_ip: e.source_ip,
            })
            .collect(),
    ))
}

/// Routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post, put, resource};
    let small = || super::json_config(super::AUTH_BODY_LIMIT);
    cfg.service(resource("/api/v1/auth/login").app_data(small()).route(post().to(login)))
        .service(resource("/api/v1/auth/logout").route(post().to(logout)))
        .service(resource("/api/v1/auth/me").route(get().to(me)))
        .service(resource("/api/v1/auth/activate").app_data(small()).route(post().to(activate)))
        .service(resource("/api/v1/auth/password-reset").app_data(small()).route(post().to(password_reset)))
        .service(resource("/api/v1/auth/password").route(post().to(change_password)))
        .service(resource("/api/v1/auth/tokens").route(post().to(create_token)).route(get().to(list_tokens)))
        .service(resource("/api/v1/auth/tokens/{id}").route(delete().to(revoke_token)))
        .service(resource("/api/v1/auth/2fa/enroll").route(post().to(enroll_two_factor)))
        .service(resource("/api/v1/auth/2fa/confirm").route(post().to(confirm_two_factor)))
        .service(resource("/api/v1/auth/2fa/disable").route(post().to(disable_two_factor)))
        .service(
            resource("/api/v1/operators").route(post().to(invite_operator)).route(get().to(list_operators)),
        )
        .service(resource("/api/v1/operators/{id}").route(patch().to(change_operator)))
        .service(resource("/api/v1/orders").route(post().to(create_order)))
        .service(resource("/api/v1/merchants").route(get().to(list_merchants)))
        .service(resource("/api/v1/merchants/{id}").route(get().to(show_merchant)))
        .service(resource("/api/v1/merchants/{id}/locations").route(get().to(list_locations)))
        .service(resource("/api/v1/merchants/{id}/terminals").route(get().to(list_terminals)))
        .service(
            resource("/api/v1/merchants/{id}/users")
                .route(post().to(invite_user))
                .route(get().to(list_users)),
        )
        .service(
            resource("/api/v1/merchants/{id}/groups")
                .route(post().to(create_group))
                .route(get().to(list_groups)),
        )
        .service(resource("/api/v1/locations/{id}").route(patch().to(rename_location)))
        .service(
            resource("/api/v1/users/{id}")
                .route(get().to(show_user))
                .route(patch().to(update_user))
                .route(delete().to(delete_user)),
        )
        .service(resource("/api/v1/users/{id}/activation-email").route(post().to(resend_activation)))
        .service(resource("/api/v1/groups/{id}").route(get().to(show_group)).route(delete().to(delete_group)))
        .service(resource("/api/v1/groups/{id}/grants/{location_id}").route(put().to(set_grant)))
        .service(
            resource("/api/v1/groups/{id}/members/{user_id}")
                .route(put().to(add_member))
                .route(delete().to(remove_member)),
        )
        .service(resource("/api/v1/audit").route(get().to(list_audit)));
}
