//! Device and transaction commands.

use clap::{Args, Subcommand};
use reqwest::Method;
use tms_packages::wire::devices::*;

use crate::client::Client;
use crate::deployments::{self, DeviceGroupCommand};
use crate::output::{Output, table};

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// A merchant's devices (at the locations you see)
    List {
        #[arg(long)]
        merchant: i64,
        #[arg(long)]
        location: Option<i64>,
        #[arg(long)]
        model: Option<String>,
        /// salespoint or tapngo
        #[arg(long)]
        app: Option<String>,
        /// active, deactivated or replaced
        #[arg(long)]
        status: Option<String>,
        /// Last TMS contact before this time (RFC 3339)
        #[arg(long)]
        contacted_before: Option<String>,
        /// Last TMS contact after this time (RFC 3339)
        #[arg(long)]
        contacted_after: Option<String>,
    },
    Show {
        id: i64,
    },
    /// Register a Linux device that speaks hawkBit's DDI API (a kiosk, an EV charger) and print
    /// its TargetToken, shown once (docs/ddi.md)
    RegisterLinux {
        #[arg(long)]
        location: i64,
        /// Its DDI controller id (the last part of its URL)
        #[arg(long)]
        controller_id: String,
        /// The model its firmware releases name
        #[arg(long)]
        model: String,
        /// Defaults to the controller id
        #[arg(long)]
        name: Option<String>,
    },
    /// "Deactivate this device": for a broken terminal or a phone whose app was removed
    Deactivate {
        id: i64,
    },
    Rename {
        id: i64,
        name: String,
    },
    /// Move a device to another of the merchant's locations
    Move {
        id: i64,
        #[arg(long)]
        location: i64,
    },
    /// What the terminal gets on its next contact, and why (apps, parameters, acquirer sessions)
    Plan {
        /// The device's id
        id: i64,
    },
    /// What the terminal reported about the changes pushed to it
    Actions {
        /// The device's id
        id: i64,
    },
    /// Device groups: static lists or filters, to target deployments at
    #[command(subcommand)]
    Group(DeviceGroupCommand),
    /// Terminals not heard from for longer than their merchant's threshold, longest silent first
    Missing {
        /// Only this merchant's
        #[arg(long)]
        merchant: Option<i64>,
    },
    /// Send a command to the terminal: lock, unlock, restart, message, collect_logs, refresh_inventory
    Command {
        /// The device's id
        id: i64,
        #[command(flatten)]
        command: crate::commands::CommandArgs,
    },
    /// The commands sent to the terminal, newest first
    Commands {
        /// The device's id
        id: i64,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// The logs the terminal uploaded (support), or download one with --get
    Logs {
        /// The device's id
        id: i64,
        /// Download this log (its id in the list)
        #[arg(long)]
        get: Option<i64>,
        /// Where to write it [default: device-ID-LOG-COMMAND.log, .gz when compressed]
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn print_devices(devices: &[DeviceView]) {
    table(
        &["ID", "NAME", "APP", "HARDWARE", "MODEL", "LOCATION", "STATUS", "LAST CONTACT", "LOGGED IN"],
        devices.iter().map(|d| {
            vec![
                d.id.to_string(),
                d.name.clone(),
                d.app.clone(),
                d.hardware_id.clone(),
                d.model.clone(),
                d.location_id.to_string(),
                d.status.clone(),
                d.last_contact_at.clone().unwrap_or_else(|| "-".into()),
                d.sessions.iter().map(|s| s.email.clone()).collect::<Vec<_>>().join(","),
            ]
        }),
    )
}

fn print_device(d: &DeviceView) {
    println!("id            {}", d.id);
    println!("name          {}", d.name);
    println!("app           {}", d.app);
    if d.kind == "linux" {
        println!("kind          linux (hawkBit DDI; controller id {})", d.hardware_id);
    }
    for (key, value) in &d.attributes {
        println!("attribute     {key} = {value}");
    }
    println!("hardware      {} ({})", d.hardware_id, d.model);
    println!("merchant      {}", d.merchant_id);
    println!("location      {}", d.location_id);
    println!("status        {}", d.status);
    println!("firmware      {}", d.firmware_version.as_deref().unwrap_or("-"));
    if let Some(reported) = &d.reported_model {
        println!("reports model {reported} (registered as {}: a swapped or misreporting device?)", d.model);
    }
    println!(
        "apps          {}",
        if d.installed_apps.is_empty() { "-".into() } else { d.installed_apps.join(", ") }
    );
    if let Some(free) = d.free_storage_bytes {
        println!("free storage  {:.1} GiB", free as f64 / (1u64 << 30) as f64);
    }
    if let Some(h) = &d.health {
        let at = d.health_reported_at.as_deref().unwrap_or("-");
        if let Some(b) = h.battery_percent {
            let charging = if h.charging == Some(true) { ", charging" } else { "" };
            println!("battery       {b} %{charging}");
        }
        if let Some(n) = &h.network {
            let signal = h.signal_percent.map(|s| format!(", signal {s} %")).unwrap_or_default();
            println!("network       {n}{signal}");
        }
        if let Some(p) = &h.printer {
            println!("printer       {}", if p == "paper_out" { "out of paper" } else { p });
        }
        if let Some(up) = h.uptime_secs {
            println!("up for        {} h {} min", up / 3600, up % 3600 / 60);
        }
        println!("health as of  {at}");
    }
    println!("activated     {}", d.activated_at);
    println!("last contact  {}", d.last_contact_at.as_deref().unwrap_or("-"));
    if let Some(at) = &d.deactivated_at {
        println!("deactivated   {at}");
    }
    if let Some(old) = d.replaces_device_id {
        println!("replaces      {old}");
    }
    if let Some(new) = d.replaced_by_device_id {
        println!("replaced by   {new}");
    }
    for s in &d.sessions {
        println!("logged in     {} since {}", s.email, s.started_at);
    }
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

pub async fn device(client: &Client, command: DeviceCommand, out: Output) -> anyhow::Result<()> {
    let device: DeviceView = match command {
        DeviceCommand::List { merchant, location, model, app, status, contacted_before, contacted_after } => {
            let q = query(&[
                ("location_id", location.map(|l| l.to_string())),
                ("model", model),
                ("app", app),
                ("status", status),
                ("contacted_before", contacted_before),
                ("contacted_after", contacted_after),
            ]);
            let list: Vec<DeviceView> =
                client.get(&format!("/api/v1/merchants/{merchant}/devices?{q}")).await?;
            out.show(&list, |l| print_devices(l));
            return Ok(());
        }
        DeviceCommand::Show { id } => client.get(&format!("/api/v1/devices/{id}")).await?,
        DeviceCommand::RegisterLinux { location, controller_id, model, name } => {
            let body = RegisterLinuxDeviceRequest { location_id: location, controller_id, model, name };
            let registered: LinuxDeviceRegistered =
                client.call(Method::POST, "/api/v1/linux-devices", Some(&body)).await?;
            out.show(&registered, |r| {
                print_device(&r.device);
                println!("target token  {}  (shown once: configure it on the device)", r.target_token);
            });
            return Ok(());
        }
        DeviceCommand::Deactivate { id } => {
            client.call(Method::POST, &format!("/api/v1/devices/{id}/deactivate"), None::<&()>).await?
        }
        DeviceCommand::Rename { id, name } => {
            let body = UpdateDeviceRequest { name: Some(name), location_id: None };
            client.call(Method::PATCH, &format!("/api/v1/devices/{id}"), Some(&body)).await?
        }
        DeviceCommand::Move { id, location } => {
            let body = UpdateDeviceRequest { name: None, location_id: Some(location) };
            client.call(Method::PATCH, &format!("/api/v1/devices/{id}"), Some(&body)).await?
        }
        DeviceCommand::Plan { id } => return deployments::device_plan(client, id, out).await,
        DeviceCommand::Actions { id } => return deployments::device_actions(client, id, out).await,
        DeviceCommand::Group(c) => return deployments::device_group(client, c, out).await,
        DeviceCommand::Missing { merchant } => {
            let q = query(&[("merchant_id", merchant.map(|m| m.to_string()))]);
            let list: Vec<MissingTerminalView> =
                client.get(&format!("/api/v1/missing-terminals?{q}")).await?;
            out.show(&list, |l| {
                table(
                    &["DEVICE", "NAME", "HARDWARE", "MERCHANT", "LOCATION", "LAST CONTACT", "MISSING SINCE"],
                    l.iter().map(|m| {
                        vec![
                            m.device_id.to_string(),
                            m.name.clone(),
                            m.hardware_id.clone(),
                            m.merchant_id.to_string(),
                            m.location_id.to_string(),
                            m.last_contact_at.clone(),
                            m.missing_since.clone(),
                        ]
                    }),
                )
            });
            return Ok(());
        }
        DeviceCommand::Command { id, command } => {
            return crate::commands::send_to_device(client, id, command, out).await;
        }
        DeviceCommand::Commands { id, limit } => {
            return crate::commands::list_for_device(client, id, limit, out).await;
        }
        DeviceCommand::Logs { id, get, out: file } => {
            return crate::commands::logs(client, id, get, file, out).await;
        }
    };
    out.show(&device, print_device);
    Ok(())
}

/// Minor units as a decimal amount (two decimals, as for EUR).
fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", minor.abs() / 100, minor.abs() % 100)
}

#[derive(Args, Debug)]
pub struct TransactionFilterArgs {
    /// The merchant [default: your own, for a merchant's user]
    #[arg(long)]
    merchant: Option<i64>,
    /// From this time on (RFC 3339, e.g. 2026-11-01T00:00:00Z)
    #[arg(long)]
    from: Option<String>,
    /// Before this time (RFC 3339)
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    location: Option<i64>,
    #[arg(long)]
    device: Option<i64>,
    /// The status in effect: success, failure, cancelled or unknown
    #[arg(long)]
    status: Option<String>,
    /// Only transactions whose status was set by hand
    #[arg(long)]
    manual_only: bool,
}

impl TransactionFilterArgs {
    fn pairs(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("location_id", self.location.map(|l| l.to_string())),
            ("device_id", self.device.map(|d| d.to_string())),
            ("status", self.status.clone()),
            ("manual_only", self.manual_only.then(|| "true".to_owned())),
        ]
    }
}

#[derive(Subcommand, Debug)]
pub enum TransactionCommand {
    /// The transactions overview, newest first, with totals per currency
    List {
        #[command(flatten)]
        filter: TransactionFilterArgs,
        /// Cursor printed at the end of the previous page
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Export to standard output as CSV (or JSON lines), streamed whatever the size
    Export {
        #[command(flatten)]
        filter: TransactionFilterArgs,
        /// csv or jsonl
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

/// `--merchant`, or the caller's own merchant.
async fn merchant_of(client: &Client, given: Option<i64>) -> anyhow::Result<i64> {
    if let Some(m) = given {
        return Ok(m);
    }
    let me: tms_packages::wire::accounts::UserView = client.get("/api/v1/auth/me").await?;
    me.merchant_id.ok_or_else(|| anyhow::anyhow!("pass --merchant: you are not a merchant's user"))
}

pub async fn transactions(client: &Client, command: TransactionCommand, out: Output) -> anyhow::Result<()> {
    match command {
        TransactionCommand::List { filter, after, limit } => {
            let mut pairs = filter.pairs();
            pairs.push(("after", after));
            pairs.push(("limit", Some(limit.to_string())));
            let merchant = merchant_of(client, filter.merchant).await?;
            let page: TransactionPage =
                client.get(&format!("/api/v1/merchants/{merchant}/transactions?{}", query(&pairs))).await?;
            out.show(&page, |p| {
                table(
                    &["ID", "WHEN", "DEVICE", "TYPE", "AMOUNT", "CURRENCY", "STATUS", "CARD"],
                    p.items.iter().map(|t| {
                        let status = if t.status_source == "manual" {
                            format!("{} (manual; was {})", t.status, t.automatic_status)
                        } else {
                            t.status.clone()
                        };
                        vec![
                            t.id.to_string(),
                            t.occurred_at.clone(),
                            t.device_id.to_string(),
                            t.tx_type.clone(),
                            money(t.amount_minor),
                            t.currency.clone(),
                            status,
                            t.masked_card.clone(),
                        ]
                    }),
                );
                for total in p.totals.iter().flatten() {
                    println!(
                        "total {}: {} transactions, net {}",
                        total.currency,
                        total.count,
                        money(total.net_amount_minor)
                    );
                }
                if let Some(cursor) = &p.next_cursor {
                    println!("more: --after {cursor}");
                }
            });
        }
        TransactionCommand::Export { filter, format } => {
            let mut pairs = filter.pairs();
            pairs.push(("format", Some(format)));
            let merchant = merchant_of(client, filter.merchant).await?;
            let path = format!("/api/v1/merchants/{merchant}/transactions/export?{}", query(&pairs));
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let bytes = client.download(&path, &mut lock).await?;
            eprintln!("exported {bytes} bytes");
        }
    }
    Ok(())
}
