-- Fleet safety: what a terminal was offered and until when it has to act,
-- its failed attempts and when it may be offered again, per deployment.
ALTER TABLE deployment_actions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployment_actions ADD COLUMN postponements INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployment_actions ADD COLUMN offered_at TIMESTAMP;
ALTER TABLE deployment_actions ADD COLUMN deadline_at TIMESTAMP;
ALTER TABLE deployment_actions ADD COLUMN retry_at TIMESTAMP;
ALTER TABLE deployment_actions ADD COLUMN failed_for_good BOOLEAN NOT NULL DEFAULT 0;
-- A failure reported before is one failed attempt.
UPDATE deployment_actions SET attempts = 1
    WHERE status = 'failed' AND COALESCE(error_code, '') <> 'release_withdrawn';
-- The contact's slow path reads a terminal's holds: a tiny index, for few
-- terminals have any.
CREATE INDEX deployment_actions_holds ON deployment_actions (device_id)
    WHERE retry_at IS NOT NULL OR failed_for_good;
-- The supervisor finds the offers past their deadline.
CREATE INDEX deployment_actions_deadlines ON deployment_actions (deadline_at)
    WHERE deadline_at IS NOT NULL;
-- Failed attempts per deployment, counted on each failure report.
CREATE INDEX deployment_actions_attempts ON deployment_actions (deployment_id)
    WHERE attempts > 0 AND status <> 'installed';

ALTER TABLE deployments ADD COLUMN retry_delays TEXT NOT NULL DEFAULT '0,3600,21600,86400';
ALTER TABLE deployments ADD COLUMN max_postpones INTEGER NOT NULL DEFAULT 10;

-- The terminals in the stages a rollout reached, as its last evaluation
-- counted them: a failure report checks a share limit against it.
ALTER TABLE rollouts ADD COLUMN reached_devices BIGINT;
