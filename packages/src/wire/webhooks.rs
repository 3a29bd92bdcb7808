//! Webhook subscriptions and their delivery log.

wire! {
    /// `POST /api/v1/webhooks`.
    pub struct CreateWebhookRequest {
        /// `https://…` (plain `http://` only to this machine).
        pub url: String,
        /// `terminal.missing`, `terminal.back`, `install.failed`,
        /// `rollout.paused` (operators only), `command.failed`,
        /// `transaction.manual_status`, or `*` for all.
        pub events: Vec<String>,
    }

    pub struct WebhookView {
        pub id: i64,
        pub url: String,
        pub events: Vec<String>,
        /// The merchant whose events it gets; none: the operator's (every merchant's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub merchant_id: Option<i64>,
        pub created_at: String,
        /// The signing secret, shown once, when it is created.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub secret: Option<String>,
    }

    /// One event sent to one subscription, with how it went.
    pub struct WebhookDeliveryView {
        pub id: i64,
        /// The event's id (`TMS-Webhook-Id`): the same for every subscription.
        pub event_id: String,
        pub event: String,
        /// `pending`, `delivered` or `failed` (retries ran out).
        pub status: String,
        pub attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_status_code: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_error: Option<String>,
        pub created_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub next_attempt_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub delivered_at: Option<String>,
    }
}
