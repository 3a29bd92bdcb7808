//! Account commands: login, tokens, 2FA, orders, merchants, locations, users,
//! groups and the audit trail.

use std::io::BufRead;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;
use tms_packages::wire::ErrorCode;
use tms_packages::wire::accounts::*;

use crate::client::Client;
use crate::output::{Output, table};

/// Reads a password from the first line of standard input, or asks for it
/// without echo.
pub fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        rpassword::prompt_password(prompt)
            .context("reading the password (use --password-stdin without a terminal)")
    }
}

fn csv(list: &[String]) -> String {
    if list.is_empty() { "-".to_owned() } else { list.join(",") }
}

fn split_csv(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// E-mail address [default: asked]
    #[arg(long)]
    email: Option<String>,
    /// Read the password from standard input instead of asking
    #[arg(long)]
    password_stdin: bool,
    /// Code from the authenticator app (or a recovery code) when two-step verification is on
    #[arg(long)]
    totp: Option<String>,
}

pub async fn login(client: &Client, args: LoginArgs, out: Output) -> anyhow::Result<()> {
    let email = match args.email {
        Some(e) => e,
        None => {
            eprint!("E-mail: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    let password = read_password(args.password_stdin, "Password: ")?;
    let request = LoginRequest { email, password, totp_code: args.totp };
    let response: LoginResponse = match client.call(Method::POST, "/api/v1/auth/login", Some(&request)).await
    {
        Err(crate::client::ClientError::Api { envelope, .. })
            if envelope.error.code == ErrorCode::TotpRequired && args.password_stdin =>
        {
            anyhow::bail!("two-step verification is on: pass --totp CODE");
        }
        Err(crate::client::ClientError::Api { envelope, .. })
            if envelope.error.code == ErrorCode::TotpRequired =>
        {
            eprint!("Authenticator code: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let request = LoginRequest { totp_code: Some(line.trim().to_owned()), ..request };
            client.call(Method::POST, "/api/v1/auth/login", Some(&request)).await?
        }
        other => other?,
    };
    crate::credentials::store(client.base(), &response.token)?;
    out.show(&response.user, |u| {
        println!("logged in to {} as {} (session until {})", client.base(), u.email, response.expires_at)
    });
    Ok(())
}

pub async fn logout(client: &Client) -> anyhow::Result<()> {
    let result: Result<serde_json::Value, _> =
        client.call(Method::POST, "/api/v1/auth/logout", None::<&()>).await;
    crate::credentials::forget(client.base())?;
    match result {
        Ok(_) | Err(crate::client::ClientError::Api { .. }) => {
            println!("logged out of {}", client.base());
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn print_user(u: &UserView) {
    let role = match (&u.operator_role, u.merchant_id, u.is_admin) {
        (Some(role), _, _) => format!("operator ({role})"),
        (None, Some(m), true) => format!("admin of merchant {m}"),
        (None, Some(m), false) => format!("user of merchant {m}"),
        _ => u.kind.clone(),
    };
    println!("id           {}", u.id);
    println!("email        {}", u.email);
    println!("role         {role}");
    println!("permissions  {}", csv(&u.permissions));
    println!(
        "groups       {}",
        if u.groups.is_empty() {
            "-".into()
        } else {
            u.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(",")
        }
    );
    println!("status       {}", u.status);
    println!("2fa          {}", if u.two_factor_enabled { "on" } else { "off" });
}

pub async fn whoami(client: &Client, out: Output) -> anyhow::Result<()> {
    let me: UserView = client.get("/api/v1/auth/me").await?;
    out.show(&me, print_user);
    Ok(())
}

#[derive(Args, Debug)]
pub struct ActivateArgs {
    /// The token from the activation e-mail's link
    #[arg(long)]
    token: String,
    /// Read the new password from standard input instead of asking
    #[arg(long)]
    password_stdin: bool,
}

pub async fn activate(client: &Client, args: ActivateArgs) -> anyhow::Result<()> {
    let password = read_password(args.password_stdin, "New password: ")?;
    let _: serde_json::Value = client
        .call(
            Method::POST,
            "/api/v1/auth/activate",
            Some(&ActivateAccountRequest { token: args.token, password }),
        )
        .await?;
    println!("password set; log in with tms login");
    Ok(())
}

#[derive(Args, Debug)]
pub struct PasswordResetArgs {
    /// Your account's e-mail address
    #[arg(long)]
    email: String,
}

/// "I forgot my password": the server e-mails a link if the address has an account.
pub async fn password_reset(client: &Client, args: PasswordResetArgs) -> anyhow::Result<()> {
    let _: serde_json::Value = client
        .call(Method::POST, "/api/v1/auth/password-reset", Some(&PasswordResetRequest { email: args.email }))
        .await?;
    println!(
        "if the address has an account, a link to choose a new password is on its way (it works once, \
         for one hour); open it, or run tms activate --token <the token in the link>"
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// Read the current and the new password from standard input (two lines)
    #[arg(long)]
    stdin: bool,
    /// Keep your API tokens working (by default the change revokes them, with your other
    /// sessions)
    #[arg(long)]
    keep_api_tokens: bool,
}

pub async fn change_password(client: &Client, args: PasswordArgs) -> anyhow::Result<()> {
    let (current, new) = if args.stdin {
        let mut lines = std::io::stdin().lock().lines();
        let mut next = || -> anyhow::Result<String> {
            Ok(lines
                .next()
                .context("expected two lines: the current password, then the new one")??
                .trim_end()
                .to_owned())
        };
        (next()?, next()?)
    } else {
        let current = read_password(false, "Current password: ")?;
        let new = read_password(false, "New password: ")?;
        if read_password(false, "New password again: ")? != new {
            anyhow::bail!("the two new passwords differ");
        }
        (current, new)
    };
    let _: serde_json::Value = client
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&ChangePasswordRequest {
                current_password: current,
                new_password: new,
                keep_api_tokens: args.keep_api_tokens,
            }),
        )
        .await?;
    if args.keep_api_tokens {
        println!("password changed; other sessions were logged out; API tokens kept");
    } else {
        println!("password changed; other sessions were logged out and API tokens revoked");
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token for automation (printed once)
    Create {
        #[arg(long)]
        name: String,
        /// Lifetime, in days: 90d or 90
        #[arg(long, default_value = "90d", value_parser = parse_days)]
        expires: u32,
    },
    /// Your sessions and API tokens
    List,
    /// Revoke one of your tokens
    Revoke { id: i64 },
}

fn parse_days(s: &str) -> Result<u32, String> {
    s.trim_end_matches('d').parse().map_err(|_| format!("{s:?} is not a number of days (e.g. 90d)"))
}

pub async fn token(client: &Client, command: TokenCommand, out: Output) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, expires } => {
            let created: CreatedApiToken = client
                .call(
                    Method::POST,
                    "/api/v1/auth/tokens",
                    Some(&CreateApiTokenRequest { name, expires_in_days: expires }),
                )
                .await?;
            out.show(&created, |t| {
                println!("{}", t.token);
                eprintln!("token {} ({}) expires {}; it is not shown again", t.id, t.name, t.expires_at);
            });
        }
        TokenCommand::List => {
            let tokens: Vec<ApiTokenView> = client.get("/api/v1/auth/tokens").await?;
            out.show(&tokens, |ts| {
                table(
                    &["ID", "NAME", "KIND", "EXPIRES", "LAST USED", "REVOKED"],
                    ts.iter().map(|t| {
                        vec![
                            t.id.to_string(),
                            t.name.clone(),
                            t.kind.clone(),
                            t.expires_at.clone(),
                            t.last_used_at.clone().unwrap_or_else(|| "-".into()),
                            if t.revoked { "yes".into() } else { "no".into() },
                        ]
                    }),
                )
            });
        }
        TokenCommand::Revoke { id } => {
            let _: serde_json::Value =
                client.call(Method::DELETE, &format!("/api/v1/auth/tokens/{id}"), None::<&()>).await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum TwoFactorCommand {
    /// Start: prints the secret and the otpauth:// URL for the authenticator app
    Enable,
    /// Finish with the app's current code; prints single-use recovery codes
    Confirm { code: String },
    /// Turn it off (password and a current code or recovery code)
    Disable {
        #[arg(long)]
        code: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

pub async fn two_factor(client: &Client, command: TwoFactorCommand, out: Output) -> anyhow::Result<()> {
    match command {
        TwoFactorCommand::Enable => {
            let e: TwoFactorEnrollment =
                client.call(Method::POST, "/api/v1/auth/2fa/enroll", Some(&json!({}))).await?;
            out.show(&e, |e| {
                println!("secret       {}", e.secret);
                println!("otpauth url  {}", e.otpauth_url);
                println!("then: tms 2fa confirm CODE");
            });
        }
        TwoFactorCommand::Confirm { code } => {
            let codes: RecoveryCodes =
                client.call(Method::POST, "/api/v1/auth/2fa/confirm", Some(&TwoFactorCode { code })).await?;
            out.show(&codes, |c| {
                println!("two-step verification is on. Recovery codes (each works once; keep them safe):");
                for code in &c.codes {
                    println!("  {code}");
                }
            });
        }
        TwoFactorCommand::Disable { code, password_stdin } => {
            let password = read_password(password_stdin, "Password: ")?;
            let _: serde_json::Value = client
                .call(
                    Method::POST,
                    "/api/v1/auth/2fa/disable",
                    Some(&DisableTwoFactorRequest { password, code }),
                )
                .await?;
            println!("two-step verification is off");
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct OrderArgs {
    /// An existing merchant; leave out for a first order, which creates the merchant
    #[arg(long, conflicts_with_all = ["company", "contact_email"])]
    merchant: Option<i64>,
    /// Company name (first order)
    #[arg(long, required_unless_present = "merchant")]
    company: Option<String>,
    /// E-mail of the merchant's first admin (first order)
    #[arg(long, required_unless_present = "merchant")]
    contact_email: Option<String>,
    /// Delivery address: street line
    #[arg(long)]
    address: String,
    /// Delivery address: second line
    #[arg(long, default_value = "")]
    address_line2: String,
    #[arg(long)]
    postal_code: String,
    #[arg(long)]
    city: String,
    /// ISO country code, e.g. FR
    #[arg(long)]
    country: String,
    /// Name for the location if the address is new
    #[arg(long)]
    location_name: Option<String>,
    /// A terminal as SERIAL:MODEL (repeat for each)
    #[arg(long = "terminal", required = true, value_parser = parse_terminal)]
    terminals: Vec<OrderedTerminal>,
}

fn parse_terminal(s: &str) -> Result<OrderedTerminal, String> {
    let (serial, model) =
        s.split_once(':').ok_or_else(|| format!("{s:?}: expected SERIAL:MODEL, e.g. 1850123456:A920"))?;
    Ok(OrderedTerminal { serial: serial.to_owned(), model: model.to_owned() })
}

#[derive(Subcommand, Debug)]
pub enum OrderCommand {
    /// Record an order of terminals for a merchant
    Create(OrderArgs),
}

pub async fn order(client: &Client, command: OrderCommand, out: Output) -> anyhow::Result<()> {
    let OrderCommand::Create(a) = command;
    let request = CreateOrderRequest {
        merchant_id: a.merchant,
        company_name: a.company,
        contact_email: a.contact_email,
        delivery_address: Address {
            line1: a.address,
            line2: a.address_line2,
            postal_code: a.postal_code,
            city: a.city,
            country: a.country,
        },
        location_name: a.location_name,
        terminals: a.terminals,
    };
    let order: OrderView = client.call(Method::POST, "/api/v1/orders", Some(&request)).await?;
    out.show(&order, |o| {
        println!(
            "order {} for merchant {}{}",
            o.id,
            o.merchant_id,
            if o.merchant_created { " (new merchant)" } else { "" }
        );
        println!(
            "location {} {:?}{}",
            o.location.id,
            o.location.name,
            if o.location_created { " (new location)" } else { "" }
        );
        for t in &o.terminals {
            println!("terminal {} {} registered", t.serial, t.model);
        }
        if let Some(to) = &o.activation_email_sent_to {
            println!("activation e-mail sent to {to}");
        }
    });
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum MerchantCommand {
    /// Merchants you see
    List,
    Show {
        id: i64,
    },
    /// The merchant's registered terminals (at the locations you see)
    Terminals {
        id: i64,
    },
    /// Hours without contact before the merchant's terminals count as missing
    MissingThreshold {
        id: i64,
        /// 1 to 2160
        #[arg(long, conflicts_with = "default", required_unless_present = "default")]
        hours: Option<i64>,
        /// Back to the server's default (missing_after_hours)
        #[arg(long)]
        default: bool,
    },
}

pub async fn merchant(client: &Client, command: MerchantCommand, out: Output) -> anyhow::Result<()> {
    match command {
        MerchantCommand::List => {
            let list: Vec<MerchantView> = client.get("/api/v1/merchants").await?;
            out.show(&list, |l| {
                table(
                    &["ID", "NAME", "CONTACT", "STATUS"],
                    l.iter().map(|m| {
                        vec![m.id.to_string(), m.name.clone(), m.contact_email.clone(), m.status.clone()]
                    }),
                )
            });
        }
        MerchantCommand::Show { id } => {
            let m: MerchantView = client.get(&format!("/api/v1/merchants/{id}")).await?;
            out.show(&m, |m| {
                println!("id       {}", m.id);
                println!("name     {}", m.name);
                println!("contact  {}", m.contact_email);
                println!("status   {}", m.status);
                println!("created  {}", m.created_at);
            });
        }
        MerchantCommand::MissingThreshold { id, hours, default: _ } => {
            let body = tms_packages::wire::devices::MissingThresholdRequest { hours };
            let view: tms_packages::wire::devices::MissingThresholdView = client
                .call(Method::PUT, &format!("/api/v1/merchants/{id}/missing-threshold"), Some(&body))
                .await?;
            out.show(&view, |v| {
                let whose = if v.default { "the server's default" } else { "its own" };
                println!("merchant {}: missing after {} h without contact ({whose})", v.merchant_id, v.hours);
            });
        }
        MerchantCommand::Terminals { id } => {
            let list: Vec<TerminalView> = client.get(&format!("/api/v1/merchants/{id}/terminals")).await?;
            out.show(&list, |l| {
                table(
                    &["ID", "SERIAL", "MODEL", "LOCATION", "REGISTERED"],
                    l.iter().map(|t| {
                        vec![
                            t.id.to_string(),
                            t.serial.clone(),
                            t.model.clone(),
                            t.location_id.to_string(),
                            t.registered_at.clone(),
                        ]
                    }),
                )
            });
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum LocationCommand {
    /// A merchant's locations (those you see)
    List {
        #[arg(long)]
        merchant: i64,
    },
    /// Rename a location (locations are created by orders, never directly)
    Rename { id: i64, name: String },
}

pub async fn location(client: &Client, command: LocationCommand, out: Output) -> anyhow::Result<()> {
    let print = |l: &[LocationView]| {
        table(
            &["ID", "NAME", "ADDRESS"],
            l.iter().map(|l| {
                vec![
                    l.id.to_string(),
                    l.name.clone(),
                    format!(
                        "{}, {} {} {}",
                        l.address.line1, l.address.postal_code, l.address.city, l.address.country
                    ),
                ]
            }),
        )
    };
    match command {
        LocationCommand::List { merchant } => {
            let list: Vec<LocationView> =
                client.get(&format!("/api/v1/merchants/{merchant}/locations")).await?;
            out.show(&list, |l| print(l));
        }
        LocationCommand::Rename { id, name } => {
            let l: LocationView = client
                .call(
                    Method::PATCH,
                    &format!("/api/v1/locations/{id}"),
                    Some(&RenameLocationRequest { name }),
                )
                .await?;
            out.show(&l, |l| print(std::slice::from_ref(l)));
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Invite a user into a merchant (they get an e-mail to set a password)
    Invite {
        #[arg(long)]
        merchant: i64,
        #[arg(long)]
        email: String,
        /// Make the user an admin of the merchant
        #[arg(long)]
        admin: bool,
        /// Merchant-wide permissions, comma-separated (e.g. activate_app,view_transactions)
        #[arg(long, default_value = "")]
        permissions: String,
    },
    /// A merchant's users
    List {
        #[arg(long)]
        merchant: i64,
    },
    Show {
        id: i64,
    },
    /// Change the admin flag or the permissions (refused while the user is logged in on a terminal)
    Update {
        id: i64,
        #[arg(long)]
        admin: Option<bool>,
        /// The new permission list, comma-separated ("" for none)
        #[arg(long)]
        permissions: Option<String>,
    },
    /// Delete a user (refused while logged in on a terminal)
    Delete {
        id: i64,
    },
    /// Send a new activation e-mail
    ResendActivation {
        id: i64,
    },
}

pub async fn user(client: &Client, command: UserCommand, out: Output) -> anyhow::Result<()> {
    match command {
        UserCommand::Invite { merchant, email, admin, permissions } => {
            let body = InviteUserRequest { email, is_admin: admin, permissions: split_csv(&permissions) };
            let u: UserView = client
                .call(Method::POST, &format!("/api/v1/merchants/{merchant}/users"), Some(&body))
                .await?;
            out.show(&u, |u| println!("invited {} as user {}; an activation e-mail was sent", u.email, u.id));
        }
        UserCommand::List { merchant } => {
            let list: Vec<UserView> = client.get(&format!("/api/v1/merchants/{merchant}/users")).await?;
            out.show(&list, |l| {
                table(
                    &["ID", "EMAIL", "ADMIN", "PERMISSIONS", "STATUS", "2FA"],
                    l.iter().map(|u| {
                        vec![
                            u.id.to_string(),
                            u.email.clone(),
                            if u.is_admin { "yes".into() } else { "no".into() },
                            csv(&u.permissions),
                            u.status.clone(),
                            if u.two_factor_enabled { "on".into() } else { "off".into() },
                        ]
                    }),
                )
            });
        }
        UserCommand::Show { id } => {
            let u: UserView = client.get(&format!("/api/v1/users/{id}")).await?;
            out.show(&u, print_user);
        }
        UserCommand::Update { id, admin, permissions } => {
            let body = UpdateUserRequest { is_admin: admin, permissions: permissions.map(|p| split_csv(&p)) };
            let u: UserView = client.call(Method::PATCH, &format!("/api/v1/users/{id}"), Some(&body)).await?;
            out.show(&u, print_user);
        }
        UserCommand::Delete { id } => {
            let _: serde_json::Value =
                client.call(Method::DELETE, &format!("/api/v1/users/{id}"), None::<&()>).await?;
            println!("user {id} deleted");
        }
        UserCommand::ResendActivation { id } => {
            let _: serde_json::Value = client
                .call(Method::POST, &format!("/api/v1/users/{id}/activation-email"), None::<&()>)
                .await?;
            println!("a new activation e-mail was sent to user {id}");
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a user group in a merchant
    Create {
        #[arg(long)]
        merchant: i64,
        name: String,
    },
    /// A merchant's groups
    List {
        #[arg(long)]
        merchant: i64,
    },
    Show {
        id: i64,
    },
    Delete {
        id: i64,
    },
    /// Give the group's members permissions at a location ("" removes the location)
    Grant {
        id: i64,
        #[arg(long)]
        location: i64,
        #[arg(long)]
        permissions: String,
    },
    AddUser {
        id: i64,
        user: i64,
    },
    RemoveUser {
        id: i64,
        user: i64,
    },
}

fn print_groups(groups: &[GroupView]) {
    table(
        &["ID", "NAME", "MEMBERS", "GRANTS"],
        groups.iter().map(|g| {
            vec![
                g.id.to_string(),
                g.name.clone(),
                g.members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","),
                g.grants
                    .iter()
                    .map(|gr| format!("{}:{}", gr.location_id, gr.permissions.join("+")))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        }),
    )
}

pub async fn group(client: &Client, command: GroupCommand, out: Output) -> anyhow::Result<()> {
    let group: GroupView = match command {
        GroupCommand::Create { merchant, name } => {
            client
                .call(
                    Method::POST,
                    &format!("/api/v1/merchants/{merchant}/groups"),
                    Some(&CreateGroupRequest { name }),
                )
                .await?
        }
        GroupCommand::List { merchant } => {
            let list: Vec<GroupView> = client.get(&format!("/api/v1/merchants/{merchant}/groups")).await?;
            out.show(&list, |l| print_groups(l));
            return Ok(());
        }
        GroupCommand::Show { id } => client.get(&format!("/api/v1/groups/{id}")).await?,
        GroupCommand::Delete { id } => {
            let _: serde_json::Value =
                client.call(Method::DELETE, &format!("/api/v1/groups/{id}"), None::<&()>).await?;
            println!("group {id} deleted");
            return Ok(());
        }
        GroupCommand::Grant { id, location, permissions } => {
            let body = GrantRequest { permissions: split_csv(&permissions) };
            client.call(Method::PUT, &format!("/api/v1/groups/{id}/grants/{location}"), Some(&body)).await?
        }
        GroupCommand::AddUser { id, user } => {
            client.call(Method::PUT, &format!("/api/v1/groups/{id}/members/{user}"), None::<&()>).await?
        }
        GroupCommand::RemoveUser { id, user } => {
            client.call(Method::DELETE, &format!("/api/v1/groups/{id}/members/{user}"), None::<&()>).await?
        }
    };
    out.show(&group, |g| print_groups(std::slice::from_ref(g)));
    Ok(())
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[arg(long)]
    merchant: Option<i64>,
    /// Events by this user
    #[arg(long)]
    user: Option<i64>,
    /// Events about this object, e.g. user:42
    #[arg(long)]
    subject: Option<String>,
    /// Only this action, e.g. user.update
    #[arg(long)]
    action: Option<String>,
    /// Only events at or before this time (RFC 3339, e.g. 2026-11-30T18:00:00Z)
    #[arg(long)]
    until: Option<String>,
    /// Paging: events older than this id
    #[arg(long)]
    before: Option<i64>,
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Audit events, newest first
    List(AuditArgs),
}

pub async fn audit(client: &Client, command: AuditCommand, out: Output) -> anyhow::Result<()> {
    let AuditCommand::List(a) = command;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &a.limit.to_string());
    for (key, value) in [
        ("merchant_id", a.merchant.map(|v| v.to_string())),
        ("user_id", a.user.map(|v| v.to_string())),
        ("subject", a.subject),
        ("action", a.action),
        ("until", a.until),
        ("before_id", a.before.map(|v| v.to_string())),
    ] {
        if let Some(value) = value {
            query.append_pair(key, &value);
        }
    }
    let events: Vec<AuditEventView> = client.get(&format!("/api/v1/audit?{}", query.finish())).await?;
    out.show(&events, |l| {
        table(
            &["ID", "WHEN", "WHO", "ACTION", "SUBJECT", "DETAIL"],
            l.iter().map(|e| {
                vec![
                    e.id.to_string(),
                    e.occurred_at.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.subject.clone(),
                    e.detail.to_string(),
                ]
            }),
        )
    });
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Invite a member of the payment provider's staff (operator admins)
    Invite {
        #[arg(long)]
        email: String,
        /// operator_admin, release_engineer or support
        #[arg(long)]
        role: String,
    },
    /// List the operators, with their roles and whether they are active
    List,
    /// Change an operator's role (the last active operator admin stays one)
    SetRole {
        id: i64,
        /// operator_admin, release_engineer or support
        role: String,
    },
    /// Disable an operator: no login from now on, and every session and API token ends
    Disable { id: i64 },
    /// Enable a disabled operator again
    Enable { id: i64 },
}

pub async fn operator(client: &Client, command: OperatorCommand, out: Output) -> anyhow::Result<()> {
    let change = |id: i64, body: serde_json::Value| async move {
        client.call::<UserView>(Method::PATCH, &format!("/api/v1/operators/{id}"), Some(&body)).await
    };
    let show_status = |u: &UserView| {
        println!(
            "operator {} ({}): {}, {}",
            u.id,
            u.email,
            u.operator_role.as_deref().unwrap_or("-"),
            u.status
        )
    };
    match command {
        OperatorCommand::Invite { email, role } => {
            let u: UserView = client
                .call(Method::POST, "/api/v1/operators", Some(&json!({"email": email, "role": role})))
                .await?;
            out.show(&u, |u| {
                println!("invited {} as operator {}; an activation e-mail was sent", u.email, u.id)
            });
        }
        OperatorCommand::List => {
            let list: Vec<UserView> = client.get("/api/v1/operators").await?;
            out.show(&list, |l| {
                table(
                    &["ID", "EMAIL", "ROLE", "STATUS", "2FA"],
                    l.iter().map(|u| {
                        vec![
                            u.id.to_string(),
                            u.email.clone(),
                            u.operator_role.clone().unwrap_or_default(),
                            u.status.clone(),
                            if u.two_factor_enabled { "on".into() } else { "off".into() },
                        ]
                    }),
                )
            });
        }
        OperatorCommand::SetRole { id, role } => {
            out.show(&change(id, json!({"role": role})).await?, show_status)
        }
        OperatorCommand::Disable { id } => {
            out.show(&change(id, json!({"disabled": true})).await?, show_status)
        }
        OperatorCommand::Enable { id } => {
            out.show(&change(id, json!({"disabled": false})).await?, show_status)
        }
    }
    Ok(())
}
