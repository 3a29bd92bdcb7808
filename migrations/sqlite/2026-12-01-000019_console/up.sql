-- Contacts counted per minute, for the console's fleet overview: each flush
-- adds its minute's count, whatever process it runs in.
CREATE TABLE contact_minutes (
    minute BIGINT PRIMARY KEY NOT NULL,
    contacts BIGINT NOT NULL
);
-- The console's fleet search: by serial prefix, by model and by firmware,
-- each in device order for keyset pages.
CREATE INDEX devices_hardware ON devices (hardware_id, id);
CREATE INDEX devices_model ON devices (model, id);
CREATE INDEX device_inventory_firmware ON device_inventory (firmware, device_id);
