//! Webhook subscriptions and their delivery log.

use clap::Subcommand;
use reqwest::Method;
use tms_packages::wire::webhooks::*;

use crate::client::Client;
use crate::output::{Output, table};

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Subscribe an HTTPS URL to events; prints the signing secret once
    Add {
        url: String,
        /// Comma-separated: terminal.missing, terminal.back, install.failed, rollout.paused,
        /// command.failed, transaction.manual_status, or * for all
        #[arg(long, value_delimiter = ',', default_value = "*")]
        events: Vec<String>,
    },
    /// Your subscriptions (an operator's, or your merchant's)
    List,
    /// Unsubscribe
    Remove { id: i64 },
    /// What was sent to a subscription: events, attempts, the receiver's answers
    Deliveries {
        id: i64,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

pub async fn webhook(client: &Client, command: WebhookCommand, out: Output) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Add { url, events } => {
            let body = CreateWebhookRequest { url, events };
            let view: WebhookView = client.call(Method::POST, "/api/v1/webhooks", Some(&body)).await?;
            out.show(&view, |w| {
                println!("id      {}", w.id);
                println!("url     {}", w.url);
                println!("events  {}", w.events.join(", "));
                if let Some(secret) = &w.secret {
                    println!("secret  {secret}");
                    eprintln!("Keep the secret: it is shown once. Receivers check each delivery's signature with it.");
                }
            });
        }
        WebhookCommand::List => {
            let list: Vec<WebhookView> = client.get("/api/v1/webhooks").await?;
            out.show(&list, |l| {
                table(
                    &["ID", "URL", "EVENTS", "CREATED"],
                    l.iter().map(|w| {
                        vec![w.id.to_string(), w.url.clone(), w.events.join(","), w.created_at.clone()]
                    }),
                )
            });
        }
        WebhookCommand::Remove { id } => {
            client
                .call::<serde_json::Value>(Method::DELETE, &format!("/api/v1/webhooks/{id}"), None::<&()>)
                .await?;
            eprintln!("unsubscribed webhook {id}");
        }
        WebhookCommand::Deliveries { id, limit } => {
            let list: Vec<WebhookDeliveryView> =
                client.get(&format!("/api/v1/webhooks/{id}/deliveries?limit={limit}")).await?;
            out.show(&list, |l| {
                table(
                    &["ID", "EVENT", "EVENT ID", "STATUS", "ATTEMPTS", "LAST ANSWER", "CREATED", "DELIVERED"],
                    l.iter().map(|d| {
                        let answer = match (&d.last_status_code, &d.last_error) {
                            (Some(code), _) => code.to_string(),
                            (None, Some(e)) => e.clone(),
                            (None, None) => "-".into(),
                        };
                        vec![
                            d.id.to_string(),
                            d.event.clone(),
                            d.event_id.clone(),
                            d.status.clone(),
                            d.attempts.to_string(),
                            answer,
                            d.created_at.clone(),
                            d.delivered_at.clone().unwrap_or_else(|| "-".into()),
                        ]
                    }),
                )
            });
        }
    }
    Ok(())
}
