//! Remote commands: support and merchants send them, the terminal gets them
//! in its signed answer until it reports, and uploads the logs asked for.

use reqwest::Method;
use serde_json::{Value, json};
use tms_e2e::fixtures::*;
use tms_e2e::terminal::{Outcome, SimTerminal};
use tms_e2e::{TestServer, backend_test};
use tms_packages::wire::commands::CommandInstruction;

/// The commands in a terminal's answer, the answer checked against the
/// server's keys first (the commands are inside the signature).
async fn commands_of(server: &TestServer, terminal: &mut SimTerminal) -> (String, Vec<CommandInstruction>) {
    let Outcome::Answer(answer, body) = terminal.contact(&server.http, &server.base_url).await else {
        panic!("contact refused")
    };
    terminal.accept(&answer, &answer_keys(server).await).expect("a valid signed answer");
    if !body.commands.is_empty() {
        assert_eq!(body.device_id, Some(terminal.device_id), "bound to the terminal");
    }
    (answer.status, body.commands)
}

async fn report(server: &TestServer, terminal: &SimTerminal, id: i64, result: Value) -> (u16, Value) {
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/api/v1/terminal/commands/{id}/result"),
            Some(&terminal.token),
            Some(result),
        )
        .await;
    (status.as_u16(), body)
}

async fn send(server: &TestServer, token: &str, device_id: i64, command: Value) -> (u16, Value) {
    let (status, body) = post(server, token, &format!("/api/v1/devices/{device_id}/commands"), command).await;
    (status.as_u16(), body)
}

