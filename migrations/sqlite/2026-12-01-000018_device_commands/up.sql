-- Commands support and merchants send to terminals, delivered in the
-- contact answer until the terminal reports a result, expires or is
-- cancelled.
CREATE TABLE device_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    device_id BIGINT NOT NULL REFERENCES devices (id),
    kind TEXT NOT NULL,
    message TEXT,
    log_name TEXT,
    log_since TIMESTAMP,
    log_until TIMESTAMP,
    log_max_bytes BIGINT,
    state TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    batch_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    delivered_at TIMESTAMP,
    finished_at TIMESTAMP,
    error_code TEXT,
    result_message TEXT
);
-- The contact finds a terminal's open commands; support lists them.
CREATE INDEX device_commands_device ON device_commands (device_id, state);
-- Expiry finds open commands past their time.
CREATE INDEX device_commands_expiry ON device_commands (state, expires_at);
-- A group command reaches each terminal once, whichever process fans it out.
CREATE UNIQUE INDEX device_commands_batch ON device_commands (batch_id, device_id);

-- One command for many terminals: fanned out by a background task, a
-- bounded number of terminals per second, in device id order.
CREATE TABLE command_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT,
    log_name TEXT,
    log_since TIMESTAMP,
    log_until TIMESTAMP,
    log_max_bytes BIGINT,
    issued_by TEXT NOT NULL,
    merchant_scope BIGINT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    next_device_id BIGINT NOT NULL,
    queued BIGINT NOT NULL,
    fanned_out_at TIMESTAMP
);

-- Logs terminals uploaded for collect_logs commands, deleted from the
-- object store after their retention.
CREATE TABLE device_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    device_id BIGINT NOT NULL REFERENCES devices (id),
    command_id BIGINT NOT NULL UNIQUE REFERENCES device_commands (id),
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_encoding TEXT,
    uploaded_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX device_logs_device ON device_logs (device_id);
CREATE INDEX device_logs_expiry ON device_logs (expires_at);

-- The latest health a terminal reported (battery, network, printer,
-- uptime), written with the batched contact records.
CREATE TABLE device_health (
    device_id BIGINT PRIMARY KEY NOT NULL REFERENCES devices (id),
    health_json TEXT NOT NULL,
    free_storage_bytes BIGINT NOT NULL,
    reported_at TIMESTAMP NOT NULL
);

-- Terminals not heard from for longer than their merchant's threshold,
-- until their next contact.
CREATE TABLE missing_devices (
    device_id BIGINT PRIMARY KEY NOT NULL REFERENCES devices (id),
    merchant_id BIGINT NOT NULL,
    last_contact_at TIMESTAMP NOT NULL,
    missing_since TIMESTAMP NOT NULL
);
CREATE INDEX missing_devices_merchant ON missing_devices (merchant_id);
-- A merchant's own threshold, where it differs from missing_after_hours.
CREATE TABLE merchant_missing_thresholds (
    merchant_id BIGINT PRIMARY KEY NOT NULL REFERENCES merchants (id),
    hours BIGINT NOT NULL
);
-- The hour of each terminal's last contact, for the missing pass to read
-- only the terminals whose last contact crossed a threshold since the
-- previous pass. Apart from device_contacts and coarse on purpose: the
-- contact flush rewrites a row (and its index entry) once an hour per
-- terminal, not at every contact.
CREATE TABLE device_contact_hours (
    device_id BIGINT PRIMARY KEY NOT NULL REFERENCES devices (id),
    hour BIGINT NOT NULL
);
CREATE INDEX device_contact_hours_hour ON device_contact_hours (hour);
INSERT INTO device_contact_hours (device_id, hour)
    SELECT device_id, CAST(strftime('%s', contacted_at) AS BIGINT) / 3600 FROM device_contacts;

-- Webhook subscriptions: an operator's (every merchant's events) or a
-- merchant's (its own), with a signing secret sealed by the master key.
CREATE TABLE webhook_subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    merchant_id BIGINT REFERENCES merchants (id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_by BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    deleted_at TIMESTAMP
);
-- The outbox: one row per (event, subscription), written in the
-- transaction that raises the event, delivered by a background task.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    subscription_id BIGINT NOT NULL REFERENCES webhook_subscriptions (id),
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    delivered_at TIMESTAMP
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id);
