//! Terminal activation, the device lifecycle and transactions.

use reqwest::Method;
use serde_json::{Value, json};
use tms_e2e::backend_test;
use tms_e2e::fixtures::*;

const SERIAL_1: &str = "1850000001";
const SERIAL_2: &str = "1850000002";
const SERIAL_3: &str = "1850000003";

async fn upload(
    server: &tms_e2e::TestServer,
    device_token: &str,
    txs: Vec<Value>,
) -> (reqwest::StatusCode, Value) {
    server
        .call(
            Method::POST,
            "/api/v1/terminal/transactions",
            Some(device_token),
            Some(json!({"transactions": txs})),
        )
        .await
}

fn token(device: &Value) -> String {
    device["device_token"].as_str().expect("device token").to_owned()
}

backend_test!(activation_needs_the_right_user_and_a_registered_terminal, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Boulangerie", "admin@boul.example", &[SERIAL_1, SERIAL_2, SERIAL_3]).await;
    let (_, _, _) = merchant(&server, &op, "Other", "admin@other.example", &["7777777777"]).await;

    // The admin: step one lists where the app may be activated and where the terminal was delivered.
    let (status, ticket) = server
        .call(Method::POST, "/api/v1/terminal/activation/start", None,
              Some(json!({"email": "admin@boul.example", "password": MERCHANT_PASSWORD, "app": "salespoint", "hardware_id": SERIAL_1, "model": "A920"})))
        .await;
    assert_eq!(status, 200, "{ticket}");
    assert_eq!(ticket["merchant_id"], merchant_id);
    assert_eq!(ticket["registered_location_id"], location);
    assert_eq!(ticket["locations"][0]["id"], location);
    let complete = json!({"ticket": ticket["ticket"], "location_id": location, "device_name": "Caisse 1"});
    let (status, device) =
        server.call(Method::POST, "/api/v1/terminal/activation/complete", None, Some(complete.clone())).await;
    assert_eq!(status, 201, "{device}");
    assert_eq!(token(&device).len(), 6 + 64);
    assert!(device.get("replaces_device_id").is_none());
    // A ticket works once.
    let (status, body) =
        server.call(Method::POST, "/api/v1/terminal/activation/complete", None, Some(complete)).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("activation_ticket_invalid")));

    // A user with activate_app (and a group that grants the location) may activate too.
    let (clerk_id, _) =
        invite(&server, &admin, merchant_id, "clerk@boul.example", json!({"permissions": ["activate_app"]}))
            .await;
    let group = group_granting(
        &server,
        &admin,
        merchant_id,
        "Shop",
        location,
        json!(["view_transactions"]),
        &[clerk_id],
    )
    .await;
    let (status, body) = activate_device(
        &server,
        "clerk@boul.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_2,
        location,
        "Caisse 2",
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Without activate_app: refused.
    let (viewer_id, _) = invite(
        &server,
        &admin,
        merchant_id,
        "viewer@boul.example",
        json!({"permissions": ["view_transactions"]}),
    )
    .await;
    server
        .call(Method::PUT, &format!("/api/v1/groups/{group}/members/{viewer_id}"), Some(&admin), None)
        .await;
    let (status, _) = activate_device(
        &server,
        "viewer@boul.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_3,
        location,
        "Caisse 3",
    )
    .await;
    assert_eq!(status, 403);

    // A serial not in this merchant's estate (unknown, or another merchant's).
    for serial in ["9999999999", "7777777777"] {
        let (status, body) = activate_device(
            &server,
            "admin@boul.example",
            MERCHANT_PASSWORD,
            "salespoint",
            serial,
            location,
            "X",
        )
        .await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (404, Some("unknown_terminal")),
            "{serial}: {body}"
        );
    }
    // An active name is taken, whatever its case and surrounding spaces; an
    // active terminal cannot be activated twice.
    for name in ["Caisse 1", "caisse 1 "] {
        let (status, body) = activate_device(
            &server,
            "admin@boul.example",
            MERCHANT_PASSWORD,
            "salespoint",
            SERIAL_3,
            location,
            name,
        )
        .await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (409, Some("device_name_taken")),
            "{name:?}: {body}"
        );
    }
    let (status, body) = activate_device(
        &server,
        "admin@boul.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        location,
        "Caisse 9",
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (409, Some("device_already_active")),
        "{body}"
    );
    // Wrong password: no ticket.
    let (status, _) = activate_device(
        &server,
        "admin@boul.example",
        "not the password",
        "salespoint",
        SERIAL_3,
        location,
        "Caisse 3",
    )
    .await;
    assert_eq!(status, 401);

    let (_, devices) = get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/devices")).await;
    let names: Vec<&str> = devices.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Caisse 1", "Caisse 2"]);
    let (_, filtered) =
        get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/devices?app=tapngo")).await;
    assert_eq!(filtered, json!([]));
});

