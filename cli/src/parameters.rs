//! `tms params`: parameter values per level, what a device sees, history,
//! diffs and the default-password report.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use reqwest::Method;
use tms_packages::parameters::{ParamType, Schema, TERMINAL_APP, parse_value};
use tms_packages::wire::parameters::*;

use crate::client::Client;
use crate::output::{Output, table};

#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// The global level (operators)
    #[arg(long)]
    global: bool,
    #[arg(long)]
    merchant: Option<i64>,
    #[arg(long)]
    location: Option<i64>,
    #[arg(long)]
    device: Option<i64>,
}

impl ScopeArgs {
    fn path(&self) -> (&'static str, i64) {
        match (self.global, self.merchant, self.location, self.device) {
            (_, Some(m), _, _) => ("merchant", m),
            (_, _, Some(l), _) => ("location", l),
            (_, _, _, Some(d)) => ("device", d),
            _ => ("global", 0),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ParamsCommand {
    /// Set values at a level: key=value … (key=@FILE for a file parameter)
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        /// The app [default: tms.terminal, the terminal's own settings]
        #[arg(long, default_value = TERMINAL_APP)]
        app: String,
        /// Lock these keys here so lower levels cannot override them (operators)
        #[arg(long = "lock")]
        lock: Vec<String>,
        /// Why (kept with the version)
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Stop setting keys at a level
    Unset {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long, default_value = TERMINAL_APP)]
        app: String,
        #[arg(long = "unlock")]
        unlock: Vec<String>,
        #[arg(long, default_value = "")]
        reason: String,
        keys: Vec<String>,
    },
    /// With --device: what it sees, and where each value comes from; else what the level sets
    Show {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long, default_value = TERMINAL_APP)]
        app: String,
        /// An older version of what the level set (not with --device)
        #[arg(long)]
        version: Option<u64>,
    },
    /// The versions of what a level set, with who, when and why
    History {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long, default_value = TERMINAL_APP)]
        app: String,
    },
    /// What changed for a device between two versions (as shown by `show --device`)
    Diff {
        #[arg(long)]
        device: i64,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = TERMINAL_APP)]
        app: String,
    },
    /// Terminals with a weak merchant-menu password (the default 99999, 11111, 12345, …)
    Report {
        #[arg(long)]
        merchant: Option<i64>,
    },
}

fn typed_values(schema: &Schema, pairs: &[String]) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (key, text) = pair.split_once('=').with_context(|| format!("{pair:?}: expected key=value"))?;
        let value = match (schema.keys.get(key).map(|d| &d.ty), text.strip_prefix('@')) {
            (Some(ParamType::File { .. }), Some(path)) => {
                let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
                serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            _ => parse_value(schema, key, text).map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

fn print_set(s: &ParameterSetView) {
    println!("{} {} {} — version {}", s.app_id, s.level, s.scope_id, s.version);
    table(
        &["KEY", "VALUE", "LOCKED"],
        s.values.iter().map(|(k, v)| {
            vec![k.clone(), v.to_string(), if s.locked.contains(k) { "yes".into() } else { "".into() }]
        }),
    );
}

pub async fn params(client: &Client, command: ParamsCommand, out: Output) -> anyhow::Result<()> {
    match command {
        ParamsCommand::Set { scope, app, lock, reason, values } => {
            let schema: Schema = client.get(&format!("/api/v1/apps/{app}/parameter-schema")).await?;
            let set = typed_values(&schema, &values)?;
            let (level, id) = scope.path();
            let body = ChangeParametersRequest { set, unset: vec![], lock, unlock: vec![], reason };
            let view: ParameterSetView = client
                .call(Method::POST, &format!("/api/v1/parameters/{app}/{level}/{id}"), Some(&body))
                .await?;
            out.show(&view, print_set);
        }
        ParamsCommand::Unset { scope, app, unlock, reason, keys } => {
            if keys.is_empty() && unlock.is_empty() {
                bail!("name the keys to unset (or --unlock)");
            }
            let (level, id) = scope.path();
            let body =
                ChangeParametersRequest { set: BTreeMap::new(), unset: keys, lock: vec![], unlock, reason };
            let view: ParameterSetView = client
                .call(Method::POST, &format!("/api/v1/parameters/{app}/{level}/{id}"), Some(&body))
                .await?;
            out.show(&view, print_set);
        }
        ParamsCommand::Show { scope, app, version } => {
            if let Some(device) = scope.device {
                let view: EffectiveParametersView =
                    client.get(&format!("/api/v1/devices/{device}/parameters?app={app}")).await?;
                out.show(&view, |v| {
                    println!("{} on device {} — version {}", v.app_id, v.device_id, v.version);
                    table(
                        &["KEY", "VALUE", "FROM"],
                        v.values.iter().map(|(k, e)| vec![k.clone(), e.value.to_string(), e.origin.clone()]),
                    );
                });
            } else {
                let (level, id) = scope.path();
                let at = version.map(|v| format!("?version={v}")).unwrap_or_default();
                let view: ParameterSetView =
                    client.get(&format!("/api/v1/parameters/{app}/{level}/{id}{at}")).await?;
                out.show(&view, print_set);
            }
        }
        ParamsCommand::History { scope, app } => {
            let (level, id) = scope.path();
            let list: Vec<ParameterVersionView> =
                client.get(&format!("/api/v1/parameters/{app}/{level}/{id}/history")).await?;
            out.show(&list, |l| {
                table(
                    &["VERSION", "WHEN", "WHO", "KEYS", "WHY"],
                    l.iter().map(|v| {
                        vec![
                            v.version.to_string(),
                            v.created_at.clone(),
                            v.created_by.clone(),
                            v.keys_changed.join(","),
                            v.reason.clone(),
                        ]
                    }),
                )
            });
        }
        ParamsCommand::Diff { device, from, to, app } => {
            let d: ParameterDiffView = client
                .get(&format!("/api/v1/devices/{device}/parameters/diff?app={app}&from={from}&to={to}"))
                .await?;
            out.show(&d, |d| {
                println!("device {device}: {} → {}", d.from, d.to);
                for (k, v) in &d.changed {
                    println!("  {k} = {v}");
                }
                for k in &d.removed {
                    println!("  {k} removed");
                }
            });
        }
        ParamsCommand::Report { merchant } => {
            let path = match merchant {
                Some(m) => format!("/api/v1/reports/weak-merchant-password?merchant_id={m}"),
                None => "/api/v1/reports/weak-merchant-password".to_owned(),
            };
            let list: Vec<ReportedDevice> = client.get(&path).await?;
            out.show(&list, |l| {
                println!("{} terminals with a weak merchant-menu password", l.len());
                table(
                    &["DEVICE", "NAME", "MERCHANT", "LOCATION", "WHY"],
                    l.iter().map(|d| {
                        vec![
                            d.device_id.to_string(),
                            d.name.clone(),
                            d.merchant_id.to_string(),
                            d.location_id.to_string(),
                            d.reason.clone(),
                        ]
                    }),
                );
            });
        }
    }
    Ok(())
}
