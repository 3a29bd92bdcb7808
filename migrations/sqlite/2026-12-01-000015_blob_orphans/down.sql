DROP TABLE blob_orphans;
