//! Remote commands to terminals and the logs they upload.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use tms_packages::wire::commands::*;

use crate::client::Client;
use crate::output::{Output, table};

/// What to ask of a terminal.
#[derive(Args, Debug)]
pub struct CommandArgs {
    /// lock, unlock, restart, message, collect_logs or refresh_inventory
    kind: String,
    /// The text a message shows (required), or a lock shows while locked (at most 200 characters)
    #[arg(long)]
    message: Option<String>,
    /// collect_logs: which log (a name the payment app knows: system, payment, …)
    #[arg(long)]
    log: Option<String>,
    /// collect_logs: entries from this time on (RFC 3339)
    #[arg(long)]
    since: Option<String>,
    /// collect_logs: entries before this time (RFC 3339)
    #[arg(long)]
    until: Option<String>,
    /// collect_logs: the upload is refused past this many bytes [default: 10 MiB]
    #[arg(long)]
    max_bytes: Option<u64>,
    /// How long it waits for the terminal, in seconds (60 to 30 days) [default: 24 h]
    #[arg(long)]
    expires_in: Option<u64>,
}

impl CommandArgs {
    fn request(self) -> CommandRequest {
        let wants_log =
            self.log.is_some() || self.since.is_some() || self.until.is_some() || self.max_bytes.is_some();
        CommandRequest {
            // `collect-logs` as typed on a command line is the same command.
            kind: self.kind.replace('-', "_"),
            message: self.message,
            log: wants_log.then(|| LogRequest {
                name: self.log.unwrap_or_default(),
                since: self.since,
                until: self.until,
                max_bytes: self.max_bytes,
            }),
            expires_in_secs: self.expires_in,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum CommandCommand {
    /// One command for every active terminal of a target, queued at a bounded rate
    Send {
        /// everyone, merchant:M, location:L, group:G or devices:D1,D2,…
        #[arg(long)]
        target: String,
        #[command(flatten)]
        command: CommandArgs,
    },
    /// A command and where it is
    Show { id: i64 },
    /// Withdraw a command the terminal has not reported on
    Cancel { id: i64 },
    /// A group command: how far its fan-out got and its commands by state
    Batch { id: i64 },
}

fn print_commands(list: &[CommandView]) {
    table(
        &["ID", "KIND", "STATE", "CREATED", "EXPIRES", "BY", "RESULT"],
        list.iter().map(|c| {
            let detail = c.message.clone().or_else(|| c.log.as_ref().map(|l| format!("log {}", l.name)));
            let kind = match detail {
                Some(d) => format!("{} ({d})", c.kind),
                None => c.kind.clone(),
            };
            let result = match (&c.error_code, &c.result_message, c.log_id) {
                (Some(code), message, _) => format!("{code} {}", message.as_deref().unwrap_or("")),
                (None, _, Some(log)) => format!("log {log}"),
                (None, Some(message), None) => message.clone(),
                (None, None, None) => "-".into(),
            };
            vec![
                c.id.to_string(),
                kind,
                c.state.clone(),
                c.created_at.clone(),
                c.expires_at.clone(),
                c.issued_by.clone(),
                result.trim().to_owned(),
            ]
        }),
    )
}

fn print_batch(b: &CommandBatchView) {
    println!("id          {}", b.id);
    println!("target      {}", b.target);
    println!("kind        {}", b.kind);
    println!("issued by   {} at {}", b.issued_by, b.created_at);
    println!("expires     {}", b.expires_at);
    println!("queued      {}{}", b.queued, if b.fanned_out { "" } else { " so far (fanning out)" });
    for (state, n) in &b.states {
        println!("{state:<11} {n}");
    }
}

/// `tms device command ID KIND …`: one terminal.
pub async fn send_to_device(client: &Client, id: i64, args: CommandArgs, out: Output) -> anyhow::Result<()> {
    let view: CommandView =
        client.call(Method::POST, &format!("/api/v1/devices/{id}/commands"), Some(&args.request())).await?;
    out.show(&view, |c| print_commands(std::slice::from_ref(c)));
    Ok(())
}

/// `tms device commands ID`.
pub async fn list_for_device(client: &Client, id: i64, limit: i64, out: Output) -> anyhow::Result<()> {
    let list: Vec<CommandView> = client.get(&format!("/api/v1/devices/{id}/commands?limit={limit}")).await?;
    out.show(&list, |l| print_commands(l));
    Ok(())
}

/// `tms device logs ID [--get LOG --out FILE]`.
pub async fn logs(
    client: &Client,
    id: i64,
    get: Option<i64>,
    out_file: Option<PathBuf>,
    out: Output,
) -> anyhow::Result<()> {
    if let Some(log) = get {
        let list: Vec<CollectedLogView> = client.get(&format!("/api/v1/devices/{id}/logs")).await?;
        let found = list
            .iter()
            .find(|l| l.id == log)
            .with_context(|| format!("device {id} has no log {log} (kept ones: tms device logs {id})"))?;
        let path = out_file.unwrap_or_else(|| {
            let gz = if found.content_encoding.is_some() { ".gz" } else { "" };
            PathBuf::from(format!("device-{id}-{}-{}.log{gz}", found.name, found.command_id))
        });
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let written = client.download(&found.download_path, &mut file).await?;
        eprintln!("wrote {} ({written} bytes)", path.display());
        return Ok(());
    }
    let list: Vec<CollectedLogView> = client.get(&format!("/api/v1/devices/{id}/logs")).await?;
    out.show(&list, |l| {
        table(
            &["ID", "LOG", "COMMAND", "SIZE", "ENCODING", "UPLOADED", "KEPT UNTIL"],
            l.iter().map(|g| {
                vec![
                    g.id.to_string(),
                    g.name.clone(),
                    g.command_id.to_string(),
                    g.size.to_string(),
                    g.content_encoding.clone().unwrap_or_else(|| "-".into()),
                    g.uploaded_at.clone(),
                    g.expires_at.clone(),
                ]
            }),
        )
    });
    Ok(())
}

pub async fn command(client: &Client, command: CommandCommand, out: Output) -> anyhow::Result<()> {
    match command {
        CommandCommand::Send { target, command } => {
            let body = GroupCommandRequest { target, command: command.request() };
            let batch: CommandBatchView = client.call(Method::POST, "/api/v1/commands", Some(&body)).await?;
            out.show(&batch, print_batch);
        }
        CommandCommand::Batch { id } => {
            let batch: CommandBatchView = client.get(&format!("/api/v1/command-batches/{id}")).await?;
            out.show(&batch, print_batch);
        }
        CommandCommand::Show { id } => {
            let view: CommandView = client.get(&format!("/api/v1/commands/{id}")).await?;
            out.show(&view, |c| print_commands(std::slice::from_ref(c)));
        }
        CommandCommand::Cancel { id } => {
            let view: CommandView =
                client.call(Method::POST, &format!("/api/v1/commands/{id}/cancel"), None::<&()>).await?;
            out.show(&view, |c| print_commands(std::slice::from_ref(c)));
        }
    }
    Ok(())
}
