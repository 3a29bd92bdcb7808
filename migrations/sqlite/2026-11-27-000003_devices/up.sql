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
