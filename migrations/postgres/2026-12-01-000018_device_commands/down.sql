DROP TABLE device_logs;
DROP TABLE command_batches;
DROP TABLE device_commands;
