-- Why a rollout stands where it does, as a code and its values (JSON), so each
-- reader says it in their language; status_reason keeps the English text.
ALTER TABLE rollouts ADD COLUMN status_reason_code TEXT;
