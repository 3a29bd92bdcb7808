-- Where each stage of a rollout stood, as the supervisor counted it: the
-- last count of each minute. The console draws a stage over time from it
-- and shows the latest numbers without counting every targeted terminal
-- while a page waits.
CREATE TABLE rollout_stage_counts (
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    -- Unix minutes.
    minute BIGINT NOT NULL,
    stage INTEGER NOT NULL,
    counted_at TIMESTAMP NOT NULL,
    devices BIGINT NOT NULL,
    pending BIGINT NOT NULL,
    in_progress BIGINT NOT NULL,
    installed BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    timed_out BIGINT NOT NULL,
    failed_for_good BIGINT NOT NULL,
    postponed BIGINT NOT NULL,
    PRIMARY KEY (rollout_id, minute, stage)
);