backend_test!(a_user_with_two_step_verification_activates_a_terminal, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (_, location, admin) = merchant(&server, &op, "Vélo", "owner@velo.example", &[SERIAL_1]).await;
    let (_, enrollment) = post(&server, &admin, "/api/v1/auth/2fa/enroll", json!({})).await;
    let secret = tms_server::auth::totp::base32_decode(enrollment["secret"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (status, _) = post(
        &server,
        &admin,
        "/api/v1/auth/2fa/confirm",
        json!({"code": tms_server::auth::totp::current_code(&secret, now)}),
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = activate_device(
        &server,
        "owner@velo.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        location,
        "Comptoir",
    )
    .await;
    assert_eq!(status, 201, "two-step verification does not block the app: {body}");
    let (_, events) = get(&server, &op, "/api/v1/audit?action=auth.terminal_activation").await;
    assert_eq!(events[0]["detail"]["two_factor_enabled"], true);
});

backend_test!(a_replacement_terminal_takes_the_old_name_and_history, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Café", "admin@cafe.example", &[SERIAL_1, SERIAL_2]).await;
    let (_, old) = activate_device(
        &server,
        "admin@cafe.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        location,
        "Bar",
    )
    .await;
    let old_token = token(&old);
    let old_id = old["device_id"].as_i64().unwrap();
    let (status, result) = upload(
        &server,
        &old_token,
        vec![
            transaction("T1", 30, 450, "EUR", "success"),
            transaction("T2", 20, 1200, "EUR", "success"),
            transaction("T3", 10, 300, "EUR", "failure"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result, json!({"accepted": 3, "duplicates": 0}));

    // The screen broke: support deactivates it.
    let (status, device) =
        post(&server, &op, &format!("/api/v1/devices/{old_id}/deactivate"), json!({})).await;
    assert_eq!(status, 200, "{device}");
    assert_eq!(device["status"], "deactivated");
    assert_eq!(device["sessions"], json!([]));
    let (status, body) =
        server.call(Method::GET, "/api/v1/terminal/transactions", Some(&old_token), None).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("device_deactivated")));
    let (status, body) =
        server.call(Method::GET, "/api/v1/terminal/transactions", Some("tms_d_nonsense"), None).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("invalid_device_token")));

    // The new terminal takes the old name, and with it the history.
    let (status, new) = activate_device(
        &server,
        "admin@cafe.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_2,
        location,
        "Bar",
    )
    .await;
    assert_eq!(status, 201, "{new}");
    assert_eq!(new["replaces_device_id"], old_id);
    let new_token = token(&new);
    let new_id = new["device_id"].as_i64().unwrap();
    let (status, history) =
        server.call(Method::GET, "/api/v1/terminal/transactions", Some(&new_token), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        history["items"].as_array().unwrap().iter().map(|t| t["terminal_tx_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["T3", "T2", "T1"]);
    assert!(history["items"].as_array().unwrap().iter().all(|t| t["device_id"] == new_id));

    let (_, old_detail) = get(&server, &admin, &format!("/api/v1/devices/{old_id}")).await;
    assert_eq!(old_detail["status"], "replaced");
    assert_eq!(old_detail["replaced_by_device_id"], new_id);
    let (_, new_detail) = get(&server, &admin, &format!("/api/v1/devices/{new_id}")).await;
    assert_eq!(new_detail["replaces_device_id"], old_id);
    assert_eq!(new_detail["hardware_id"], SERIAL_2);
    assert_eq!(new_detail["sessions"][0]["email"], "admin@cafe.example");
    let (_, overview) =
        get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/transactions?device_id={new_id}"))
            .await;
    assert_eq!(overview["items"].as_array().unwrap().len(), 3);

    // The replaced record stays, but cannot be reused or changed.
    let (status, _) = post(&server, &admin, &format!("/api/v1/devices/{old_id}/deactivate"), json!({})).await;
    assert_eq!(status, 409);
});

backend_test!(tap_and_go_phones_follow_the_same_rules, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Marché", "admin@marche.example", &[SERIAL_1]).await;
    // A phone needs no registered terminal.
    let (status, phone) = activate_device(
        &server,
        "admin@marche.example",
        MERCHANT_PASSWORD,
        "tapngo",
        "install-7f3a",
        location,
        "Stand",
    )
    .await;
    assert_eq!(status, 201, "{phone}");
    upload(&server, &token(&phone), vec![transaction("P1", 5, 250, "EUR", "success")]).await;
    let phone_id = phone["device_id"].as_i64().unwrap();
    // The app was deleted while logged in; the admin deactivates the phone.
    let (status, _) =
        post(&server, &admin, &format!("/api/v1/devices/{phone_id}/deactivate"), json!({})).await;
    assert_eq!(status, 200);
    let (status, new_phone) = activate_device(
        &server,
        "admin@marche.example",
        MERCHANT_PASSWORD,
        "tapngo",
        "install-9b1c",
        location,
        "Stand",
    )
    .await;
    assert_eq!(status, 201, "{new_phone}");
    assert_eq!(new_phone["replaces_device_id"], phone_id);
    let (_, history) =
        server.call(Method::GET, "/api/v1/terminal/transactions", Some(&token(&new_phone)), None).await;
    assert_eq!(history["items"][0]["terminal_tx_id"], "P1");
    let (_, list) =
        get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/devices?app=tapngo&status=active"))
            .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
});

backend_test!(logging_out_of_the_app_unlocks_the_profile, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Kiosque", "admin@kiosque.example", &[SERIAL_1]).await;
    let (clerk_id, _) = invite(
        &server,
        &admin,
        merchant_id,
        "clerk@kiosque.example",
        json!({"permissions": ["activate_app"]}),
    )
    .await;
    group_granting(&server, &admin, merchant_id, "All", location, json!(["activate_app"]), &[clerk_id]).await;
    let (status, device) = activate_device(
        &server,
        "clerk@kiosque.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        location,
        "Caisse",
    )
    .await;
    assert_eq!(status, 201, "{device}");
    let device_token = token(&device);

    let (status, body) =
        server.call(Method::DELETE, &format!("/api/v1/users/{clerk_id}"), Some(&admin), None).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("profile_in_use")), "{body}");
    assert_eq!(body["error"]["details"]["device_names"], "Caisse");
    let (status, body) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{clerk_id}"),
            Some(&admin),
            Some(json!({"permissions": []})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (409, Some("profile_in_use")),
        "nor changed"
    );

    let (status, _) = server.call(Method::POST, "/api/v1/terminal/logout", Some(&device_token), None).await;
    assert_eq!(status, 204);
    // Back in: in use again; out again: free.
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/terminal/login",
            Some(&device_token),
            Some(json!({"email": "clerk@kiosque.example", "password": MERCHANT_PASSWORD})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) =
        server.call(Method::DELETE, &format!("/api/v1/users/{clerk_id}"), Some(&admin), None).await;
    assert_eq!(status, 409);
    server.call(Method::POST, "/api/v1/terminal/logout", Some(&device_token), None).await;
    let (status, _) =
        server.call(Method::DELETE, &format!("/api/v1/users/{clerk_id}"), Some(&admin), None).await;
    assert_eq!(status, 204);
});

