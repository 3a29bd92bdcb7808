//! Persistence: one diesel schema over SQLite and PostgreSQL.
//!
//! This module is the only place that touches the connection pool, and
//! [`Db::run`] is the only bridge from async handlers to blocking diesel calls.

pub mod audit;
pub mod schema;

diesel::define_sql_function! {
    /// SQL's `lower()`: a text search that ignores case on both backends
    /// (SQLite's folds ASCII letters only; PostgreSQL's every letter).
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::DatabaseBackend;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Runs the same diesel expression on whichever backend `conn` is, for the few
/// statements MultiBackend cannot express itself (e.g. `RETURNING`).
#[macro_export]
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $body,
            $crate::db::DbConnection::Postgres($c) => $body,
        }
    };
}

/// Serialises concurrent migration runs of several servers sharing one
/// PostgreSQL database (an arbitrary constant: "tms" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x746d73;

/// A connection to whichever backend the configuration names.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("connecting to the database: {0}")]
    Connect(#[from] ConnectionError),
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("running migrations: {0}")]
    Migration(String),
    #[error(
        "the database was migrated by a newer tms-server than this one ({server_version}): it has the \
         migrations {} that this server does not know. Run the version that migrated it, or a newer \
         one; an older server never runs against a newer schema",
        unknown.join(", ")
    )]
    SchemaNewer { server_version: &'static str, unknown: Vec<String> },
    /// A stored row or blob that does not read back as what was written
    /// (a bad version, key or schema): data changed outside the server.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("signing: {0}")]
    Signing(#[from] tms_signing::SigningError),
    /// A sealed secret that does not open (a missing master key, or data
    /// altered outside the server).
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("writing {what}: {source}")]
    Write { what: String, source: std::io::Error },
    /// A transaction that carried several callers' writes failed: each
    /// caller gets this (the cause is logged once).
    #[error("a batched write failed: {0}")]
    Batch(String),
    #[error("database task did not complete: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl DbError {
    /// Whether this is a unique-constraint violation (an insert raced another).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// Opens connections for the pool and prepares each one.
pub struct ConnectionManager {
    backend: DatabaseBackend,
    url: String,
}

impl std::fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionManager").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = DbError;

    fn connect(&self) -> Result<DbConnection, DbError> {
        match self.backend {
            DatabaseBackend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.url)?;
                // WAL lets terminals' reads proceed while a write commits; the busy
                // timeout makes concurrent writers wait instead of failing at once.
                // busy_timeout first: switching to WAL itself needs a lock that a
                // connection opened at the same moment may hold.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 5000;
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA temp_store = MEMORY;
                     PRAGMA wal_autocheckpoint = 16384;",
                )
                .map_err(DbError::Query)?;
                warn_once_without_stable_plans(&mut conn);
                Ok(DbConnection::Sqlite(conn))
            }
            DatabaseBackend::Postgres => Ok(DbConnection::Postgres(PgConnection::establish(&self.url)?)),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), DbError> {
        conn.batch_execute("SELECT 1").map_err(DbError::Query)
    }

    /// A connection given back while a closure panicked may hold an open
    /// transaction, and one whose server went away is dead: neither returns to
    /// the pool.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

/// The bundled SQLite is built with `SQLITE_ENABLE_QPSG` (.cargo/config.toml).
/// A build without it works, but re-prepares every statement with a bound
/// `LIMIT` on each execution: worth a word in the log.
fn warn_once_without_stable_plans(conn: &mut SqliteConnection) {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let options: Vec<CompileOption> =
            diesel::RunQueryDsl::load(diesel::sql_query("PRAGMA compile_options"), conn).unwrap_or_default();
        if !options.iter().any(|o| o.compile_options == "ENABLE_QPSG") {
            tracing::warn!(
                "SQLite was built without SQLITE_ENABLE_QPSG: statements are prepared again on \
                 every call, which costs CPU (build with the repository's .cargo/config.toml)"
            );
        }
    });
}

/// Pool usage, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolUse {
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
}

/// The database: a connection pool and the backend it talks to.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager>,
    backend: DatabaseBackend,
}

