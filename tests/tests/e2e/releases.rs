//! Signed releases: keys, signing, publishing, verification and downloads.

use std::io::Write;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use tms_e2e::fixtures::*;
use tms_e2e::{MotoServer, ServerBuilder, TestServer, backend_test, run_tms};
use tms_packages::releases::{ReleaseManifest, SignedManifest};
use tms_signing::{PrivateKey, Sha256Digest};

const APP: &str = "eu.ccv.salespoint";

fn artifact(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[0] ^ seed).collect()
}

fn signed(key: &PrivateKey, version: &str, code: u64, bytes: &[u8]) -> SignedManifest {
    SignedManifest::sign(
        ReleaseManifest {
            app_id: APP.into(),
            kind: "app".into(),
            version: version.into(),
            version_code: code,
            artifact_sha256: Sha256Digest::of(bytes).to_hex(),
            artifact_size: bytes.len() as u64,
            models: vec!["A920".into(), "A80".into()],
            min_firmware: None,
            release_notes: "test".into(),
            created_at: "2026-11-27T12:00:00Z".into(),
        },
        key,
    )
}

async fn publish(
    server: &TestServer,
    token: &str,
    manifest: &SignedManifest,
    body: Vec<u8>,
) -> (reqwest::StatusCode, Value) {
    let header = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(manifest).unwrap());
    let res = server
        .http
        .post(server.url(&format!("/api/v1/apps/{}/releases", manifest.manifest.app_id)))
        .bearer_auth(token)
        .header("x-tms-signed-manifest", header)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// keygen → sign → publish → download, all with the CLI; the download is byte-identical.
