//! Outgoing e-mail: through SMTP when configured, otherwise into an outbox
//! folder in the data directory, so the flows that send mail work with no
//! configuration at all.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{Message, SmtpTransport, Transport};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("smtp_url: {0}")]
    SmtpUrl(String),
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("sending over SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("writing to the outbox {path}: {source}")]
    Outbox { path: PathBuf, source: std::io::Error },
    #[error("mail task did not complete: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One message to one person.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Clone)]
enum Delivery {
    Outbox(PathBuf),
    Smtp(SmtpTransport),
}

#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    delivery: Delivery,
}

impl Mailer {
    pub fn from_config(config: &Config) -> Result<Mailer, MailError> {
        let from = parse_mailbox(&config.mail_from)?;
        let delivery = match &config.smtp_url {
            Some(url) => Delivery::Smtp(
                SmtpTransport::from_url(url).map_err(|e| MailError::SmtpUrl(e.to_string()))?.build(),
            ),
            None => Delivery::Outbox(config.data_dir.join("outbox")),
        };
        Ok(Mailer { from, delivery })
    }

    /// Where mail goes, for the start-up log.
    pub fn description(&self) -> String {
        match &self.delivery {
            Delivery::Outbox(dir) => format!("outbox {}", dir.display()),
            Delivery::Smtp(_) => "SMTP".to_owned(),
        }
    }

    /// Sends one message; the SMTP conversation runs off the async threads.
    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(parse_mailbox(&mail.to)?)
            .subject(&mail.subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.body.clone())?;
        match &self.delivery {
            Delivery::Smtp(transport) => {
                let transport = transport.clone();
                tokio::task::spawn_blocking(move || transport.send(&message)).await??;
                tracing::info!(to = %mail.to, subject = %mail.subject, "e-mail sent");
            }
            Delivery::Outbox(dir) => {
                let path = dir.join(format!(
                    "{}-{:08x}.eml",
                    crate::time::now().format("%Y%m%dT%H%M%S%.6fZ"),
                    rand::random::<u32>()
                ));
                let outbox_error = |source| MailError::Outbox { path: path.clone(), source };
                tokio::fs::create_dir_all(dir).await.map_err(outbox_error)?;
                // The message as sent wraps long lines (quoted-printable), which
                // breaks links: a plain copy beside it reads and clicks as is.
                let plain = format!("To: {}\nSubject: {}\n\n{}\n", mail.to, mail.subject, mail.body);
                let plain_path = path.with_extension("txt");
                tokio::fs::write(&plain_path, plain)
                    .await
                    .map_err(|source| MailError::Outbox { path: plain_path.clone(), source })?;
                tokio::fs::write(&path, message.formatted()).await.map_err(outbox_error)?;
                tracing::info!(to = %mail.to, subject = %mail.subject, path = %path.display(), "e-mail written to the outbox");
            }
        }
        Ok(())
    }
}

fn parse_mailbox(address: &str) -> Result<Mailbox, MailError> {
    address.parse().map_err(|e: lettre::address::AddressError| MailError::Address {
        address: address.to_owned(),
        reason: e.to_string(),
    })
}