impl Db {
    /// Builds the pool. Connections are opened lazily: a database that goes
    /// away later makes the server not ready rather than not running.
    pub fn open(backend: DatabaseBackend, url: &str, max_size: u32) -> Result<Db, DbError> {
        if backend == DatabaseBackend::Sqlite
            && let Some(dir) = std::path::Path::new(url).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                DbError::Connect(ConnectionError::BadConnection(format!("{}: {e}", dir.display())))
            })?;
        }
        let pool = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(5))
            // A cheap `SELECT 1` on check-out weeds out connections a database
            // restart killed, so readiness recovers as soon as the database does.
            // (A SQLite file has no server to restart.)
            .test_on_check_out(backend == DatabaseBackend::Postgres)
            .build_unchecked(ConnectionManager { backend, url: url.to_owned() });
        Ok(Db { pool, backend })
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.backend
    }

    /// Copies SQLite's write-ahead log back into the database every
    /// `every`, on a thread of its own. Left to SQLite, the commit that
    /// fills the log past its threshold does the copy and its fsync, and the
    /// writer waits: a rollout's feedback writer spent its time there while
    /// the terminals it served stood idle. A passive checkpoint takes no
    /// lock writers wait on. (Connections keep a high threshold of their
    /// own, 64 MiB of log, in case this falls behind or does not run.)
    pub fn spawn_checkpoints(&self, every: Duration) {
        if self.backend != DatabaseBackend::Sqlite {
            return;
        }
        let db = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let done = db
                    .run(|conn| conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)").map_err(DbError::Query))
                    .await;
                if let Err(e) = done {
                    tracing::warn!(error = %e, "could not checkpoint the write-ahead log");
                }
            }
        });
    }

    /// Runs `f` on a pooled connection on the blocking thread pool, so diesel's
    /// synchronous calls never stall the async workers.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        // Log lines from inside `f` keep the request's span (and so its id).
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let mut conn = pool.get().map_err(DbError::from)?;
                f(&mut conn)
            })
        })
        .await
        .map_err(DbError::from)?
    }

    /// A connection for blocking code outside the async server (migrations,
    /// operator commands).
    pub fn get(&self) -> Result<PooledConnection<ConnectionManager>, DbError> {
        Ok(self.pool.get()?)
    }

    /// Applies pending migrations; returns the versions applied.
    /// Applies the pending migrations (several servers starting at once on
    /// one PostgreSQL take turns under an advisory lock: the first migrates,
    /// the others find nothing left to do). A database a newer server
    /// migrated is refused, not run against.
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.get()?;
        let applied = match &mut *conn {
            DbConnection::Sqlite(c) => {
                refuse_newer(c, SQLITE_MIGRATIONS)?;
                run_migrations(c, SQLITE_MIGRATIONS)?
            }
            DbConnection::Postgres(c) => {
                c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
                let result =
                    refuse_newer(c, POSTGRES_MIGRATIONS).and_then(|_| run_migrations(c, POSTGRES_MIGRATIONS));
                c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
                result?
            }
        };
        Ok(applied)
    }

    /// The newest migration this server carries (the same list on both
    /// backends), by name.
    pub fn latest_migration() -> String {
        Self::newest_migration(|name| name.to_string())
    }

    /// The newest migration this server carries, as a schema version (the
    /// form the database records it in, which orders as the migrations do).
    pub fn latest_version() -> String {
        Self::newest_migration(|name| name.version().to_string())
    }

    fn newest_migration(read: impl Fn(&dyn diesel::migration::MigrationName) -> String) -> String {
        use diesel::migration::MigrationSource;
        MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
            .ok()
            .and_then(|m| m.last().map(|m| read(m.name())))
            .unwrap_or_default()
    }

    /// Where the database's schema stands against this server's
    /// migrations, changing nothing.
    pub fn schema_status(&self) -> Result<SchemaStatus, DbError> {
        let mut conn = self.get()?;
        match &mut *conn {
            DbConnection::Sqlite(c) => schema_status(c, SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => schema_status(c, POSTGRES_MIGRATIONS),
        }
    }

    /// Reverts every migration (for the up → down → up test and for operators
    /// who need to start over).
    pub fn revert_all(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.get()?;
        let reverted = match &mut *conn {
            DbConnection::Sqlite(c) => c.revert_all_migrations(SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => c.revert_all_migrations(POSTGRES_MIGRATIONS),
        }
        .map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(reverted.into_iter().map(|v| v.to_string()).collect())
    }

    pub fn pool_use(&self) -> PoolUse {
        let state = self.pool.state();
        PoolUse { connections: state.connections, idle: state.idle_connections, max: self.pool.max_size() }
    }

    /// Whether a query goes through (for readiness).
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| conn.batch_execute("SELECT 1").map_err(DbError::from)).await
    }
}

/// This process's turn at SQLite's single writer, shared by its busiest
/// writers (terminal feedback and the contact flush). SQLite makes a writer
/// that finds the lock taken sleep and try again (after 1, 2, 5 … 100 ms),
/// so a report arriving during a flush waited far longer than the flush and
/// the terminals behind it stood idle; on a mutex it goes as soon as the
/// transaction before it ends. Nothing to take on PostgreSQL, whose writers
/// do not exclude one another.
#[derive(Default, Clone)]
pub struct WriteTurn(std::sync::Arc<std::sync::Mutex<()>>);

