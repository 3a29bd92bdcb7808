//! Backups that restore: a consistent snapshot of the database taken while
//! the server serves (SQLite's `VACUUM INTO`; `pg_dump` on PostgreSQL),
//! every blob of the object store checked against its name (blobs are
//! content-addressed: a blob's name is its sha256), and a manifest saying
//! which server and schema made it. A restore goes into an empty place only.
//!
//! ```text
//! DIR/manifest.json          written last: a folder without it is no backup
//! DIR/database.sqlite3       or DIR/database.pgdump (pg_dump's custom format)
//! DIR/blobs/<sha256>         one file per blob
//! ```

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use tms_signing::{Sha256Digest, Sha256Hasher};

use crate::blobs::BlobStore;
use crate::config::DatabaseBackend;
use crate::db::{Db, DbConnection, DbError, SchemaStatus};

/// The layout this server writes and reads.
pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SQLITE_FILE: &str = "database.sqlite3";
const PG_DUMP_FILE: &str = "database.pgdump";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Refused(String),
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the object store: {0}")]
    Blobs(#[from] object_store::Error),
    #[error("{tool}: {message}")]
    Tool { tool: &'static str, message: String },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io { what, path: path.to_owned(), source }
}

/// What a backup holds, written beside it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The tms-server that made it.
    pub server_version: String,
    /// The newest migration of the database it holds.
    pub schema_version: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub database_file: String,
    pub created_at: String,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// Where a backup goes: a folder that does not exist yet or is empty.
fn empty_folder(path: &Path, what: &str) -> Result<(), BackupError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Refused(format!(
                    "{} is not empty: {what} goes into an empty folder only",
                    path.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::Io { what: "reading", path: path.to_owned(), source: e }),
    }
}

fn backend_name(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Sqlite => "sqlite",
        DatabaseBackend::Postgres => "postgres",
    }
}

/// Takes a backup into `out` while the server may be serving: the database
/// first (a consistent snapshot), then every blob (blobs never change once
/// written, so each the snapshot names is there), then the manifest.
pub async fn backup(
    db: &Db,
    backend: DatabaseBackend,
    database_url: &str,
    blobs: &BlobStore,
    out: &Path,
) -> Result<Manifest, BackupError> {
    empty_folder(out, "a backup")?;
    std::fs::create_dir_all(out.join("blobs")).map_err(io("creating", out))?;
    let status = db.schema_status()?;
    status.ensure_known()?;
    let schema_version = status.version().unwrap_or_default().to_owned();
    let database_file = match backend {
        DatabaseBackend::Sqlite => {
            let target = out.join(SQLITE_FILE);
            let path = target
                .to_str()
                .ok_or_else(|| BackupError::Refused("the backup folder's path is not UTF-8".into()))?
                .to_owned();
            db.run(move |conn| {
                let DbConnection::Sqlite(c) = conn else { unreachable!("a SQLite database") };
                // A read transaction of its own: writers go on meanwhile.
                diesel::RunQueryDsl::execute(
                    diesel::sql_query("VACUUM INTO ?").bind::<diesel::sql_types::Text, _>(path),
                    c,
                )
                .map_err(DbError::from)
            })
            .await?;
            SQLITE_FILE
        }
        DatabaseBackend::Postgres => {
            let target = out.join(PG_DUMP_FILE);
            run_tool(
                "pg_dump",
                tokio::process::Command::new("pg_dump")
                    .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
                    .arg(&target)
                    .arg(format!("--dbname={database_url}")),
            )
            .await?;
            PG_DUMP_FILE
        }
    };
    let (count, bytes) = copy_blobs_out(blobs.object_store(), &out.join("blobs")).await?;
    let manifest = Manifest {
        format: FORMAT,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version,
        backend: backend_name(backend).to_owned(),
        database_file: database_file.to_owned(),
        created_at: crate::time::rfc3339(crate::time::now()),
        blobs: count,
        blob_bytes: bytes,
    };
    let path = out.join(MANIFEST);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"))
        .map_err(io("writing", &path))?;
    Ok(manifest)
}

