DROP INDEX device_inventory_firmware;
DROP INDEX devices_model;
DROP INDEX devices_hardware;
DROP TABLE contact_minutes;
