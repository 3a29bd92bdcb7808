-- When each device last called, apart from the device itself. The contact
-- service writes these in batches of a hundred thousand and more on a large
-- fleet: rewriting a narrow row touches a sixth of the pages the wide
-- devices row did, and a REPLACE into it is a statement SQLite prepares once.
-- (INTEGER PRIMARY KEY: the row id itself, no second index.)
CREATE TABLE device_contacts (
    device_id INTEGER PRIMARY KEY NOT NULL REFERENCES devices (id),
    contacted_at TIMESTAMP NOT NULL
);
INSERT INTO device_contacts (device_id, contacted_at)
    SELECT id, last_contact_at FROM devices WHERE last_contact_at IS NOT NULL;
ALTER TABLE devices DROP COLUMN last_contact_at;
