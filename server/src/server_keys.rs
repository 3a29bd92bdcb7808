//! The server's answer-signing keys: created on first start, rotated by the
//! operator (`tms-server keys rotate`), published for terminals.
//!
//! The private keys live in the database, sealed under the master key, so
//! that every server process sharing it signs with the same key.

use diesel::prelude::*;
use tms_packages::wire::server_keys::{ServerKeyView, ServerKeys};
use tms_signing::PrivateKey;

use crate::db::schema::server_keys;
use crate::db::{DbConnection, DbError};
use crate::secrets::MasterKeys;

/// Where the private keys are kept, bound to their sealing.
pub const SEALED_PURPOSE: &str = "server_keys.private_pem";
use crate::time::{now, rfc3339};

fn insert_new(conn: &mut DbConnection, keys: &MasterKeys) -> Result<String, DbError> {
    let key = PrivateKey::generate();
    let public = key.public_key();
    diesel::insert_into(server_keys::table)
        .values((
            server_keys::key_id.eq(public.key_id()),
            server_keys::private_pem.eq(keys.seal_text(SEALED_PURPOSE, &key.to_pem()?)),
            server_keys::public_key.eq(public.to_hex()),
            server_keys::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(public.key_id())
}

/// Makes sure a current key exists (first start); returns its id.
pub fn ensure_current(conn: &mut DbConnection, keys: &MasterKeys) -> Result<String, DbError> {
    crate::db::write_tx(conn, |conn| match current_id(conn)? {
        Some(id) => Ok(id),
        None => insert_new(conn, keys),
    })
}

fn current_id(conn: &mut DbConnection) -> Result<Option<String>, DbError> {
    Ok(server_keys::table
        .filter(server_keys::retired_at.is_null())
        .order((server_keys::created_at.desc(), server_keys::key_id.desc()))
        .select(server_keys::key_id)
        .first(conn)
        .optional()?)
}

/// Retires every current key and makes a new one; returns its id.
pub fn rotate(conn: &mut DbConnection, keys: &MasterKeys) -> Result<String, DbError> {
    crate::db::write_tx(conn, |conn| {
        diesel::update(server_keys::table.filter(server_keys::retired_at.is_null()))
            .set(server_keys::retired_at.eq(now()))
            .execute(conn)?;
        // Every server process picks the new key up from the change log.
        crate::contact::changes::record(conn, &[crate::contact::changes::Scope::Keys])?;
        let id = insert_new(conn, keys)?;
        let detail = serde_json::json!({"key_id": id});
        crate::db::audit::record(
            conn,
            &crate::db::audit::NewAuditEvent::now(
                "tms-server keys rotate",
                "keys.rotate",
                "answer-keys",
                &detail,
            ),
        )?;
        Ok(id)
    })
}

/// The key to sign new answers with.
pub fn current_signing_key(conn: &mut DbConnection, keys: &MasterKeys) -> Result<PrivateKey, DbError> {
    let id = ensure_current(conn, keys)?;
    let stored: String = server_keys::table.find(&id).select(server_keys::private_pem).first(conn)?;
    let pem = keys.open_text(SEALED_PURPOSE, &stored)?;
    PrivateKey::from_pem(&pem).map_err(|e| DbError::Corrupt(format!("server key {id}: {e}")))
}

/// What terminals are told to trust.
pub fn published(conn: &mut DbConnection) -> Result<ServerKeys, DbError> {
    // The server makes one on start; before any start, there is none.
    let current = current_id(conn)?.unwrap_or_default();
    let rows: Vec<(String, String, chrono::NaiveDateTime, Option<chrono::NaiveDateTime>)> =
        server_keys::table
            .order(server_keys::created_at.desc())
            .select((
                server_keys::key_id,
                server_keys::public_key,
                server_keys::created_at,
                server_keys::retired_at,
            ))
            .load(conn)?;
    Ok(ServerKeys {
        current,
        keys: rows
            .into_iter()
            .map(|(key_id, public_key, created, retired)| ServerKeyView {
                key_id,
                public_key,
                created_at: rfc3339(created),
                retired_at: retired.map(rfc3339),
            })
            .collect(),
    })
}