backend_test!(commands_reach_the_terminal_in_its_signed_answer_until_it_reports, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_ADJUSTABLE_CLOCK", "true")]).await;
    let (merchant_id, location_id, admin) =
        merchant(&server, &op, "Boulangerie", "owner@boulangerie.example", &["9100000001", "9100000002"])
            .await;
    let mut terminal = activated_terminal(
        &server,
        "owner@boulangerie.example",
        (merchant_id, location_id),
        "9100000001",
        "A920",
    )
    .await;
    let other = activated_terminal(
        &server,
        "owner@boulangerie.example",
        (merchant_id, location_id),
        "9100000002",
        "A920",
    )
    .await;
    // Its first answer brings its parameters; applied, it is in sync.
    let Outcome::Answer(_, first) = terminal.contact(&server.http, &server.base_url).await else {
        panic!("refused")
    };
    terminal.apply(&server.http, &server.base_url, &first).await;
    let (status, commands) = commands_of(&server, &mut terminal).await;
    assert_eq!((status.as_str(), commands.len()), ("in_sync", 0));

    // Support locks it with a message: the next answer carries the command.
    let (status, lock) = send(
        &server,
        &op,
        terminal.device_id,
        json!({"kind": "lock", "message": "Appelez le 01 23 45 67 89"}),
    )
    .await;
    assert_eq!(status, 201, "{lock}");
    assert_eq!(
        (lock["state"].as_str(), lock["issued_by"].as_str().map(|s| s.starts_with("user:"))),
        (Some("queued"), Some(true))
    );
    let id = lock["id"].as_i64().unwrap();
    let (status, commands) = commands_of(&server, &mut terminal).await;
    assert_eq!(status, "changes");
    assert_eq!(commands.len(), 1);
    assert_eq!(
        (commands[0].id, commands[0].kind.as_str(), commands[0].message.as_deref()),
        (id, "lock", Some("Appelez le 01 23 45 67 89"))
    );
    let (_, shown) = get(&server, &op, &format!("/api/v1/commands/{id}")).await;
    assert_eq!(shown["state"], "delivered", "{shown}");
    // Sent again until the terminal reports; the other terminal never gets it.
    assert_eq!(commands_of(&server, &mut terminal).await.1.len(), 1);
    let mut bystander = other.clone();
    assert!(commands_of(&server, &mut bystander).await.1.is_empty());
    assert_eq!(report(&server, &other, id, json!({"status": "succeeded"})).await.0, 404, "not its command");
    let (status, done) = report(&server, &terminal, id, json!({"status": "succeeded"})).await;
    assert_eq!((status, done["state"].as_str()), (200, Some("succeeded")), "{done}");
    let (status, commands) = commands_of(&server, &mut terminal).await;
    assert_eq!((status.as_str(), commands.len()), ("in_sync", 0), "done: not sent again");
    let (status, again) = report(&server, &terminal, id, json!({"status": "failed"})).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("command_finished")), "{again}");

    // A failure carries the terminal's error code.
    let (_, refresh) = send(&server, &op, terminal.device_id, json!({"kind": "refresh_inventory"})).await;
    let refresh_id = refresh["id"].as_i64().unwrap();
    assert_eq!(commands_of(&server, &mut terminal).await.1[0].id, refresh_id);
    let (status, failed) = report(
        &server,
        &terminal,
        refresh_id,
        json!({"status": "failed", "error_code": "E_STORAGE", "message": "disk full"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (failed["state"].as_str(), failed["error_code"].as_str()),
        (Some("failed"), Some("E_STORAGE"))
    );
    let (status, bad) = report(&server, &terminal, refresh_id, json!({"status": "maybe"})).await;
    assert_eq!((status, bad["error"]["details"]["field"].as_str()), (400, Some("status")), "{bad}");

    // Cancelled before the terminal called: it never gets it, and cannot report it.
    let (_, restart) = send(&server, &op, terminal.device_id, json!({"kind": "restart"})).await;
    let restart_id = restart["id"].as_i64().unwrap();
    let (status, cancelled) =
        post(&server, &op, &format!("/api/v1/commands/{restart_id}/cancel"), json!({})).await;
    assert_eq!((status.as_u16(), cancelled["state"].as_str()), (200, Some("cancelled")), "{cancelled}");
    assert!(commands_of(&server, &mut terminal).await.1.is_empty());
    assert_eq!(report(&server, &terminal, restart_id, json!({"status": "succeeded"})).await.0, 409);
    let (status, _) = post(&server, &op, &format!("/api/v1/commands/{restart_id}/cancel"), json!({})).await;
    assert_eq!(status, 409, "cancelled once");

    // Past its expiry, a command is no longer sent and cannot be reported.
    let (_, message) = send(
        &server,
        &op,
        terminal.device_id,
        json!({"kind": "message", "message": "Bonne journée", "expires_in_secs": 60}),
    )
    .await;
    let message_id = message["id"].as_i64().unwrap();
    server.advance_clock(&op, 120).await;
    let Outcome::Answer(_, body) = terminal.contact(&server.http, &server.base_url).await else {
        panic!("refused")
    };
    assert!(body.commands.is_empty(), "expired: {:?}", body.commands);
    let (_, shown) = get(&server, &op, &format!("/api/v1/commands/{message_id}")).await;
    assert_eq!(shown["state"], "expired");
    assert_eq!(report(&server, &terminal, message_id, json!({"status": "succeeded"})).await.0, 409);

    // The list, newest first.
    let (_, listed) = get(&server, &op, &format!("/api/v1/devices/{}/commands", terminal.device_id)).await;
    let states: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["expired", "cancelled", "failed", "succeeded"], "{listed}");

    // The merchant's admin may lock, unlock and message their terminals, not
    // restart them; another merchant's terminal does not exist for them.
    let (status, _) = send(&server, &admin, terminal.device_id, json!({"kind": "unlock"})).await;
    assert_eq!(status, 201);
    let (status, refused) = send(&server, &admin, terminal.device_id, json!({"kind": "restart"})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("forbidden")), "{refused}");
    let (_, _, stranger) = merchant(&server, &op, "Autre", "owner@autre.example", &["9100000009"]).await;
    let (status, _) = send(&server, &stranger, terminal.device_id, json!({"kind": "lock"})).await;
    assert_eq!(status, 404);

    // Bad requests name their field and queue nothing.
    for (command, field) in [
        (json!({"kind": "message", "message": "x".repeat(201)}), "message"),
        (json!({"kind": "message"}), "message"),
        (json!({"kind": "reboot"}), "kind"),
        (json!({"kind": "restart", "message": "hello"}), "message"),
        (json!({"kind": "collect_logs"}), "log"),
        (json!({"kind": "restart", "expires_in_secs": 5}), "expires_in_secs"),
    ] {
        let (status, bad) = send(&server, &op, terminal.device_id, command.clone()).await;
        assert_eq!(
            (status, bad["error"]["details"]["field"].as_str()),
            (400, Some(field)),
            "{command}: {bad}"
        );
    }
    let (_, listed) = get(&server, &op, &format!("/api/v1/devices/{}/commands", terminal.device_id)).await;
    assert_eq!(listed.as_array().unwrap().len(), 5, "the unlock added, nothing else");
});

