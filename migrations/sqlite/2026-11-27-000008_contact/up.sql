-- The TMS contact: what terminals report, deployments and their rollouts,
-- device groups, the feedback on each change, and the log of changes every
-- server process follows to keep its contact caches true.

-- The last state each device reported (written in batches, off the request path).
CREATE TABLE device_inventory (
    device_id BIGINT PRIMARY KEY NOT NULL REFERENCES devices (id),
    firmware TEXT NOT NULL,
    -- The reported TerminalState as JSON, and its digest.
    state_json TEXT NOT NULL,
    digest TEXT NOT NULL,
    wifi BOOLEAN NOT NULL,
    time_zone TEXT NOT NULL,
    utc_offset_minutes INTEGER NOT NULL,
    free_storage_bytes BIGINT NOT NULL,
    reported_at TIMESTAMP NOT NULL
);

-- Static groups list their devices; dynamic groups have a filter.
-- Deployments to a location find its devices without scanning the fleet.
CREATE INDEX devices_location ON devices (location_id);

CREATE TABLE device_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    filter TEXT,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT NOT NULL
);

CREATE TABLE device_group_members (
    group_id BIGINT NOT NULL REFERENCES device_groups (id) ON DELETE CASCADE,
    device_id BIGINT NOT NULL REFERENCES devices (id),
    PRIMARY KEY (group_id, device_id)
);

CREATE TABLE deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps (id),
    -- NULL for an app removal.
    release_id BIGINT REFERENCES releases (id),
    -- 'everyone', 'merchant', 'location', 'group' or 'devices'
    target_kind TEXT NOT NULL,
    target_id BIGINT,
    action TEXT NOT NULL,
    pinned BOOLEAN NOT NULL,
    starts_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    window_start_min INTEGER,
    window_end_min INTEGER,
    wifi_only BOOLEAN NOT NULL,
    -- 'active' or 'cancelled'
    status TEXT NOT NULL,
    -- A rollback reaches the devices its rollout reached: that rollout's
    -- bucket seed and the stage it had.
    rollback_of BIGINT REFERENCES deployments (id),
    scope_seed BIGINT,
    scope_bp INTEGER,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT NOT NULL,
    created_by_email TEXT NOT NULL
);
CREATE INDEX deployments_status ON deployments (status, app_id);

CREATE TABLE deployment_devices (
    deployment_id BIGINT NOT NULL REFERENCES deployments (id),
    device_id BIGINT NOT NULL REFERENCES devices (id),
    PRIMARY KEY (deployment_id, device_id)
);

-- One rollout per deployment. Its stage is one number: raising it is one
-- write whatever the fleet's size.
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    deployment_id BIGINT NOT NULL UNIQUE REFERENCES deployments (id),
    -- Stages in basis points of the target, comma-separated.
    stages TEXT NOT NULL,
    current_stage INTEGER NOT NULL,
    success_bp INTEGER NOT NULL,
    -- A count of failures, or basis points of the stage's devices.
    max_failures INTEGER NOT NULL,
    max_failures_is_bp BOOLEAN NOT NULL,
    -- Failures counted before the last resume: a resumed rollout is judged
    -- on failures after it.
    failures_forgiven INTEGER NOT NULL DEFAULT 0,
    auto_advance BOOLEAN NOT NULL,
    -- 'running', 'waiting_approval', 'paused', 'halted', 'completed', 'rolled_back'
    status TEXT NOT NULL,
    status_reason TEXT,
    rollback_deployment_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Where each device is with each deployment, and every step it reported.
CREATE TABLE deployment_actions (
    deployment_id BIGINT NOT NULL REFERENCES deployments (id),
    device_id BIGINT NOT NULL REFERENCES devices (id),
    status TEXT NOT NULL,
    progress_percent INTEGER,
    error_code TEXT,
    message TEXT,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (deployment_id, device_id)
);
CREATE INDEX deployment_actions_status ON deployment_actions (status, updated_at);

CREATE TABLE action_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    deployment_id BIGINT NOT NULL REFERENCES deployments (id),
    device_id BIGINT NOT NULL REFERENCES devices (id),
    app_id TEXT NOT NULL,
    status TEXT NOT NULL,
    progress_percent INTEGER,
    error_code TEXT,
    message TEXT,
    occurred_at TIMESTAMP NOT NULL
);
CREATE INDEX action_events_device ON action_events (device_id, id);

-- Every change that can alter some terminal's target, with the scope it
-- touches ('everyone', 'merchant', 'location', 'device'). The sequence row
-- is updated in the same transaction, so sequence numbers follow commit
-- order and a process that read up to N has missed nothing below it.
CREATE TABLE contact_sequence (
    id INTEGER PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL
);
INSERT INTO contact_sequence (id, seq) VALUES (1, 0);

CREATE TABLE contact_changes (
    seq BIGINT PRIMARY KEY NOT NULL,
    scope TEXT NOT NULL,
    scope_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX contact_changes_created ON contact_changes (created_at);
