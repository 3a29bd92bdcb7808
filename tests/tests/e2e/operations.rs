//! Health, readiness, the error envelope, metrics, the API document and shutdown.

use tms_e2e::{MotoServer, ServerBuilder, backend_test};

backend_test!(ready_with_database_and_store, |db| {
    let server = ServerBuilder::new().database(&db).start().await;

    let res = server.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 32, "{request_id}");
    let health: serde_json::Value = res.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    let (status, ready) = server.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["object_store"], "ok");
});

backend_test!(errors_share_one_envelope, |db| {
    let server = ServerBuilder::new().database(&db).start().await;

    let res = server.get("/no/such/endpoint").await;
    assert_eq!(res.status(), 404);
    let header_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(body["error"]["request_id"], header_id.as_str());

    // A caller's own request id is kept, so a request can be traced across a proxy.
    let res = server.http.get(server.url("/nope")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-42");

    // A known path with the wrong method.
    let res = server.http.post(server.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let res = server.http.put(server.url("/api/v1/apps")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), &res.headers()["allow"]), (405, &"GET, POST".parse().unwrap()));

    // One that could smuggle anything into logs is replaced.
    let res = server.http.get(server.url("/nope")).header("x-request-id", "a b\"c").send().await.unwrap();
    assert_ne!(res.headers()["x-request-id"], "a b\"c");
});

backend_test!(metrics_count_requests_by_route_and_status, |db| {
    let server = ServerBuilder::new().database(&db).start().await;
    for _ in 0..3 {
        assert_eq!(server.get("/healthz").await.status(), 200);
    }
    assert_eq!(server.get("/readyz").await.status(), 200);
    assert_eq!(server.get("/missing").await.status(), 404);

    let res = server.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"tms_http_requests_total{route="/healthz",method="GET",status="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tms_http_requests_total{route="unmatched",method="GET",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"tms_http_request_duration_seconds_count{route="/readyz",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("# TYPE tms_http_request_duration_seconds histogram"), "{text}");
    // /readyz used a pooled connection, so the pool has opened at least one.
    let open: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("tms_db_pool_connections "))
        .expect("pool gauge")
        .parse()
        .unwrap();
    assert!(open >= 1, "{text}");
    assert!(text.contains("tms_db_pool_max_connections 16"), "{text}");
});

backend_test!(openapi_document_is_served_and_matches_the_snapshot, |db| {
    let server = ServerBuilder::new().database(&db).start().await;
    let (status, served) = server.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let committed: serde_json::Value = serde_json::from_str(include_str!("../../../server/openapi.json"))
        .expect("committed snapshot is JSON");
    assert!(served == committed, "served document differs from server/openapi.json");
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert!(served["paths"][path]["get"].is_object(), "{path} missing from the document");
    }
});

backend_test!(sigterm_drains_in_flight_requests_then_exits_0, |db| {
    // An "S3 server" that accepts connections and never answers keeps a
    // readiness probe in flight for its full 3 s timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let (connected, probing) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for mut conn in silent.incoming().flatten() {
            let connected = connected.clone();
            // Each connection is read and held, never answered; the
            // readiness probe (a listing of `readyz`) is told apart from the
            // server's other calls.
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&seen).contains("readyz") {
                        let _ = connected.send(());
                        seen.clear();
                    }
                }
            });
        }
    });
    let server = ServerBuilder::new()
        .database(&db)
        .env("TMS_OBJECT_STORE_URL", "s3://tms")
        .env("TMS_S3_ENDPOINT", &endpoint)
        .env("TMS_S3_ALLOW_HTTP", "true")
        .env("TMS_S3_ACCESS_KEY_ID", "x")
        .env("TMS_S3_SECRET_ACCESS_KEY", "y")
        .arg("--shutdown-timeout-secs")
        .arg("10")
        .start()
        .await;

    let in_flight = tokio::spawn(server.http.get(server.url("/readyz")).send());
    // The probe has reached the object store: the request is in flight.
    tokio::task::spawn_blocking(move || probing.recv_timeout(std::time::Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the readiness probe reaches the object store");
    let status = server.terminate().await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let res = in_flight.await.unwrap().expect("the in-flight request is answered, not cut");
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    // Answered after its probe timed out: the server waited for the request before it exited.
    assert_eq!(body["error"]["details"]["object_store"], "timeout");
});

#[tokio::test]
async fn zero_configuration_creates_its_data_under_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new().zero_config_in(cwd.path().to_owned()).start().await;
    let (status, ready) = server.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert!(cwd.path().join("tms-data/tms.sqlite").is_file());
    assert!(cwd.path().join("tms-data/blobs").is_dir());
    let listening =
        server.logs().into_iter().find(|l| l.contains("tms-server listening")).expect("start-up line");
    assert!(listening.contains("tms-data") && listening.contains("127.0.0.1:"), "{listening}");
}

