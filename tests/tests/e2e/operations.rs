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
