//! Webhooks: operators and merchant admins subscribe an HTTPS URL to
//! events. An event is written to the outbox (`webhook_deliveries`) in the
//! transaction that raises it, so none is lost on a crash and none is sent
//! for a change rolled back; a background task delivers it, signed, and
//! tries again with growing delays for a day. Delivery is at least once:
//! receivers tell repeats apart by `TMS-Webhook-Id`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::{Value, json};
use tms_packages::accounts::OperatorRole;
use tms_packages::webhooks::{RETRY_FOR_SECS, check_events, check_url, is_merchant_event, retry_delay_secs};
use tms_packages::wire::webhooks::{CreateWebhookRequest, WebhookDeliveryView, WebhookView};

use crate::accounts::access::{Actor, Role};
use crate::db::schema::{webhook_deliveries, webhook_subscriptions};
use crate::db::{Db, DbConnection, DbError, audit};
use crate::error::Error;
use crate::secrets::MasterKeys;
use crate::time::{now, rfc3339};

/// What the signing secret is sealed for.
pub const SEALED_PURPOSE: &str = "webhook_secret";
const PENDING: &str = "pending";
const DELIVERED: &str = "delivered";
const FAILED: &str = "failed";
/// A delivery being sent is claimed for this long: another process (or
/// this one after a crash) sends it again only after.
const CLAIM_SECS: i64 = 120;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_subscriptions)]
struct SubscriptionRow {
    id: i64,
    merchant_id: Option<i64>,
    url: String,
    events: String,
    created_at: NaiveDateTime,
}

impl SubscriptionRow {
    fn view(&self, secret: Option<String>) -> WebhookView {
        WebhookView {
            id: self.id,
            url: self.url.clone(),
            events: self.events.split(',').map(str::to_owned).collect(),
            merchant_id: self.merchant_id,
            created_at: rfc3339(self.created_at),
            secret,
        }
    }
}

/// Whose subscriptions the caller manages: the operator's (operator
/// admins) or its merchant's (that merchant's admins).
fn owner(actor: &Actor) -> Result<Option<i64>, Error> {
    match &actor.role {
        Role::Operator(_) => actor.require_operator(&[OperatorRole::OperatorAdmin]).map(|_| None),
        Role::Merchant(m) if m.is_admin => Ok(Some(m.merchant_id)),
        Role::Merchant(_) => Err(Error::forbidden("a merchant's admins manage its webhooks")),
    }
}

/// Subscribes a URL; the answer carries the signing secret, once.
pub fn create(
    conn: &mut DbConnection,
    actor: &Actor,
    keys: &MasterKeys,
    request: &CreateWebhookRequest,
) -> Result<WebhookView, Error> {
    let merchant = owner(actor)?;
    let url = check_url(&request.url).map_err(|m| Error::invalid("url", m))?;
    let events =
        check_events(&request.events, merchant.is_some()).map_err(|m| Error::invalid("events", m))?;
    let secret = format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()));
    crate::db::write_tx(conn, |conn| {
        let insert = diesel::insert_into(webhook_subscriptions::table).values((
            webhook_subscriptions::merchant_id.eq(merchant),
            webhook_subscriptions::url.eq(url.as_str()),
            webhook_subscriptions::events.eq(events.join(",")),
            webhook_subscriptions::secret.eq(keys.seal_text(SEALED_PURPOSE, &secret)),
            webhook_subscriptions::created_by.eq(actor.user_id),
            webhook_subscriptions::created_at.eq(now()),
        ));
        let id: i64 =
            crate::per_backend!(conn, |c| insert.returning(webhook_subscriptions::id).get_result(c))?;
        let subject = format!("webhook:{id}");
        audit::record(
            conn,
            &actor.audit(
                "webhook.create",
                &subject,
                merchant,
                &json!({"url": url.as_str(), "events": events}),
            ),
        )?;
        let row = find(conn, id)?.ok_or_else(|| Error::not_found("webhook"))?;
        Ok(row.view(Some(secret.clone())))
    })
}

fn find(conn: &mut DbConnection, id: i64) -> Result<Option<SubscriptionRow>, DbError> {
    Ok(webhook_subscriptions::table
        .find(id)
        .filter(webhook_subscriptions::deleted_at.is_null())
        .select(SubscriptionRow::as_select())
        .first(conn)
        .optional()?)
}

