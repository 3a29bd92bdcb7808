-- Which way a terminal fetched a release: a delta, or the full artifact.
ALTER TABLE deployment_actions ADD COLUMN download TEXT;
ALTER TABLE action_events ADD COLUMN download TEXT;
