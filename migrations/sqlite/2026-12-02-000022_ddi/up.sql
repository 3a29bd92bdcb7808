-- Devices that speak hawkBit's DDI (embedded Linux with an update agent)
-- beside Android terminals: 'android' or 'linux'. A Linux device gets
-- firmware images only: no apps, parameters, acquirer sessions or commands.
ALTER TABLE devices ADD COLUMN kind TEXT NOT NULL DEFAULT 'android';
-- A DDI device is named by its controller id (its hardware id) within the
-- tenant: one active device per controller id.
CREATE UNIQUE INDEX devices_ddi_controller ON devices (hardware_id) WHERE kind = 'linux' AND status = 'active';

-- What a DDI device has that it never reports itself: the release it
-- installed last (and the deployment, its DDI action, that brought it), and
-- the attributes it sent with configData.
-- A deployment whose action a DDI device confirms before it is delivered
-- (hawkBit's confirmation flow); Android terminals pass it by.
ALTER TABLE deployments ADD COLUMN confirmation_required BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE ddi_targets (
    device_id BIGINT PRIMARY KEY REFERENCES devices (id),
    installed_deployment_id BIGINT,
    installed_release_id BIGINT,
    -- The deployment (DDI action) it works on now: set by its first report,
    -- cleared by its last or by its answer to a cancellation.
    action_deployment_id BIGINT,
    -- Whether it confirms every action itself (hawkBit's auto-confirm), and
    -- the action needing confirmation it confirmed last.
    auto_confirm BOOLEAN NOT NULL DEFAULT FALSE,
    confirmed_deployment_id BIGINT,
    attributes_json TEXT NOT NULL DEFAULT '{}',
    attributes_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);

-- The sha1 and md5 of an artifact, which DDI clients check beside the
-- sha256 that names it: computed once, on first need.
CREATE TABLE artifact_digests (
    sha256 TEXT PRIMARY KEY,
    sha1 TEXT NOT NULL,
    md5 TEXT NOT NULL
);
