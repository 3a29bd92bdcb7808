DROP TABLE artifact_digests;
DROP TABLE ddi_targets;
DROP INDEX devices_ddi_controller;
ALTER TABLE devices DROP COLUMN kind;
