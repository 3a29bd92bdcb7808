ALTER TABLE action_events DROP COLUMN download;
ALTER TABLE deployment_actions DROP COLUMN download;