backend_test!(s3_store_ready_then_not_ready_when_it_stops, |db| {
    let Some(mut s3) = MotoServer::start_private().await else {
        return;
    };
    let server = ServerBuilder::new().database(&db).s3(&s3).start().await;
    let (status, ready) = server.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["object_store"], "ok");

    s3.stop().await;
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].as_str().unwrap().contains("object_store"), "{body}");
    assert_ne!(body["error"]["details"]["object_store"], "ok");
    assert_eq!(body["error"]["details"]["database"], "ok");
    // Liveness does not depend on the store.
    assert_eq!(server.get("/healthz").await.status(), 200);
});

backend_test!(missing_bucket_is_not_ready, |db| {
    let Some(s3) = MotoServer::start().await else { return };
    let server = ServerBuilder::new()
        .database(&db)
        .s3(&s3)
        .env("TMS_OBJECT_STORE_URL", "s3://no-such-bucket")
        .start()
        .await;
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["details"]["object_store"], "unavailable");
});

#[tokio::test]
async fn readiness_follows_the_database_down_and_back() {
    let Some(db) = tms_e2e::TestDatabase::postgres() else { return };
    let server = ServerBuilder::new().database(&db).start().await;
    assert_eq!(server.get("/readyz").await.status(), 200);

    db.postgres_outage();
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_ne!(body["error"]["details"]["database"], "ok", "{body}");
    assert_eq!(body["error"]["details"]["object_store"], "ok", "{body}");

    db.postgres_recover();
    let (status, body) = server.get_json("/readyz").await;
    assert_eq!(status, 200, "pooled connections to the old database must not linger: {body}");
}

