-- Apps, the publisher keys allowed to sign their releases, and the releases.
CREATE TABLE apps (
    -- The Android package name, e.g. eu.ccv.salespoint.
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    -- 'app' or 'firmware'
    kind TEXT NOT NULL,
    -- 'system' (pushed by the operator), 'store' (in the catalogue) or 'private'
    visibility TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT NOT NULL
);

CREATE TABLE publisher_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps (id),
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    name TEXT NOT NULL,
    added_at TIMESTAMP NOT NULL,
    added_by BIGINT NOT NULL,
    revoked_at TIMESTAMP,
    revoked_by BIGINT,
    UNIQUE (app_id, key_id)
);

CREATE TABLE releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps (id),
    kind TEXT NOT NULL,
    version TEXT NOT NULL,
    version_code BIGINT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_size BIGINT NOT NULL,
    -- Compatible terminal models, comma-separated.
    models TEXT NOT NULL,
    min_firmware TEXT,
    release_notes TEXT NOT NULL,
    -- The signed manifest as the publisher sent it.
    signed_manifest TEXT NOT NULL,
    key_id TEXT NOT NULL,
    published_at TIMESTAMP NOT NULL,
    published_by BIGINT NOT NULL,
    withdrawn_at TIMESTAMP,
    withdrawn_by BIGINT,
    UNIQUE (app_id, version),
    UNIQUE (app_id, version_code)
);
CREATE INDEX releases_artifact ON releases (artifact_sha256);
