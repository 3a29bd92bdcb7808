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
        Some(TestDatabase {
            backend: Backend::Postgres,
            url: url.to_string(),
            _dir: None,
            postgres_name: Some(name),
        })
    }
}

impl TestDatabase {
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

/// A user's open app session on a device, recorded as the terminal API
/// records it; `end` logs the user out there.
pub struct DeviceSession {
    url: String,
    backend: Backend,
    session_id: i64,
}

fn open(backend: Backend, url: &str) -> tms_server::db::Db {
    let (backend, url) = match backend {
        Backend::Sqlite => {
            (tms_server::config::DatabaseBackend::Sqlite, url.trim_start_matches("sqlite://").to_owned())
        }
        Backend::Postgres => (tms_server::config::DatabaseBackend::Postgres, url.to_owned()),
    };
    tms_server::db::Db::open(backend, &url, 1).expect("open test database")
}

/// Puts `user_id` logged in on a new active device named `name`.
pub fn device_session(
    db: &TestDatabase,
    merchant_id: i64,
    location_id: i64,
    user_id: i64,
    name: &str,
) -> DeviceSession {
    use diesel::prelude::*;
    use tms_server::db::schema::{device_sessions, devices};
    let pool = open(db.backend, &db.url);
    let mut conn = pool.get().expect("connection");
    let now = chrono::Utc::now().naive_utc();
    diesel::insert_into(devices::table)
        .values((
            devices::merchant_id.eq(merchant_id),
            devices::location_id.eq(location_id),
            devices::app.eq("salespoint"),
            devices::name.eq(name),
            devices::hardware_id.eq(format!("TEST-{}", rand::random::<u32>())),
            devices::model.eq("A920"),
            devices::status.eq("active"),
            devices::token_hash.eq(format!("{:064x}", rand::random::<u128>())),
            devices::activated_by.eq(user_id),
            devices::activated_at.eq(now),
        ))
        .execute(&mut *conn)
        .expect("insert device");
    let device_id: i64 = devices::table
        .filter(devices::name.eq(name))
        .select(devices::id)
        .order(devices::id.desc())
        .first(&mut *conn)
        .expect("device id");
    diesel::insert_into(device_sessions::table)
        .values((
            device_sessions::device_id.eq(device_id),
            device_sessions::user_id.eq(user_id),
            device_sessions::started_at.eq(now),
        ))
        .execute(&mut *conn)
        .expect("insert session");
    let session_id: i64 = device_sessions::table
        .filter(device_sessions::device_id.eq(device_id))
        .select(device_sessions::id)
        .first(&mut *conn)
        .expect("session id");
    DeviceSession { url: db.url.clone(), backend: db.backend, session_id }
}

impl DeviceSession {
    pub fn end(self) {
        use diesel::prelude::*;
        use tms_server::db::schema::device_sessions;
        let pool = open(self.backend, &self.url);
        let mut conn = pool.get().expect("connection");
        diesel::update(device_sessions::table.find(self.session_id))
            .set(device_sessions::ended_at.eq(chrono::Utc::now().naive_utc()))
            .execute(&mut *conn)
            .expect("end session");
    }
}
