ALTER TABLE rollouts DROP COLUMN status_reason_code;
