use std::sync::atomic::{AtomicU32, Ordering};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use tempfile::TempDir;

/// The PostgreSQL server tests create their databases on.
fn admin_url() -> String {
    std::env::var("TMS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of its own for one test, removed when dropped.
pub struct TestDatabase {
    pub backend: Backend,
    /// What `TMS_DATABASE_URL` should be set to.
    pub url: String,
    _dir: Option<TempDir>,
    postgres_name: Option<String>,
}

impl TestDatabase {
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::Builder::new().prefix("tms-db-").tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("tms.sqlite").display());
        TestDatabase { backend: Backend::Sqlite, url, _dir: Some(dir), postgres_name: None }
    }

    /// A fresh PostgreSQL database, or `None` where there is no PostgreSQL
    /// server and this is not CI.
    pub fn postgres() -> Option<TestDatabase> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin = admin_url();
        let mut conn = crate::require(
            "PostgreSQL",
            PgConnection::establish(&admin).map_err(|e| format!("{admin}: {e}")),
        )?;
        let name = format!(
            "tms_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        conn.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
        let mut url = url::Url::parse(&admin).expect("admin URL is a URL");
        url.set_path(&name);
        // libpq negotiates TLS whenever the server offers it: on this host
        // that encrypted every query for nothing, a quarter of the server's
        // CPU in the benchmark's storm. A URL that names its own mode keeps it.
        let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if local && !url.query_pairs().any(|(k, _)| k == "sslmode") {
            url.query_pairs_mut().append_pair("sslmode", "disable");
        }
        Some(TestDatabase {
            backend: Backend::Postgres,
            url: url.to_string(),
            _dir: None,
            postgres_name: Some(name),
        })
    }
}

impl TestDatabase {
    /// A fresh, empty database of the same backend (to restore into, say).
    pub fn another(&self) -> TestDatabase {
        match self.backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => TestDatabase::postgres().expect("PostgreSQL, as for this database"),
        }
    }

    /// A connection pool on this database, for tests that call the server's
    /// library directly.
    pub fn pool(&self) -> tms_server::db::Db {
        let (backend, url) = match self.backend {
            Backend::Sqlite => (
                tms_server::config::DatabaseBackend::Sqlite,
                self.url.trim_start_matches("sqlite://").to_owned(),
            ),
            Backend::Postgres => (tms_server::config::DatabaseBackend::Postgres, self.url.clone()),
        };
        tms_server::db::Db::open(backend, &url, 4).expect("open pool")
    }

    /// Takes a PostgreSQL database away under a running server (an outage).
    pub fn postgres_outage(&self) {
        let name = self.postgres_name.as_deref().expect("a PostgreSQL test database");
        let mut conn = PgConnection::establish(&admin_url()).expect("admin connection");
        conn.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).expect("drop test database");
    }

    /// Brings it back (empty).
    pub fn postgres_recover(&self) {
        let name = self.postgres_name.as_deref().expect("a PostgreSQL test database");
        let mut conn = PgConnection::establish(&admin_url()).expect("admin connection");
        conn.batch_execute(&format!("CREATE DATABASE {name}")).expect("recreate test database");
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.postgres_name
            && let Ok(mut conn) = PgConnection::establish(&admin_url())
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}
