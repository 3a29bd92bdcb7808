//! Webhooks: signed deliveries to a receiver on loopback, retried, scoped
//! to their subscriber, never sent for a change rolled back, and still
//! delivered after the server is killed between the commit and the sending.

use reqwest::Method;
use serde_json::{Value, json};
use tms_e2e::fixtures::*;
use tms_e2e::terminal::{Outcome, SimTerminal};
use tms_e2e::webhook_receiver::WebhookReceiver;
use tms_e2e::{ServerBuilder, TestServer, backend_test};

async fn subscribe(server: &TestServer, token: &str, url: &str, events: &[&str]) -> (u16, Value) {
    let (status, body) = post(server, token, "/api/v1/webhooks", json!({"url": url, "events": events})).await;
    (status.as_u16(), body)
}

/// Support asks the terminal to restart; the terminal reports it failed.
async fn failed_command(server: &TestServer, op: &str, terminal: &SimTerminal) -> i64 {
    let (status, command) = post(
        server,
        op,
        &format!("/api/v1/devices/{}/commands", terminal.device_id),
        json!({"kind": "restart"}),
    )
    .await;
    assert_eq!(status, 201, "{command}");
    let Outcome::Answer(_, body) = terminal.contact(&server.http, &server.base_url).await else {
        panic!("refused")
    };
    let id = body.commands.first().expect("the restart").id;
    let (status, _) = server
        .call(
            Method::POST,
            &format!("/api/v1/terminal/commands/{id}/result"),
            Some(&terminal.token),
            Some(json!({"status": "failed", "error_code": "E_BUSY", "message": "a payment is running"})),
        )
        .await;
    assert_eq!(status, 200);
    id
}

