//! Sealing every stored secret under the current master key: the ones
//! written in clear before secrets were sealed (at start-up), and the ones
//! sealed under an older key (after a rotation).

use diesel::prelude::*;

use super::{MasterKeys, sealed_text_prefix};
use crate::blobs::BlobStore;
use crate::db::schema::{
    acquirer_parameter_sets, parameter_set_versions, server_keys, users, webhook_subscriptions,
};
use crate::db::{Db, DbConnection, DbError};
use crate::error::Error;

/// What a pass sealed again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Database values (signing keys, two-step secrets, acquirer documents).
    pub values: usize,
    /// Parameter-set blobs, each stored anew under the digest of its new
    /// sealing (the old blob is left for blob collection).
    pub blobs: usize,
}

/// Seals again, under the current key, every secret that is in clear or
/// under another key. Each value is replaced only if it is still what was
/// read, so a concurrent change is never overwritten.
pub async fn reseal_all(
    db: &Db,
    blobs: &BlobStore,
    keys: &std::sync::Arc<MasterKeys>,
) -> Result<Resealed, Error> {
    let current = keys.current_id();
    let db_keys = keys.clone();
    let values = db.run(move |conn| reseal_values(conn, &db_keys, &current)).await?;
    let blobs = reseal_parameter_sets(db, blobs, keys).await?;
    Ok(Resealed { values, blobs })
}

/// The master keys the answer-signing keys are sealed under: a database
/// with some needs its key file, and a new key would open none of them.
pub fn keys_in_use(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    let stored: Vec<String> = server_keys::table.select(server_keys::private_pem).load(conn)?;
    let mut ids: Vec<String> =
        stored.iter().filter_map(|s| super::sealed_with(s.as_bytes())).map(str::to_owned).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Values sealed under other keys than the current one, or in clear.
pub fn count_not_current(conn: &mut DbConnection, keys: &MasterKeys) -> Result<usize, DbError> {
    let current = keys.current_id();
    let prefix = format!("{}%", sealed_text_prefix(&current));
    let signing: i64 =
        server_keys::table.filter(server_keys::private_pem.not_like(&prefix)).count().get_result(conn)?;
    let totp: i64 = users::table
        .filter(users::totp_secret.is_not_null())
        .filter(users::totp_secret.not_like(&prefix))
        .count()
        .get_result(conn)?;
    let documents: i64 = acquirer_parameter_sets::table
        .filter(acquirer_parameter_sets::document.not_like(&prefix))
        .count()
        .get_result(conn)?;
    let sets: i64 = parameter_set_versions::table
        .filter(
            parameter_set_versions::sealed_with
                .is_null()
                .or(parameter_set_versions::sealed_with.ne(&current)),
        )
        .count()
        .get_result(conn)?;
    let webhooks: i64 = webhook_subscriptions::table
        .filter(webhook_subscriptions::secret.not_like(&prefix))
        .count()
        .get_result(conn)?;
    Ok((signing + totp + documents + sets + webhooks) as usize)
}

fn reseal_values(conn: &mut DbConnection, keys: &MasterKeys, current: &str) -> Result<usize, Error> {
    let prefix = format!("{}%", sealed_text_prefix(current));
    let mut done = 0;

    let purpose = crate::server_keys::SEALED_PURPOSE;
    let rows: Vec<(String, String)> = server_keys::table
        .filter(server_keys::private_pem.not_like(&prefix))
        .select((server_keys::key_id, server_keys::private_pem))
        .load(conn)?;
    for (id, stored) in rows {
        let sealed = keys.seal_text(purpose, &keys.open_text(purpose, &stored)?);
        done += diesel::update(server_keys::table.find(&id).filter(server_keys::private_pem.eq(&stored)))
            .set(server_keys::private_pem.eq(sealed))
            .execute(conn)?;
    }

    let purpose = crate::accounts::users::TOTP_SEALED_PURPOSE;
    let rows: Vec<(i64, Option<String>)> = users::table
        .filter(users::totp_secret.is_not_null())
        .filter(users::totp_secret.not_like(&prefix))
        .select((users::id, users::totp_secret))
        .load(conn)?;
    for (id, stored) in rows {
        let Some(stored) = stored else { continue };
        let sealed = keys.seal_text(purpose, &keys.open_text(purpose, &stored)?);
        done += diesel::update(users::table.find(id).filter(users::totp_secret.eq(&stored)))
            .set(users::totp_secret.eq(sealed))
            .execute(conn)?;
    }

    let purpose = crate::acquirers::SEALED_PURPOSE;
    let rows: Vec<(i64, String)> = acquirer_parameter_sets::table
        .filter(acquirer_parameter_sets::document.not_like(&prefix))
        .select((acquirer_parameter_sets::id, acquirer_parameter_sets::document))
        .load(conn)?;
    for (id, stored) in rows {
        let sealed = keys.seal_text(purpose, &keys.open_text(purpose, &stored)?);
        done += diesel::update(
            acquirer_parameter_sets::table.find(id).filter(acquirer_parameter_sets::document.eq(&stored)),
        )
        .set(acquirer_parameter_sets::document.eq(sealed))
        .execute(conn)?;
    }

    let purpose = crate::webhooks::SEALED_PURPOSE;
    let rows: Vec<(i64, String)> = webhook_subscriptions::table
        .filter(webhook_subscriptions::secret.not_like(&prefix))
        .select((webhook_subscriptions::id, webhook_subscriptions::secret))
        .load(conn)?;
    for (id, stored) in rows {
        let sealed = keys.seal_text(purpose, &keys.open_text(purpose, &stored)?);
        done += diesel::update(
            webhook_subscriptions::table.find(id).filter(webhook_subscriptions::secret.eq(&stored)),
        )
        .set(webhook_subscriptions::secret.eq(sealed))
        .execute(conn)?;
    }
    Ok(done)
}

async fn reseal_parameter_sets(db: &Db, blobs: &BlobStore, keys: &MasterKeys) -> Result<usize, Error> {
    let purpose = crate::parameters::SEALED_PURPOSE;
    let mut done = 0;
    let mut after = 0i64;
    loop {
        let current = keys.current_id();
        let batch: Vec<(i64, String)> = db
            .run(move |conn| {
                parameter_set_versions::table
                    .filter(parameter_set_versions::id.gt(after))
                    .filter(
                        parameter_set_versions::sealed_with
                            .is_null()
                            .or(parameter_set_versions::sealed_with.ne(&current)),
                    )
                    .order(parameter_set_versions::id)
                    .select((parameter_set_versions::id, parameter_set_versions::sha256))
                    .limit(500)
                    .load(conn)
                    .map_err(DbError::from)
            })
            .await?;
        let Some((last, _)) = batch.last() else { return Ok(done) };
        after = *last;
        for (id, sha256) in batch {
            let digest =
                sha256.parse().map_err(|_| DbError::Corrupt(format!("parameter set digest {sha256:?}")))?;
            let plain = blobs.get_opened(purpose, &digest).await?;
            let (digest, sealed_with) = blobs.put_sealed(purpose, &plain).await?;
            let digest = digest.to_hex();
            done += db
                .run(move |conn| {
                    diesel::update(
                        parameter_set_versions::table
                            .find(id)
                            .filter(parameter_set_versions::sha256.eq(&sha256)),
                    )
                    .set((
                        parameter_set_versions::sha256.eq(digest),
                        parameter_set_versions::sealed_with.eq(sealed_with),
                    ))
                    .execute(conn)
                    .map_err(DbError::from)
                })
                .await?;
        }
    }
}

/// What a master key rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub new_key: String,
    pub resealed: Resealed,
    /// Old keys taken out of the key file (none when something is still
    /// sealed under them: the rotation can be run again).
    pub dropped: Vec<String>,
    /// Values still under an old key.
    pub remaining: usize,
}

