-- Secrets at rest are sealed under the server's master key. A parameter
-- set's blob records the key that sealed it (NULL: written in clear before
-- sealing), so a key rotation finds what to re-seal without reading blobs.
ALTER TABLE parameter_set_versions ADD COLUMN sealed_with TEXT;
