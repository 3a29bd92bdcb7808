-- Devices: a payment app (Salespoint on a terminal, Tap&Go on a phone)
-- activated at a location under a name.
CREATE TABLE devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    location_id BIGINT NOT NULL REFERENCES locations (id),
    -- The registered terminal (Salespoint); NULL for a phone (Tap&Go).
    terminal_id BIGINT REFERENCES terminals (id),
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    -- Terminal serial, or the install id of the app on a phone.
    hardware_id TEXT NOT NULL,
    model TEXT NOT NULL,
    -- 'active', 'deactivated' or 'replaced'
    status TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    replaces_device_id BIGINT,
    replaced_by_device_id BIGINT,
    activated_by BIGINT NOT NULL,
    activated_at TIMESTAMP NOT NULL,
    deactivated_at TIMESTAMP,
    last_contact_at TIMESTAMP
);
-- A name is unique among a merchant's active devices only: a deactivated
-- device's name is free for its replacement.
CREATE UNIQUE INDEX devices_active_name ON devices (merchant_id, name) WHERE status = 'active';
CREATE INDEX devices_merchant ON devices (merchant_id, location_id);
-- One active device per terminal or phone.
CREATE UNIQUE INDEX devices_active_hardware ON devices (merchant_id, app, hardware_id) WHERE status = 'active';

-- Which user is logged in to the app on which device; a user with an open
-- session on an active device is "in use" and cannot be changed or deleted.
CREATE TABLE device_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    device_id BIGINT NOT NULL REFERENCES devices (id),
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    started_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP
);
CREATE INDEX device_sessions_user ON device_sessions (user_id, ended_at);

-- Step one of activation hands the app a short-lived ticket; step two spends it.
CREATE TABLE activation_tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    ticket_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    app TEXT NOT NULL,
    hardware_id TEXT NOT NULL,
    model TEXT NOT NULL,
    terminal_id BIGINT REFERENCES terminals (id),
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);

CREATE TABLE transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    -- The device that owns the history now (a replacement inherits it), and
    -- the one that uploaded it.
    device_id BIGINT NOT NULL REFERENCES devices (id),
    original_device_id BIGINT NOT NULL REFERENCES devices (id),
    -- The terminal serial or phone install id it came from: with the
    -- terminal's own id it recognises a retried upload, even one sent again
    -- after the app was activated anew on the same hardware.
    hardware_id TEXT NOT NULL,
    location_id BIGINT NOT NULL REFERENCES locations (id),
    terminal_tx_id TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    tx_type TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    acquirer TEXT NOT NULL,
    masked_card TEXT NOT NULL,
    -- What the terminal determined ('success', 'failure', 'cancelled', 'unknown').
    status TEXT NOT NULL,
    -- Set by hand on the terminal for a failed or unknown transaction; the
    -- automatic status above is kept.
    manual_status TEXT,
    manual_set_by BIGINT,
    manual_set_at TIMESTAMP,
    receipt_printed BOOLEAN NOT NULL,
    uploaded_at TIMESTAMP NOT NULL,
    UNIQUE (merchant_id, hardware_id, terminal_tx_id)
);
CREATE INDEX transactions_merchant_time ON transactions (merchant_id, occurred_at, id);
CREATE INDEX transactions_device ON transactions (device_id, terminal_tx_id);