backend_test!(uploads_are_idempotent_and_never_take_a_full_card_number, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Presse", "admin@presse.example", &[SERIAL_1]).await;
    let (_, device) = activate_device(
        &server,
        "admin@presse.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        location,
        "Caisse",
    )
    .await;
    let device_token = token(&device);
    let batch =
        vec![transaction("A1", 3, 100, "EUR", "success"), transaction("A2", 2, 200, "EUR", "success")];
    let (_, first) = upload(&server, &device_token, batch.clone()).await;
    assert_eq!(first, json!({"accepted": 2, "duplicates": 0}));
    let (_, retry) = upload(&server, &device_token, batch).await;
    assert_eq!(retry, json!({"accepted": 0, "duplicates": 2}));

    let mut with_pan = transaction("A3", 1, 300, "EUR", "success");
    with_pan["masked_card"] = json!("4111 1111 1111 1111");
    let (status, body) =
        upload(&server, &device_token, vec![transaction("A4", 1, 50, "EUR", "success"), with_pan]).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("pan_not_allowed")), "{body}");
    assert_eq!(body["error"]["details"]["index"], "1");
    let mut bad = transaction("A5", 1, 300, "euro", "success");
    bad["status"] = json!("success");
    let (status, body) = upload(&server, &device_token, vec![bad]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"]["field"], "transactions[0].currency");

    // The refused batches stored nothing.
    let (_, overview) = get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/transactions")).await;
    assert_eq!(overview["items"].as_array().unwrap().len(), 2);
    assert_eq!(overview["totals"], json!([{"currency": "EUR", "count": 2, "net_amount_minor": 300}]));
});

