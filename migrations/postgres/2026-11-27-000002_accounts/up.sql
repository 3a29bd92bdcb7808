-- Merchants and everything the account side of the TMS knows about them.

CREATE TABLE merchants (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE locations (
    id BIGSERIAL PRIMARY KEY,
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    name TEXT NOT NULL,
    address_line1 TEXT NOT NULL,
    address_line2 TEXT NOT NULL DEFAULT '',
    postal_code TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL,
    -- The address normalised, so that an order to the same place finds it.
    address_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (merchant_id, address_key)
);

CREATE TABLE orders (
    id BIGSERIAL PRIMARY KEY,
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    location_id BIGINT NOT NULL REFERENCES locations (id),
    created_by BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- The registered estate: terminals ordered for a merchant, before and after
-- their payment app is activated.
CREATE TABLE terminals (
    id BIGSERIAL PRIMARY KEY,
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    location_id BIGINT NOT NULL REFERENCES locations (id),
    order_id BIGINT NOT NULL REFERENCES orders (id),
    serial TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    registered_at TIMESTAMP NOT NULL
);
CREATE INDEX terminals_merchant ON terminals (merchant_id, location_id);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    -- 'operator' (payment provider staff) or 'merchant'
    kind TEXT NOT NULL,
    operator_role TEXT,
    merchant_id BIGINT REFERENCES merchants (id),
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    -- Merchant-wide permissions, comma-separated.
    permissions TEXT NOT NULL DEFAULT '',
    -- 'invited' until a password is set, then 'active'.
    status TEXT NOT NULL,
    totp_secret TEXT,
    totp_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    -- The last TOTP time step accepted, so a code is never accepted twice.
    totp_last_step BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX users_merchant ON users (merchant_id);

CREATE TABLE recovery_codes (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

-- Session tokens (from a login) and API tokens (for automation); only their
-- sha256 is stored.
CREATE TABLE user_tokens (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX user_tokens_user ON user_tokens (user_id);

-- Single-use links that let a user set a password (account activation, invitations).
CREATE TABLE activation_tokens (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);

CREATE TABLE user_groups (
    id BIGSERIAL PRIMARY KEY,
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (merchant_id, name)
);

CREATE TABLE group_members (
    group_id BIGINT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE group_grants (
    group_id BIGINT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    location_id BIGINT NOT NULL REFERENCES locations (id) ON DELETE CASCADE,
    permissions TEXT NOT NULL,
    PRIMARY KEY (group_id, location_id)
);

-- Failed logins, per account and per client address, for throttling. Kept in
-- the database so that every server process sees the same counts.
CREATE TABLE login_failures (
    id BIGSERIAL PRIMARY KEY,
    throttle_key TEXT NOT NULL,
    failed_at TIMESTAMP NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (throttle_key, failed_at);
CREATE INDEX login_failures_time ON login_failures (failed_at);

ALTER TABLE audit_events ADD COLUMN actor_user_id BIGINT;
ALTER TABLE audit_events ADD COLUMN merchant_id BIGINT;
ALTER TABLE audit_events ADD COLUMN source_ip TEXT;
CREATE INDEX audit_events_merchant ON audit_events (merchant_id, occurred_at);
CREATE INDEX audit_events_actor ON audit_events (actor_user_id, occurred_at);