/// Makes a new master key the sealing one, seals every secret again under
/// it, then drops the old keys from the file. Servers keep running: they
/// re-read the key file within `settle` and open what either key sealed
/// meanwhile.
pub async fn rotate_master(
    db: &Db,
    blobs: &BlobStore,
    keys: &std::sync::Arc<MasterKeys>,
    settle: std::time::Duration,
) -> Result<Rotation, Error> {
    let old_key = keys.current_id();
    let new_key = keys.add_key()?;
    // Until every process has read the new file, one may still seal under
    // the old key; what it seals then is caught by the passes below.
    tokio::time::sleep(settle).await;
    let mut resealed = Resealed::default();
    let mut remaining = 0;
    for _ in 0..3 {
        let pass = reseal_all(db, blobs, keys).await?;
        resealed.values += pass.values;
        resealed.blobs += pass.blobs;
        let count_keys = keys.clone();
        remaining = db.run(move |conn| count_not_current(conn, &count_keys)).await?;
        if remaining == 0 {
            break;
        }
    }
    let dropped = if remaining == 0 { keys.drop_old_keys()? } else { Vec::new() };
    let detail = serde_json::json!({
        "from": old_key, "to": new_key, "values": resealed.values, "parameter_sets": resealed.blobs,
        "dropped": dropped, "remaining": remaining,
    });
    db.run(move |conn| {
        crate::db::audit::record(
            conn,
            &crate::db::audit::NewAuditEvent::now(
                "tms-server keys rotate-master",
                "keys.rotate_master",
                "master-key",
                &detail,
            ),
        )
    })
    .await?;
    Ok(Rotation { new_key, resealed, dropped, remaining })
}