impl WriteTurn {
    pub fn take(&self, conn: &DbConnection) -> Option<std::sync::MutexGuard<'_, ()>> {
        matches!(conn, DbConnection::Sqlite(_)).then(|| self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs a change as one transaction. On SQLite it begins `IMMEDIATE`: a
/// deferred transaction that reads and then writes fails at once with
/// SQLITE_BUSY when another writer committed in between (the busy timeout
/// does not cover that case), while an immediate one waits its turn. Nested
/// calls become savepoints, as with `Connection::transaction`.
pub fn write_tx<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let outermost_sqlite = match conn {
        DbConnection::Sqlite(c) => {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::transaction_manager_status_mut(
                c,
            )
            .transaction_depth()?
            .is_none()
        }
        DbConnection::Postgres(_) => false,
    };
    if !outermost_sqlite {
        return conn.transaction(f);
    }
    if let DbConnection::Sqlite(c) = conn {
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
    }
    let result = f(conn);
    let DbConnection::Sqlite(c) = conn else { unreachable!("checked above") };
    match result {
        Ok(value) => {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::commit_transaction(c)?;
            Ok(value)
        }
        Err(e) => {
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::rollback_transaction(c)?;
            Err(e)
        }
    }
}

/// A database's schema against the migrations this server carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Applied, in order (a version is the migration's folder name up to `_`).
    pub applied: Vec<String>,
    /// This server's migrations not applied yet, in order, by folder name.
    pub pending: Vec<String>,
    /// Applied by a newer server: versions this one does not know.
    pub unknown: Vec<String>,
}

impl SchemaStatus {
    /// The newest version applied, if any.
    pub fn version(&self) -> Option<&str> {
        self.applied.last().map(String::as_str)
    }

    /// Refuses a schema a newer server migrated: this one would write its
    /// columns and meanings wrong.
    pub fn ensure_known(&self) -> Result<(), DbError> {
        if self.unknown.is_empty() {
            return Ok(());
        }
        Err(DbError::schema_newer(self.unknown.clone()))
    }
}

impl DbError {
    /// The database holds these migrations, which this server does not know.
    pub fn schema_newer(unknown: Vec<String>) -> DbError {
        DbError::SchemaNewer { server_version: env!("CARGO_PKG_VERSION"), unknown }
    }
}

fn schema_status<C>(conn: &mut C, source: EmbeddedMigrations) -> Result<SchemaStatus, DbError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    use diesel::migration::MigrationSource;
    let known =
        MigrationSource::<C::Backend>::migrations(&source).map_err(|e| DbError::Migration(e.to_string()))?;
    let mut applied: Vec<String> = conn
        .applied_migrations()
        .map_err(|e| DbError::Migration(e.to_string()))?
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    applied.sort();
    let known: Vec<(String, String)> =
        known.iter().map(|m| (m.name().version().to_string(), m.name().to_string())).collect();
    let pending = known.iter().filter(|(v, _)| !applied.contains(v)).map(|(_, name)| name.clone()).collect();
    let unknown = applied.iter().filter(|v| !known.iter().any(|(k, _)| k == *v)).cloned().collect();
    Ok(SchemaStatus { applied, pending, unknown })
}

/// A binary older than the database's schema stops before touching it.
fn refuse_newer<C>(conn: &mut C, source: EmbeddedMigrations) -> Result<(), DbError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    schema_status(conn, source)?.ensure_known()
}

/// `INSERT INTO table (columns…[, time]) SELECT … FROM a JSON array of
/// rows`, for the backend: one statement, prepared once, writes thousands of
/// rows (`columns` with their PostgreSQL types). With `time`, that column
/// takes the one bound timestamp (parameter 1) and the array is parameter
/// 2; without, the array is parameter 1.
pub fn insert_from_json(
    backend: crate::config::DatabaseBackend,
    verb: &str,
    table: &str,
    columns: &[(&str, &str)],
    time: Option<&str>,
    tail: &str,
) -> String {
    use crate::config::DatabaseBackend;
    let mut names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let (mut values, from) = match (backend, time.is_some()) {
        (DatabaseBackend::Sqlite, timed) => (
            columns.iter().map(|(name, _)| format!("value ->> '{name}'")).collect::<Vec<_>>(),
            if timed { "json_each(?2)" } else { "json_each(?1)" },
        ),
        (DatabaseBackend::Postgres, timed) => (
            columns.iter().map(|(name, ty)| format!("(r ->> '{name}')::{ty}")).collect::<Vec<_>>(),
            if timed { "json_array_elements($2::json) AS r" } else { "json_array_elements($1::json) AS r" },
        ),
    };
    if let Some(time) = time {
        names.push(time);
        values.push(match backend {
            DatabaseBackend::Sqlite => "?1".to_owned(),
            DatabaseBackend::Postgres => "$1".to_owned(),
        });
    }
    format!("{verb} INTO {table} ({}) SELECT {} FROM {from}{tail}", names.join(", "), values.join(", "))
}

fn run_migrations<C>(conn: &mut C, source: EmbeddedMigrations) -> Result<Vec<String>, DbError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.run_pending_migrations(source)
        .map(|versions| versions.into_iter().map(|v| v.to_string()).collect())
        .map_err(|e| DbError::Migration(e.to_string()))
}