/// A `tms-server` command on another installation's settings (database and data dir).
fn server_command(db: &tms_e2e::TestDatabase, data_dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(tms_e2e::binary("tms-server"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TMS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TMS_DATABASE_URL", &db.url).env("TMS_DATA_DIR", data_dir);
    cmd
}

fn count(pool: &tms_server::db::Db, table: &str) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = pool.get().unwrap();
    let row: Count =
        diesel::sql_query(format!("SELECT count(*) AS n FROM {table}")).get_result(&mut *conn).unwrap();
    row.n
}

/// Every file under `dir`, by its path below it, with its bytes.
fn files_under(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

backend_test!(an_older_server_refuses_a_database_a_newer_one_migrated, |db| {
    let server = ServerBuilder::new().database(&db).start().await;
    let data_dir = server.data_dir.clone();
    assert_eq!(server.terminate().await.code(), Some(0));
    let check = server_command(&db, &data_dir).args(["migrate", "--check"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("up to date"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // A newer server's migration, as it would leave it.
    {
        use diesel::RunQueryDsl;
        let pool = db.pool();
        let mut conn = pool.get().unwrap();
        diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ('20990101000000')")
            .execute(&mut *conn)
            .unwrap();
    }
    let check = server_command(&db, &data_dir).args(["migrate", "--check"]).output().unwrap();
    let said = String::from_utf8_lossy(&check.stderr).to_string();
    assert!(!check.status.success());
    assert!(said.contains("migrated by a newer tms-server") && said.contains("20990101000000"), "{said}");
    // The server itself stops before serving, with the same words.
    let mut serve = server_command(&db, &data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            serve.kill().unwrap();
            panic!("the server started against a newer schema");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(serve.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("migrated by a newer tms-server"), "{stderr}");
});

backend_test!(a_backup_taken_under_load_restores_every_committed_row_and_blob, |db| {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tms_e2e::fixtures::*;

    let (server, op) = server_with_operator(&db).await;
    const APP: &str = "eu.ccv.salespoint";
    let key = app_with_key(&server, &op, APP, "app").await;
    publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    publish_release(&server, &op, &key, APP, "app", "2.0.0", 200, &["A920"]).await;
    let (status, body) = post(
        &server,
        &op,
        "/api/v1/parameters/tms.terminal/global/0",
        serde_json::json!({"set": {"receipt.header": "Sauvegarde"}, "reason": "backup test"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fleet = seed_fleet(&server, 24, 2, 2, "A920");

    // Terminals upload transactions and call in, four at a time, until told to stop; each
    // remembers the uploads answered before the backup began.
    let stop = Arc::new(AtomicBool::new(false));
    let backing_up = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for group in fleet.chunks(6) {
        let (group, stop, backing_up) = (group.to_vec(), stop.clone(), backing_up.clone());
        let (http, base) = (server.http.clone(), server.base_url.clone());
        load.push(tokio::spawn(async move {
            let (mut before, mut during) = (Vec::new(), 0usize);
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                for t in &group {
                    let id = format!("{}-{n}", t.device_id);
                    let tx = transaction(&id, 1, 1_250, "EUR", "success");
                    let res = http
                        .post(format!("{base}/api/v1/terminal/transactions"))
                        .bearer_auth(&t.token)
                        .json(&serde_json::json!({"transactions": [tx]}))
                        .send()
                        .await
                        .unwrap();
                    assert!(res.status().is_success(), "{}", res.status());
                    if backing_up.load(Ordering::SeqCst) {
                        during += 1;
                    } else {
                        before.push(id);
                    }
                    t.contact(&http, &base).await;
                }
            }
            (before, during)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("backup");
    backing_up.store(true, Ordering::SeqCst);
    let mut cmd = server.command();
    cmd.arg("backup").arg("--out").arg(&out);
    let backup = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    let (mut committed, mut during) = (Vec::new(), 0);
    for task in load {
        let (before, d) = task.await.unwrap();
        committed.extend(before);
        during += d;
    }
    assert!(!committed.is_empty());
    println!("{} uploads answered before the backup, {during} during and after it", committed.len());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["server_version"], env!("CARGO_PKG_VERSION"), "{manifest}");
    assert!(manifest["schema_version"].as_str().unwrap().starts_with("2026"), "{manifest}");

    // Restore into a new database and data directory, then start a server there.
    let restored_db = db.another();
    let place = tempfile::tempdir().unwrap();
    let data_dir = place.path().join("data");
    let restore =
        server_command(&restored_db, &data_dir).arg("restore").arg("--from").arg(&out).output().unwrap();
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    // Never over something.
    let again =
        server_command(&restored_db, &data_dir).arg("restore").arg("--from").arg(&out).output().unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let (original, restored) = (db.pool(), restored_db.pool());
    for table in
        ["devices", "releases", "apps", "parameter_set_versions", "merchants", "users", "server_keys"]
    {
        assert_eq!(count(&original, table), count(&restored, table), "{table}");
    }
    let ids: std::collections::BTreeSet<String> = {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Text)]
            terminal_tx_id: String,
        }
        let mut conn = restored.get().unwrap();
        diesel::sql_query("SELECT terminal_tx_id FROM transactions")
            .load::<Id>(&mut *conn)
            .unwrap()
            .into_iter()
            .map(|r| r.terminal_tx_id)
            .collect()
    };
    let missing: Vec<&String> = committed.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(missing.is_empty(), "{} committed transactions missing: {missing:?}", missing.len());
    // The blobs (two artifacts, a parameter set, …), byte for byte.
    let blobs = files_under(&server.data_dir.join("blobs/blobs"));
    assert!(blobs.len() >= 3, "{:?}", blobs.keys());
    assert_eq!(blobs, files_under(&data_dir.join("blobs/blobs")));

    // The master key is no part of a backup: it is put back beside it.
    std::fs::copy(server.master_key_file(), data_dir.join("master.key")).unwrap();
    let restored_server = ServerBuilder::new()
        .database(&restored_db)
        .env("TMS_DATA_DIR", &data_dir.display().to_string())
        .start()
        .await;
    let op = restored_server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let t = &fleet[0];
    let (status, values) =
        get(&restored_server, &op, &format!("/api/v1/devices/{}/parameters", t.device_id)).await;
    assert_eq!(status, 200, "{values}");
    assert_eq!(values["values"]["receipt.header"]["value"], "Sauvegarde", "{values}");
    match t.contact(&restored_server.http, &restored_server.base_url).await {
        tms_e2e::terminal::Outcome::Answer(..) => {}
        other => panic!("the restored server does not know the terminal: {other:?}"),
    }
    let (status, releases) = get(&restored_server, &op, &format!("/api/v1/apps/{APP}/releases")).await;
    assert_eq!(status, 200, "{releases}");
    assert_eq!(releases.as_array().map(Vec::len), Some(2), "{releases}");
});

backend_test!(a_backup_of_blobs_on_s3_restores_into_another_bucket, |db| {
    use tms_e2e::fixtures::*;

    let Some(s3) = MotoServer::start().await else { return };
    let (server, op) = {
        let server = ServerBuilder::new().database(&db).s3(&s3).start().await;
        server.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
        let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
        (server, op)
    };
    const APP: &str = "eu.ccv.salespoint";
    let key = app_with_key(&server, &op, APP, "app").await;
    let release = publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("backup");
    let backup = server.command().arg("backup").arg("--out").arg(&out).output().unwrap();
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    let sha = release["artifact_sha256"].as_str().unwrap();
    let copied = std::fs::read(out.join("blobs").join(sha)).unwrap();
    assert_eq!(tms_signing::Sha256Digest::of(&copied).to_hex(), sha);

    // Into another bucket and database.
    let Some(other) = MotoServer::start().await else { return };
    let restored_db = db.another();
    let place = tempfile::tempdir().unwrap();
    let data_dir = place.path().join("data");
    let on_other = |cmd: &mut std::process::Command| {
        cmd.env("TMS_OBJECT_STORE_URL", format!("s3://{}", other.bucket))
            .env("TMS_S3_ENDPOINT", &other.endpoint)
            .env("TMS_S3_ALLOW_HTTP", "true")
            .env("TMS_S3_ACCESS_KEY_ID", "tms-test")
            .env("TMS_S3_SECRET_ACCESS_KEY", "tms-test-secret");
    };
    let mut restore = server_command(&restored_db, &data_dir);
    on_other(&mut restore);
    let restore = restore.arg("restore").arg("--from").arg(&out).output().unwrap();
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    std::fs::copy(server.master_key_file(), data_dir.join("master.key")).unwrap();
    let restored = ServerBuilder::new()
        .database(&restored_db)
        .s3(&other)
        .env("TMS_DATA_DIR", &data_dir.display().to_string())
        .start()
        .await;
    let op = restored.login(OPERATOR, OPERATOR_PASSWORD).await;
    let res = restored
        .http
        .get(restored.url(&format!("/api/v1/apps/{APP}/releases/1.0.0/artifact")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), copied.as_slice(), "the artifact, byte for byte");
});

/// A certificate authority for tests, and a certificate it signs for this
/// machine's loopback: (CA certificate PEM, certificate PEM, key PEM).
fn certificate_for_loopback(ca_name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// `curl --cacert` against the server's TLS listener: the status, or
/// `None` when the handshake or the certificate check failed.
fn curl_https(ca: &std::path::Path, url: &str) -> (Option<u16>, String) {
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--include", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).filter(|_| out.status.success());
    (status, format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn the_server_speaks_tls_itself_and_serves_a_renewed_certificate_without_restart() {
    use tms_e2e::fixtures::*;
    if tms_e2e::require_programs("the TLS test", &["curl"]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca_path, renewed_ca_path) = (dir.path().join("ca.pem"), dir.path().join("renewed-ca.pem"));
    let (ca, cert, key) = certificate_for_loopback("TMS test CA");
    std::fs::write(&ca_path, ca).unwrap();
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let db = tms_e2e::TestDatabase::sqlite();
    let server = ServerBuilder::new()
        .database(&db)
        .env("TMS_TLS_CERT", &cert_path.display().to_string())
        .env("TMS_TLS_KEY", &key_path.display().to_string())
        .env("TMS_TLS_RELOAD_SECS", "1")
        .start()
        .await;
    let https = server.base_url.replace("http://", "https://");

    let (status, answer) = curl_https(&ca_path, &format!("{https}/healthz"));
    assert_eq!(status, Some(200), "{answer}");
    assert!(answer.to_lowercase().contains("strict-transport-security: max-age=31536000"), "HSTS: {answer}");
    let plain = reqwest::get(format!("{}/healthz", server.base_url)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "no plain HTTP on the TLS port");

    // A renewal (from another authority, so the test can tell which one is
    // served) replaces the files as a certificate manager would.
    let (renewed_ca, renewed_cert, renewed_key) = certificate_for_loopback("TMS renewed CA");
    std::fs::write(&renewed_ca_path, renewed_ca).unwrap();
    std::fs::write(dir.path().join("key.new"), renewed_key).unwrap();
    std::fs::write(dir.path().join("cert.new"), renewed_cert).unwrap();
    std::fs::rename(dir.path().join("key.new"), &key_path).unwrap();
    std::fs::rename(dir.path().join("cert.new"), &cert_path).unwrap();
    let mut served = None;
    for _ in 0..80 {
        if let (Some(200), _) = curl_https(&renewed_ca_path, &format!("{https}/healthz")) {
            served = Some(());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(served.is_some(), "the renewed certificate was not served: {}", server.logs().join("\n"));
    assert_eq!(curl_https(&ca_path, &format!("{https}/healthz")).0, None, "the old one is gone");

    // The reload is in the audit log; the server never restarted.
    server.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&renewed_ca_path).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let login: serde_json::Value = client
        .post(format!("{https}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": OPERATOR, "password": OPERATOR_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events: serde_json::Value = client
        .get(format!("{https}/api/v1/audit?action=tls.reload"))
        .bearer_auth(login["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["action"], "tls.reload", "{events}");
    assert_eq!(server.logs().iter().filter(|l| l.contains("tms-server listening")).count(), 1);
}
