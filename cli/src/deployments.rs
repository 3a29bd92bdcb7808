//! Deployments, staged rollouts, device groups, and what a device gets on
//! its next contact (the support tool's plan) with its push history.

use clap::{Args, Subcommand};
use reqwest::Method;
use tms_packages::contact::ActionType;
use tms_packages::wire::deployments::*;

use crate::client::Client;
use crate::output::{Output, table};

/// `APP@VERSION`: a release of an app.
#[derive(Debug, Clone)]
pub struct ReleaseRef {
    app: String,
    version: String,
}

fn parse_release(s: &str) -> Result<ReleaseRef, String> {
    match s.split_once('@') {
        Some((app, version)) if !app.trim().is_empty() && !version.trim().is_empty() => {
            Ok(ReleaseRef { app: app.trim().to_owned(), version: version.trim().to_owned() })
        }
        _ => Err(format!("{s:?}: expected APP@VERSION, e.g. com.example.pay@1.4.0")),
    }
}

pub fn parse_action(s: &str) -> Result<ActionType, String> {
    ActionType::parse(s).ok_or_else(|| format!("{s:?}: expected soft, forced or download_only"))
}

/// A light check of the target's shape; the server checks the rest.
fn parse_target(s: &str) -> Result<String, String> {
    let ok = s == "everyone"
        || s.split_once(':').is_some_and(|(kind, rest)| {
            matches!(kind, "merchant" | "location" | "group" | "devices") && !rest.trim().is_empty()
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: expected everyone, merchant:M, location:L, group:G or devices:1,2,3"))
    }
}

/// What a deployment delivers: a release, or the removal of an app.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct DeployWhat {
    /// Deliver this release: APP@VERSION
    #[arg(long, value_name = "APP@VERSION", value_parser = parse_release)]
    release: Option<ReleaseRef>,
    /// Remove this app from the terminals instead
    #[arg(long, value_name = "APP")]
    remove: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DeployCommand {
    /// Deliver a release to terminals (or remove an app from them)
    Create {
        #[command(flatten)]
        what: DeployWhat,
        /// Who gets it: everyone, merchant:M, location:L, group:G or devices:1,2,3
        /// (the most specific target wins for a device)
        #[arg(long, value_name = "TARGET", value_parser = parse_target)]
        to: String,
        /// How terminals apply it: soft (when the merchant agrees or the app is idle),
        /// forced (now) or download_only (fetch it for later) [default: soft]
        #[arg(long, value_parser = parse_action)]
        action: Option<ActionType>,
        /// Maintenance window in the terminal's local time, HH:MM-HH:MM (e.g. 02:00-04:00)
        #[arg(long, value_name = "HH:MM-HH:MM")]
        window: Option<String>,
        /// Download only over wifi
        #[arg(long)]
        wifi_only: bool,
        /// Start delivering at this time (RFC 3339) [default: now]
        #[arg(long, value_name = "RFC3339")]
        starts_at: Option<String>,
        /// Stop offering it after this time (RFC 3339)
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
        /// Create it held: nothing is delivered until `tms rollout start` stages it
        #[arg(long)]
        hold: bool,
        /// Delays before offering a failed or timed-out install again, one per retry;
        /// after the last, the terminal has failed for good; `none`: no retry
        /// [default: 0,1h,6h,24h]
        #[arg(long, value_name = "DELAYS")]
        retry_delays: Option<String>,
        /// Times a terminal may postpone before a postponement counts as a failed attempt
        /// [default: 10]
        #[arg(long, value_name = "N")]
        max_postpones: Option<u32>,
        /// Linux devices on the DDI API confirm before it is delivered (hawkBit's confirmation
        /// flow); Android terminals pass it by
        #[arg(long)]
        confirmation_required: bool,
        /// Save nothing: say how many terminals it would reach, how many
        /// already run it, and which are incompatible and why
        #[arg(long)]
        preview: bool,
    },
    /// Deployments, newest first
    List {
        /// Only this app's deployments
        #[arg(long)]
        app: Option<String>,
    },
    /// A deployment, with its rollout if it has one
    Show {
        /// The deployment's id
        id: i64,
    },
    /// Cancel a deployment: nothing more is delivered (terminals keep what they installed)
    Cancel {
        /// The deployment's id
        id: i64,
    },
}

fn what_of(d: &DeploymentView) -> String {
    match (d.kind.as_str(), &d.version) {
        ("removal", _) => "remove".into(),
        (_, Some(v)) if d.pinned => format!("{v} (pinned)"),
        (_, Some(v)) => v.clone(),
        (kind, None) => kind.to_owned(),
    }
}

fn rollout_summary(r: &RolloutView) -> String {
    format!("{} at {} %", r.status, r.current_percent)
}

fn print_deployments(list: &[DeploymentView]) {
    table(
        &["ID", "APP", "WHAT", "TARGET", "ACTION", "STATUS", "ROLLOUT", "STARTS"],
        list.iter().map(|d| {
            vec![
                d.id.to_string(),
                d.app_id.clone(),
                what_of(d),
                d.target.clone(),
                d.action.as_str().to_owned(),
                d.status.clone(),
                d.rollout.as_ref().map(rollout_summary).unwrap_or_else(|| "-".into()),
                d.starts_at.clone(),
            ]
        }),
    )
}

fn print_deployment(d: &DeploymentView) {
    println!("id          {}", d.id);
    println!("app         {}", d.app_id);
    match (d.kind.as_str(), &d.version) {
        ("removal", _) => println!("delivers    removal of the app"),
        (_, Some(v)) => println!(
            "delivers    {v}{}{}",
            d.release_id.map(|r| format!(" (release {r})")).unwrap_or_default(),
            if d.pinned { ", pinned: even over a higher installed version" } else { "" }
        ),
        (kind, None) => println!("delivers    {kind}"),
    }
    println!("target      {}", d.target);
    println!("action      {}", d.action.as_str());
    println!("window      {}", d.window.as_deref().unwrap_or("any time"));
    println!("wifi only   {}", if d.wifi_only { "yes" } else { "no" });
    if d.confirmation_required {
        println!("confirm     Linux devices confirm before it is delivered");
    }
    match d.retry_delays.as_str() {
        "none" => println!("retries     none: a failed install is failed for good"),
        delays => println!("retries     after {delays}, then failed for good"),
    }
    println!("postpones   {} allowed before one counts as a failure", d.max_postpones);
    println!("starts      {}", d.starts_at);
    println!("expires     {}", d.expires_at.as_deref().unwrap_or("never"));
    println!("status      {}", d.status);
    println!("created     {} by {}", d.created_at, d.created_by);
    if let Some(of) = d.rollback_of {
        println!("rolls back  deployment {of}");
    }
    if let Some(r) = &d.rollout {
        println!(
            "rollout     {} (stage {} of {}); `tms rollout status {}` for details",
            rollout_summary(r),
            r.current_stage + 1,
            r.stages.len(),
            d.id
        );
    }
}

fn print_preview(p: &DeploymentPreview) {
    let incompatible: u64 = p.incompatible.iter().map(|i| i.terminals).sum();
    println!(
        "target holds {} terminals: {} would receive it, {incompatible} incompatible",
        p.targeted, p.receive
    );
    if p.already > 0 {
        println!("  {} run this release or a later one already", p.already);
    }
    if p.without_app > 0 {
        println!("  {} do not have the app (a store app is only updated where installed)", p.without_app);
    }
    for i in &p.incompatible {
        match &i.needs_firmware {
            Some(needs) => println!("  {} {} without firmware >= {needs}", i.terminals, i.model),
            None => println!("  {} {}: the release does not run on this model", i.terminals, i.model),
        }
    }
}

pub async fn deploy(client: &Client, command: DeployCommand, out: Output) -> anyhow::Result<()> {
    let deployment: DeploymentView = match command {
        DeployCommand::Create {
            what,
            to,
            action,
            window,
            wifi_only,
            starts_at,
            expires_at,
            hold,
            retry_delays,
            max_postpones,
            confirmation_required,
            preview,
        } => {
            let (app_id, version, remove) = match (what.release, what.remove) {
                (Some(r), _) => (r.app, Some(r.version), false),
                (None, Some(app)) => (app, None, true),
                (None, None) => unreachable!("clap requires --release or --remove"),
            };
            let body = CreateDeploymentRequest {
                app_id,
                version,
                remove,
                target: to,
                action,
                starts_at,
                expires_at,
                window,
                wifi_only,
                hold,
                retry_delays,
                max_postpones,
                confirmation_required,
            };
            if preview {
                let reach: DeploymentPreview =
                    client.call(Method::POST, "/api/v1/deployments/preview", Some(&body)).await?;
                out.show(&reach, print_preview);
                return Ok(());
            }
            client.call(Method::POST, "/api/v1/deployments", Some(&body)).await?
        }
        DeployCommand::List { app } => {
            let path = match app {
                Some(app) => format!(
                    "/api/v1/deployments?{}",
                    url::form_urlencoded::Serializer::new(String::new()).append_pair("app_id", &app).finish()
                ),
                None => "/api/v1/deployments".to_owned(),
            };
            let list: Vec<DeploymentView> = client.get(&path).await?;
            out.show(&list, |l| print_deployments(l));
            return Ok(());
        }
        DeployCommand::Show { id } => client.get(&format!("/api/v1/deployments/{id}")).await?,
        DeployCommand::Cancel { id } => {
            client.call(Method::POST, &format!("/api/v1/deployments/{id}/cancel"), None::<&()>).await?
        }
    };
    out.show(&deployment, print_deployment);
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Stage a deployment: deliver it to a rising share of its target
    Start {
        /// The deployment's id (create it with --hold so nothing goes out before)
        deployment: i64,
        /// Percentages of the target, rising, the last one 100 (e.g. 1,10,50,100)
        #[arg(long, required = true, value_delimiter = ',', value_name = "PERCENT,…")]
        stages: Vec<f64>,
        /// Percentage of a stage's devices that must report installed before the next stage
        #[arg(long, default_value_t = 95.0, value_name = "PERCENT")]
        success: f64,
        /// Failures that pause the rollout: a count (3) or a share of the stage's devices (2%)
        #[arg(long, default_value = "1%", value_name = "N|PERCENT%")]
        max_failures: String,
        /// Wait for `tms rollout approve` after each successful stage instead of advancing
        #[arg(long)]
        manual: bool,
    },
    /// The rollout's state, with per-stage device counts
    Status {
        /// The deployment's id
        deployment: i64,
    },
    /// Pause a running rollout: no further stage starts
    Pause {
        /// The deployment's id
        deployment: i64,
    },
    /// Resume a paused rollout
    Resume {
        /// The deployment's id
        deployment: i64,
    },
    /// Stop a rollout for good: devices not reached yet never get it
    Halt {
        /// The deployment's id
        deployment: i64,
    },
    /// Start the next stage of a rollout waiting for approval (--manual)
    Approve {
        /// The deployment's id
        deployment: i64,
    },
    /// Deliver the previous release again to the devices the rollout reached
    Rollback {
        /// The deployment's id
        deployment: i64,
    },
    /// The terminals that failed to install the deployment's release and have not since:
    /// retrying, timed out, or failed for good
    Failures {
        /// The deployment's id
        deployment: i64,
    },
    /// Apply the rollout's rules now (the server does every few seconds):
    /// advance a stage that succeeded, pause on failures past the limit
    Evaluate {
        /// The deployment's id
        deployment: i64,
    },
}

fn percents(values: &[f64]) -> String {
    values.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")
}

fn print_rollout(r: &RolloutView) {
    match &r.status_reason {
        Some(reason) => println!("status      {} ({reason})", r.status),
        None => println!("status      {}", r.status),
    }
    println!(
        "stage       {} of {}: {} % of the target",
        r.current_stage + 1,
        r.stages.len(),
        r.current_percent
    );
    println!("stages      {} %", percents(&r.stages));
    println!(
        "rules       success at {} % installed; pause at {} failures; {}",
        r.success_percent,
        r.max_failures,
        if r.auto_advance { "advances by itself" } else { "waits for approval after each stage" }
    );
    if let Some(id) = r.rollback_deployment_id {
        println!("rollback    deployment {id}");
    }
    println!("updated     {}", r.updated_at);
    if !r.stage_stats.is_empty() {
        println!();
        table(
            &["STAGE", "PERCENT", "DEVICES", "PENDING", "IN PROGRESS", "INSTALLED", "FAILED", "POSTPONED"],
            r.stage_stats.iter().map(|s| {
                let mut failed = s.failed.to_string();
                let detail: Vec<String> = [(s.timed_out, "timed out"), (s.failed_for_good, "for good")]
                    .into_iter()
                    .filter(|(n, _)| *n > 0)
                    .map(|(n, what)| format!("{n} {what}"))
                    .collect();
                if !detail.is_empty() {
                    failed = format!("{failed} ({})", detail.join(", "));
                }
                vec![
                    (s.stage + 1).to_string(),
                    format!("{} %", s.percent),
                    s.devices.to_string(),
                    s.pending.to_string(),
                    s.in_progress.to_string(),
                    s.installed.to_string(),
                    failed,
                    s.postponed.to_string(),
                ]
            }),
        );
    }
}

fn print_failures(list: &[FailedDeviceView]) {
    if list.is_empty() {
        println!("no failures");
        return;
    }
    table(
        &["DEVICE", "NAME", "MODEL", "STATUS", "ATTEMPTS", "ERROR", "NEXT OFFER", "LAST REPORT"],
        list.iter().map(|f| {
            vec![
                f.device_id.to_string(),
                f.device_name.clone(),
                f.model.clone(),
                f.status.clone(),
                f.attempts.to_string(),
                f.error_code.clone().unwrap_or_else(|| "-".into()),
                if f.failed_for_good {
                    "never (failed for good)".to_owned()
                } else {
                    f.retry_at.clone().unwrap_or_else(|| "next contact".into())
                },
                f.updated_at.clone(),
            ]
        }),
    );
}

pub async fn rollout(client: &Client, command: RolloutCommand, out: Output) -> anyhow::Result<()> {
    let (deployment, verb) = match command {
        RolloutCommand::Start { deployment, stages, success, max_failures, manual } => {
            let body =
                StartRolloutRequest { stages, success_percent: success, max_failures, auto_advance: !manual };
            let rollout: RolloutView = client
                .call(Method::POST, &format!("/api/v1/deployments/{deployment}/rollout"), Some(&body))
                .await?;
            out.show(&rollout, print_rollout);
            return Ok(());
        }
        RolloutCommand::Status { deployment } => {
            let rollout: RolloutView =
                client.get(&format!("/api/v1/deployments/{deployment}/rollout")).await?;
            out.show(&rollout, print_rollout);
            return Ok(());
        }
        RolloutCommand::Failures { deployment } => {
            let list: Vec<FailedDeviceView> =
                client.get(&format!("/api/v1/deployments/{deployment}/failures")).await?;
            out.show(&list, |list| print_failures(list));
            return Ok(());
        }
        RolloutCommand::Pause { deployment } => (deployment, "pause"),
        RolloutCommand::Resume { deployment } => (deployment, "resume"),
        RolloutCommand::Halt { deployment } => (deployment, "halt"),
        RolloutCommand::Approve { deployment } => (deployment, "approve"),
        RolloutCommand::Rollback { deployment } => (deployment, "rollback"),
        RolloutCommand::Evaluate { deployment } => (deployment, "evaluate"),
    };
    let rollout: RolloutView = client
        .call(Method::POST, &format!("/api/v1/deployments/{deployment}/rollout/{verb}"), None::<&()>)
        .await?;
    out.show(&rollout, print_rollout);
    Ok(())
}

/// Which devices a group holds: a dynamic filter or a static list.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct GroupMembers {
    /// A dynamic group: the devices matching this filter, e.g. 'model=A920 and firmware<12'
    #[arg(long)]
    filter: Option<String>,
    /// A static group: these device ids, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "ID,…")]
    devices: Vec<i64>,
}

