-- Acquirers (transaction service providers), a merchant's contracts with
-- them, their versioned parameter sets, and the terminals' sessions.
CREATE TABLE acquirers (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- A contract applies to a whole merchant, one location, or one device.
CREATE TABLE acquirer_contracts (
    id BIGSERIAL PRIMARY KEY,
    acquirer_id TEXT NOT NULL REFERENCES acquirers (id),
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    location_id BIGINT REFERENCES locations (id),
    device_id BIGINT REFERENCES devices (id),
    acquirer_merchant_id TEXT NOT NULL,
    acquirer_terminal_id TEXT NOT NULL,
    valid_until TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX acquirer_contracts_merchant ON acquirer_contracts (merchant_id, acquirer_id);

CREATE TABLE acquirer_parameter_sets (
    id BIGSERIAL PRIMARY KEY,
    acquirer_id TEXT NOT NULL REFERENCES acquirers (id),
    version BIGINT NOT NULL,
    -- The acquirer's (EMV / card-scheme) document, kept as received.
    document TEXT NOT NULL,
    valid_until TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (acquirer_id, version)
);

CREATE TABLE acquirer_sessions (
    id BIGSERIAL PRIMARY KEY,
    device_id BIGINT NOT NULL REFERENCES devices (id),
    acquirer_id TEXT NOT NULL,
    -- 'success', 'not_found', 'expired' or 'failed'
    outcome TEXT NOT NULL,
    parameter_version BIGINT,
    occurred_at TIMESTAMP NOT NULL
);
CREATE INDEX acquirer_sessions_device ON acquirer_sessions (device_id, acquirer_id, occurred_at);