backend_test!(manual_statuses_show_in_the_overview_and_the_export, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Épicerie", "admin@epi.example", &[SERIAL_1]).await;
    let (_, device) = activate_device(
        &server,
        "admin@epi.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        location,
        "Caisse",
    )
    .await;
    let device_token = token(&device);
    upload(
        &server,
        &device_token,
        vec![
            transaction("M1", 40, 1000, "EUR", "failure"),
            transaction("M2", 30, 2000, "EUR", "success"),
            transaction("M3", 20, 500, "CHF", "unknown"),
            transaction("M4", 10, 700, "EUR", "cancelled"),
        ],
    )
    .await;

    let manual = |id: &str, status: &str| {
        let path = format!("/api/v1/terminal/transactions/{id}/manual-status");
        let body = json!({"status": status});
        let server = &server;
        let device_token = device_token.clone();
        async move { server.call(Method::POST, &path, Some(&device_token), Some(body)).await }
    };
    let (status, tx) = manual("M1", "success").await;
    assert_eq!(status, 200, "{tx}");
    assert_eq!(
        (tx["status"].as_str(), tx["status_source"].as_str(), tx["automatic_status"].as_str()),
        (Some("success"), Some("manual"), Some("failure"))
    );
    assert!(tx["manual_set_by"].is_i64());
    let (status, body) = manual("M1", "failure").await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (409, Some("manual_status_not_allowed")),
        "never silently overwritten"
    );
    let (status, _) = manual("M2", "failure").await;
    assert_eq!(status, 409, "a successful transaction keeps its automatic status");
    let (status, _) = manual("M4", "success").await;
    assert_eq!(status, 409, "a cancelled one too");
    let (status, _) = manual("M3", "unknown").await;
    assert_eq!(status, 400);
    let (status, _) = manual("NOPE", "success").await;
    assert_eq!(status, 404);

    let base = format!("/api/v1/merchants/{merchant_id}/transactions");
    let (_, only_manual) = get(&server, &admin, &format!("{base}?manual_only=true")).await;
    assert_eq!(only_manual["items"].as_array().unwrap().len(), 1);
    assert_eq!(only_manual["items"][0]["terminal_tx_id"], "M1");
    let (_, successes) = get(&server, &admin, &format!("{base}?status=success")).await;
    let ids: Vec<&str> = successes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["terminal_tx_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["M2", "M1"], "the status in effect counts");
    let (_, all) = get(&server, &admin, &base).await; // Net of the successful ones: M1 (success by hand) and M2; not the unknown M3 nor the cancelled M4.
    assert_eq!(
        all["totals"],
        json!([{"currency": "CHF", "count": 1, "net_amount_minor": 0}, {"currency": "EUR", "count": 3, "net_amount_minor": 3000}])
    );

    // Keyset paging walks every row once.
    let mut seen = Vec::new();
    let mut path = format!("{base}?limit=1");
    loop {
        let (_, page) = get(&server, &admin, &path).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["terminal_tx_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{base}?limit=1&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["M4", "M3", "M2", "M1"]);

    let res =
        server.http.get(server.url(&format!("{base}/export"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[0].contains("status,status_source,automatic_status"));
    let m1 = lines.iter().find(|l| l.contains(",M1,")).unwrap();
    assert!(m1.contains(",success,manual,failure,"), "{m1}");
    let m2 = lines.iter().find(|l| l.contains(",M2,")).unwrap();
    assert!(m2.contains(",success,automatic,success,"), "{m2}");

    let res = server
        .http
        .get(server.url(&format!("{base}/export?format=jsonl&status=success")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r["status_source"] == "manual"));
});

backend_test!(transaction_access_follows_permissions_and_locations, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, loc_a, admin) =
        merchant(&server, &op, "Fleurs", "admin@fleurs.example", &[SERIAL_1]).await;
    let (_, order) = post(&server, &op, "/api/v1/orders",
        json!({"merchant_id": merchant_id, "delivery_address": address("9 rue B"), "terminals": [{"serial": SERIAL_2, "model": "A80"}]})).await;
    let loc_b = order["location"]["id"].as_i64().unwrap();
    let (_, a) = activate_device(
        &server,
        "admin@fleurs.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        loc_a,
        "A",
    )
    .await;
    let (_, b) = activate_device(
        &server,
        "admin@fleurs.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_2,
        loc_b,
        "B",
    )
    .await;
    upload(&server, &token(&a), vec![transaction("A1", 5, 100, "EUR", "success")]).await;
    upload(&server, &token(&b), vec![transaction("B1", 5, 200, "EUR", "success")]).await;

    let (viewer_id, viewer) = invite(&server, &admin, merchant_id, "viewer@fleurs.example", json!({})).await;
    let base = format!("/api/v1/merchants/{merchant_id}/transactions");
    let (status, _) = get(&server, &viewer, &base).await;
    assert_eq!(status, 403, "no view_transactions anywhere");
    let (_, group) =
        post(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/groups"), json!({"name": "A"})).await;
    let group = group["id"].as_i64().unwrap();
    server
        .call(
            Method::PUT,
            &format!("/api/v1/groups/{group}/grants/{loc_a}"),
            Some(&admin),
            Some(json!({"permissions": ["view_transactions"]})),
        )
        .await;
    server
        .call(Method::PUT, &format!("/api/v1/groups/{group}/members/{viewer_id}"), Some(&admin), None)
        .await;
    let (_, page) = get(&server, &viewer, &base).await;
    let ids: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|t| t["terminal_tx_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A1"]);
    assert_eq!(page["totals"][0]["net_amount_minor"], 100);
    let (status, _) = get(&server, &viewer, &format!("{base}?location_id={loc_b}")).await;
    assert_eq!(status, 404, "an unseen location does not exist");
    let (status, _) = get(&server, &viewer, &format!("{base}/export")).await;
    assert_eq!(status, 403, "viewing is not exporting");
    let (_, devices) = get(&server, &viewer, &format!("/api/v1/merchants/{merchant_id}/devices")).await;
    assert_eq!(devices.as_array().unwrap().len(), 1);
    let b_id = b["device_id"].as_i64().unwrap();
    let (status, _) = get(&server, &viewer, &format!("/api/v1/devices/{b_id}")).await;
    assert_eq!(status, 404);
    let a_id = a["device_id"].as_i64().unwrap();
    let (status, _) = post(&server, &viewer, &format!("/api/v1/devices/{a_id}/deactivate"), json!({})).await;
    assert_eq!(status, 403, "seeing a device is not managing it");

    // Another merchant sees none of it.
    let (_, _, other) = merchant(&server, &op, "Other", "admin@other.example", &["8888888888"]).await;
    for path in [
        base.clone(),
        format!("{base}/export"),
        format!("/api/v1/merchants/{merchant_id}/devices"),
        format!("/api/v1/devices/{a_id}"),
    ] {
        let (status, _) = get(&server, &other, &path).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = server
        .call(Method::PATCH, &format!("/api/v1/devices/{a_id}"), Some(&other), Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, 404);

    // Rename and move, by the admin.
    let (status, moved) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{a_id}"),
            Some(&admin),
            Some(json!({"name": "Entrée", "location_id": loc_b})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!((moved["name"].as_str(), moved["location_id"].as_i64()), (Some("Entrée"), Some(loc_b)));
    let (status, body) = server
        .call(Method::PATCH, &format!("/api/v1/devices/{a_id}"), Some(&admin), Some(json!({"name": "B"})))
        .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("device_name_taken")));
    // Names differing only by case or surrounding spaces are the same name, and the error says so.
    let (status, body) = server
        .call(Method::PATCH, &format!("/api/v1/devices/{a_id}"), Some(&admin), Some(json!({"name": " b "})))
        .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("device_name_taken")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("without case"), "{body}");
    // A device may change the case of its own name.
    let (status, renamed) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{a_id}"),
            Some(&admin),
            Some(json!({"name": "ENTRÉE "})),
        )
        .await;
    assert_eq!((status.as_u16(), renamed["name"].as_str()), (200, Some("ENTRÉE")), "{renamed}");
});

