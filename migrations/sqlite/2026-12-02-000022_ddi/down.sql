DROP TABLE artifact_digests;
DROP TABLE ddi_targets;
ALTER TABLE deployments DROP COLUMN confirmation_required;
DROP INDEX devices_ddi_controller;
ALTER TABLE devices DROP COLUMN kind;
