-- A terminal's or a location's transactions, newest first, without walking the
-- whole merchant's: the portal's terminal page and its filters.
CREATE INDEX transactions_device_time ON transactions (device_id, occurred_at, id);
CREATE INDEX transactions_location_time ON transactions (location_id, occurred_at, id);
