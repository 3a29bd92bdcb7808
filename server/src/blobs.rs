//! Blob storage: content-addressed, create-only objects in any `object_store`
//! backend (local directory by default, S3-compatible for scale).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use tms_signing::{Sha256Digest, Sha256Hasher};

use crate::config::{Config, ConfigError, ObjectStoreLocation};
use crate::secrets::MasterKeys;

/// Parts of a staged upload: 8 MiB (S3 wants at least 5), at most 2 in
/// flight, so an upload holds well under 64 MiB whatever its size.
const STAGE_PART_BYTES: usize = 8 << 20;
const STAGE_PARTS_IN_FLIGHT: usize = 2;

/// An upload stored under a temporary key, with what it hashed to.
#[derive(Debug)]
pub struct Staged {
    path: Path,
    pub digest: Sha256Digest,
    pub size: u64,
}

/// Chunks of a local file's byte range, read off the async threads.
fn local_file_stream(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> futures_util::stream::BoxStream<'static, Result<bytes::Bytes, object_store::Error>> {
    use futures_util::StreamExt;
    const CHUNK: u64 = 1 << 20;
    let state = (Some(file), range.start, range.end);
    futures_util::stream::unfold(state, |(file, position, end)| async move {
        let file = file?;
        if position >= end {
            return None;
        }
        let want = CHUNK.min(end - position) as usize;
        let read = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = file;
            let mut buf = vec![0u8; want];
            file.seek(SeekFrom::Start(position))?;
            file.read_exact(&mut buf)?;
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((file, buf))) => {
                Some((Ok(bytes::Bytes::from(buf)), (Some(file), position + want as u64, end)))
            }
            Ok(Err(e)) => Some((
                Err(object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) }),
                (None, end, end),
            )),
            Err(e) => Some((
                Err(object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) }),
                (None, end, end),
            )),
        }
    })
    .boxed()
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("the upload stopped before its end: {0}")]
    Interrupted(String),
    #[error("the upload is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("blob store directory {path}: {source}")]
    LocalDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("blob {0} not found")]
    NotFound(Sha256Digest),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("this blob store was opened without the master key, so it cannot seal or open secrets")]
    NoMasterKey,
}

/// A blob as the store lists it.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Sha256Digest,
    pub size: u64,
    pub written_at: chrono::NaiveDateTime,
}

/// The object store behind every blob of the TMS.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// For a local store, its root, which readiness checks directly: listing a
    /// missing directory would look like an empty store.
    local_root: Option<PathBuf>,
    description: String,
    /// Seals blobs that hold secrets (parameter sets).
    master_keys: Option<Arc<MasterKeys>>,
}

