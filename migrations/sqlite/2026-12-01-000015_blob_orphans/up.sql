-- Blob collection: blobs no row references, since when they were seen so.
-- A blob is deleted only once it has stayed unreferenced for the grace
-- period, so a backup in progress or a racing publish never loses one.
CREATE TABLE blob_orphans (
    sha256 TEXT PRIMARY KEY NOT NULL,
    marked_at TIMESTAMP NOT NULL
);
