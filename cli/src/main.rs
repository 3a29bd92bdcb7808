//! `tms`: the command line for release engineers, support and merchant admins.
#![forbid(unsafe_code)]

mod client;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{Client, ReadyState};

/// The TMS command line: ship releases, run rollouts, manage terminals and
/// parameters through the TMS management API.
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

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the server's version and whether it is ready (exit 1 when not)
    Status {
        /// Print the answer as JSON
        #[arg(long)]
        json: bool,
    },
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
            eprintln!("tms: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::new(cli.server, cli.token)?;
    match cli.command {
        Command::Status { json } => status(&client, json).await,
    }
}

async fn status(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let health = client.health().await?;
    let ready = client.readiness().await?;
    let (is_ready, checks) = match &ready {
        ReadyState::Ready(r) => (true, r.checks.clone()),
        ReadyState::NotReady(e) => (false, e.error.details.clone()),
    };
    if json {
        let out = serde_json::json!({
            "server": client.base().as_str(),
            "version": health.version,
            "ready": is_ready,
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("server   {}", client.base());
        println!("version  {}", health.version);
        println!("ready    {}", if is_ready { "yes" } else { "no" });
        for (part, state) in &checks {
            println!("  {part:<13}{state}");
        }
    }
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
}
