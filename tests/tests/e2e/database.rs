//! Migrations and queries through the one schema, on both backends.

use serde_json::json;
use tms_e2e::backend_test;
use tms_server::db::{DbError, audit};

backend_test!(migrations_go_up_down_and_up_again, |db| {
    let pool = db.pool();
    let applied = pool.migrate().unwrap();
    assert!(!applied.is_empty());
    assert!(pool.migrate().unwrap().is_empty(), "a second run applies nothing");
    let reverted = pool.revert_all().unwrap();
    assert_eq!(reverted.len(), applied.len());
    assert_eq!(pool.migrate().unwrap(), applied);
});

backend_test!(audit_events_round_trip, |db| {
    let pool = db.pool();
    pool.migrate().unwrap();
    let stored = pool
        .run(|conn| {
            let first = audit::record(
                conn,
                &audit::NewAuditEvent::now(
                    "support@psp.example",
                    "device.deactivate",
                    "device:7",
                    &json!({"why": "broken screen"}),
                ),
            )?;
            audit::record(conn, &audit::NewAuditEvent::now("ops", "device.rename", "device:7", &json!({})))?;
            audit::record(conn, &audit::NewAuditEvent::now("ops", "device.rename", "device:8", &json!({})))?;
            Ok::<_, DbError>(first)
        })
        .await
        .unwrap();
    assert!(stored.id > 0);
    assert_eq!(stored.detail, r#"{"why":"broken screen"}"#);

    let events = pool.run(|conn| audit::for_subject(conn, "device:7", 10)).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].action, "device.rename", "newest first");
    assert_eq!(events[1], stored);
});

#[tokio::test]
async fn sqlite_connections_enforce_foreign_keys_and_use_wal() {
    let db = tms_e2e::TestDatabase::sqlite();
    let pool = db.pool();
    pool.migrate().unwrap();
    let (fk, mode) = pool
        .run(|conn| {
            use diesel::prelude::*;
            #[derive(QueryableByName)]
            struct Fk {
                #[diesel(sql_type = diesel::sql_types::Integer)]
                foreign_keys: i32,
            }
            #[derive(QueryableByName)]
            struct Mode {
                #[diesel(sql_type = diesel::sql_types::Text)]
                journal_mode: String,
            }
            let fk: Fk = diesel::sql_query("PRAGMA foreign_keys").get_result(conn)?;
            let mode: Mode = diesel::sql_query("PRAGMA journal_mode").get_result(conn)?;
            Ok::<_, DbError>((fk.foreign_keys, mode.journal_mode))
        })
        .await
        .unwrap();
    assert_eq!(fk, 1);
    assert_eq!(mode, "wal");
}
