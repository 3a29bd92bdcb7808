//! The blob store on the local filesystem and on a real S3-compatible server.

use object_store::ObjectStoreExt;
use object_store::PutPayload;
use tms_e2e::MotoServer;
use tms_server::blobs::{BlobStore, StorageError};
use tms_server::config::{Config, SettingsArgs, Source};
use tms_signing::Sha256Digest;

fn s3_store(s3: &MotoServer, bucket: &str) -> BlobStore {
    let args = SettingsArgs {
        object_store_url: Some(format!("s3://{bucket}/tms")),
        s3_endpoint: Some(s3.endpoint.clone()),
        s3_allow_http: Some(true),
        s3_access_key_id: Some("tms-test".into()),
        s3_secret_access_key: Some("tms-test-secret".into()),
        ..Default::default()
    };
    BlobStore::from_config(&Config::resolve(args, None, |_| Source::Flag)).expect("S3 store")
}

/// The same checks for every backend: content addressing, create-only writes,
/// reads, and a clear not-found.
async fn exercise(store: &BlobStore) {
    store.check().await.expect("store answers");

    let parameters = br#"{"receipt.header":"Boulangerie Martin"}"#.to_vec();
    let digest = store.put_bytes(parameters.clone()).await.unwrap();
    assert_eq!(digest, Sha256Digest::of(&parameters));
    assert!(store.contains(&digest).await.unwrap());
    assert_eq!(store.get_bytes(&digest).await.unwrap(), parameters);

    // Storing the same content again is a no-op that names the same blob.
    assert_eq!(store.put_bytes(parameters.clone()).await.unwrap(), digest);

    // Create-only: whatever sits at a blob's key is never overwritten.
    let other = Sha256Digest::of(b"release artifact");
    let key = BlobStore::blob_path(&other);
    store.object_store().put(&key, PutPayload::from_static(b"planted")).await.unwrap();
    assert_eq!(store.put_bytes(b"release artifact".to_vec()).await.unwrap(), other);
    assert_eq!(store.get_bytes(&other).await.unwrap(), b"planted");

    let missing = Sha256Digest::of(b"never stored");
    assert!(!store.contains(&missing).await.unwrap());
    assert!(matches!(store.get_bytes(&missing).await, Err(StorageError::NotFound(d)) if d == missing));
}

#[tokio::test]
async fn local_filesystem_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::local(dir.path().join("blobs")).unwrap();
    exercise(&store).await;
    let digest = Sha256Digest::of(br#"{"receipt.header":"Boulangerie Martin"}"#).to_hex();
    assert!(dir.path().join("blobs/blobs/sha256").join(&digest[..2]).join(&digest).is_file());

    // A store whose directory disappeared is not ready.
    std::fs::remove_dir_all(dir.path().join("blobs")).unwrap();
    assert!(store.check().await.is_err());
}

#[tokio::test]
async fn s3_compatible_store() {
    let Some(s3) = MotoServer::start().await else {
        return;
    };
    let store = s3_store(&s3, &s3.bucket);
    exercise(&store).await;
    assert_eq!(store.description(), format!("s3://{}/tms", s3.bucket));
}

#[tokio::test]
async fn s3_store_without_its_bucket_fails_its_check() {
    let Some(s3) = MotoServer::start().await else {
        return;
    };
    let store = s3_store(&s3, "bucket-that-was-never-created");
    assert!(store.check().await.is_err());
}
