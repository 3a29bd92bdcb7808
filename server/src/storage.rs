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
}

/// The object store behind every blob of the TMS.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// For a local store, its root, which readiness checks directly: listing a
    /// missing directory would look like an empty store.
    local_root: Option<PathBuf>,
    description: String,
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
                Ok(BlobStore { store, local_root: None, description })
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
        })
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

    /// The underlying store, for streaming reads and writes of large artifacts.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}