backend_test!(a_terminal_uploads_the_log_asked_for_within_its_cap, |db| {
    let (server, op) =
        server_with_operator_and(&db, &[("TMS_ADJUSTABLE_CLOCK", "true"), ("TMS_COMMAND_SWEEP_SECS", "1")])
            .await;
    let (merchant_id, location_id, admin) =
        merchant(&server, &op, "Tabac", "owner@tabac.example", &["9200000001"]).await;
    let mut terminal =
        activated_terminal(&server, "owner@tabac.example", (merchant_id, location_id), "9200000001", "A920")
            .await;
    let (status, asked) = send(
        &server,
        &op,
        terminal.device_id,
        json!({"kind": "collect_logs", "log": {"name": "payment", "since": "2026-11-30T00:00:00Z", "max_bytes": 1000}}),
    )
    .await;
    assert_eq!(status, 201, "{asked}");
    let id = asked["id"].as_i64().unwrap();
    let (_, commands) = commands_of(&server, &mut terminal).await;
    let log = commands[0].log.clone().expect("what to upload and where");
    assert_eq!((log.name.as_str(), log.max_bytes, log.since), ("payment", 1000, Some(1_795_996_800)));
    let upload = |body: Vec<u8>, encoding: Option<&'static str>, path: String| {
        let (server, token) = (&server, terminal.token.clone());
        async move {
            let mut req = server.http.put(server.url(&path)).bearer_auth(token).body(body);
            if let Some(e) = encoding {
                req = req.header("content-encoding", e);
            }
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Past the cap: refused, nothing kept, the command still open.
    let (status, refused) = upload(vec![b'x'; 1001], None, log.upload_path.clone()).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (413, Some("payload_too_large")), "{refused}");
    let (_, shown) = get(&server, &op, &format!("/api/v1/commands/{id}")).await;
    assert_eq!(shown["state"], "delivered");
    let (status, _) = upload(b"x".to_vec(), Some("br"), log.upload_path.clone()).await;
    assert_eq!(status, 415, "only gzip");
    // A compressed upload within the cap completes the command.
    let gzipped: Vec<u8> = (0..900u32).map(|i| (i * 7 % 251) as u8).collect();
    let (status, stored) = upload(gzipped.clone(), Some("gzip"), log.upload_path.clone()).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!((stored["size"].as_u64(), stored["content_encoding"].as_str()), (Some(900), Some("gzip")));
    let (_, shown) = get(&server, &op, &format!("/api/v1/commands/{id}")).await;
    assert_eq!(
        (shown["state"].as_str(), shown["log_id"].as_i64()),
        (Some("succeeded"), stored["id"].as_i64())
    );
    let (status, again) = upload(b"more".to_vec(), None, log.upload_path.clone()).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("command_finished")), "{again}");
    // Only a collect_logs command takes a log.
    let (_, restart) = send(&server, &op, terminal.device_id, json!({"kind": "restart"})).await;
    let (status, _) =
        upload(b"log".to_vec(), None, format!("/api/v1/terminal/commands/{}/log", restart["id"])).await;
    assert_eq!(status, 409);

    // Support lists and downloads it as uploaded; the merchant may not.
    let (status, logs) = get(&server, &op, &format!("/api/v1/devices/{}/logs", terminal.device_id)).await;
    assert_eq!(status, 200);
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "{logs}");
    let path = logs[0]["download_path"].as_str().unwrap().to_owned();
    let res = server.http.get(server.url(&path)).bearer_auth(&op).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains(".log.gz"));
    assert_eq!(res.bytes().await.unwrap().to_vec(), gzipped);
    let (status, _) = get(&server, &admin, &format!("/api/v1/devices/{}/logs", terminal.device_id)).await;
    assert_eq!(status, 403);

    // Past its retention it is gone, from the list and from the object store.
    let sha = logs[0]["sha256"].as_str().unwrap().to_owned();
    let blob = server.data_dir.join("blobs/blobs/sha256").join(&sha[..2]).join(&sha);
    assert!(blob.exists());
    server.advance_clock(&op, 31 * 86_400).await;
    for _ in 0..100 {
        if !blob.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!blob.exists(), "deleted from the object store");
    // (A month later the operator's session has ended too.)
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let (_, logs) = get(&server, &op, &format!("/api/v1/devices/{}/logs", terminal.device_id)).await;
    assert_eq!(logs.as_array().map(Vec::len), Some(0));
    let (status, _) = get(&server, &op, &path).await;
    assert_eq!(status, 404);
});

