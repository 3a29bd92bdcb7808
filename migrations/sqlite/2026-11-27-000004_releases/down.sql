DROP TABLE releases;
DROP TABLE publisher_keys;
DROP TABLE apps;
