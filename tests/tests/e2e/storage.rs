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

    // What blob collection sees: every blob with its size, and not staged
    // uploads; a deleted blob is gone from the listing.
    let staged = store
        .stage(futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"half"))]), 100)
        .await
        .unwrap();
    let listed: Vec<(Sha256Digest, u64)> =
        store.list_blobs().await.unwrap().into_iter().map(|b| (b.digest, b.size)).collect();
    assert!(listed.contains(&(digest, parameters.len() as u64)), "{listed:?}");
    assert!(listed.contains(&(other, 7)), "{listed:?}");
    assert_eq!(listed.len(), 2, "{listed:?}");
    store.delete_blob(&other).await.unwrap();
    let listed: Vec<Sha256Digest> = store.list_blobs().await.unwrap().into_iter().map(|b| b.digest).collect();
    assert_eq!(listed, vec![digest]);
    store.discard(staged).await;
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

/// A figure from the server's `/metrics`.
async fn metric(server: &tms_e2e::TestServer, name: &str) -> i64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Waits (bounded) until the server's blob collection has made a pass that
/// started after this call, and returns the metric `name` then.
async fn after_next_collection(server: &tms_e2e::TestServer, name: &str) -> i64 {
    let before = metric(server, "tms_blob_gc_last_pass_timestamp_seconds").await;
    for _ in 0..200 {
        if metric(server, "tms_blob_gc_last_pass_timestamp_seconds").await > before {
            // The pass that saw `before` may have been under way: one more.
            let seen = metric(server, "tms_blob_gc_last_pass_timestamp_seconds").await;
            for _ in 0..200 {
                if metric(server, "tms_blob_gc_last_pass_timestamp_seconds").await > seen {
                    return metric(server, name).await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no blob collection pass: {}", server.logs().join("\n"));
}

tms_e2e::backend_test!(orphan_blobs_are_collected_after_their_grace_period_and_named_ones_never, |db| {
    use tms_e2e::fixtures::*;
    const APP: &str = "eu.ccv.salespoint";
    let (server, op) = server_with_operator_and(
        &db,
        &[("TMS_ADJUSTABLE_CLOCK", "true"), ("TMS_BLOB_GC_INTERVAL_SECS", "1")],
    )
    .await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let release = publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    let (status, body) = post(
        &server,
        &op,
        "/api/v1/parameters/tms.terminal/global/0",
        serde_json::json!({"set": {"receipt.header": "Collecte"}, "reason": "test"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // An icon replaced: the first one is no longer named.
    let first_icon = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR first icon".to_vec();
    let second_icon = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR second icon".to_vec();
    for icon in [&first_icon, &second_icon] {
        let res = server
            .http
            .put(server.url(&format!("/api/v1/apps/{APP}/icon")))
            .bearer_auth(&op)
            .body(icon.clone())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
    // A publish whose database step failed: its blob is stored, no row names it.
    let stray = b"an artifact whose release was never recorded".to_vec();
    let blob_path = |sha: &str| server.data_dir.join("blobs/blobs/sha256").join(&sha[..2]).join(sha);
    let stray_sha = tms_signing::Sha256Digest::of(&stray).to_hex();
    std::fs::create_dir_all(blob_path(&stray_sha).parent().unwrap()).unwrap();
    std::fs::write(blob_path(&stray_sha), &stray).unwrap();
    let orphans = [stray_sha.clone(), tms_signing::Sha256Digest::of(&first_icon).to_hex()];
    let named = [
        release["artifact_sha256"].as_str().unwrap().to_owned(),
        tms_signing::Sha256Digest::of(&second_icon).to_hex(),
    ];
    let all_blobs = std::fs::read_dir(server.data_dir.join("blobs/blobs/sha256")).unwrap().count();
    assert!(all_blobs >= 4, "artifact, parameter set, two icons, the stray");

    // Written within the hour: not even marked.
    assert_eq!(after_next_collection(&server, "tms_blob_orphans").await, 0);
    // Two hours on: marked, not deleted.
    server.advance_clock(&op, 2 * 3600).await;
    assert_eq!(after_next_collection(&server, "tms_blob_orphans").await, 2);
    assert_eq!(metric(&server, "tms_blob_gc_deleted_total").await, 0);
    let out = server.command().args(["blobs", "gc", "--dry-run"]).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{listed}{}", String::from_utf8_lossy(&out.stderr));
    for sha in &orphans {
        assert!(listed.contains(sha.as_str()) && listed.contains("delete after"), "{sha} in {listed}");
    }
    for sha in &named {
        assert!(!listed.contains(sha.as_str()), "{listed}");
    }
    assert!(listed.contains("0 would be deleted") && listed.contains("nothing changed"), "{listed}");
    // Past the grace period (7 days): deleted; what rows name stays.
    server.advance_clock(&op, 7 * 24 * 3600).await;
    assert_eq!(after_next_collection(&server, "tms_blob_gc_deleted_total").await, 2);
    assert_eq!(
        metric(&server, "tms_blob_gc_deleted_bytes_total").await,
        (stray.len() + first_icon.len()) as i64
    );
    assert_eq!(metric(&server, "tms_blob_orphans").await, 0);
    for sha in &orphans {
        assert!(!blob_path(sha).exists(), "{sha} deleted");
    }
    for sha in &named {
        assert!(blob_path(sha).exists(), "{sha} kept");
    }
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let (status, values) = get(&server, &op, "/api/v1/parameters/tms.terminal/global/0").await;
    assert_eq!(status, 200, "the parameter set's blob is named, so kept: {values}");
});
