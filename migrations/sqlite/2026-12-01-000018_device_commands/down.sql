DROP INDEX device_contacts_at;
DROP TABLE merchant_missing_thresholds;
DROP TABLE missing_devices;
DROP TABLE device_health;
DROP TABLE device_logs;
DROP TABLE command_batches;
DROP TABLE device_commands;