backend_test!(webhooks_are_signed_retried_and_go_to_their_subscribers_only, |db| {
    let (server, op) =
        server_with_operator_and(&db, &[("TMS_WEBHOOK_POLL_MS", "100"), ("TMS_ADJUSTABLE_CLOCK", "true")])
            .await;
    // The receiver fails the first delivery, then takes it.
    let receiver = WebhookReceiver::start(vec![500]).await;
    let (status, hook) =
        subscribe(&server, &op, &receiver.url, &["command.failed", "rollout.paused", "install.failed"]).await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().expect("the secret, once").to_owned();
    assert!(secret.starts_with("whsec_"));
    let (_, listed) = get(&server, &op, "/api/v1/webhooks").await;
    assert!(listed[0].get("secret").is_none(), "never shown again: {listed}");

    let (merchant_id, location_id, admin) =
        merchant(&server, &op, "Fromagerie", "owner@fromagerie.example", &["9700000001"]).await;
    let (_, _, other_admin) = merchant(&server, &op, "Autre", "owner@autre.example", &["9700000002"]).await;
    // A merchant's admin subscribes for its own terminals; rollouts are not theirs,
    // plain HTTP goes to this machine only.
    let (status, own) = subscribe(&server, &admin, "https://hooks.fromagerie.example/tms", &["*"]).await;
    assert_eq!(status, 201, "{own}");
    assert!(!own["events"].as_array().unwrap().contains(&json!("rollout.paused")));
    let (status, bad) =
        subscribe(&server, &admin, "https://hooks.fromagerie.example/", &["rollout.paused"]).await;
    assert_eq!((status, bad["error"]["details"]["field"].as_str()), (400, Some("events")));
    let (status, bad) = subscribe(&server, &admin, "http://hooks.fromagerie.example/", &["*"]).await;
    assert_eq!((status, bad["error"]["details"]["field"].as_str()), (400, Some("url")));
    let (status, theirs) = subscribe(&server, &other_admin, "https://hooks.autre.example/tms", &["*"]).await;
    assert_eq!(status, 201, "{theirs}");

    let terminal = activated_terminal(
        &server,
        "owner@fromagerie.example",
        (merchant_id, location_id),
        "9700000001",
        "A920",
    )
    .await;
    let command_id = failed_command(&server, &op, &terminal).await;
    let first = receiver.wait_for(1).await;
    assert_eq!(first.len(), 1, "the first attempt");
    // Tried again after 30 s (the server's clock moves instead of the test waiting).
    server.advance_clock(&op, 31).await;
    let both = receiver.wait_for(2).await;
    assert_eq!(both.len(), 2, "retried after the 500");
    let delivery = &both[1];
    assert!(delivery.signed_with(&secret), "the signature checks: {:?}", delivery.headers);
    assert!(!delivery.signed_with("whsec_another"));
    assert_eq!(delivery.header("tms-webhook-event"), "command.failed");
    assert_eq!(
        delivery.header("tms-webhook-id"),
        both[0].header("tms-webhook-id"),
        "one event, two attempts"
    );
    let event = delivery.json();
    assert_eq!(event["type"], "command.failed");
    assert_eq!(event["merchant_id"], merchant_id);
    assert_eq!(event["data"]["command_id"], command_id);
    assert_eq!(event["data"]["error_code"], "E_BUSY");
    // A failed install is an event too.
    const APP: &str = "eu.ccv.hooks";
    let key = app_with_key(&server, &op, APP, "app").await;
    publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    let deployment = deploy_to_everyone(&server, &op, APP, "1.0.0").await;
    let deployment_id = deployment["id"].as_i64().unwrap();
    terminal.contact(&server.http, &server.base_url).await;
    let status = terminal
        .feedback(&server.http, &server.base_url, deployment_id, APP, "failed", Some("E_SIGNATURE"))
        .await;
    assert!((200..300).contains(&status));
    let all = receiver.wait_for(3).await;
    let install =
        all.iter().find(|r| r.header("tms-webhook-event") == "install.failed").expect("install.failed");
    assert!(install.signed_with(&secret));
    assert_eq!(install.json()["data"]["error_code"], "E_SIGNATURE");
    assert_eq!(install.json()["data"]["deployment_id"], deployment_id);
    // The delivery log says how it went.
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let mut log = Value::Null;
    for _ in 0..50 {
        log = get(&server, &op, &format!("/api/v1/webhooks/{}/deliveries", hook["id"])).await.1;
        if log.as_array().is_some_and(|l| l.iter().all(|d| d["status"] == "delivered")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let command_log = log.as_array().unwrap().iter().find(|d| d["event"] == "command.failed").unwrap();
    assert_eq!(
        (
            command_log["status"].as_str(),
            command_log["attempts"].as_u64(),
            command_log["last_status_code"].as_u64()
        ),
        (Some("delivered"), Some(2), Some(200)),
        "{log}"
    );
    // The merchant's own subscription got its terminal's event; the other merchant's none.
    let admin = server.login("owner@fromagerie.example", MERCHANT_PASSWORD).await;
    let (_, own_log) = get(&server, &admin, &format!("/api/v1/webhooks/{}/deliveries", own["id"])).await;
    let own_events: Vec<&str> =
        own_log.as_array().unwrap().iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(own_events, ["install.failed", "command.failed"], "{own_log}");
    let other_admin = server.login("owner@autre.example", MERCHANT_PASSWORD).await;
    let (_, their_log) =
        get(&server, &other_admin, &format!("/api/v1/webhooks/{}/deliveries", theirs["id"])).await;
    assert_eq!(their_log.as_array().map(Vec::len), Some(0), "{their_log}");
    let (status, _) = get(&server, &other_admin, &format!("/api/v1/webhooks/{}/deliveries", own["id"])).await;
    assert_eq!(status, 404, "another merchant's subscription does not exist for them");
    // Unsubscribed: its pending deliveries stop.
    let (status, _) =
        server.call(Method::DELETE, &format!("/api/v1/webhooks/{}", own["id"]), Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, _) = get(&server, &admin, &format!("/api/v1/webhooks/{}/deliveries", own["id"])).await;
    assert_eq!(status, 404);
});

backend_test!(a_delivery_survives_a_crash_and_a_rolled_back_event_is_never_sent, |db| {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let key_file = key_file.to_str().unwrap();
    // The first server never gets to deliver: it is killed first.
    let first = ServerBuilder::new()
        .database(&db)
        .env("TMS_MASTER_KEY_FILE", key_file)
        .env("TMS_WEBHOOK_POLL_MS", "3600000")
        .start()
        .await;
    first.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let op = first.login(OPERATOR, OPERATOR_PASSWORD).await;
    let receiver = WebhookReceiver::start(Vec::new()).await;
    let (status, hook) = subscribe(&first, &op, &receiver.url, &["*"]).await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let (merchant_id, location_id, _) =
        merchant(&first, &op, "Caviste", "owner@caviste.example", &["9800000001"]).await;
    let terminal =
        activated_terminal(&first, "owner@caviste.example", (merchant_id, location_id), "9800000001", "A920")
            .await;

    // An event raised in a transaction that rolls back leaves nothing to send.
    let pool = db.pool();
    let mut conn = pool.get().unwrap();
    let rolled_back: Result<(), tms_server::db::DbError> = tms_server::db::write_tx(&mut conn, |conn| {
        let raised = tms_server::webhooks::enqueue(
            conn,
            "terminal.missing",
            Some(merchant_id),
            json!({"device_id": terminal.device_id, "rolled_back": true}),
        )?;
        assert_eq!(raised, 1, "the operator's subscription wants it");
        Err(tms_server::db::DbError::Query(diesel::result::Error::RollbackTransaction))
    });
    assert!(rolled_back.is_err());
    drop(conn);
    // A committed one, through the API.
    let command_id = failed_command(&first, &op, &terminal).await;
    let (_, log) = get(&first, &op, &format!("/api/v1/webhooks/{}/deliveries", hook["id"])).await;
    assert_eq!(log.as_array().map(Vec::len), Some(1), "only the committed event: {log}");
    assert_eq!(log[0]["status"], "pending");

    // kill -9 between the commit and the delivery.
    let killed =
        std::process::Command::new("kill").args(["-KILL", &first.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty());
    let second = ServerBuilder::new()
        .database(&db)
        .env("TMS_MASTER_KEY_FILE", key_file)
        .env("TMS_WEBHOOK_POLL_MS", "100")
        .start()
        .await;
    let delivered = receiver.wait_for(1).await;
    assert_eq!(delivered.len(), 1, "delivered after the restart");
    assert!(delivered[0].signed_with(&secret));
    let event = delivered[0].json();
    assert_eq!(
        (event["type"].as_str(), event["data"]["command_id"].as_i64()),
        (Some("command.failed"), Some(command_id))
    );
    // Nothing else comes: the rolled-back event was never there.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert_eq!(receiver.received().len(), 1);
    drop(second);
});