backend_test!(a_group_command_reaches_each_of_a_thousand_terminals_once, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_COMMAND_FANOUT_PER_SEC", "300")]).await;
    let fleet = seed_fleet(&server, 1_000, 4, 2, "A920");
    let (status, batch) = post(
        &server,
        &op,
        "/api/v1/commands",
        json!({"target": "everyone", "command": {"kind": "message", "message": "Mise à jour ce soir"}}),
    )
    .await;
    assert_eq!(status, 202, "{batch}");
    let batch_id = batch["id"].as_i64().unwrap();
    // Fanned out a bounded share at a time.
    let mut seen_partial = false;
    let mut view = Value::Null;
    for _ in 0..300 {
        view = get(&server, &op, &format!("/api/v1/command-batches/{batch_id}")).await.1;
        let queued = view["queued"].as_u64().unwrap_or(0);
        seen_partial |= queued > 0 && queued < 1_000;
        if view["fanned_out"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((view["fanned_out"].as_bool(), view["queued"].as_u64()), (Some(true), Some(1_000)), "{view}");
    assert!(seen_partial, "300 a second: never all at once");
    // Each terminal gets it, once, and reports it.
    let keys = answer_keys(&server).await;
    for chunk in fleet.chunks(50) {
        let runs = chunk.iter().cloned().map(|mut terminal| {
            let (server, keys) = (&server, &keys);
            async move {
                let Outcome::Answer(answer, body) = terminal.contact(&server.http, &server.base_url).await
                else {
                    panic!("refused")
                };
                terminal.accept(&answer, keys).unwrap();
                assert_eq!(body.commands.len(), 1, "exactly one command for {}", terminal.device_id);
                let (status, _) =
                    report(server, &terminal, body.commands[0].id, json!({"status": "succeeded"})).await;
                assert_eq!(status, 200);
                let Outcome::Answer(_, body) = terminal.contact(&server.http, &server.base_url).await else {
                    panic!("refused")
                };
                assert!(body.commands.is_empty());
            }
        });
        futures_util::future::join_all(runs).await;
    }
    let (_, view) = get(&server, &op, &format!("/api/v1/command-batches/{batch_id}")).await;
    assert_eq!(view["states"], json!({"succeeded": 1000}), "{view}");
    // Support may not send a group command to a target that does not exist;
    // a merchant only to their own.
    let (status, bad) = post(
        &server,
        &op,
        "/api/v1/commands",
        json!({"target": "location:999999", "command": {"kind": "restart"}}),
    )
    .await;
    assert_eq!((status.as_u16(), bad["error"]["code"].as_str()), (400, Some("invalid_target")));
});

backend_test!(health_is_kept_for_support_and_a_download_waits_for_storage, |db| {
    use tms_packages::wire::contact::TerminalHealth;
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location_id, _) =
        merchant(&server, &op, "Marché", "owner@marche.example", &["9300000001"]).await;
    let mut terminal =
        activated_terminal(&server, "owner@marche.example", (merchant_id, location_id), "9300000001", "A920")
            .await;
    let health = TerminalHealth {
        battery_percent: Some(54),
        charging: Some(true),
        network: Some("mobile".into()),
        signal_percent: Some(70),
        printer: Some("paper_out".into()),
        uptime_secs: Some(3 * 3600 + 120),
    };
    terminal.health = Some(health.clone());
    let Outcome::Answer(_, first) = terminal.contact(&server.http, &server.base_url).await else {
        panic!("refused")
    };
    terminal.apply(&server.http, &server.base_url, &first).await;
    // In sync now: the fast path keeps the latest health too.
    terminal.health = Some(TerminalHealth { battery_percent: Some(53), ..health.clone() });
    let (status, _) = commands_of(&server, &mut terminal).await;
    assert_eq!(status, "in_sync");
    // (The plan writes what the server heard and has not written yet.)
    get(&server, &op, &format!("/api/v1/devices/{}/plan", terminal.device_id)).await;
    let (_, shown) = get(&server, &op, &format!("/api/v1/devices/{}", terminal.device_id)).await;
    assert_eq!(shown["health"]["battery_percent"], 53, "{shown}");
    assert_eq!(shown["health"]["printer"], "paper_out");
    assert_eq!(shown["free_storage_bytes"], 1u64 << 30);
    assert!(shown["health_reported_at"].is_string());
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let (code, out, err) =
        tms_e2e::run_tms(&server, &creds, &["device", "show", &terminal.device_id.to_string()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("battery       53 %, charging") && out.contains("out of paper"), "{out}");
    // A report out of range is refused, naming the field.
    terminal.health = Some(TerminalHealth { battery_percent: Some(150), ..health.clone() });
    let Outcome::Refused(status, body) = terminal.contact(&server.http, &server.base_url).await else {
        panic!("a battery at 150 % accepted")
    };
    assert_eq!((status, body["error"]["details"]["field"].as_str()), (400, Some("health.battery_percent")));
    terminal.health = Some(health);

    // A release larger than the free storage waits, and the plan says why.
    const APP: &str = "eu.ccv.storage";
    let key = app_with_key(&server, &op, APP, "app").await;
    publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    deploy_to_everyone(&server, &op, APP, "1.0.0").await;
    terminal.free_storage_bytes = 10_000;
    let Outcome::Answer(_, body) = terminal.contact(&server.http, &server.base_url).await else {
        panic!("refused")
    };
    assert!(body.apps.is_empty(), "32 KiB does not fit in 10,000 bytes");
    let (_, plan) = get(&server, &op, &format!("/api/v1/devices/{}/plan", terminal.device_id)).await;
    let app = plan["apps"].as_array().unwrap().iter().find(|a| a["app_id"] == APP).unwrap().clone();
    assert_eq!(
        (app["storage_needed_bytes"].as_u64(), app["storage_free_bytes"].as_u64()),
        (Some(32_768), Some(10_000))
    );
    let (code, out, err) =
        tms_e2e::run_tms(&server, &creds, &["device", "plan", &terminal.device_id.to_string()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("held        needs 32 KiB, 9.8 KiB free"), "{out}");
    // Once it reports room, it gets the release at once (not after the recheck).
    terminal.free_storage_bytes = 1 << 30;
    let Outcome::Answer(_, body) = terminal.contact(&server.http, &server.base_url).await else {
        panic!("refused")
    };
    assert_eq!(body.apps.first().map(|a| a.app_id.as_str()), Some(APP));
});
