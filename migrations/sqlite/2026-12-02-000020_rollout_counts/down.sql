DROP TABLE rollout_stage_counts;
