DROP TABLE parameter_set_versions;
DROP TABLE parameter_schemas;
