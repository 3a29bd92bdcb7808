ALTER TABLE parameter_set_versions DROP COLUMN sealed_with;