async fn cli_round_trip(server: &TestServer) {
    server.create_operator("re@psp.example", "release_engineer", OPERATOR_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds.json");
    let tms = |args: &[&str]| run_tms(server, &creds, args, None);
    let (code, _, err) = run_tms(
        server,
        &creds,
        &["login", "--email", "re@psp.example", "--password-stdin"],
        Some(OPERATOR_PASSWORD),
    );
    assert_eq!(code, 0, "{err}");
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().unwrap();
    let (code, out, err) = tms(&["keygen", "--out", keys_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("key id"), "{out}");
    let (code, _, err) = tms(&["keygen", "--out", keys_arg]);
    assert_eq!(code, 1, "keygen never overwrites a key: {err}");
    let (code, _, err) = tms(&["app", "create", "--id", APP, "--name", "Salespoint"]);
    assert_eq!(code, 0, "{err}");
    let public = keys.join("publisher.pub");
    let (code, out, err) =
        tms(&["app", "key", "add", APP, "--name", "release team", "--public-key", public.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("release team"), "{out}");

    // Over two 8 MiB parts of a staged upload.
    let bytes = artifact(9 * 1024 * 1024 + 123, 7);
    let file = dir.path().join("salespoint-4.2.0.apk");
    std::fs::write(&file, &bytes).unwrap();
    let key = keys.join("publisher.key");
    let (code, out, err) = tms(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--app",
        APP,
        "--version",
        "4.2.0",
        "--version-code",
        "420",
        "--models",
        "A920,A80",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&Sha256Digest::of(&bytes).to_hex()), "{out}");
    let (code, out, err) = tms(&["--json", "publish", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let release: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(release["version"], "4.2.0");
    assert_eq!(release["artifact_size"], bytes.len());
    assert!(err.contains("uploaded"), "progress is reported: {err}");

    let target = dir.path().join("downloaded.apk");
    let (code, out, err) = tms(&["download", APP, "4.2.0", "--out", target.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verified"), "{out}");
    assert_eq!(std::fs::read(&target).unwrap(), bytes, "byte-identical");

    // A partial file is resumed from where it stopped.
    std::fs::write(&target, &bytes[..3_000_000]).unwrap();
    let (code, _, err) = tms(&["download", APP, "4.2.0", "--out", target.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resuming"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), bytes);

    let (code, out, _) = tms(&["release", "list", APP]);
    assert_eq!(code, 0);
    assert!(out.contains("4.2.0") && out.contains("420"), "{out}");
}

backend_test!(cli_round_trip_on_the_filesystem_store, |db| {
    let server = ServerBuilder::new().database(&db).start().await;
    cli_round_trip(&server).await;
});

backend_test!(cli_round_trip_on_s3, |db| {
    let Some(s3) = MotoServer::start().await else { return };
    let server = ServerBuilder::new().database(&db).s3(&s3).start().await;
    cli_round_trip(&server).await;
});

backend_test!(every_publishing_error_leaves_nothing_behind, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_MAX_ARTIFACT_BYTES", "1000000")]).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let bytes = artifact(200_000, 1);
    let code_of = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();

    // A tampered byte.
    let mut tampered = bytes.clone();
    tampered[1234] ^= 0xff;
    let (status, body) = publish(&server, &op, &signed(&key, "1.0.0", 100, &bytes), tampered).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (400, "hash_mismatch"), "{body}");
    // Fewer bytes than the manifest says.
    let (status, body) =
        publish(&server, &op, &signed(&key, "1.0.0", 100, &bytes), bytes[..1000].to_vec()).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (400, "size_mismatch"), "{body}");
    // An unknown key, and a forged signature with a known key id.
    let stranger = PrivateKey::generate();
    let (status, body) = publish(&server, &op, &signed(&stranger, "1.0.0", 100, &bytes), bytes.clone()).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (409, "unknown_publisher_key"), "{body}");
    let mut forged = signed(&stranger, "1.0.0", 100, &bytes);
    forged.key_id = key.public_key().key_id();
    let (status, body) = publish(&server, &op, &forged, bytes.clone()).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (400, "signature_invalid"), "{body}");
    // A manifest altered after signing.
    let mut altered = signed(&key, "1.0.0", 100, &bytes);
    altered.manifest.models.push("A35".into());
    let (status, body) = publish(&server, &op, &altered, bytes.clone()).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (400, "signature_invalid"), "{body}");
    // Too large for the server.
    let big = artifact(1_000_001, 2);
    let (status, body) = publish(&server, &op, &signed(&key, "1.0.0", 100, &big), big).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (413, "artifact_too_large"), "{body}");

    // Nothing of those is visible.
    let (_, releases) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases")).await;
    assert_eq!(releases, json!([]));

    // The good one, then the version rules.
    let (status, body) = publish(&server, &op, &signed(&key, "1.0.0", 100, &bytes), bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    let other = artifact(1000, 3);
    let (status, body) = publish(&server, &op, &signed(&key, "1.0.0", 101, &other), other.clone()).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (409, "release_exists"), "{body}");
    let (status, body) = publish(&server, &op, &signed(&key, "0.9.0", 99, &other), other.clone()).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (409, "version_not_higher"), "{body}");
    let (status, body) = publish(&server, &op, &signed(&key, "1.1.0", 100, &other), other.clone()).await;
    assert_eq!(
        (status.as_u16(), code_of(&body).as_str()),
        (409, "version_not_higher"),
        "the version code must go up too: {body}"
    );

    // A revoked key signs nothing new, but its earlier release stays.
    let key_id = key.public_key().key_id();
    let (status, _) =
        post(&server, &op, &format!("/api/v1/apps/{APP}/keys/{key_id}/revoke"), json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = publish(&server, &op, &signed(&key, "1.1.0", 110, &other), other.clone()).await;
    assert_eq!((status.as_u16(), code_of(&body).as_str()), (409, "key_revoked"), "{body}");
    let res = server
        .http
        .get(server.url(&format!("/api/v1/apps/{APP}/releases/1.0.0/artifact")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);

    // Only the one artifact is stored; no staged upload is left.
    let files = walk(&server.data_dir.join("blobs"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(&Sha256Digest::of(&bytes).to_hex()), "{files:?}");

    // Merchants cannot publish.
    let (_, _, merchant_admin) = merchant(&server, &op, "Shop", "admin@shop.example", &["1900000001"]).await;
    let (status, _) = publish(&server, &merchant_admin, &signed(&key, "2.0.0", 200, &other), other).await;
    assert_eq!(status, 403);
    let (status, _) = get(&server, &merchant_admin, &format!("/api/v1/apps/{APP}")).await;
    assert_eq!(status, 404);
});

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

backend_test!(a_dropped_upload_leaves_nothing_visible, |db| {
    let (server, op) = server_with_operator(&db).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let bytes = artifact(3_000_000, 4);
    let manifest = signed(&key, "1.0.0", 100, &bytes);
    let header = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&manifest).unwrap());
    // Send the headers and half the body, then drop the connection.
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /api/v1/apps/{APP}/releases HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {op}\r\nx-tms-signed-manifest: {header}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    )
    .unwrap();
    stream.write_all(&bytes[..1_500_000]).unwrap();
    stream.flush().unwrap();
    drop(stream);
    // The server notices the dropped upload and says so once it cleaned up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !server.logs().iter().any(|l| l.contains("artifact upload interrupted")) {
        assert!(std::time::Instant::now() < deadline, "the dropped upload was never noticed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let (status, _) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/1.0.0")).await;
    assert_eq!(status, 404);
    assert!(walk(&server.data_dir.join("blobs")).is_empty(), "{:?}", walk(&server.data_dir.join("blobs")));
    // And the same release publishes fine afterwards.
    let (status, body) = publish(&server, &op, &manifest, bytes).await;
    assert_eq!(status, 201, "{body}");
});

