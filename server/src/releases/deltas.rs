//! Deltas between releases, built in the background (never in the publish
//! request): for each release, from each of the `from_releases` releases of
//! the same app before it, with `tms-delta`. A delta is kept only when it
//! saves at least `min_saving_percent` of the download; every pair tried is
//! recorded, built or skipped and why, so it is tried once.

use std::collections::{BTreeMap, HashSet};

use diesel::prelude::*;
use tms_packages::wire::releases::DeltaView;
use tms_signing::Sha256Digest;

use super::ReleaseRow;
use crate::blobs::BlobStore;
use crate::db::schema::{release_deltas, releases};
use crate::db::{Db, DbConnection, DbError};
use crate::error::Error;
use crate::time::now;

pub const BUILT: &str = "built";
pub const SKIPPED: &str = "skipped";
/// A delta to a release since withdrawn: never offered again, so its blob
/// is left to blob collection.
pub const RETIRED: &str = "retired";

/// How deltas are built, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct DeltaSettings {
    /// Earlier releases of the same app each release gets a delta from.
    pub from_releases: usize,
    /// Larger bases are skipped: building holds the base and the target in
    /// memory, plus zstd's window and tables.
    pub max_base_bytes: u64,
    /// A delta that saves less than this share of the download is skipped.
    pub min_saving_percent: u64,
    pub level: i32,
}

/// The pairs (release, base) not tried yet: for each release not withdrawn,
/// the `from` releases of the same app and kind just before it (withdrawn
/// ones too: terminals may run them).
pub fn pending(conn: &mut DbConnection, from: usize) -> Result<Vec<(ReleaseRow, ReleaseRow)>, DbError> {
    let all: Vec<ReleaseRow> = releases::table
        .order((releases::app_id, releases::kind, releases::version_code))
        .select(ReleaseRow::as_select())
        .load(conn)?;
    let tried: HashSet<(i64, i64)> = release_deltas::table
        .select((release_deltas::release_id, release_deltas::base_release_id))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect();
    let mut by_app: BTreeMap<(String, String), Vec<ReleaseRow>> = BTreeMap::new();
    for release in all {
        by_app.entry((release.app_id.clone(), release.kind.clone())).or_default().push(release);
    }
    let mut pairs = Vec::new();
    for versions in by_app.values() {
        for (i, target) in versions.iter().enumerate() {
            if target.withdrawn_at.is_some() {
                continue;
            }
            for base in versions[..i].iter().rev().take(from) {
                if base.artifact_sha256 != target.artifact_sha256 && !tried.contains(&(target.id, base.id)) {
                    pairs.push((base.clone(), target.clone()));
                }
            }
        }
    }
    Ok(pairs.into_iter().map(|(base, target)| (target, base)).collect())
}

