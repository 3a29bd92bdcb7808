//! The sha1 and md5 of an artifact: DDI clients check them beside the
//! sha256 (which alone names a blob here and is what publishers sign).
//! Computed once per artifact, streaming it in constant memory, on the first
//! DDI deployment that offers it; kept in the database from then on.

use diesel::prelude::*;
use futures_util::StreamExt;
use md5::Digest as _;
use tms_signing::Sha256Digest;

use crate::blobs::BlobStore;
use crate::db::schema::artifact_digests;
use crate::db::{Db, DbConnection};
use crate::error::Error;
use crate::per_backend;

/// (sha1, md5) of an artifact, in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyDigests {
    pub sha1: String,
    pub md5: String,
}

fn stored(conn: &mut DbConnection, sha256: &str) -> Result<Option<LegacyDigests>, Error> {
    Ok(artifact_digests::table
        .find(sha256)
        .select((artifact_digests::sha1, artifact_digests::md5))
        .first::<(String, String)>(conn)
        .optional()?
        .map(|(sha1, md5)| LegacyDigests { sha1, md5 }))
}

/// The digests of the artifact `sha256`, computed from the blob when no one
/// computed them yet.
pub async fn of(db: &Db, blobs: &BlobStore, sha256: &Sha256Digest) -> Result<LegacyDigests, Error> {
    let hex = sha256.to_hex();
    let key = hex.clone();
    if let Some(found) = db.run(move |conn| stored(conn, &key)).await? {
        return Ok(found);
    }
    let mut sha1 = sha1::Sha1::new();
    let mut md5 = md5::Md5::new();
    let mut stream = blobs.read_range(sha256, None).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(crate::blobs::StorageError::from)?;
        sha1.update(&chunk);
        md5.update(&chunk);
    }
    let digests = LegacyDigests { sha1: hex::encode(sha1.finalize()), md5: hex::encode(md5.finalize()) };
    let row = digests.clone();
    db.run(move |conn| {
        let insert = diesel::insert_into(artifact_digests::table)
            .values((
                artifact_digests::sha256.eq(&hex),
                artifact_digests::sha1.eq(&row.sha1),
                artifact_digests::md5.eq(&row.md5),
            ))
            .on_conflict_do_nothing();
        per_backend!(conn, |c| insert.execute(c)).map_err(Error::from)
    })
    .await?;
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // RFC 1321 and FIPS 180-1 test vectors.
        assert_eq!(hex::encode(md5::Md5::digest(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex::encode(sha1::Sha1::digest(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