async fn run_tool(tool: &'static str, command: &mut tokio::process::Command) -> Result<(), BackupError> {
    let out = command.stdin(std::process::Stdio::null()).output().await.map_err(|e| BackupError::Tool {
        tool,
        message: format!(
            "could not run it ({e}): install the PostgreSQL client tools of the server's version"
        ),
    })?;
    if !out.status.success() {
        return Err(BackupError::Tool {
            tool,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// The blobs' prefix in the object store.
fn blob_prefix() -> object_store::path::Path {
    object_store::path::Path::from("blobs/sha256")
}

/// Copies every blob into `dir`, each checked against its name on the way.
async fn copy_blobs_out(
    store: &std::sync::Arc<dyn ObjectStore>,
    dir: &Path,
) -> Result<(u64, u64), BackupError> {
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut listing = store.list(Some(&blob_prefix()));
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let Some(name) = meta.location.filename().filter(|n| n.len() == 64) else { continue };
        let name = name.to_owned();
        let target = dir.join(&name);
        let mut file = tokio::fs::File::create(&target).await.map_err(io("creating", &target))?;
        let mut hash = Sha256Hasher::new();
        let mut stream = store.get(&meta.location).await?.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hash.update(&chunk);
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(io("writing", &target))?;
            bytes += chunk.len() as u64;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(io("writing", &target))?;
        if hash.finish().to_hex() != name {
            return Err(BackupError::Refused(format!(
                "the stored blob {name} does not hash to its name: the object store was changed outside the server"
            )));
        }
        count += 1;
    }
    Ok((count, bytes))
}

/// Reads a backup's manifest.
pub fn manifest(from: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::Refused(format!(
            "{} has no {MANIFEST}: not a backup, or one that did not finish",
            from.display()
        )),
        _ => BackupError::Io { what: "reading", path: path.clone(), source: e },
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| BackupError::Refused(format!("{} is not a backup manifest: {e}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Refused(format!(
            "the backup's format {} is not this server's ({FORMAT})",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Where a restore goes, checked empty before anything is written.
pub struct RestoreTarget<'a> {
    pub backend: DatabaseBackend,
    pub database_url: &'a str,
    /// The SQLite file, when the database is SQLite.
    pub sqlite_path: Option<&'a Path>,
    pub data_dir: &'a Path,
}

/// Restores a backup into an empty data directory and an empty database,
/// then checks the database holds the schema the manifest names. The
/// server migrates it forward at its next start if it is older than the
/// server.
pub async fn restore(
    from: &Path,
    target: &RestoreTarget<'_>,
    open: impl FnOnce() -> Result<(Db, BlobStore), BackupError>,
) -> Result<Manifest, BackupError> {
    let manifest = manifest(from)?;
    if manifest.backend != backend_name(target.backend) {
        return Err(BackupError::Refused(format!(
            "the backup holds a {} database and this server is set up for {}: restore it into the same kind",
            manifest.backend,
            backend_name(target.backend)
        )));
    }
    if manifest.schema_version > Db::latest_version() {
        return Err(DbError::schema_newer(vec![manifest.schema_version.clone()]).into());
    }
    // Everything checked before anything is written.
    empty_folder(target.data_dir, "a restore")?;
    if let Some(path) = target.sqlite_path
        && path.exists()
    {
        return Err(BackupError::Refused(format!(
            "there is a database at {} already: a restore goes into an empty place only",
            path.display()
        )));
    }
    std::fs::create_dir_all(target.data_dir).map_err(io("creating", target.data_dir))?;
    if let Some(path) = target.sqlite_path {
        let source = from.join(SQLITE_FILE);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::copy(&source, path).map_err(io("copying", &source))?;
    }
    let (db, blobs) = open()?;
    if target.backend == DatabaseBackend::Postgres {
        let tables: i64 = db
            .run(|conn| {
                use diesel::RunQueryDsl;
                #[derive(diesel::QueryableByName)]
                struct Count {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                let count: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = current_schema()",
                )
                .get_result(conn)?;
                Ok::<_, DbError>(count.n)
            })
            .await?;
        if tables > 0 {
            return Err(BackupError::Refused(format!(
                "the database has {tables} tables already: a restore goes into an empty database only"
            )));
        }
    }
    let store = blobs.object_store();
    if store.list(Some(&blob_prefix())).next().await.is_some() {
        return Err(BackupError::Refused(format!(
            "the object store {} holds blobs already: a restore goes into an empty one only",
            blobs.description()
        )));
    }
    if target.backend == DatabaseBackend::Postgres {
        let dump = from.join(PG_DUMP_FILE);
        run_tool(
            "pg_restore",
            tokio::process::Command::new("pg_restore")
                .args(["--no-owner", "--no-privileges", "--exit-on-error"])
                .arg(format!("--dbname={}", target.database_url))
                .arg(&dump),
        )
        .await?;
    }
    copy_blobs_in(&from.join("blobs"), &blobs).await?;
    let status: SchemaStatus = db.schema_status()?;
    if status.version() != Some(manifest.schema_version.as_str()) {
        return Err(BackupError::Refused(format!(
            "the restored database is at schema {}, the manifest says {}: the backup is damaged",
            status.version().unwrap_or("empty"),
            manifest.schema_version
        )));
    }
    Ok(manifest)
}

/// Puts every blob of the backup into the store, streamed and checked
/// against its name.
async fn copy_blobs_in(dir: &Path, blobs: &BlobStore) -> Result<u64, BackupError> {
    let mut count = 0;
    let entries = std::fs::read_dir(dir).map_err(io("reading", dir))?;
    for entry in entries {
        let path = entry.map_err(io("reading", dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let Ok(digest) = name.parse::<Sha256Digest>() else {
            return Err(BackupError::Refused(format!("{} is not a blob of a backup", path.display())));
        };
        let file = tokio::fs::File::open(&path).await.map_err(io("reading", &path))?;
        let chunks = Box::pin(futures_util::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 1 << 20];
            match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        }));
        let staged = blobs
            .stage(chunks, u64::MAX)
            .await
            .map_err(|e| BackupError::Refused(format!("storing the blob {name}: {e}")))?;
        if staged.digest != digest {
            blobs.discard(staged).await;
            return Err(BackupError::Refused(format!(
                "the backup's blob {name} does not hash to its name: the backup is damaged"
            )));
        }
        blobs
            .commit(staged)
            .await
            .map_err(|e| BackupError::Refused(format!("storing the blob {name}: {e}")))?;
        count += 1;
    }
    Ok(count)
}