#[derive(Subcommand, Debug)]
pub enum DeviceGroupCommand {
    /// Create a device group to target deployments at (group:ID)
    Create {
        /// The group's name
        name: String,
        #[command(flatten)]
        members: GroupMembers,
    },
    /// Device groups
    List,
    /// A device group: its filter or its devices
    Show {
        /// The group's id
        id: i64,
    },
    /// Delete a device group
    Delete {
        /// The group's id
        id: i64,
    },
}

fn members_of(g: &DeviceGroupView) -> String {
    match &g.filter {
        Some(filter) => format!("filter: {filter}"),
        None => g.devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
    }
}

fn print_device_groups(groups: &[DeviceGroupView]) {
    table(
        &["ID", "NAME", "DEVICES", "CREATED"],
        groups.iter().map(|g| vec![g.id.to_string(), g.name.clone(), members_of(g), g.created_at.clone()]),
    )
}

fn print_device_group(g: &DeviceGroupView) {
    println!("id       {}", g.id);
    println!("name     {}", g.name);
    match &g.filter {
        Some(filter) => println!("filter   {filter}"),
        None => println!("devices  {}", members_of(g)),
    }
    println!("created  {}", g.created_at);
    println!("target   group:{}", g.id);
}

pub async fn device_group(client: &Client, command: DeviceGroupCommand, out: Output) -> anyhow::Result<()> {
    let group: DeviceGroupView = match command {
        DeviceGroupCommand::Create { name, members } => {
            let body = CreateDeviceGroupRequest { name, filter: members.filter, devices: members.devices };
            client.call(Method::POST, "/api/v1/device-groups", Some(&body)).await?
        }
        DeviceGroupCommand::List => {
            let list: Vec<DeviceGroupView> = client.get("/api/v1/device-groups").await?;
            out.show(&list, |l| print_device_groups(l));
            return Ok(());
        }
        DeviceGroupCommand::Show { id } => client.get(&format!("/api/v1/device-groups/{id}")).await?,
        DeviceGroupCommand::Delete { id } => {
            let _: serde_json::Value =
                client.call(Method::DELETE, &format!("/api/v1/device-groups/{id}"), None::<&()>).await?;
            println!("device group {id} deleted");
            return Ok(());
        }
    };
    out.show(&group, print_device_group);
    Ok(())
}

