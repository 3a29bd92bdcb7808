-- Parameter schemas of apps (the terminal's own settings are built in).
CREATE TABLE parameter_schemas (
    app_id TEXT NOT NULL REFERENCES apps (id),
    version BIGINT NOT NULL,
    schema_json TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT NOT NULL,
    PRIMARY KEY (app_id, version)
);

-- Every change of the values one level sets for one scope (scope 0 for the
-- global level) is a new version; its content is a JSON blob in object
-- storage, named by its sha256. Older versions stay readable.
CREATE TABLE parameter_set_versions (
    id BIGSERIAL PRIMARY KEY,
    app_id TEXT NOT NULL,
    level TEXT NOT NULL,
    scope_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT NOT NULL,
    created_by_email TEXT NOT NULL,
    reason TEXT NOT NULL,
    UNIQUE (app_id, level, scope_id, version)
);
