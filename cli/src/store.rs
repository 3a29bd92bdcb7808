//! The merchant app store: browse the catalogue, and install or uninstall
//! store apps on a merchant's terminals.

use clap::{Args, Subcommand};
use reqwest::Method;
use tms_packages::contact::ActionType;
use tms_packages::wire::store::*;

use crate::client::Client;
use crate::deployments::parse_action;
use crate::output::{Output, table};
use crate::releases::human;

/// Which terminals a request is for: devices, whole locations, or both.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = true)]
pub struct StoreTargets {
    /// These devices, comma-separated ids
    #[arg(long, value_delimiter = ',', value_name = "ID,…")]
    devices: Vec<i64>,
    /// Every terminal at this location (repeat for more)
    #[arg(long = "location", value_name = "ID")]
    locations: Vec<i64>,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// The apps the merchant can install, with counts of its terminals
    List {
        /// Only apps matching every word (in the id, name, summary or category)
        #[arg(long)]
        search: Option<String>,
        /// Only apps of this category (e.g. tipping, loyalty)
        #[arg(long)]
        category: Option<String>,
        /// The merchant [default: your own, for a merchant's user]
        #[arg(long)]
        merchant: Option<i64>,
    },
    /// A store app: its listing, and its state on each of the merchant's terminals
    Show {
        /// The app's id
        app: String,
        /// The merchant [default: your own, for a merchant's user]
        #[arg(long)]
        merchant: Option<i64>,
    },
    /// Install an app on terminals: each gets the newest release it can run
    Install {
        /// The app's id
        app: String,
        #[command(flatten)]
        targets: StoreTargets,
        /// How terminals apply it: soft (when the merchant agrees or the app is idle),
        /// forced (now) or download_only (fetch it for later) [default: soft]
        #[arg(long, value_parser = parse_action)]
        action: Option<ActionType>,
        /// The merchant [default: your own, for a merchant's user]
        #[arg(long)]
        merchant: Option<i64>,
    },
    /// Remove an app from terminals (system apps cannot be removed)
    Uninstall {
        /// The app's id
        app: String,
        #[command(flatten)]
        targets: StoreTargets,
        /// The merchant [default: your own, for a merchant's user]
        #[arg(long)]
        merchant: Option<i64>,
    },
}

/// A path with its query: the pairs given, URL-encoded; absent ones left out.
fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in pairs {
        if let Some(value) = value {
            query.append_pair(key, value);
            any = true;
        }
    }
    if any { format!("{path}?{}", query.finish()) } else { path.to_owned() }
}

fn or_dash(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".into())
}

fn print_catalogue(apps: &[StoreAppSummary]) {
    table(
        &["APP", "NAME", "CATEGORY", "VERSION", "SIZE", "INSTALLED", "REQUESTED", "FAILED"],
        apps.iter().map(|a| {
            vec![
                a.app_id.clone(),
                a.name.clone(),
                if a.category.is_empty() { "-".into() } else { a.category.clone() },
                a.current_version.clone(),
                human(a.size as f64),
                a.installed_on.to_string(),
                a.requested_on.to_string(),
                a.failed_on.to_string(),
            ]
        }),
    )
}

fn print_store_app(a: &StoreAppView) {
    println!("app          {} ({})", a.name, a.app_id);
    println!("version      {} (code {})", a.current_version, a.version_code);
    println!("size         {}", human(a.size as f64));
    println!("models       {}", a.compatible_models.join(","));
    println!("category     {}", if a.category.is_empty() { "-" } else { &a.category });
    println!("removable    {}", if a.removable { "yes" } else { "no (a system app)" });
    if !a.summary.is_empty() {
        println!("summary      {}", a.summary);
    }
    if !a.description.is_empty() {
        println!("description");
        for line in a.description.lines() {
            println!("  {line}");
        }
    }
    if !a.release_notes.is_empty() {
        println!("notes        {}", a.release_notes);
    }
    println!();
    if a.terminals.is_empty() {
        println!("no terminals");
        return;
    }
    table(
        &["DEVICE", "NAME", "LOCATION", "MODEL", "INSTALLABLE", "INSTALLED", "STATUS", "ERROR"],
        a.terminals.iter().map(|t| {
            vec![
                t.device_id.to_string(),
                t.name.clone(),
                t.location_id.to_string(),
                t.model.clone(),
                or_dash(&t.installable_version),
                or_dash(&t.installed_version),
                match &t.report {
                    Some(report) => format!("{} ({report})", t.status),
                    None => t.status.clone(),
                },
                t.error.clone().unwrap_or_default(),
            ]
        }),
    )
}

fn print_request(r: &StoreRequestView) {
    let verb = if r.kind == "uninstall" { "removal" } else { "install" };
    println!("{verb} of {} requested on {} terminal(s)", r.app_id, r.terminals.len());
    if r.deployment_ids.is_empty() {
        println!("deployments  none created");
    } else {
        let ids: Vec<String> = r.deployment_ids.iter().map(|id| id.to_string()).collect();
        println!("deployments  {}", ids.join(", "));
    }
    for t in &r.terminals {
        match &t.version {
            Some(version) => println!("  device {} → {version}", t.device_id),
            None if r.kind == "uninstall" => println!("  device {} → removed", t.device_id),
            None => println!("  device {} → -", t.device_id),
        }
    }
    for s in &r.skipped {
        println!("  device {} ({}) skipped: {}", s.device_id, s.model, s.reason);
    }
}

pub async fn store(client: &Client, command: StoreCommand, out: Output) -> anyhow::Result<()> {
    let (app, kind, body) = match command {
        StoreCommand::List { search, category, merchant } => {
            let path = with_query(
                "/api/v1/store/apps",
                &[
                    ("merchant_id", merchant.map(|m| m.to_string())),
                    ("search", search),
                    ("category", category),
                ],
            );
            let list: Vec<StoreAppSummary> = client.get(&path).await?;
            out.show(&list, |l| print_catalogue(l));
            return Ok(());
        }
        StoreCommand::Show { app, merchant } => {
            let path = with_query(
                &format!("/api/v1/store/apps/{app}"),
                &[("merchant_id", merchant.map(|m| m.to_string()))],
            );
            let view: StoreAppView = client.get(&path).await?;
            out.show(&view, print_store_app);
            return Ok(());
        }
        StoreCommand::Install { app, targets, action, merchant } => {
            let body = StoreRequest {
                merchant_id: merchant,
                devices: targets.devices,
                locations: targets.locations,
                action,
            };
            (app, "install", body)
        }
        StoreCommand::Uninstall { app, targets, merchant } => {
            let body = StoreRequest {
                merchant_id: merchant,
                devices: targets.devices,
                locations: targets.locations,
                action: None,
            };
            (app, "uninstall", body)
        }
    };
    let request: StoreRequestView =
        client.call(Method::POST, &format!("/api/v1/store/apps/{app}/{kind}"), Some(&body)).await?;
    out.show(&request, print_request);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_leave_out_absent_values_and_encode_the_rest() {
        assert_eq!(with_query("/a", &[("x", None)]), "/a");
        assert_eq!(
            with_query("/a", &[("merchant_id", Some("3".into())), ("search", Some("tip & go".into()))]),
            "/a?merchant_id=3&search=tip+%26+go"
        );
    }
}