impl BlobStore {
    pub fn from_config(config: &Config) -> Result<BlobStore, StorageError> {
        match config.object_store()? {
            ObjectStoreLocation::LocalDir(root) => BlobStore::local(root),
            ObjectStoreLocation::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    // Fail fast: a readiness probe or a terminal waiting on a
                    // dead store must hear about it in seconds, not minutes.
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(10),
                        ..Default::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_allow_http(config.s3_allow_http)
                            .with_connect_timeout(Duration::from_secs(3))
                            .with_timeout(Duration::from_secs(300)),
                    );
                if let Some(region) = &config.s3_region {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = &config.s3_endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &config.s3_access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &config.s3_secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let s3: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
                let description = match &prefix {
                    Some(p) => format!("s3://{bucket}/{p}"),
                    None => format!("s3://{bucket}"),
                };
                let store = match prefix {
                    Some(p) => Arc::new(PrefixStore::new(s3, p)) as Arc<dyn ObjectStore>,
                    None => s3,
                };
                Ok(BlobStore { store, local_root: None, description, master_keys: None })
            }
        }
    }

    /// A store in a local directory, created if missing.
    pub fn local(root: PathBuf) -> Result<BlobStore, StorageError> {
        std::fs::create_dir_all(&root)
            .map_err(|source| StorageError::LocalDir { path: root.clone(), source })?;
        let store = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        Ok(BlobStore {
            store: Arc::new(store),
            description: format!("file://{}", root.display()),
            local_root: Some(root),
            master_keys: None,
        })
    }

    /// The same store, sealing and opening secret-bearing blobs with `keys`.
    pub fn sealing_with(mut self, keys: Arc<MasterKeys>) -> BlobStore {
        self.master_keys = Some(keys);
        self
    }

    fn master_keys(&self) -> Result<&MasterKeys, StorageError> {
        self.master_keys.as_deref().ok_or(StorageError::NoMasterKey)
    }

    /// Seals `plain` for `purpose` and stores it under the sha256 of what
    /// is stored (the name says nothing of the secret inside); returns that
    /// and the id of the master key that sealed it.
    pub async fn put_sealed(
        &self,
        purpose: &str,
        plain: &[u8],
    ) -> Result<(Sha256Digest, String), StorageError> {
        let sealed = self.master_keys()?.seal(purpose, plain);
        let key_id = crate::secrets::sealed_with(&sealed).unwrap_or_default().to_owned();
        Ok((self.put_bytes(sealed).await?, key_id))
    }

    /// Opens a blob [`BlobStore::put_sealed`] stored (or one written in
    /// clear before secrets were sealed).
    pub async fn get_opened(&self, purpose: &str, digest: &Sha256Digest) -> Result<Vec<u8>, StorageError> {
        let stored = self.get_bytes(digest).await?;
        Ok(self.master_keys()?.open_sealed(purpose, &stored)?)
    }

    /// Where blobs live, for logs and `config`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The object key of a content-addressed blob; fanned out by the first two
    /// hex digits so no directory or listing grows without bound.
    pub fn blob_path(digest: &Sha256Digest) -> Path {
        let hex = digest.to_hex();
        Path::from(format!("blobs/sha256/{}/{}", &hex[..2], hex))
    }

    /// Stores `bytes` under their sha256 and returns it. Writes are create-only:
    /// an existing blob is never overwritten, and since its key is its content,
    /// finding it already there means it is already stored.
    pub async fn put_bytes(&self, bytes: impl Into<PutPayload>) -> Result<Sha256Digest, StorageError> {
        let payload: PutPayload = bytes.into();
        let mut hasher = Sha256Hasher::new();
        for chunk in payload.iter() {
            hasher.update(chunk);
        }
        let digest = hasher.finish();
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&Self::blob_path(&digest), payload, options).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(digest),
            Err(e) => Err(e.into()),
        }
    }

    /// The whole content of a blob (small blobs only: parameter sets, icons).
    pub async fn get_bytes(&self, digest: &Sha256Digest) -> Result<Vec<u8>, StorageError> {
        match self.store.get(&Self::blob_path(digest)).await {
            Ok(result) => Ok(result.bytes().await?.to_vec()),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(*digest)),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a blob is stored.
    pub async fn contains(&self, digest: &Sha256Digest) -> Result<bool, StorageError> {
        match self.store.head(&Self::blob_path(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the store answers: a listing under a fixed prefix checks the
    /// bucket exists and the credentials work, without reading any blob.
    pub async fn check(&self) -> Result<(), StorageError> {
        if let Some(root) = &self.local_root {
            std::fs::read_dir(root)
                .map_err(|source| StorageError::LocalDir { path: root.clone(), source })?;
        }
        self.store.list_with_delimiter(Some(&Path::from("readyz"))).await?;
        Ok(())
    }

    /// Streams `chunks` into a temporary object while hashing them, in
    /// constant memory (the store uploads fixed-size parts as they fill).
    /// Stops as soon as more than `limit` bytes arrive. Nothing is visible
    /// under a blob key until `commit` succeeds; on any error the temporary
    /// object is aborted.
    pub async fn stage<S, E>(&self, mut chunks: S, limit: u64) -> Result<Staged, StageError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        let path = Path::from(format!("uploads/{:032x}", rand::random::<u128>()));
        let upload = self.store.put_multipart(&path).await.map_err(StorageError::from)?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, STAGE_PART_BYTES);
        let mut hasher = Sha256Hasher::new();
        let outcome = loop {
            match chunks.next().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(StageError::Interrupted(e.to_string())),
                Some(Ok(chunk)) => {
                    if hasher.len() + chunk.len() as u64 > limit {
                        break Err(StageError::TooLarge { limit });
                    }
                    hasher.update(&chunk);
                    // Back-pressure: at most a few parts in flight.
                    if let Err(e) = writer.wait_for_capacity(STAGE_PARTS_IN_FLIGHT).await {
                        break Err(StageError::Storage(e.into()));
                    }
                    writer.put(chunk);
                }
            }
        };
        match outcome {
            Ok(()) => {
                let size = hasher.len();
                writer.finish().await.map_err(StorageError::from)?;
                Ok(Staged { path, digest: hasher.finish(), size })
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, path = %path, "could not abort a staged upload");
                }
                Err(e)
            }
        }
    }

    /// Moves a staged object to its content address. Create-only: where the
    /// store can rename without overwriting it does; elsewhere an existing blob
    /// is left alone, and since the key is the content, copying over a blob
    /// that appeared meanwhile rewrites the same bytes.
    pub async fn commit(&self, staged: Staged) -> Result<Sha256Digest, StorageError> {
        let target = Self::blob_path(&staged.digest);
        match self.store.rename_if_not_exists(&staged.path, &target).await {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => self.store.delete(&staged.path).await?,
            Err(object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. }) => {
                match self.store.head(&target).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        self.store.copy(&staged.path, &target).await?
                    }
                    Err(e) => return Err(e.into()),
                }
                self.store.delete(&staged.path).await?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(staged.digest)
    }

    /// Throws a staged object away.
    pub async fn discard(&self, staged: Staged) {
        if let Err(e) = self.store.delete(&staged.path).await {
            tracing::warn!(error = %e, path = %staged.path, "could not delete a staged upload");
        }
    }

    /// Every content-addressed blob in the store (not staged uploads).
    pub async fn list_blobs(&self) -> Result<Vec<StoredBlob>, StorageError> {
        use futures_util::StreamExt;
        let mut listing = self.store.list(Some(&Path::from("blobs/sha256")));
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            // Anything else in there (a stray file) is not ours to judge.
            let Some(digest) = meta.location.filename().and_then(|name| name.parse::<Sha256Digest>().ok())
            else {
                continue;
            };
            found.push(StoredBlob { digest, size: meta.size, written_at: meta.last_modified.naive_utc() });
        }
        Ok(found)
    }

    /// Deletes a blob (one no release refers to any more).
    pub async fn delete_blob(&self, digest: &Sha256Digest) -> Result<(), StorageError> {
        match self.store.delete(&Self::blob_path(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    /// Removes staged uploads older than `age` that a crash left behind. On
    /// the local store the half-written part files (`…#1`, hidden from
    /// listings) go too; on S3, incomplete multipart uploads are not listed,
    /// so the bucket needs an abort-incomplete-multipart lifecycle rule.
    pub async fn sweep_stale_uploads(&self, age: Duration) -> Result<usize, StorageError> {
        use futures_util::StreamExt;
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::days(1));
        if let Some(root) = &self.local_root {
            let dir = root.join("uploads");
            let mut removed = 0;
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| chrono::DateTime::<chrono::Utc>::from(t) < cutoff);
                    if old && entry.path().is_file() && std::fs::remove_file(entry.path()).is_ok() {
                        removed += 1;
                    }
                }
            }
            return Ok(removed);
        }
        let mut listing = self.store.list(Some(&Path::from("uploads")));
        let mut removed = 0;
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if meta.last_modified < cutoff {
                self.store.delete(&meta.location).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A byte range of a blob as a stream of chunks (the whole blob for `None`).
    pub async fn read_range(
        &self,
        digest: &Sha256Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<
        futures_util::stream::BoxStream<'static, Result<bytes::Bytes, object_store::Error>>,
        StorageError,
    > {
        let options = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            ..Default::default()
        };
        match self.store.get_opts(&Self::blob_path(digest), options).await {
            // A local file is read in large chunks: the generic stream reads
            // 8 KiB at a time, which caps downloads far below the disk's speed.
            Ok(object_store::GetResult {
                payload: object_store::GetResultPayload::File(file, _),
                range,
                ..
            }) => Ok(local_file_stream(file, range)),
            Ok(result) => Ok(result.into_stream()),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(*digest)),
            Err(e) => Err(e.into()),
        }
    }

    /// The underlying store, for streaming reads and writes of large artifacts.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}