backend_test!(replacement_and_device_calls_stay_within_their_rights, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, loc_a, admin) =
        merchant(&server, &op, "Deux", "admin@deux.example", &[SERIAL_1, SERIAL_2, SERIAL_3]).await;
    let (_, order) = post(&server, &op, "/api/v1/orders",
        json!({"merchant_id": merchant_id, "delivery_address": address("2 rue B"), "terminals": [{"serial": "1850000004", "model": "A80"}]})).await;
    let loc_b = order["location"]["id"].as_i64().unwrap();
    // A deactivated device at location B, with history.
    let (_, old) = activate_device(
        &server,
        "admin@deux.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "1850000004",
        loc_b,
        "Caisse B",
    )
    .await;
    upload(&server, &token(&old), vec![transaction("OLD1", 5, 999, "EUR", "success")]).await;
    post(&server, &admin, &format!("/api/v1/devices/{}/deactivate", old["device_id"]), json!({})).await;

    // A clerk who may activate only at A cannot take over B's device (and its history) by its name.
    let (clerk_id, _) = invite(&server, &admin, merchant_id, "clerk@deux.example", json!({})).await;
    group_granting(&server, &admin, merchant_id, "A", loc_a, json!(["activate_app"]), &[clerk_id]).await;
    let (status, body) = activate_device(
        &server,
        "clerk@deux.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        loc_a,
        "Caisse B",
    )
    .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("device_name_taken")), "{body}");
    // Nor activate at B at all.
    let (status, _) = activate_device(
        &server,
        "clerk@deux.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        loc_b,
        "Ailleurs",
    )
    .await;
    assert_eq!(status, 404);
    let (status, mine) = activate_device(
        &server,
        "clerk@deux.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_1,
        loc_a,
        "Caisse A",
    )
    .await;
    assert_eq!(status, 201, "{mine}");
    let (_, history) =
        server.call(Method::GET, "/api/v1/terminal/transactions", Some(&token(&mine)), None).await;
    assert_eq!(history["items"], json!([]));
    // Renaming cannot take a deactivated device's name either.
    let (status, body) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{}", mine["device_id"]),
            Some(&admin),
            Some(json!({"name": "Caisse B"})),
        )
        .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("device_name_taken")));

    // A device cannot touch another device's transactions, and a stranger cannot log in to it.
    let (_, other) = activate_device(
        &server,
        "admin@deux.example",
        MERCHANT_PASSWORD,
        "salespoint",
        SERIAL_2,
        loc_a,
        "Caisse C",
    )
    .await;
    upload(&server, &token(&other), vec![transaction("C1", 5, 100, "EUR", "failure")]).await;
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/terminal/transactions/C1/manual-status",
            Some(&token(&mine)),
            Some(json!({"status": "success"})),
        )
        .await;
    assert_eq!(status, 404);
    let (_, _, _) = merchant(&server, &op, "Stranger", "admin@stranger.example", &["1850000099"]).await;
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/terminal/login",
            Some(&token(&other)),
            Some(json!({"email": "admin@stranger.example", "password": MERCHANT_PASSWORD})),
        )
        .await;
    assert_eq!(status, 403);
    // With nobody logged in, no status is set by hand.
    server.call(Method::POST, "/api/v1/terminal/logout", Some(&token(&other)), None).await;
    let (status, body) = server
        .call(
            Method::POST,
            "/api/v1/terminal/transactions/C1/manual-status",
            Some(&token(&other)),
            Some(json!({"status": "success"})),
        )
        .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("not_logged_in")));
});

