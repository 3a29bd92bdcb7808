-- The store listing of an app: what a merchant sees in the catalogue.
ALTER TABLE apps ADD COLUMN summary TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN category TEXT NOT NULL DEFAULT '';
-- Images are content-addressed blobs in object storage.
ALTER TABLE apps ADD COLUMN icon_sha256 TEXT;
ALTER TABLE apps ADD COLUMN icon_content_type TEXT;

CREATE TABLE app_screenshots (
    id BIGSERIAL PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (id),
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    added_at TIMESTAMP NOT NULL
);
CREATE INDEX app_screenshots_app ON app_screenshots (app_id);

-- The merchants a private app is offered to.
CREATE TABLE app_merchants (
    app_id TEXT NOT NULL REFERENCES apps (id),
    merchant_id BIGINT NOT NULL REFERENCES merchants (id),
    granted_at TIMESTAMP NOT NULL,
    granted_by BIGINT NOT NULL,
    PRIMARY KEY (app_id, merchant_id)
);

-- 'operator' or 'store' (a merchant's install or uninstall, for merchant_id).
ALTER TABLE deployments ADD COLUMN origin TEXT NOT NULL DEFAULT 'operator';
ALTER TABLE deployments ADD COLUMN merchant_id BIGINT REFERENCES merchants (id);
CREATE INDEX deployments_store ON deployments (merchant_id, app_id);