backend_test!(downloads_support_ranges_etags_and_devices, |db| {
    let (server, op) = server_with_operator(&db).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let bytes = artifact(1_000_000, 5);
    let (status, release) = publish(&server, &op, &signed(&key, "2.0.0", 200, &bytes), bytes.clone()).await;
    assert_eq!(status, 201, "{release}");
    let path = format!("/api/v1/apps/{APP}/releases/2.0.0/artifact");
    let etag = format!("\"{}\"", Sha256Digest::of(&bytes).to_hex());
    let get_with = |headers: Vec<(&'static str, String)>| {
        let mut req = server.http.get(server.url(&path)).bearer_auth(&op);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };

    let res = get_with(vec![("range", "bytes=400000-".into())]).await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["content-range"], "bytes 400000-999999/1000000");
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes[400_000..].to_vec());
    let res = get_with(vec![("range", "bytes=-10".into())]).await.unwrap();
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes[999_990..].to_vec());
    let res = get_with(vec![("range", "bytes=2000000-".into())]).await.unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers()["content-range"], "bytes */1000000");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "range_not_satisfiable");
    // If-Range with a stale validator: the whole artifact again.
    let res = get_with(vec![("range", "bytes=10-".into()), ("if-range", "\"stale\"".into())]).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().len(), 1_000_000);
    let res = get_with(vec![("if-none-match", etag.clone())]).await.unwrap();
    assert_eq!(res.status(), 304);
    // If-None-Match compares weakly: a weak validator of the same bytes matches.
    let res = get_with(vec![("if-none-match", format!("\"other\", W/{etag}"))]).await.unwrap();
    assert_eq!(res.status(), 304);
    let res = server.http.head(server.url(&path)).bearer_auth(&op).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "1000000");
    assert_eq!(res.headers()["accept-ranges"], "bytes");

    // A terminal downloads by sha256 with its device token.
    let (_, location, _) = merchant(&server, &op, "Shop", "admin@shop.example", &["1900000002"]).await;
    let (_, device) = activate_device(
        &server,
        "admin@shop.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "1900000002",
        location,
        "Till",
    )
    .await;
    let device_token = device["device_token"].as_str().unwrap();
    let sha = Sha256Digest::of(&bytes).to_hex();
    let download = |token: String| {
        server
            .http
            .get(server.url(&format!("/api/v1/terminal/artifacts/{sha}")))
            .bearer_auth(token)
            .header("range", "bytes=0-99")
            .send()
    };
    // No deployment offers the release to the terminal: as if it did not exist.
    let res = download(device_token.to_owned()).await.unwrap();
    assert_eq!(res.status(), 404);
    let (status, body) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "version": "2.0.0", "target": format!("devices:{}", device["device_id"])}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Another merchant's terminal is still refused; so is one the release does not fit, even
    // when a deployment for everyone reaches it (the planner decides, not the target alone).
    let (_, elsewhere, _) = merchant(&server, &op, "Other", "admin@other.example", &["1900000003"]).await;
    let (_, other_device) = activate_device_of_model(
        &server,
        "admin@other.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "1900000003",
        elsewhere,
        "Till",
        "A35",
    )
    .await;
    let other_token = other_device["device_token"].as_str().unwrap().to_owned();
    let res = download(other_token.clone()).await.unwrap();
    assert_eq!(res.status(), 404);
    deploy_to_everyone(&server, &op, APP, "2.0.0").await;
    let res = download(other_token).await.unwrap();
    assert_eq!(res.status(), 404, "an A35 is never offered a release for the A920 and A80");
    let res = download(device_token.to_owned()).await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes[..100].to_vec());
    let (status, _) = server
        .call(
            Method::GET,
            &format!("/api/v1/terminal/artifacts/{}", "0".repeat(64)),
            Some(device_token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let res = server.http.get(server.url(&format!("/api/v1/terminal/artifacts/{sha}"))).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // Withdrawn: marked, still listed.
    let (status, withdrawn) =
        post(&server, &op, &format!("/api/v1/apps/{APP}/releases/2.0.0/withdraw"), json!({})).await;
    assert_eq!(status, 200);
    assert!(withdrawn["withdrawn_at"].is_string());
    let (status, _) =
        post(&server, &op, &format!("/api/v1/apps/{APP}/releases/2.0.0/withdraw"), json!({})).await;
    assert_eq!(status, 409);
});

