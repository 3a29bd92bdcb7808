DROP TABLE device_sessions;
DROP TABLE devices;