backend_test!(a_retry_after_reactivating_the_same_hardware_is_not_stored_twice, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (_, location, admin) = merchant(&server, &op, "Retry", "admin@retry.example", &[SERIAL_1]).await;
    let (_, first) = activate_device(
        &server,
        "admin@retry.example",
        MERCHANT_PASSWORD,
        "tapngo",
        "install-1",
        location,
        "Phone",
    )
    .await;
    // Numeric terminal ids as long as a card number are fine: they fail the Luhn check.
    let batch = vec![transaction("1764241234567", 5, 100, "EUR", "success")];
    let (_, result) = upload(&server, &token(&first), batch.clone()).await;
    assert_eq!(result["accepted"], 1, "{result}");
    post(&server, &admin, &format!("/api/v1/devices/{}/deactivate", first["device_id"]), json!({})).await;
    let (status, _) =
        server.call(Method::GET, "/api/v1/terminal/transactions", Some(&token(&first)), None).await;
    assert_eq!(status, 401, "the old phone's token is refused");
    let (_, again) = activate_device(
        &server,
        "admin@retry.example",
        MERCHANT_PASSWORD,
        "tapngo",
        "install-1",
        location,
        "Phone",
    )
    .await;
    let (_, result) = upload(&server, &token(&again), batch).await;
    assert_eq!(result, json!({"accepted": 0, "duplicates": 1}));
});

