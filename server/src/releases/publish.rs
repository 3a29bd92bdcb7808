//! Publishing a release: a signed manifest, then the artifact streamed in.
//! The manifest, key, signature and version rules are checked before the
//! artifact is read; the artifact is hashed while it is stored and becomes
//! visible only once its size and sha256 match. Shared by the API (the body
//! of a request) and the console (a part of a form).

use tms_packages::releases::SignedManifest;
use tms_packages::wire::releases::ReleaseView;

use crate::accounts::access::Actor;
use crate::blobs::{BlobStore, StageError};
use crate::db::Db;
use crate::error::{Error, ErrorCode};

/// Publishes `artifact` under `signed`. `declared` is the length the sender
/// announced, if any (refused at once when it is not the manifest's);
/// `limit` the largest artifact accepted.
#[allow(clippy::too_many_arguments)]
pub async fn publish<S, E>(
    db: &Db,
    blobs: &BlobStore,
    actor: Actor,
    app_id: String,
    signed: SignedManifest,
    declared: Option<u64>,
    limit: u64,
    artifact: S,
) -> Result<ReleaseView, Error>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let expected = signed.manifest.artifact_size;
    if expected > limit {
        return Err(Error::new(
            ErrorCode::ArtifactTooLarge,
            format!("artifacts are limited to {limit} bytes"),
        ));
    }
    if let Some(len) = declared.filter(|len| *len != expected) {
        return Err(Error::new(
            ErrorCode::SizeMismatch,
            format!("the body has {len} bytes, the manifest says {expected}"),
        ));
    }
    {
        let (actor, app_id, signed) = (actor.clone(), app_id.clone(), signed.clone());
        db.run(move |conn| super::check_publishable(conn, &actor, &app_id, &signed)).await?;
    }
    let staged = match blobs.stage(artifact, expected).await {
        Ok(staged) => staged,
        Err(StageError::TooLarge { .. }) => {
            return Err(Error::new(
                ErrorCode::SizeMismatch,
                format!("the artifact is larger than the {expected} bytes the manifest says"),
            ));
        }
        Err(StageError::Interrupted(why)) => {
            tracing::info!(app_id, why, "artifact upload interrupted; nothing kept");
            return Err(Error::new(
                ErrorCode::UploadInterrupted,
                "the upload stopped before its end; nothing was kept",
            ));
        }
        Err(StageError::Storage(e)) => return Err(e.into()),
    };
    if staged.size != expected {
        let size = staged.size;
        blobs.discard(staged).await;
        return Err(Error::new(
            ErrorCode::SizeMismatch,
            format!("the artifact has {size} bytes, the manifest says {expected}"),
        ));
    }
    if staged.digest.to_hex() != signed.manifest.artifact_sha256 {
        let digest = staged.digest;
        blobs.discard(staged).await;
        return Err(Error::new(
            ErrorCode::HashMismatch,
            format!(
                "the artifact's sha256 is {digest}, the manifest says {}",
                signed.manifest.artifact_sha256
            ),
        ));
    }
    let staged_digest = staged.digest;
    blobs.commit(staged).await?;
    // Should the row not commit now (a concurrent publish won, say), the blob
    // stays: another publish of the same bytes may be about to use it, so
    // deleting it here could leave a release without its artifact.
    let is_firmware = signed.manifest.kind == "firmware";
    let view = db.run(move |conn| super::record(conn, &actor, &signed)).await?;
    if is_firmware {
        // DDI devices check an image's sha1 and md5 too: computed now, in the
        // background, rather than on the first device's deploymentBase.
        let (db, blobs, digest) = (db.clone(), blobs.clone(), staged_digest);
        tokio::spawn(async move {
            if let Err(e) = super::digests::of(&db, &blobs, &digest).await {
                tracing::warn!(error = %e, %digest, "could not compute the artifact's sha1 and md5");
            }
        });
    }
    Ok(view)
}
