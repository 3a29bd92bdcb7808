DROP TABLE release_deltas;
