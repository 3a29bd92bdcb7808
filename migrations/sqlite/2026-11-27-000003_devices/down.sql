DROP TABLE transactions;
DROP TABLE activation_tickets;
DROP TABLE device_sessions;
DROP TABLE devices;