backend_test!(a_transaction_filter_on_another_merchants_terminal_is_not_found, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_a, _, admin_a) = merchant(&server, &op, "A", "admin@a.example", &["6100000001"]).await;
    let (_, location_b, _) = merchant(&server, &op, "B", "admin@b.example", &["6100000002"]).await;
    let (status, device_b) = activate_device(
        &server,
        "admin@b.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "6100000002",
        location_b,
        "B1",
    )
    .await;
    assert_eq!(status, 201, "{device_b}");
    let (status, uploaded) =
        upload(&server, &token(&device_b), vec![transaction("b-1", 5, 990, "EUR", "success")]).await;
    assert_eq!(status, 200, "{uploaded}");
    let device_b = device_b["device_id"].as_i64().unwrap();
    // The filter names the terminal alone in the query, so the scope checks it
    // belongs to the merchant asked about.
    for path in [
        format!("/api/v1/merchants/{merchant_a}/transactions?device_id={device_b}"),
        format!("/api/v1/merchants/{merchant_a}/transactions/export?device_id={device_b}"),
    ] {
        let (status, body) = get(&server, &admin_a, &path).await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {body}"
        );
    }
});

backend_test!(a_silent_terminal_goes_missing_and_comes_back_at_its_next_contact, |db| {
    use tms_e2e::fixtures::*;
    use tms_e2e::terminal::Outcome;
    let (server, op) = server_with_operator_and(
        &db,
        &[("TMS_ADJUSTABLE_CLOCK", "true"), ("TMS_MISSING_CHECK_SECS", "1"), ("TMS_CONTACT_FLUSH_MS", "100")],
    )
    .await;
    let (shop, shop_location, shop_admin) =
        merchant(&server, &op, "Épicerie", "owner@epicerie.example", &["9400000001"]).await;
    let (kiosk, kiosk_location, _) =
        merchant(&server, &op, "Kiosque", "owner@kiosque.example", &["9400000002"]).await;
    let grocer =
        activated_terminal(&server, "owner@epicerie.example", (shop, shop_location), "9400000001", "A920")
            .await;
    let kiosk_terminal =
        activated_terminal(&server, "owner@kiosque.example", (kiosk, kiosk_location), "9400000002", "A920")
            .await;
    for t in [&grocer, &kiosk_terminal] {
        assert!(matches!(t.contact(&server.http, &server.base_url).await, Outcome::Answer(..)));
    }
    let receiver = tms_e2e::webhook_receiver::WebhookReceiver::start(Vec::new()).await;
    let (status, hook) = post(
        &server,
        &op,
        "/api/v1/webhooks",
        json!({"url": receiver.url, "events": ["terminal.missing", "terminal.back"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    // The kiosk's merchant waits two days before worrying.
    let (status, set) = server
        .call(
            Method::PUT,
            &format!("/api/v1/merchants/{kiosk}/missing-threshold"),
            Some(&op),
            Some(json!({"hours": 48})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), set["hours"].as_i64(), set["default"].as_bool()),
        (200, Some(48), Some(false)),
        "{set}"
    );
    let (status, _) = server
        .call(
            Method::PUT,
            &format!("/api/v1/merchants/{kiosk}/missing-threshold"),
            Some(&shop_admin),
            Some(json!({"hours": 1})),
        )
        .await;
    assert_eq!(status, 403, "a merchant does not set it");
    let missing_ids = |token: String| {
        let server = &server;
        async move {
            let (status, list) = get(server, &token, "/api/v1/missing-terminals").await;
            assert_eq!(status, 200, "{list}");
            list.as_array().unwrap().iter().map(|m| m["device_id"].as_i64().unwrap()).collect::<Vec<_>>()
        }
    };
    let metric = || async {
        let text = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("tms_terminals_missing "))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(-2)
    };
    // Wait for `want` passes' worth of change.
    let settle = |op: String, want: Vec<i64>| async move {
        let mut ids = Vec::new();
        for _ in 0..100 {
            ids = missing_ids(op.clone()).await;
            if ids == want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        ids
    };
    server.advance_clock(&op, 25 * 3600).await;
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    assert_eq!(
        settle(op.clone(), vec![grocer.device_id]).await,
        [grocer.device_id],
        "24 h for the grocer, 48 h for the kiosk"
    );
    assert_eq!(metric().await, 1);
    // The merchant sees its own, with when it was last heard from.
    let shop_admin = server.login("owner@epicerie.example", MERCHANT_PASSWORD).await;
    let (_, own) = get(&server, &shop_admin, "/api/v1/missing-terminals").await;
    assert_eq!(own.as_array().map(Vec::len), Some(1), "{own}");
    assert!(own[0]["last_contact_at"].is_string() && own[0]["missing_since"].is_string());
    let kiosk_admin = server.login("owner@kiosque.example", MERCHANT_PASSWORD).await;
    assert!(missing_ids(kiosk_admin.clone()).await.is_empty());
    // Its next contact brings it back; the kiosk's goes missing after 48 h.
    assert!(matches!(grocer.contact(&server.http, &server.base_url).await, Outcome::Answer(..)));
    server.advance_clock(&op, 23 * 3600 + 1800).await;
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    assert_eq!(settle(op.clone(), vec![kiosk_terminal.device_id]).await, [kiosk_terminal.device_id]);
    // A day after its last contact, the grocer's is missing again.
    server.advance_clock(&op, 3600).await;
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let mut both = vec![grocer.device_id, kiosk_terminal.device_id];
    both.sort();
    let mut found = settle(op.clone(), both.clone()).await;
    found.sort();
    assert_eq!(found, both);
    // The audit trail tells the story.
    let (_, events) = get(&server, &op, &format!("/api/v1/audit?subject=device:{}", grocer.device_id)).await;
    let actions: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"device.missing") && actions.contains(&"device.back"), "{actions:?}");
    // And so do the webhooks (the server delivers them within a second).
    let got: Vec<(String, i64)> = receiver
        .wait_for(4)
        .await
        .iter()
        .map(|r| {
            (r.json()["type"].as_str().unwrap().to_owned(), r.json()["data"]["device_id"].as_i64().unwrap())
        })
        .collect();
    for expected in [
        ("terminal.missing".to_owned(), grocer.device_id),
        ("terminal.back".to_owned(), grocer.device_id),
        ("terminal.missing".to_owned(), kiosk_terminal.device_id),
    ] {
        assert!(got.contains(&expected), "{expected:?} in {got:?}");
    }
    // The CLI lists them.
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let (code, out, err) = tms_e2e::run_tms(&server, &creds, &["device", "missing"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("9400000001") && out.contains("9400000002"), "{out}");
    let (code, out, err) = tms_e2e::run_tms(
        &server,
        &creds,
        &["merchant", "missing-threshold", &kiosk.to_string(), "--default"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("missing after 24 h") && out.contains("default"), "{out}");
});