#[tokio::test]
async fn weak_and_malformed_publisher_keys_are_refused() {
    let db = tms_e2e::TestDatabase::sqlite();
    let (server, op) = server_with_operator(&db).await;
    let _ = app_with_key(&server, &op, APP, "app").await;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for (key, why) in [(hex::encode(identity), "weak"), ("abcd".to_owned(), "malformed")] {
        let (status, body) =
            post(&server, &op, &format!("/api/v1/apps/{APP}/keys"), json!({"name": why, "public_key": key}))
                .await;
        assert_eq!(status, 400, "{why}: {body}");
        assert_eq!(body["error"]["details"]["field"], "public_key");
    }
}

backend_test!(withdrawn_artifacts_and_damaged_downloads, |db| {
    let (server, op) = server_with_operator(&db).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let bytes = artifact(500_000, 9);
    let manifest = signed(&key, "3.0.0", 300, &bytes);
    // The check before an upload says the same as the upload would.
    let (status, _) = post(
        &server,
        &op,
        &format!("/api/v1/apps/{APP}/releases/check"),
        serde_json::to_value(&manifest).unwrap(),
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = publish(&server, &op, &manifest, bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["manifest"],
        serde_json::to_value(&manifest.manifest).unwrap(),
        "the signed manifest is shown as signed"
    );
    let (status, body) = post(
        &server,
        &op,
        &format!("/api/v1/apps/{APP}/releases/check"),
        serde_json::to_value(&manifest).unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("release_exists")));

    // The CLI repairs a file that is too long or wrong, rather than trusting it.
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let target = dir.path().join("a.apk");
    for damaged in [vec![0u8; 600_000], {
        let mut wrong = bytes.clone();
        wrong[10] ^= 1;
        wrong
    }] {
        std::fs::write(&target, damaged).unwrap();
        let (code, _, err) =
            run_tms(&server, &creds, &["download", APP, "3.0.0", "--out", target.to_str().unwrap()], None);
        assert_eq!(code, 0, "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), bytes);
    }

    // A withdrawn release's artifact is no longer handed to terminals: one it was offered to is
    // told why (410 release_withdrawn), any other gets 404.
    let (_, location, _) = merchant(&server, &op, "Shop", "admin@shop.example", &["1900000003"]).await;
    let (_, device) = activate_device(
        &server,
        "admin@shop.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "1900000003",
        location,
        "Till",
    )
    .await;
    let device_token = device["device_token"].as_str().unwrap();
    let (status, body) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "version": "3.0.0", "target": format!("devices:{}", device["device_id"])}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let sha = Sha256Digest::of(&bytes).to_hex();
    let (status, _) = server
        .call(Method::HEAD, &format!("/api/v1/terminal/artifacts/{sha}"), Some(device_token), None)
        .await;
    assert_eq!(status, 200);
    post(&server, &op, &format!("/api/v1/apps/{APP}/releases/3.0.0/withdraw"), json!({})).await;
    let res = server
        .http
        .get(server.url(&format!("/api/v1/terminal/artifacts/{sha}")))
        .bearer_auth(device_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 410);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "release_withdrawn");
    let (_, elsewhere, _) = merchant(&server, &op, "Other", "admin@other.example", &["1900000004"]).await;
    let (_, other) = activate_device(
        &server,
        "admin@other.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "1900000004",
        elsewhere,
        "Till",
    )
    .await;
    let res = server
        .http
        .get(server.url(&format!("/api/v1/terminal/artifacts/{sha}")))
        .bearer_auth(other["device_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
});

backend_test!(deltas_are_built_in_the_background_from_earlier_releases, |db| {
    use tms_e2e::fixtures::*;
    const APP: &str = "eu.ccv.delta";
    let (server, op) = server_with_operator_and(&db, &[("TMS_DELTA_CHECK_SECS", "1")]).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    for (version, code) in [("1.0.0", 100), ("2.0.0", 200), ("3.0.0", 300)] {
        publish_release(&server, &op, &key, APP, "app", version, code, &["A920"]).await;
    }
    // The fixture's artifact of a version, as published.
    let artifact = |version: &str| artifact_of(APP, version);
    let mut shown = serde_json::Value::Null;
    for _ in 0..100 {
        shown = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/3.0.0")).await.1;
        if shown["deltas"].as_array().is_some_and(|d| d.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let deltas = shown["deltas"].as_array().unwrap_or_else(|| panic!("no deltas: {shown}"));
    let bases: Vec<&str> = deltas.iter().map(|d| d["base_version"].as_str().unwrap()).collect();
    assert_eq!(bases, ["2.0.0", "1.0.0"], "{shown}");
    // Each one turns exactly its base into the release's signed artifact.
    for delta in deltas {
        let sha = delta["sha256"].as_str().unwrap();
        let base_version = delta["base_version"].as_str().unwrap();
        assert_eq!(delta["base_sha256"], tms_signing::Sha256Digest::of(&artifact(base_version)).to_hex());
        let stored =
            std::fs::read(server.data_dir.join("blobs/blobs/sha256").join(&sha[..2]).join(sha)).unwrap();
        assert_eq!(delta["size"], stored.len() as u64);
        assert!(stored.len() * 10 < artifact("3.0.0").len(), "{} bytes", stored.len());
        let mut rebuilt = Vec::new();
        tms_delta::apply(&artifact(base_version), &mut &stored[..], &mut rebuilt).unwrap();
        assert_eq!(
            tms_signing::Sha256Digest::of(&rebuilt).to_hex(),
            shown["artifact_sha256"].as_str().unwrap()
        );
    }
    // The CLI lists them.
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let (code, out, err) = tms_e2e::run_tms(&server, &creds, &["release", "show", APP, "3.0.0"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("delta from   2.0.0") && out.contains("delta from   1.0.0"), "{out}");
    let (_, two) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/2.0.0")).await;
    assert_eq!(two["deltas"].as_array().map(Vec::len), Some(1), "2.0.0 from 1.0.0: {two}");

    // A terminal running 1.0.0 is offered 3.0.0 with the delta from exactly
    // its artifact; one whose 1.0.0 artifact differs gets none.
    let (merchant_id, location_id, _) =
        merchant(&server, &op, "Delta", "delta@delta.example", &["8100000001", "8100000002"]).await;
    let sha = |version: &str| tms_signing::Sha256Digest::of(&artifact(version)).to_hex();
    let on_one = tms_e2e::fixtures::activated_terminal(
        &server,
        "delta@delta.example",
        (merchant_id, location_id),
        "8100000001",
        "A920",
    )
    .await
    .with_app(APP, "1.0.0", 100, &sha("1.0.0"));
    let altered = tms_e2e::fixtures::activated_terminal(
        &server,
        "delta@delta.example",
        (merchant_id, location_id),
        "8100000002",
        "A920",
    )
    .await
    .with_app(APP, "1.0.0", 100, &"0".repeat(64));
    let body = deploy_to_everyone(&server, &op, APP, "3.0.0").await;
    let answer_to = |terminal: &tms_e2e::terminal::SimTerminal| {
        let server = &server;
        let terminal = terminal.clone();
        async move {
            let tms_e2e::terminal::Outcome::Answer(_, body) =
                terminal.contact(&server.http, &server.base_url).await
            else {
                panic!("refused")
            };
            body
        }
    };
    let offer_to = |terminal: &tms_e2e::terminal::SimTerminal| {
        let answer = answer_to(terminal);
        async move { answer.await.apps.first().and_then(|a| a.release.clone()) }
    };
    let offer = offer_to(&on_one).await.expect("3.0.0 offered");
    let delta = offer.delta.clone().expect("the delta from 1.0.0 offered");
    assert_eq!(delta.base_sha256, sha("1.0.0"));
    assert_eq!(offer_to(&altered).await.expect("3.0.0 offered").delta, None, "no delta for another artifact");
    // The terminal fetches it as the payment app does: the delta, applied
    // to its 1.0.0 and checked against the sha256 the publisher signed.
    let (fetched, way) =
        on_one.fetch_release(&server.http, &server.base_url, &offer, Some(&artifact("1.0.0"))).await.unwrap();
    assert_eq!((way, fetched == artifact("3.0.0")), ("delta", true), "byte-identical to 3.0.0");
    // With another base in hand (its 1.0.0 was replaced by 2.0.0 since it
    // reported), it takes the full artifact; the one with no delta too.
    let (fetched, way) =
        on_one.fetch_release(&server.http, &server.base_url, &offer, Some(&artifact("2.0.0"))).await.unwrap();
    assert_eq!((way, fetched == artifact("3.0.0")), ("full", true));
    let altered_offer = offer_to(&altered).await.unwrap();
    let (_, way) = altered.fetch_release(&server.http, &server.base_url, &altered_offer, None).await.unwrap();
    assert_eq!(way, "full");
    // Neither a wrong base nor a delta damaged on the way ever gives bytes
    // that pass the check against the signed sha256.
    let res =
        server.http.get(server.url(&delta.download_path)).bearer_auth(&on_one.token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, delta.size);
    let signed = offer.manifest.artifact_sha256.clone();
    let checked = |base: &[u8], delta: &[u8]| {
        let mut out = Vec::new();
        tms_delta::apply(base, &mut &delta[..], &mut out)
            .ok()
            .filter(|_| Sha256Digest::of(&out).to_hex() == signed)
    };
    assert!(checked(&artifact("1.0.0"), &bytes).is_some());
    assert!(checked(&artifact("2.0.0"), &bytes).is_none(), "a wrong base is refused by the check");
    let mut damaged = bytes.to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    assert!(checked(&artifact("1.0.0"), &damaged).is_none(), "a damaged delta is refused by the check");
    // The delta resumes with Range like an artifact.
    let res = server
        .http
        .get(server.url(&delta.download_path))
        .bearer_auth(&on_one.token)
        .header("range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap(), bytes.slice(10..));
    // Each says which way it took.
    let deployment_id = body["id"].as_i64().unwrap();
    for (terminal, way) in [(&on_one, "delta"), (&altered, "full")] {
        let status = terminal.report_installed(&server.http, &server.base_url, deployment_id, APP, way).await;
        assert!((200..300).contains(&status), "{status}");
        let (_, actions) =
            get(&server, &op, &format!("/api/v1/devices/{}/actions", terminal.device_id)).await;
        assert_eq!(actions[0]["download"], way, "{actions}");
    }
    let feedback =
        json!({"deployment_id": deployment_id, "app_id": APP, "status": "installed", "download": "pigeon"});
    let (status, answer) =
        server.call(Method::POST, "/api/v1/terminal/feedback", Some(&on_one.token), Some(feedback)).await;
    assert_eq!(
        (status.as_u16(), answer["error"]["details"]["field"].as_str()),
        (400, Some("download")),
        "{answer}"
    );
    // A delta the terminal is not offered is not there for it.
    let (status, _) = server.call(Method::GET, "/api/v1/terminal/deltas/00", Some(&on_one.token), None).await;
    assert_eq!(status, 404);

    // Withdrawn, 3.0.0 is never offered again: its deltas are retired, and
    // their blobs left to blob collection.
    let (status, _) =
        post(&server, &op, &format!("/api/v1/apps/{APP}/releases/3.0.0/withdraw"), json!({})).await;
    assert_eq!(status, 200);
    let mut left = usize::MAX;
    for _ in 0..100 {
        let (_, shown) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/3.0.0")).await;
        left = shown["deltas"].as_array().map_or(0, Vec::len);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the withdrawn release's deltas are retired");
    let (_, two) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/2.0.0")).await;
    assert_eq!(two["deltas"].as_array().map(Vec::len), Some(1), "2.0.0 keeps its delta");

    // Firmware too, matched by the sha256 of the image the terminal reports
    // running (a terminal that does not report it gets the full image).
    const FIRMWARE: &str = "paydroid.a920";
    let key = app_with_key(&server, &op, FIRMWARE, "firmware").await;
    for (version, code) in [("9.0.0", 900), ("10.0.0", 1000)] {
        publish_release(&server, &op, &key, FIRMWARE, "firmware", version, code, &["A920"]).await;
    }
    for _ in 0..100 {
        let (_, shown) = get(&server, &op, &format!("/api/v1/apps/{FIRMWARE}/releases/10.0.0")).await;
        if shown["deltas"].as_array().is_some_and(|d| d.len() == 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    deploy_to_everyone(&server, &op, FIRMWARE, "10.0.0").await;
    let image = |version: &str| artifact_of(FIRMWARE, version);
    let mut reporting = on_one.clone();
    reporting.state.firmware_sha256 = Some(Sha256Digest::of(&image("9.0.0")).to_hex());
    let firmware_offer = |terminal: &tms_e2e::terminal::SimTerminal| {
        let answer = answer_to(terminal);
        async move { answer.await.firmware.and_then(|f| f.release).expect("10.0.0 offered") }
    };
    let offer = firmware_offer(&reporting).await;
    assert_eq!(offer.delta.as_ref().map(|d| d.base_sha256.clone()), reporting.state.firmware_sha256);
    let (flashed, way) =
        reporting.fetch_release(&server.http, &server.base_url, &offer, Some(&image("9.0.0"))).await.unwrap();
    assert_eq!((way, flashed == image("10.0.0")), ("delta", true));
    assert_eq!(firmware_offer(&on_one).await.delta, None, "no sha256 reported, no delta");

    // A delta from a withdrawn base stays while a terminal still reports
    // running that base, and is retired by blob collection once none does.
    let (status, _) =
        post(&server, &op, &format!("/api/v1/apps/{APP}/releases/1.0.0/withdraw"), json!({})).await;
    assert_eq!(status, 200);
    let collect = || {
        let out = server.command().args(["blobs", "gc"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let deltas_of_two = || async {
        let (_, two) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/2.0.0")).await;
        two["deltas"].as_array().map_or(0, Vec::len)
    };
    // The plan reads what the terminal last reported (written first).
    get(&server, &op, &format!("/api/v1/devices/{}/plan", on_one.device_id)).await;
    collect();
    assert_eq!(deltas_of_two().await, 1, "a terminal still runs 1.0.0");
    let mut moved_on = on_one.clone();
    moved_on.install(APP, "2.0.0", 200, &sha("2.0.0"));
    moved_on.contact(&server.http, &server.base_url).await;
    get(&server, &op, &format!("/api/v1/devices/{}/plan", on_one.device_id)).await;
    collect();
    assert_eq!(deltas_of_two().await, 0, "no terminal runs 1.0.0 any more");
});
