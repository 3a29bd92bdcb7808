-- Deltas from earlier releases of the same app to each release, built in
-- the background: one row per pair tried, built or skipped (and why), so
-- a pair is tried once.
CREATE TABLE release_deltas (
    release_id INTEGER NOT NULL REFERENCES releases (id),
    base_release_id INTEGER NOT NULL REFERENCES releases (id),
    base_sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    sha256 TEXT,
    size BIGINT,
    reason TEXT,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (release_id, base_release_id)
);
-- The contact finds a release's delta from what a terminal runs.
CREATE INDEX release_deltas_base ON release_deltas (release_id, base_sha256);
