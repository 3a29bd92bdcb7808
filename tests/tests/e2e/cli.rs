//! The `tms` command line against a real server.

use std::process::Command;

use tms_e2e::{ServerBuilder, backend_test, binary, run_tms};

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

backend_test!(account_commands_drive_the_whole_flow, |db| {
    let server = ServerBuilder::new().database(&db).start().await;
    server.create_operator("ops@psp.example", "support", "support pass phrase");
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().join("ops.json");
    let shop = dir.path().join("shop.json");

    let (code, out, err) = run_tms(
        &server,
        &ops,
        &["login", "--email", "ops@psp.example", "--password-stdin"],
        Some("support pass phrase"),
    );
    assert_eq!(code, 0, "{out}{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&ops).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (code, out, err) = run_tms(
        &server,
        &ops,
        &[
            "--json",
            "order",
            "create",
            "--company",
            "Crêperie Ty",
            "--contact-email",
            "ty@creperie.example",
            "--address",
            "4 rue du Port",
            "--postal-code",
            "29000",
            "--city",
            "Quimper",
            "--country",
            "FR",
            "--terminal",
            "9100000001:A920",
            "--terminal",
            "9100000002:A35",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let order: serde_json::Value = serde_json::from_str(&out).unwrap();
    let merchant = order["merchant_id"].as_i64().unwrap().to_string();
    let location = order["location"]["id"].as_i64().unwrap().to_string();

    let token = server.activation_token_for("ty@creperie.example");
    let (code, _, err) = run_tms(
        &server,
        &shop,
        &["activate", "--token", &token, "--password-stdin"],
        Some("galette complète 7"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_tms(
        &server,
        &shop,
        &["login", "--email", "ty@creperie.example", "--password-stdin"],
        Some("galette complète 7"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run_tms(&server, &shop, &["whoami"], None);
    assert_eq!(code, 0);
    assert!(out.contains("admin of merchant"), "{out}");

    let (code, out, err) = run_tms(
        &server,
        &shop,
        &[
            "--json",
            "user",
            "invite",
            "--merchant",
            &merchant,
            "--email",
            "serveur@creperie.example",
            "--permissions",
            "activate_app",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let user: serde_json::Value = serde_json::from_str(&out).unwrap();
    let user_id = user["id"].as_i64().unwrap().to_string();
    let (code, out, _) = run_tms(&server, &shop, &["user", "list", "--merchant", &merchant], None);
    assert_eq!(code, 0);
    assert!(out.contains("serveur@creperie.example") && out.contains("activate_app"), "{out}");
    let (code, out, err) = run_tms(
        &server,
        &shop,
        &["user", "update", &user_id, "--permissions", "activate_app,view_transactions"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("activate_app,view_transactions"), "{out}");

    let (code, out, err) =
        run_tms(&server, &shop, &["--json", "group", "create", "--merchant", &merchant, "Salle"], None);
    assert_eq!(code, 0, "{err}");
    let group: serde_json::Value = serde_json::from_str(&out).unwrap();
    let group_id = group["id"].as_i64().unwrap().to_string();
    let (code, _, err) = run_tms(
        &server,
        &shop,
        &["group", "grant", &group_id, "--location", &location, "--permissions", "manage_settings"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run_tms(&server, &shop, &["group", "add-user", &group_id, &user_id], None);
    assert_eq!(code, 0);
    assert!(out.contains(&user_id), "{out}");

    let (code, out, _) = run_tms(&server, &shop, &["location", "rename", &location, "Port"], None);
    assert_eq!(code, 0);
    assert!(out.contains("Port"), "{out}");
    let (code, out, _) = run_tms(&server, &shop, &["location", "list", "--merchant", &merchant], None);
    assert_eq!(code, 0);
    assert!(out.contains("Port") && out.contains("Quimper"), "{out}");
    let (code, out, _) = run_tms(&server, &shop, &["merchant", "terminals", &merchant], None);
    assert_eq!(code, 0);
    assert!(out.contains("9100000001") && out.contains("9100000002"), "{out}");

    let (code, out, _) = run_tms(
        &server,
        &shop,
        &["--json", "audit", "list", "--subject", &format!("location:{location}")],
        None,
    );
    assert_eq!(code, 0);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(events[0]["action"], "location.rename");

    let (code, out, _) =
        run_tms(&server, &shop, &["token", "create", "--name", "ci", "--expires", "30d"], None);
    assert_eq!(code, 0);
    let api_token = out.trim().to_owned();
    let (code, out, _) =
        run_tms(&server, &dir.path().join("none.json"), &["--token", &api_token, "whoami"], None);
    assert_eq!(code, 0);
    assert!(out.contains("ty@creperie.example"));

    let (code, out, _) = run_tms(&server, &shop, &["2fa", "enable"], None);
    assert_eq!(code, 0);
    assert!(out.contains("otpauth://totp/"), "{out}");

    // API errors exit 1 with the server's message and code.
    let (code, _, err) = run_tms(&server, &shop, &["user", "show", "999999"], None);
    assert_eq!(code, 1);
    assert!(err.contains("not_found"), "{err}");
    let (code, _, err) = run_tms(&server, &shop, &["user", "delete", "999999"], None);
    assert_eq!(code, 1, "{err}");

    let (code, _, _) = run_tms(&server, &shop, &["logout"], None);
    assert_eq!(code, 0);
    let (code, _, err) = run_tms(&server, &shop, &["whoami"], None);
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized"), "{err}");
});

backend_test!(device_and_transaction_commands, |db| {
    use tms_e2e::fixtures::*;
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, _) =
        merchant(&server, &op, "Bistro", "admin@bistro.example", &["9500000001"]).await;
    let (_, device) = activate_device(
        &server,
        "admin@bistro.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "9500000001",
        location,
        "Bar",
    )
    .await;
    let device_token = device["device_token"].as_str().unwrap().to_owned();
    let device_id = device["device_id"].as_i64().unwrap().to_string();
    server
        .call(
            reqwest::Method::POST,
            "/api/v1/terminal/transactions",
            Some(&device_token),
            Some(serde_json::json!({"transactions": [
                transaction("B1", 10, 1250, "EUR", "success"),
                transaction("B2", 5, 800, "EUR", "failure"),
            ]})),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    let (code, _, err) = run_tms(
        &server,
        &creds,
        &["login", "--email", "admin@bistro.example", "--password-stdin"],
        Some(MERCHANT_PASSWORD),
    );
    assert_eq!(code, 0, "{err}");
    let merchant = merchant_id.to_string();

    let (code, out, err) = run_tms(&server, &creds, &["device", "list", "--merchant", &merchant], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Bar") && out.contains("9500000001") && out.contains("admin@bistro.example"),
        "{out}"
    );
    let (code, out, _) = run_tms(&server, &creds, &["device", "rename", &device_id, "Terrasse"], None);
    assert_eq!(code, 0);
    assert!(out.contains("Terrasse"), "{out}");
    let (code, out, _) = run_tms(&server, &creds, &["tx", "list", "--merchant", &merchant], None);
    assert_eq!(code, 0);
    assert!(out.contains("12.50") && out.contains("total EUR: 2 transactions, net 12.50"), "{out}"); // A merchant's user need not name their merchant.
    let (code, out, err) = run_tms(&server, &creds, &["tx", "export", "--status", "success"], None);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("id,terminal_tx_id,"));
    assert!(lines[1].contains(",B1,") && lines[1].contains(",automatic,"));
    let (code, out, _) = run_tms(&server, &creds, &["--json", "device", "deactivate", &device_id], None);
    assert_eq!(code, 0);
    let deactivated: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deactivated["status"], "deactivated");
    let (code, _, err) = run_tms(&server, &creds, &["tx", "export", "--merchant", "999999"], None);
    assert_eq!(code, 1);
    assert!(err.contains("not_found"), "{err}");
});

#[test]
fn a_delta_applies_by_hand_and_a_wrong_one_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<u8> = (0..200_000u32).flat_map(|i| (i.wrapping_mul(2_654_435_761)).to_le_bytes()).collect();
    let mut target = base.clone();
    target[50_000..60_000].fill(7);
    let mut delta = Vec::new();
    tms_delta::build(&base, &mut &target[..], target.len() as u64, tms_delta::DEFAULT_LEVEL, &mut delta)
        .unwrap();
    assert!(delta.len() < target.len() / 10, "{} bytes", delta.len());
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("base.apk"), &base).unwrap();
    let other: Vec<u8> = base.iter().rev().copied().collect();
    std::fs::write(path("other.apk"), &other).unwrap();
    std::fs::write(path("1-to-2.delta"), &delta).unwrap();
    let sha = tms_signing::Sha256Digest::of(&target).to_hex();
    let apply = |base: &str, out: &str, expect: &str| {
        tms()
            .args(["delta", "apply"])
            .arg(path(base))
            .arg(path("1-to-2.delta"))
            .arg("--out")
            .arg(path(out))
            .args(["--expect-sha256", expect])
            .output()
            .unwrap()
    };
    let out = apply("base.apk", "new.apk", &sha);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&sha));
    assert_eq!(std::fs::read(path("new.apk")).unwrap(), target);
    // Another sha256 expected: refused, nothing written.
    let out = apply("base.apk", "refused.apk", &"0".repeat(64));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing written"));
    assert!(!path("refused.apk").exists());
    // Another base: refused, nothing written.
    let out = apply("other.apk", "wrong.apk", &sha);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!path("wrong.apk").exists());
}

backend_test!(support_sends_commands_and_fetches_a_log_from_the_cli, |db| {
    use tms_e2e::fixtures::*;
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, _) =
        merchant(&server, &op, "Kiosque", "admin@kiosque.example", &["9600000001"]).await;
    let mut terminal =
        activated_terminal(&server, "admin@kiosque.example", (merchant_id, location), "9600000001", "A920")
            .await;
    let id = terminal.device_id.to_string();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let tms = |args: &[&str]| {
        let (code, out, err) = run_tms(&server, &creds, args, None);
        assert_eq!(code, 0, "tms {args:?}: {err}");
        out
    };
    let out = tms(&["device", "command", &id, "lock", "--message", "Appelez-nous"]);
    assert!(out.contains("lock (Appelez-nous)") && out.contains("queued"), "{out}");
    let out = tms(&["device", "command", &id, "collect-logs", "--log", "system", "--max-bytes", "4096"]);
    assert!(out.contains("collect_logs (log system)"), "{out}");
    // A bad request is refused with the server's message.
    let (code, _, err) = run_tms(&server, &creds, &["device", "command", &id, "reboot"], None);
    assert_ne!(code, 0);
    assert!(err.contains("reboot"), "{err}");

    // The terminal gets both, uploads the log, and reports the lock.
    let tms_e2e::terminal::Outcome::Answer(_, body) = terminal.contact(&server.http, &server.base_url).await
    else {
        panic!("refused")
    };
    assert_eq!(body.commands.len(), 2);
    let upload = body.commands[1].log.clone().unwrap().upload_path;
    let res = server
        .http
        .put(server.url(&upload))
        .bearer_auth(&terminal.token)
        .body("12:00 boot\n12:01 payment app started\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/terminal/commands/{}/result", body.commands[0].id),
            Some(&terminal.token),
            Some(serde_json::json!({"status": "succeeded"})),
        )
        .await;
    assert_eq!(status, 200);
    terminal.apply(&server.http, &server.base_url, &body).await;

    let out = tms(&["device", "commands", &id]);
    assert!(out.lines().filter(|l| l.contains("succeeded")).count() == 2, "{out}");
    let out = tms(&["device", "logs", &id]);
    assert!(out.contains("system") && out.contains(" 37 "), "{out}");
    let log_id = out.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let file = dir.path().join("system.log");
    tms(&["device", "logs", &id, "--get", &log_id, "--out", file.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "12:00 boot\n12:01 payment app started\n");

    // A group command, followed, and a command cancelled.
    let out = tms(&["command", "send", "--target", &format!("devices:{id}"), "restart"]);
    let batch = out.lines().next().unwrap().split_whitespace().last().unwrap().to_owned();
    let mut shown = String::new();
    for _ in 0..50 {
        shown = tms(&["command", "batch", &batch]);
        if shown.contains("queued      1\n") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(shown.contains("queued      1\n") && shown.contains("kind        restart"), "{shown}");
    let restart = tms(&["device", "commands", &id, "--json"]);
    let restart: serde_json::Value = serde_json::from_str(&restart).unwrap();
    let restart_id = restart[0]["id"].to_string();
    let out = tms(&["command", "cancel", &restart_id]);
    assert!(out.contains("cancelled"), "{out}");
    let out = tms(&["command", "show", &restart_id]);
    assert!(out.contains("restart") && out.contains("cancelled"), "{out}");
});
