//! The `tms` command line against a real server.

use std::process::Command;

use tms_e2e::{ServerBuilder, backend_test, binary};

fn tms() -> Command {
    let mut cmd = Command::new(binary("tms"));
    cmd.env_remove("TMS_SERVER").env_remove("TMS_TOKEN");
    cmd
}

backend_test!(status_reports_version_and_readiness, |db| {
    let server = ServerBuilder::new().database(&db).start().await;

    let out = tms().args(["--server", &server.base_url, "status"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains("ready    yes"), "{text}");

    let out = tms().args(["status", "--json"]).env("TMS_SERVER", &server.base_url).output().unwrap();
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["checks"]["database"], "ok");
});

backend_test!(status_of_an_unready_server_exits_1, |db| {
    let server = ServerBuilder::new()
        .database(&db)
        .env("TMS_OBJECT_STORE_URL", "s3://tms")
        .env("TMS_S3_ENDPOINT", "http://127.0.0.1:1")
        .env("TMS_S3_ALLOW_HTTP", "true")
        .env("TMS_S3_ACCESS_KEY_ID", "x")
        .env("TMS_S3_SECRET_ACCESS_KEY", "y")
        .start()
        .await;
    let out = tms().args(["--server", &server.base_url, "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ready    no"), "{text}");
    assert!(text.contains("object_store"), "{text}");
});

#[test]
fn unreachable_server_exits_1_and_usage_errors_exit_2() {
    let out = tms().args(["--server", "http://127.0.0.1:1", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the server"));

    let out = tms().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = tms().args(["--server", "ftp://x", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad --server is a usage error");
}