/// A writer that refuses to grow past `limit` bytes: a delta that would not
/// save enough stops being built as soon as that is known.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "the delta saves too little"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What trying one pair came to.
enum Outcome {
    Built { sha256: String, size: u64 },
    Skipped(&'static str),
}

async fn try_pair(
    blobs: &BlobStore,
    target: &ReleaseRow,
    base: &ReleaseRow,
    settings: DeltaSettings,
) -> Result<Outcome, Error> {
    if base.artifact_size as u64 > settings.max_base_bytes {
        return Ok(Outcome::Skipped("base_too_large"));
    }
    let digest = |sha: &str| {
        sha.parse::<Sha256Digest>().map_err(|_| DbError::Corrupt(format!("artifact digest {sha}")))
    };
    let base_bytes = blobs.get_bytes(&digest(&base.artifact_sha256)?).await?;
    let target_bytes = blobs.get_bytes(&digest(&target.artifact_sha256)?).await?;
    let keep_under = target_bytes.len() as u64 * (100 - settings.min_saving_percent.min(100)) / 100;
    let built = tokio::task::spawn_blocking(move || {
        let mut out = Bounded { bytes: Vec::new(), limit: keep_under as usize };
        let len = target_bytes.len() as u64;
        match tms_delta::build(&base_bytes, &mut &target_bytes[..], len, settings.level, &mut out) {
            Ok(_) => Some(out.bytes),
            Err(tms_delta::DeltaError::Io(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => None,
            Err(e) => {
                tracing::warn!(error = %e, "building a delta");
                None
            }
        }
    })
    .await
    .map_err(|e| DbError::Corrupt(format!("the delta builder stopped: {e}")))?;
    let Some(delta) = built else { return Ok(Outcome::Skipped("not_smaller")) };
    let size = delta.len() as u64;
    let sha256 = blobs.put_bytes(delta).await?.to_hex();
    Ok(Outcome::Built { sha256, size })
}

/// Retires the deltas to withdrawn releases: their rows stay (the pair is
/// not tried again), their blobs go with blob collection.
pub fn retire_withdrawn(conn: &mut DbConnection) -> Result<usize, DbError> {
    let withdrawn = releases::table.filter(releases::withdrawn_at.is_not_null()).select(releases::id);
    Ok(diesel::update(
        release_deltas::table
            .filter(release_deltas::status.eq(BUILT))
            .filter(release_deltas::release_id.eq_any(withdrawn)),
    )
    .set((
        release_deltas::status.eq(RETIRED),
        release_deltas::sha256.eq(None::<String>),
        release_deltas::reason.eq(Some("release_withdrawn")),
    ))
    .execute(conn)?)
}

/// Retires the deltas from a withdrawn base no terminal reports running
/// any more: once a base is withdrawn no terminal gets it again, so when
/// the last one has moved on its deltas serve nobody. "Reports running" is
/// the sha256 anywhere in a terminal's last reported state (apps and
/// firmware alike); that is one scan of the inventory per withdrawn base,
/// stopping at the first terminal found, so it runs with blob collection,
/// not with every delta check. Returns how many were retired.
pub fn retire_unused_bases(conn: &mut DbConnection) -> Result<usize, DbError> {
    use crate::db::schema::device_inventory;
    let withdrawn = releases::table.filter(releases::withdrawn_at.is_not_null()).select(releases::id);
    let bases: Vec<String> = release_deltas::table
        .filter(release_deltas::status.eq(BUILT))
        .filter(release_deltas::base_release_id.eq_any(withdrawn))
        .select(release_deltas::base_sha256)
        .distinct()
        .load(conn)?;
    let mut retired = 0;
    for base in bases {
        // A sha256 is hex: nothing in it is a LIKE wildcard.
        let running: Option<i64> = device_inventory::table
            .filter(device_inventory::state_json.like(format!("%{base}%")))
            .select(device_inventory::device_id)
            .first(conn)
            .optional()?;
        if running.is_some() {
            continue;
        }
        retired += diesel::update(
            release_deltas::table
                .filter(release_deltas::status.eq(BUILT))
                .filter(release_deltas::base_sha256.eq(&base)),
        )
        .set((
            release_deltas::status.eq(RETIRED),
            release_deltas::sha256.eq(None::<String>),
            release_deltas::reason.eq(Some("base_unused")),
        ))
        .execute(conn)?;
    }
    if retired > 0 {
        crate::contact::changes::record(conn, &[crate::contact::changes::Scope::Deployments])?;
    }
    Ok(retired)
}

/// Retires the deltas of withdrawn releases, then builds every pending
/// delta, one at a time; returns how many were built.
pub async fn build_pending(db: &Db, blobs: &BlobStore, settings: DeltaSettings) -> Result<usize, Error> {
    let from = settings.from_releases;
    let pairs = db
        .run(move |conn| {
            retire_withdrawn(conn)?;
            pending(conn, from)
        })
        .await?;
    let mut built = 0;
    for (target, base) in pairs {
        let outcome = try_pair(blobs, &target, &base, settings).await?;
        let (status, sha256, size, reason) = match outcome {
            Outcome::Built { sha256, size } => {
                built += 1;
                tracing::info!(
                    app_id = target.app_id,
                    from = base.version,
                    to = target.version,
                    size,
                    "delta built"
                );
                (BUILT, Some(sha256), Some(size as i64), None)
            }
            Outcome::Skipped(reason) => (SKIPPED, None, None, Some(reason)),
        };
        db.run(move |conn| {
            let insert = diesel::insert_into(release_deltas::table)
                .values((
                    release_deltas::release_id.eq(target.id),
                    release_deltas::base_release_id.eq(base.id),
                    release_deltas::base_sha256.eq(&base.artifact_sha256),
                    release_deltas::status.eq(status),
                    release_deltas::sha256.eq(sha256),
                    release_deltas::size.eq(size),
                    release_deltas::reason.eq(reason),
                    release_deltas::created_at.eq(now()),
                ))
                .on_conflict_do_nothing();
            crate::per_backend!(conn, |c| insert.execute(c))?;
            if status == BUILT {
                // Every process's contact offers it from its next snapshot.
                crate::contact::changes::record(conn, &[crate::contact::changes::Scope::Deployments])?;
            }
            Ok::<_, DbError>(())
        })
        .await?;
    }
    Ok(built)
}

/// The deltas built to these releases: (release, base sha256, delta sha256,
/// size).
pub fn built_for(
    conn: &mut DbConnection,
    release_ids: &[i64],
) -> Result<Vec<(i64, String, String, u64)>, DbError> {
    let rows: Vec<(i64, String, Option<String>, Option<i64>)> = release_deltas::table
        .filter(release_deltas::release_id.eq_any(release_ids))
        .filter(release_deltas::status.eq(BUILT))
        .select((
            release_deltas::release_id,
            release_deltas::base_sha256,
            release_deltas::sha256,
            release_deltas::size,
        ))
        .load(conn)?;
    Ok(rows.into_iter().filter_map(|(r, base, sha, size)| Some((r, base, sha?, size? as u64))).collect())
}

/// The releases a delta leads to, with its size: (release id, size).
pub fn targets_of(conn: &mut DbConnection, sha256: &str) -> Result<Vec<(i64, u64)>, DbError> {
    let rows: Vec<(i64, Option<i64>)> = release_deltas::table
        .filter(release_deltas::sha256.eq(sha256))
        .filter(release_deltas::status.eq(BUILT))
        .select((release_deltas::release_id, release_deltas::size))
        .load(conn)?;
    Ok(rows.into_iter().filter_map(|(id, size)| Some((id, size? as u64))).collect())
}

/// The deltas built to a release, newest base first.
pub fn of_release(conn: &mut DbConnection, release_id: i64) -> Result<Vec<DeltaView>, DbError> {
    let rows: Vec<(String, String, Option<String>, Option<i64>)> = release_deltas::table
        .inner_join(releases::table.on(releases::id.eq(release_deltas::base_release_id)))
        .filter(release_deltas::release_id.eq(release_id))
        .filter(release_deltas::status.eq(BUILT))
        .order(releases::version_code.desc())
        .select((
            releases::version,
            release_deltas::base_sha256,
            release_deltas::sha256,
            release_deltas::size,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(base_version, base_sha256, sha256, size)| {
            Some(DeltaView { base_version, base_sha256, sha256: sha256?, size: size? as u64 })
        })
        .collect())
}
