ALTER TABLE devices ADD COLUMN last_contact_at TIMESTAMP;
UPDATE devices SET last_contact_at =
    (SELECT contacted_at FROM device_contacts WHERE device_contacts.device_id = devices.id);
DROP TABLE device_contacts;
