//! Blob collection. Blobs are written before the rows that name them (a
//! publish uploads, then records the release), so a failure between the
//! two, a removed screenshot or icon, or an interrupted re-sealing leaves
//! blobs no row names. A pass marks each such blob, and deletes the ones
//! that stayed unreferenced for the grace period (7 days by default): a
//! backup in progress, or a publish racing the pass, never loses a blob a
//! row names. Blobs written in the last hour are not even marked.

use std::collections::{HashMap, HashSet};

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use tms_signing::Sha256Digest;

use crate::blobs::BlobStore;
use crate::db::schema::{
    app_screenshots, apps, blob_orphans, device_logs, parameter_set_versions, release_deltas, releases,
};
use crate::db::{Db, DbConnection, DbError};
use crate::error::Error;
use crate::per_backend;
use crate::time::now;

/// Blobs younger than this are never marked: their row may be on its way.
pub const YOUNG: Duration = Duration::hours(1);

/// A blob no row names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub sha256: String,
    pub size: u64,
    /// Since when it has been seen unreferenced (now, for one marked by
    /// this pass).
    pub since: NaiveDateTime,
    /// Past its grace period: deleted by this pass (or would be, dry).
    pub due: bool,
}

/// What a pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collection {
    /// Blobs in the store.
    pub blobs: usize,
    /// Unreferenced blobs, waiting or due.
    pub orphans: Vec<Orphan>,
    pub deleted: usize,
    pub deleted_bytes: u64,
}

/// Every digest a row names.
fn referenced(conn: &mut DbConnection) -> Result<HashSet<String>, DbError> {
    let mut names: HashSet<String> =
        releases::table.select(releases::artifact_sha256).load::<String>(conn)?.into_iter().collect();
    names.extend(parameter_set_versions::table.select(parameter_set_versions::sha256).load::<String>(conn)?);
    names.extend(app_screenshots::table.select(app_screenshots::sha256).load::<String>(conn)?);
    names.extend(
        release_deltas::table
            .filter(release_deltas::sha256.is_not_null())
            .select(release_deltas::sha256.assume_not_null())
            .load::<String>(conn)?,
    );
    names.extend(device_logs::table.select(device_logs::sha256).load::<String>(conn)?);
    names.extend(
        apps::table
            .filter(apps::icon_sha256.is_not_null())
            .select(apps::icon_sha256.assume_not_null())
            .load::<String>(conn)?,
    );
    Ok(names)
}

/// Whether a row names `sha256` now (checked again just before a delete).
pub(crate) fn is_referenced(conn: &mut DbConnection, sha256: &str) -> Result<bool, DbError> {
    use diesel::dsl::exists;
    let release = releases::table.filter(releases::artifact_sha256.eq(sha256));
    let set = parameter_set_versions::table.filter(parameter_set_versions::sha256.eq(sha256));
    let screenshot = app_screenshots::table.filter(app_screenshots::sha256.eq(sha256));
    let icon = apps::table.filter(apps::icon_sha256.eq(sha256));
    let delta = release_deltas::table.filter(release_deltas::sha256.eq(sha256));
    let log = device_logs::table.filter(device_logs::sha256.eq(sha256));
    Ok(diesel::select(exists(release)).get_result(conn)?
        || diesel::select(exists(set)).get_result(conn)?
        || diesel::select(exists(screenshot)).get_result(conn)?
        || diesel::select(exists(icon)).get_result(conn)?
        || diesel::select(exists(delta)).get_result(conn)?
        || diesel::select(exists(log)).get_result(conn)?)
}

/// One pass: marks new orphans, forgets marks of blobs named again or gone,
/// and deletes orphans past `grace`. `dry`: says what it would do, and
/// changes nothing.
pub async fn collect(db: &Db, blobs: &BlobStore, grace: Duration, dry: bool) -> Result<Collection, Error> {
    let (names, marks) = db
        .run(move |conn| {
            if !dry {
                let retired = crate::releases::deltas::retire_unused_bases(conn)?;
                if retired > 0 {
                    tracing::info!(retired, "retired deltas from withdrawn bases no terminal runs");
                }
            }
            let names = referenced(conn)?;
            let marks: HashMap<String, NaiveDateTime> = blob_orphans::table
                .select((blob_orphans::sha256, blob_orphans::marked_at))
                .load(conn)?
                .into_iter()
                .collect();
            Ok::<_, DbError>((names, marks))
        })
        .await?;
    let stored = blobs.list_blobs().await?;
    let at = now();
    let mut collection = Collection { blobs: stored.len(), ..Collection::default() };
    let mut unmark: Vec<String> = Vec::new();
    let mut mark: Vec<String> = Vec::new();
    let mut seen = HashSet::with_capacity(stored.len());
    for blob in &stored {
        let sha256 = blob.digest.to_hex();
        seen.insert(sha256.clone());
        if names.contains(&sha256) {
            if marks.contains_key(&sha256) {
                unmark.push(sha256);
            }
            continue;
        }
        match marks.get(&sha256) {
            Some(since) => collection.orphans.push(Orphan {
                due: *since <= at - grace,
                since: *since,
                size: blob.size,
                sha256,
            }),
            None if blob.written_at <= at - YOUNG => {
                collection.orphans.push(Orphan {
                    sha256: sha256.clone(),
                    size: blob.size,
                    since: at,
                    due: grace <= Duration::zero(),
                });
                mark.push(sha256);
            }
            None => {}
        }
    }
    // Marks of blobs no longer in the store.
    unmark.extend(marks.keys().filter(|sha| !seen.contains(*sha)).cloned());
    if dry {
        return Ok(collection);
    }
    db.run(move |conn| {
        for sha256 in &mark {
            let insert = diesel::insert_into(blob_orphans::table)
                .values((blob_orphans::sha256.eq(sha256), blob_orphans::marked_at.eq(at)))
                .on_conflict_do_nothing();
            per_backend!(conn, |c| insert.execute(c))?;
        }
        for chunk in unmark.chunks(500) {
            diesel::delete(blob_orphans::table.filter(blob_orphans::sha256.eq_any(chunk))).execute(conn)?;
        }
        Ok::<_, DbError>(())
    })
    .await?;
    for orphan in collection.orphans.iter().filter(|o| o.due) {
        let sha256 = orphan.sha256.clone();
        // A row may have come to name it since the listing: then it stays.
        let still_orphan = db
            .run(move |conn| {
                if is_referenced(conn, &sha256)? {
                    diesel::delete(blob_orphans::table.find(&sha256)).execute(conn)?;
                    return Ok::<_, DbError>(false);
                }
                Ok(true)
            })
            .await?;
        if !still_orphan {
            continue;
        }
        let digest: Sha256Digest =
            orphan.sha256.parse().map_err(|_| DbError::Corrupt(format!("blob name {}", orphan.sha256)))?;
        blobs.delete_blob(&digest).await?;
        let sha256 = orphan.sha256.clone();
        db.run(move |conn| {
            diesel::delete(blob_orphans::table.find(&sha256)).execute(conn).map_err(DbError::from)
        })
        .await?;
        collection.deleted += 1;
        collection.deleted_bytes += orphan.size;
    }
    collection.orphans.retain(|o| !o.due);
    Ok(collection)
}