/// A subscription of the caller's, or 404.
fn owned(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<SubscriptionRow, Error> {
    let merchant = owner(actor)?;
    find(conn, id)?.filter(|s| s.merchant_id == merchant).ok_or_else(|| Error::not_found("webhook"))
}

pub fn list(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<WebhookView>, Error> {
    let merchant = owner(actor)?;
    let rows: Vec<SubscriptionRow> = webhook_subscriptions::table
        .filter(webhook_subscriptions::deleted_at.is_null())
        .order(webhook_subscriptions::id)
        .select(SubscriptionRow::as_select())
        .load(conn)?;
    Ok(rows.iter().filter(|r| r.merchant_id == merchant).map(|r| r.view(None)).collect())
}

/// Unsubscribes: nothing more is sent to it, pending deliveries included.
pub fn delete(conn: &mut DbConnection, actor: &Actor, id: i64) -> Result<(), Error> {
    crate::db::write_tx(conn, |conn| {
        let row = owned(conn, actor, id)?;
        diesel::update(webhook_subscriptions::table.find(id))
            .set(webhook_subscriptions::deleted_at.eq(now()))
            .execute(conn)?;
        diesel::update(
            webhook_deliveries::table
                .filter(webhook_deliveries::subscription_id.eq(id))
                .filter(webhook_deliveries::status.eq(PENDING)),
        )
        .set((webhook_deliveries::status.eq(FAILED), webhook_deliveries::last_error.eq("unsubscribed")))
        .execute(conn)?;
        let subject = format!("webhook:{id}");
        audit::record(
            conn,
            &actor.audit("webhook.delete", &subject, row.merchant_id, &json!({"url": row.url})),
        )?;
        Ok(())
    })
}

/// A subscription's deliveries, newest first.
pub fn deliveries(
    conn: &mut DbConnection,
    actor: &Actor,
    id: i64,
    limit: i64,
) -> Result<Vec<WebhookDeliveryView>, Error> {
    owned(conn, actor, id)?;
    type Row = (
        i64,
        String,
        String,
        String,
        i32,
        Option<i32>,
        Option<String>,
        NaiveDateTime,
        NaiveDateTime,
        Option<NaiveDateTime>,
    );
    let rows: Vec<Row> = webhook_deliveries::table
        .filter(webhook_deliveries::subscription_id.eq(id))
        .order(webhook_deliveries::id.desc())
        .limit(limit.clamp(1, 500))
        .select((
            webhook_deliveries::id,
            webhook_deliveries::event_id,
            webhook_deliveries::event,
            webhook_deliveries::status,
            webhook_deliveries::attempts,
            webhook_deliveries::last_status_code,
            webhook_deliveries::last_error,
            webhook_deliveries::created_at,
            webhook_deliveries::next_attempt_at,
            webhook_deliveries::delivered_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, event_id, event, status, attempts, code, error, created, next, delivered)| {
            WebhookDeliveryView {
                next_attempt_at: (status == PENDING).then(|| rfc3339(next)),
                id,
                event_id,
                event,
                status,
                attempts: attempts.max(0) as u32,
                last_status_code: code.map(|c| c.clamp(0, 999) as u16),
                last_error: error,
                created_at: rfc3339(created),
                delivered_at: delivered.map(rfc3339),
            }
        })
        .collect())
}

/// Raises an event: one delivery per subscription that wants it (the
/// operator's, and the merchant's own for an event about its terminals).
/// Call inside the transaction that makes the change: rolled back, it was
/// never raised.
pub fn enqueue(
    conn: &mut DbConnection,
    event: &str,
    merchant_id: Option<i64>,
    data: Value,
) -> Result<usize, DbError> {
    let subscriptions: Vec<(i64, Option<i64>, String)> = webhook_subscriptions::table
        .filter(webhook_subscriptions::deleted_at.is_null())
        .select((
            webhook_subscriptions::id,
            webhook_subscriptions::merchant_id,
            webhook_subscriptions::events,
        ))
        .load(conn)?;
    let wanting: Vec<i64> = subscriptions
        .into_iter()
        .filter(|(_, owner, events)| {
            let theirs = match owner {
                None => true,
                Some(m) => is_merchant_event(event) && merchant_id == Some(*m),
            };
            theirs && events.split(',').any(|e| e == event)
        })
        .map(|(id, _, _)| id)
        .collect();
    if wanting.is_empty() {
        return Ok(0);
    }
    let at = now();
    let event_id = format!("evt_{}", hex::encode(rand::random::<[u8; 12]>()));
    let body = json!({
        "id": event_id,
        "type": event,
        "occurred_at": rfc3339(at),
        "merchant_id": merchant_id,
        "data": data,
    })
    .to_string();
    for subscription_id in &wanting {
        diesel::insert_into(webhook_deliveries::table)
            .values((
                webhook_deliveries::subscription_id.eq(subscription_id),
                webhook_deliveries::event_id.eq(&event_id),
                webhook_deliveries::event.eq(event),
                webhook_deliveries::body.eq(&body),
                webhook_deliveries::status.eq(PENDING),
                webhook_deliveries::attempts.eq(0),
                webhook_deliveries::next_attempt_at.eq(at),
                webhook_deliveries::created_at.eq(at),
            ))
            .execute(conn)?;
    }
    Ok(wanting.len())
}

/// A delivery claimed for sending.
struct Claimed {
    id: i64,
    url: String,
    secret: String,
    event_id: String,
    event: String,
    body: String,
    attempts: i32,
    created_at: NaiveDateTime,
}

/// Claims up to `limit` due deliveries: each is pushed `CLAIM_SECS` ahead
/// first, conditionally, so of several processes one sends it.
fn claim_due(conn: &mut DbConnection, limit: i64) -> Result<Vec<Claimed>, DbError> {
    let at = now();
    type Due = (i64, NaiveDateTime, String, String, String, String, i32, NaiveDateTime, String);
    let due: Vec<Due> = webhook_deliveries::table
        .inner_join(webhook_subscriptions::table)
        .filter(webhook_deliveries::status.eq(PENDING))
        .filter(webhook_deliveries::next_attempt_at.le(at))
        .order(webhook_deliveries::next_attempt_at)
        .limit(limit)
        .select((
            webhook_deliveries::id,
            webhook_deliveries::next_attempt_at,
            webhook_subscriptions::url,
            webhook_subscriptions::secret,
            webhook_deliveries::event_id,
            webhook_deliveries::body,
            webhook_deliveries::attempts,
            webhook_deliveries::created_at,
            webhook_deliveries::event,
        ))
        .load(conn)?;
    let mut claimed = Vec::with_capacity(due.len());
    for (id, next, url, secret, event_id, body, attempts, created_at, event) in due {
        let won = diesel::update(
            webhook_deliveries::table
                .find(id)
                .filter(webhook_deliveries::status.eq(PENDING))
                .filter(webhook_deliveries::next_attempt_at.eq(next)),
        )
        .set(webhook_deliveries::next_attempt_at.eq(at + chrono::Duration::seconds(CLAIM_SECS)))
        .execute(conn)?;
        if won == 1 {
            claimed.push(Claimed { id, url, secret, event_id, event, body, attempts, created_at });
        }
    }
    Ok(claimed)
}

/// Records how a sending went: delivered on a 2xx; otherwise tried again
/// after a growing delay, until a day after the event.
fn record_attempt(
    conn: &mut DbConnection,
    claimed: &Claimed,
    code: Option<u16>,
    error: Option<String>,
) -> Result<(), DbError> {
    let at = now();
    let attempts = claimed.attempts + 1;
    let delivered = code.is_some_and(|c| (200..300).contains(&c));
    let next = at + chrono::Duration::seconds(retry_delay_secs(attempts as u32));
    let gave_up = !delivered && next > claimed.created_at + chrono::Duration::seconds(RETRY_FOR_SECS);
    let status = if delivered {
        DELIVERED
    } else if gave_up {
        FAILED
    } else {
        PENDING
    };
    diesel::update(webhook_deliveries::table.find(claimed.id))
        .set((
            webhook_deliveries::status.eq(status),
            webhook_deliveries::attempts.eq(attempts),
            webhook_deliveries::next_attempt_at.eq(next),
            webhook_deliveries::last_status_code.eq(code.map(i32::from)),
            webhook_deliveries::last_error.eq(error),
            webhook_deliveries::delivered_at.eq(delivered.then_some(at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// One round of the delivery task: sends what is due, in parallel, each
/// signed with its subscription's secret. Returns how many were sent.
pub async fn deliver_due(
    db: &Db,
    http: &reqwest::Client,
    keys: &MasterKeys,
    limit: i64,
) -> Result<usize, Error> {
    let claimed = db.run(move |conn| claim_due(conn, limit)).await?;
    let sent = claimed.len();
    let sends = claimed.into_iter().map(|c| async move {
        let outcome = match keys.open_text(SEALED_PURPOSE, &c.secret) {
            Ok(secret) => {
                let timestamp = crate::time::unix_now();
                let signature =
                    tms_signing::webhook_signature(secret.as_bytes(), timestamp, c.body.as_bytes());
                let response = http
                    .post(&c.url)
                    .header("content-type", "application/json")
                    .header("user-agent", concat!("tms-server/", env!("CARGO_PKG_VERSION")))
                    .header("tms-webhook-id", &c.event_id)
                    .header("tms-webhook-event", &c.event)
                    .header("tms-webhook-timestamp", timestamp.to_string())
                    .header("tms-webhook-signature", signature)
                    .body(c.body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) => {
                        let code = r.status().as_u16();
                        ((Some(code)), (!r.status().is_success()).then(|| format!("answered {code}")))
                    }
                    Err(e) => (None, Some(short_error(&e))),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, delivery = c.id, "cannot open a webhook secret");
                (None, Some("the subscription's secret cannot be opened".to_owned()))
            }
        };
        (c, outcome)
    });
    let results = futures_util::future::join_all(sends).await;
    db.run(move |conn| {
        for (claimed, (code, error)) in &results {
            record_attempt(conn, claimed, *code, error.clone())?;
        }
        Ok::<_, DbError>(())
    })
    .await?;
    Ok(sent)
}

/// What went wrong with a sending, without the URL (the log shows it).
fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}