/// Seconds as "2h 05m" (or "45s").
fn duration(secs: u32) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m"),
    }
}

fn print_plan(p: &DevicePlanView) {
    println!("device    {} ({}, firmware {})", p.device_id, p.model, p.firmware);
    println!("reported  {}", p.reported_at.as_deref().unwrap_or("never"));
    for app in &p.apps {
        println!();
        println!("{}", app.app_id);
        println!("  installed   {}", app.installed.as_deref().unwrap_or("-"));
        let change = match (&app.change, app.deployment_id) {
            (Some(change), _) => change.as_str(),
            (None, Some(_)) => "up to date",
            (None, None) => "nothing",
        };
        println!("  change      {change}");
        if let Some(release) = &app.release {
            println!("  release     {release}");
        }
        match app.deployment_id {
            Some(id) => println!("  decided by  deployment {id}"),
            None => println!("  decided by  no deployment"),
        }
        if let Some(secs) = app.deferred_secs {
            println!("  deferred    {} (until its maintenance window opens)", duration(secs));
        }
        if app.failed_for_good {
            println!("  held back   for good: its attempts ran out");
        } else if let Some(at) = &app.retry_at {
            println!("  held back   until {at}, after a failed attempt");
        }
        if let (Some(needs), Some(free)) = (app.storage_needed_bytes, app.storage_free_bytes) {
            println!("  held        needs {}, {} free", human_size(needs), human_size(free));
        }
        for c in &app.considered {
            println!("  considered  deployment {} ({}): {}", c.deployment_id, c.precedence, c.outcome);
        }
    }
    println!();
    if p.parameters.is_empty() {
        println!("parameters  none");
    } else {
        println!("parameters");
        for param in &p.parameters {
            let holds = param.holds.as_deref().unwrap_or("none");
            let note = if param.holds.as_deref() == Some(param.current.as_str()) { "" } else { " (due)" };
            println!("  {}  {holds} → {}{note}", param.app_id, param.current);
        }
    }
    println!(
        "acquirer sessions due  {}",
        if p.acquirer_sessions.is_empty() { "none".into() } else { p.acquirer_sessions.join(", ") }
    );
    println!("in sync   {}", if p.in_sync { "yes" } else { "no" });
}

