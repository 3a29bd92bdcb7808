-- The keys the server signs its answers to terminals with. Terminals trust
-- the published public keys; a retired key still verifies answers it signed
-- until they expire, but signs nothing new.
CREATE TABLE server_keys (
    key_id TEXT PRIMARY KEY NOT NULL,
    private_pem TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP
);
