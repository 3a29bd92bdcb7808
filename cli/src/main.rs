//! `tms`: the command line for release engineers, support and merchant admins.
#![forbid(unsafe_code)]

mod accounts;
mod client;
mod commands;
mod credentials;
mod delta;
mod deployments;
mod devices;
mod output;
mod parameters;
mod releases;
mod store;
mod webhooks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{Client, ReadyState};
use crate::output::Output;

/// The TMS command line: ship releases, run rollouts, manage terminals,
/// merchants and parameters through the TMS management API.
///
/// `tms login` keeps a session token per server in
/// ~/.config/tms/credentials.json (mode 0600); --token or TMS_TOKEN (an API
/// token from `tms token create`) takes precedence.
///
/// Exit codes: 0 success, 1 failure (including a server that is not ready),
/// 2 usage error.
#[derive(Parser, Debug)]
#[command(name = "tms", version, max_term_width = 100)]
struct Cli {
    /// Base URL of the TMS server
    #[arg(long, env = "TMS_SERVER", global = true, default_value = "http://127.0.0.1:8080",
          value_parser = client::parse_server_url)]
    server: url::Url,

    /// API or session token (sent as a Bearer token)
    #[arg(long, env = "TMS_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,

    /// Print the API's JSON instead of text
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the server's version and whether it is ready (exit 1 when not)
    Status,
    /// Log in and keep the session token for this server
    Login(accounts::LoginArgs),
    /// End the session and forget its token
    Logout,
    /// Who you are logged in as
    Whoami,
    /// Set your password from the token of an activation e-mail
    Activate(accounts::ActivateArgs),
    /// Change your password
    Password(accounts::PasswordArgs),
    /// Forgot your password: get a link by e-mail to choose a new one
    PasswordReset(accounts::PasswordResetArgs),
    /// API tokens for automation
    #[command(subcommand)]
    Token(accounts::TokenCommand),
    /// Two-step verification (TOTP) for your account
    #[command(name = "2fa", subcommand)]
    TwoFactor(accounts::TwoFactorCommand),
    /// Terminal orders (support, operator admins)
    #[command(subcommand)]
    Order(accounts::OrderCommand),
    /// Merchants you see, their details and registered terminals
    #[command(subcommand)]
    Merchant(accounts::MerchantCommand),
    /// A merchant's locations (shops), where its terminals are: list, rename
    #[command(subcommand)]
    Location(accounts::LocationCommand),
    /// A merchant's users: invite, list, change their rights, delete
    #[command(subcommand)]
    User(accounts::UserCommand),
    /// Groups of a merchant's users and the permissions they grant per location
    #[command(subcommand)]
    Group(accounts::GroupCommand),
    /// The audit trail
    #[command(subcommand)]
    Audit(accounts::AuditCommand),
    /// The payment provider's staff accounts
    #[command(subcommand)]
    Operator(accounts::OperatorCommand),
    /// Devices: the payment app activated on terminals and phones
    #[command(subcommand)]
    Device(devices::DeviceCommand),
    /// Commands to terminals: send one to a whole target, show, cancel, follow a group command
    #[command(name = "command", subcommand)]
    Commands(commands::CommandCommand),
    /// Webhooks: signed HTTPS notifications of events (terminal missing, install failed, …)
    #[command(subcommand)]
    Webhook(webhooks::WebhookCommand),
    /// Transactions: overview and export
    #[command(name = "tx", subcommand)]
    Transactions(devices::TransactionCommand),
    /// Make a publisher key pair (offline)
    Keygen(releases::KeygenArgs),
    /// Publisher keys
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a release artifact's manifest with a publisher key (offline)
    Sign {
        /// The artifact; the manifest goes to FILE.manifest.json
        file: std::path::PathBuf,
        #[command(flatten)]
        args: releases::SignArgs,
    },
    /// Publish a signed release (upload with progress)
    Publish(releases::PublishArgs),
    /// Apps: registration, store listing and publisher keys
    #[command(subcommand)]
    App(releases::AppCommand),
    /// Releases of an app
    #[command(subcommand)]
    Release(releases::ReleaseCommand),
    /// Download a release's artifact (resumes a partial file, checks the sha256)
    Download(releases::DownloadArgs),
    /// Binary deltas between releases: apply one by hand (offline)
    #[command(subcommand)]
    Delta(delta::DeltaCommand),
    /// Deployments: deliver a release to terminals, or remove an app from them
    #[command(subcommand)]
    Deploy(deployments::DeployCommand),
    /// Staged rollouts of a deployment: start, watch, pause, approve, roll back
    #[command(subcommand)]
    Rollout(deployments::RolloutCommand),
    /// The merchant app store: browse, install and uninstall store apps
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Parameters: values per level, what a device sees, history and diffs
    #[command(subcommand)]
    Params(parameters::ParamsCommand),
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Key id and public key of a key file (private or public) or hex
    Show { file: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tms: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tms: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error with its causes, each shown once: many errors repeat their
/// cause in their own message, and the chain would say it again.
fn error_chain(e: &anyhow::Error) -> String {
    let mut shown = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if shown.contains(&text) {
            continue;
        }
        if !shown.is_empty() {
            shown.push_str(": ");
        }
        shown.push_str(&text);
    }
    shown
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let token = match cli.token {
        Some(token) => Some(token),
        None => credentials::token_for(&cli.server)?,
    };
    let client = Client::new(cli.server, token)?;
    let out = Output { json: cli.json };
    match cli.command {
        Command::Status => return status(&client, out).await,
        Command::Login(args) => accounts::login(&client, args, out).await?,
        Command::Logout => accounts::logout(&client).await?,
        Command::Whoami => accounts::whoami(&client, out).await?,
        Command::Activate(args) => accounts::activate(&client, args).await?,
        Command::Password(args) => accounts::change_password(&client, args).await?,
        Command::PasswordReset(args) => accounts::password_reset(&client, args).await?,
        Command::Token(c) => accounts::token(&client, c, out).await?,
        Command::TwoFactor(c) => accounts::two_factor(&client, c, out).await?,
        Command::Order(c) => accounts::order(&client, c, out).await?,
        Command::Merchant(c) => accounts::merchant(&client, c, out).await?,
        Command::Location(c) => accounts::location(&client, c, out).await?,
        Command::User(c) => accounts::user(&client, c, out).await?,
        Command::Group(c) => accounts::group(&client, c, out).await?,
        Command::Audit(c) => accounts::audit(&client, c, out).await?,
        Command::Operator(c) => accounts::operator(&client, c, out).await?,
        Command::Device(c) => devices::device(&client, c, out).await?,
        Command::Commands(c) => commands::command(&client, c, out).await?,
        Command::Webhook(c) => webhooks::webhook(&client, c, out).await?,
        Command::Transactions(c) => devices::transactions(&client, c, out).await?,
        Command::Keygen(args) => releases::keygen(args, out)?,
        Command::Key(KeyCommand::Show { file }) => releases::key_show(&file, out)?,
        Command::Sign { file, args } => releases::sign(file, args, out)?,
        Command::Publish(args) => releases::publish(&client, args, out).await?,
        Command::App(c) => releases::app(&client, c, out).await?,
        Command::Release(c) => releases::release(&client, c, out).await?,
        Command::Download(args) => releases::download(&client, args, out).await?,
        Command::Delta(c) => delta::delta(c, out)?,
        Command::Deploy(c) => deployments::deploy(&client, c, out).await?,
        Command::Rollout(c) => deployments::rollout(&client, c, out).await?,
        Command::Store(c) => store::store(&client, c, out).await?,
        Command::Params(c) => parameters::params(&client, c, out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(client: &Client, out: Output) -> anyhow::Result<ExitCode> {
    let health = client.health().await?;
    let ready = client.readiness().await?;
    let (is_ready, checks) = match &ready {
        ReadyState::Ready(r) => (true, r.checks.clone()),
        ReadyState::NotReady(e) => (false, e.error.details.clone()),
    };
    let summary = serde_json::json!({
        "server": client.base().as_str(),
        "version": health.version,
        "ready": is_ready,
        "checks": checks,
    });
    out.show(&summary, |_| {
        println!("server   {}", client.base());
        println!("version  {}", health.version);
        println!("ready    {}", if is_ready { "yes" } else { "no" });
        for (part, state) in &checks {
            println!("  {part:<13}{state}");
        }
    });
    Ok(if is_ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_says_what_it_is_for() {
        for command in Cli::command().get_subcommands() {
            assert!(command.get_about().is_some(), "tms {} has no description", command.get_name());
        }
    }

    #[test]
    fn a_cause_the_message_already_holds_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot reach the server at http://x: {source}")]
        struct Outer {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Outer { source: std::io::Error::other("connection refused") });
        assert_eq!(error_chain(&e), "cannot reach the server at http://x: connection refused");
        let e = anyhow::Error::new(std::io::Error::other("refused")).context("reading the credentials");
        assert_eq!(error_chain(&e), "reading the credentials: refused");
    }
}
