// One schema for both backends: column types are the ones SQLite and
// PostgreSQL share through diesel's MultiBackend.

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        actor -> Text,
        action -> Text,
        subject -> Text,
        detail -> Text,
    }
}