/// `tms device plan ID`: what the terminal gets on its next contact, and why.
pub async fn device_plan(client: &Client, id: i64, out: Output) -> anyhow::Result<()> {
    let plan: DevicePlanView = client.get(&format!("/api/v1/devices/{id}/plan")).await?;
    out.show(&plan, print_plan);
    Ok(())
}

/// `tms device actions ID`: what the terminal reported about each change pushed to it.
pub async fn device_actions(client: &Client, id: i64, out: Output) -> anyhow::Result<()> {
    let events: Vec<ActionEventView> = client.get(&format!("/api/v1/devices/{id}/actions")).await?;
    out.show(&events, |l| {
        table(
            &["AT", "DEPLOYMENT", "APP", "STATUS", "PROGRESS", "DOWNLOAD", "ERROR", "MESSAGE"],
            l.iter().map(|e| {
                vec![
                    e.at.clone(),
                    e.deployment_id.to_string(),
                    e.app_id.clone(),
                    e.status.clone(),
                    e.progress_percent.map(|p| format!("{p} %")).unwrap_or_else(|| "-".into()),
                    e.download.clone().unwrap_or_else(|| "-".into()),
                    e.error_code.clone().unwrap_or_else(|| "-".into()),
                    e.message.clone().unwrap_or_default(),
                ]
            }),
        )
    });
    Ok(())
}

/// A size as people read it on a terminal's storage: 48 MiB, 1.2 GiB, 32 KiB.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_on_a_terminal() {
        assert_eq!(human_size(500), "500 bytes");
        assert_eq!(human_size(32 * 1024), "32 KiB");
        assert_eq!(human_size(48 << 20), "48 MiB");
        assert_eq!(human_size(1_288_490_189), "1.2 GiB");
    }

    #[test]
    fn releases_and_targets_parse() {
        let r = parse_release("com.example.pay@1.4.0").unwrap();
        assert_eq!((r.app.as_str(), r.version.as_str()), ("com.example.pay", "1.4.0"));
        assert!(parse_release("com.example.pay").is_err());
        assert!(parse_release("@1.0").is_err());
        for ok in ["everyone", "merchant:3", "location:4", "group:5", "devices:1,2,3"] {
            assert!(parse_target(ok).is_ok(), "{ok}");
        }
        for bad in ["all", "merchant:", "shop:3"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_action("download_only"), Ok(ActionType::DownloadOnly));
        assert!(parse_action("later").is_err());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(125), "2m 05s");
        assert_eq!(duration(7500), "2h 05m");
    }
}
