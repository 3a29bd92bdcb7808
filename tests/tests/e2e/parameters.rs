//! Parameters: levels, locks, versions, diffs, secrets and the default-password report.

use reqwest::Method;
use serde_json::{Value, json};
use tms_e2e::backend_test;
use tms_e2e::fixtures::*;

const T: &str = "tms.terminal";

async fn change(
    server: &tms_e2e::TestServer,
    token: &str,
    level: &str,
    scope: i64,
    body: Value,
) -> (reqwest::StatusCode, Value) {
    post(server, token, &format!("/api/v1/parameters/{T}/{level}/{scope}"), body).await
}

backend_test!(levels_locks_versions_secrets_and_the_report, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, loc_a, admin) =
        merchant(&server, &op, "Boulangerie", "admin@boul.example", &["2100000001", "2100000002"]).await;
    let (_, order) = post(&server, &op, "/api/v1/orders",
        json!({"merchant_id": merchant_id, "delivery_address": address("3 rue B"), "terminals": [{"serial": "2100000003", "model": "A80"}]})).await;
    let loc_b = order["location"]["id"].as_i64().unwrap();
    let (_, dev_a) = activate_device(
        &server,
        "admin@boul.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "2100000001",
        loc_a,
        "A",
    )
    .await;
    let (_, dev_b) = activate_device(
        &server,
        "admin@boul.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "2100000003",
        loc_b,
        "B",
    )
    .await;
    let (dev_a, dev_b) = (dev_a["device_id"].as_i64().unwrap(), dev_b["device_id"].as_i64().unwrap());
    let effective = |device: i64| {
        let server = &server;
        let admin = admin.clone();
        async move { get(server, &admin, &format!("/api/v1/devices/{device}/parameters")).await.1 }
    };

    // Nothing set: defaults, version 0.0.0.0.
    let before = effective(dev_a).await;
    assert_eq!(before["version"], "0.0.0.0");
    assert_eq!(before["values"]["receipt.print_customer_copy"], json!({"value": true, "origin": "default"}));

    // Global < merchant < location, for exactly that location's terminals.
    let (status, body) =
        change(&server, &op, "global", 0, json!({"set": {"receipt.header": "G"}, "reason": "brand"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = change(&server, &admin, "global", 0, json!({"set": {"receipt.header": "X"}})).await;
    assert_eq!(status, 404, "merchants do not reach global values");
    change(&server, &admin, "merchant", merchant_id, json!({"set": {"receipt.header": "Boulangerie"}})).await;
    let (status, body) = change(&server, &admin, "location", loc_a, json!({"set": {"receipt.header": "Boulangerie — Rivoli", "receipt.print_customer_copy": false}, "reason": "new shop sign"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    let a = effective(dev_a).await;
    let b = effective(dev_b).await;
    assert_eq!(a["values"]["receipt.header"], json!({"value": "Boulangerie — Rivoli", "origin": "location"}));
    assert_eq!(a["values"]["receipt.print_customer_copy"], json!({"value": false, "origin": "location"}));
    assert_eq!(b["values"]["receipt.header"], json!({"value": "Boulangerie", "origin": "merchant"}));
    assert_eq!(b["values"]["receipt.print_customer_copy"]["origin"], "default");
    assert_eq!(a["version"], "1.1.1.0");
    assert_eq!(b["version"], "1.1.0.0");

    // A lock at the merchant level blocks lower levels; only operators lock.
    let (status, _) =
        change(&server, &admin, "merchant", merchant_id, json!({"lock": ["receipt.footer"]})).await;
    assert_eq!(status, 403);
    let (status, _) = change(
        &server,
        &op,
        "merchant",
        merchant_id,
        json!({"set": {"receipt.footer": "Merci !"}, "lock": ["receipt.footer"]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) =
        change(&server, &admin, "location", loc_a, json!({"set": {"receipt.footer": "Bye"}})).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("parameter_locked")), "{body}");
    assert_eq!(body["error"]["details"]["key"], "receipt.footer");
    let (status, _) =
        change(&server, &admin, "device", dev_b, json!({"set": {"receipt.footer": "Bye"}})).await;
    assert_eq!(status, 409);

    // Bad values name the key.
    for (body, key) in [
        (json!({"set": {"receipt.colour": "red"}}), "receipt.colour"),
        (json!({"set": {"receipt.print_customer_copy": "no"}}), "receipt.print_customer_copy"),
        (json!({"set": {"tms.contact_interval_secs": 600}}), "tms.contact_interval_secs"),
    ] {
        let (status, res) = change(&server, &admin, "device", dev_a, body).await;
        assert_eq!(
            (status.as_u16(), res["error"]["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{res}"
        );
        assert_eq!(res["error"]["details"]["key"], key);
    }

    // Secrets are write-only for people.
    let (status, body) =
        change(&server, &admin, "location", loc_a, json!({"set": {"merchant_menu.password": "482913"}}))
            .await;
    assert_eq!(status, 200);
    assert_eq!(body["values"]["merchant_menu.password"], "(set)");
    let a_now = effective(dev_a).await;
    assert_eq!(a_now["values"]["merchant_menu.password"], json!({"value": "(set)", "origin": "location"}));
    let (_, events) = get(&server, &op, "/api/v1/audit?action=parameters.change").await;
    assert!(!events.to_string().contains("482913"), "{events}");

    // History and diffs between versions of what a device sees.
    let (_, history) =
        get(&server, &admin, &format!("/api/v1/parameters/{T}/location/{loc_a}/history")).await;
    let versions: Vec<(u64, Vec<String>)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), serde_json::from_value(v["keys_changed"].clone()).unwrap()))
        .collect();
    assert_eq!(
        versions,
        vec![
            (2, vec!["merchant_menu.password".to_owned()]),
            (1, vec!["receipt.header".to_owned(), "receipt.print_customer_copy".to_owned()])
        ]
    );
    assert_eq!(history[1]["reason"], "new shop sign");
    // Older versions stay readable.
    let (status, v1) =
        get(&server, &admin, &format!("/api/v1/parameters/{T}/location/{loc_a}?version=1")).await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["version"], 1);
    assert!(v1["values"].get("merchant_menu.password").is_none(), "{v1}");
    assert_eq!(v1["values"]["receipt.header"], "Boulangerie — Rivoli");
    let (status, _) =
        get(&server, &admin, &format!("/api/v1/parameters/{T}/location/{loc_a}?version=99")).await;
    assert_eq!(status, 404);
    assert_eq!(history[1]["created_by"], "admin@boul.example");
    let from = a["version"].as_str().unwrap();
    let to = a_now["version"].as_str().unwrap();
    let (status, d) =
        get(&server, &admin, &format!("/api/v1/devices/{dev_a}/parameters/diff?from={from}&to={to}")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["changed"], json!({"merchant_menu.password": "(set)", "receipt.footer": "Merci !"}));
    assert_eq!(d["removed"], json!([]));
    let (_, back) =
        get(&server, &admin, &format!("/api/v1/devices/{dev_a}/parameters/diff?from=0.0.0.0&to={to}")).await;
    assert_eq!(back["changed"]["receipt.header"], "Boulangerie — Rivoli");
    let (status, _) =
        get(&server, &admin, &format!("/api/v1/devices/{dev_a}/parameters/diff?from=9.9.9.9&to={to}")).await;
    assert_eq!(status, 404);

    // The report finds the terminals with a weak password: B (still on 99999), not A.
    let (status, report) = get(&server, &admin, "/api/v1/reports/weak-merchant-password").await;
    assert_eq!(status, 200, "{report}");
    let ids: Vec<i64> = report.as_array().unwrap().iter().map(|d| d["device_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![dev_b]);
    assert_eq!(report[0]["reason"], "default");
    let (_, all) = get(&server, &op, "/api/v1/reports/weak-merchant-password").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    // An empty or malformed password is refused, naming the rule; nothing changes.
    for bad in ["", "123", "12a45", "1234567890123"] {
        let (status, body) =
            change(&server, &admin, "device", dev_a, json!({"set": {"merchant_menu.password": bad}})).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("digits"), "{body}");
    }
    let (_, report) = get(&server, &admin, "/api/v1/reports/weak-merchant-password").await;
    assert_eq!(report.as_array().unwrap().len(), 1, "{report}");
    // A run of digits is weak; so is 99999 set explicitly.
    change(&server, &admin, "device", dev_a, json!({"set": {"merchant_menu.password": "12345"}})).await;
    let (_, report) = get(&server, &admin, "/api/v1/reports/weak-merchant-password").await;
    let reasons: Vec<(i64, &str)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["device_id"].as_i64().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert!(reasons.contains(&(dev_a, "sequence")), "{report}");
    change(&server, &admin, "device", dev_a, json!({"set": {"merchant_menu.password": "99999"}})).await;
    let (_, report) = get(&server, &admin, "/api/v1/reports/weak-merchant-password").await;
    assert_eq!(report.as_array().unwrap().len(), 2);

    // Another merchant reaches none of it.
    let (_, _, other) = merchant(&server, &op, "Other", "admin@other.example", &["2100000009"]).await;
    for (level, scope) in [("merchant", merchant_id), ("location", loc_a), ("device", dev_a)] {
        let (status, _) =
            change(&server, &other, level, scope, json!({"set": {"receipt.header": "x"}})).await;
        assert_eq!(status, 404, "{level}");
        let (status, _) = get(&server, &other, &format!("/api/v1/parameters/{T}/{level}/{scope}")).await;
        assert_eq!(status, 404, "{level}");
    }
    let (status, _) = get(&server, &other, &format!("/api/v1/devices/{dev_a}/parameters")).await;
    assert_eq!(status, 404);
    let (_, report) = get(&server, &other, "/api/v1/reports/weak-merchant-password").await;
    assert_eq!(report, json!([]));
    let _ = Method::GET;
});

backend_test!(manage_settings_follows_locations, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, loc_a, admin) =
        merchant(&server, &op, "Fleurs", "admin@fleurs.example", &["2200000001"]).await;
    let (_, order) = post(&server, &op, "/api/v1/orders",
        json!({"merchant_id": merchant_id, "delivery_address": address("5 rue C"), "terminals": [{"serial": "2200000002", "model": "A80"}]})).await;
    let loc_b = order["location"]["id"].as_i64().unwrap();
    let (clerk_id, clerk) = invite(&server, &admin, merchant_id, "clerk@fleurs.example", json!({})).await;
    group_granting(&server, &admin, merchant_id, "A", loc_a, json!(["manage_settings"]), &[clerk_id]).await;

    let (status, body) =
        change(&server, &clerk, "location", loc_a, json!({"set": {"receipt.footer": "À bientôt"}})).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) =
        change(&server, &clerk, "location", loc_b, json!({"set": {"receipt.footer": "x"}})).await;
    assert_eq!(status, 404);
    let (status, _) =
        change(&server, &clerk, "merchant", merchant_id, json!({"set": {"receipt.footer": "x"}})).await;
    assert_eq!(status, 403);
    // Support changes any merchant's.
    let (status, _) = change(
        &server,
        &op,
        "location",
        loc_b,
        json!({"set": {"receipt.footer": "Support"}, "reason": "ticket 4711"}),
    )
    .await;
    assert_eq!(status, 200);
    // An unchanged set makes no new version.
    let (_, same) =
        change(&server, &op, "location", loc_b, json!({"set": {"receipt.footer": "Support"}})).await;
    assert_eq!(same["version"], 1);
    let (_, schema) = get(&server, &clerk, &format!("/api/v1/apps/{T}/parameter-schema")).await;
    assert_eq!(schema["keys"]["merchant_menu.password"]["type"], "secret");
});

backend_test!(params_commands, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, _) =
        merchant(&server, &op, "Café", "admin@cafe.example", &["2300000001"]).await;
    let (_, device) = activate_device(
        &server,
        "admin@cafe.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "2300000001",
        location,
        "Bar",
    )
    .await;
    let device = device["device_id"].as_i64().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    let (code, _, err) = tms_e2e::run_tms(
        &server,
        &creds,
        &["login", "--email", "admin@cafe.example", "--password-stdin"],
        Some(MERCHANT_PASSWORD),
    );
    assert_eq!(code, 0, "{err}");
    let tms = |args: &[&str]| tms_e2e::run_tms(&server, &creds, args, None);
    let logo = dir.path().join("logo.png");
    std::fs::write(&logo, b"\x89PNG\r\n\x1a\nfake").unwrap();
    let location = location.to_string();
    let logo_arg = format!("receipt.logo=@{}", logo.display());
    let (code, out, err) = tms(&[
        "params",
        "set",
        "--location",
        &location,
        "--reason",
        "opening",
        "receipt.header=Café du Port",
        "receipt.print_customer_copy=off",
        &logo_arg,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 1"), "{out}");
    let (code, out, _) = tms(&["params", "show", "--device", &device]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Café du Port") && out.contains("location") && out.contains("version 0.0.1.0"),
        "{out}"
    );
    let (code, _, err) = tms(&["params", "set", "--location", &location, "tms.contact_interval_secs=5"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid_parameter"), "{err}");
    let (code, _, _) = tms(&["params", "unset", "--location", &location, "receipt.header"]);
    assert_eq!(code, 0);
    let (code, out, _) = tms(&["params", "history", "--location", &location]);
    assert_eq!(code, 0);
    assert!(out.contains("opening") && out.contains("admin@cafe.example"), "{out}");
    let (code, out, _) =
        tms(&["--json", "params", "diff", "--device", &device, "--from", "0.0.1.0", "--to", "0.0.2.0"]);
    assert_eq!(code, 0);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Unset at the location: the terminal falls back to the default header.
    assert_eq!(d["changed"], json!({"receipt.header": ""}));
    let (code, out, _) = tms(&["params", "report", "--merchant", &merchant_id.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("1 terminals") && out.contains("Bar"), "{out}");
});

backend_test!(acquirer_sessions_report_every_outcome, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Épicerie", "admin@epi.example", &["2400000001"]).await;
    let (_, device) = activate_device(
        &server,
        "admin@epi.example",
        MERCHANT_PASSWORD,
        "salespoint",
        "2400000001",
        location,
        "Caisse",
    )
    .await;
    let device_id = device["device_id"].as_i64().unwrap();
    let token = device["device_token"].as_str().unwrap().to_owned();
    let session = |acquirer: &'static str| {
        let server = &server;
        let token = token.clone();
        async move {
            server
                .call(
                    Method::POST,
                    &format!("/api/v1/terminal/acquirer-sessions/{acquirer}"),
                    Some(&token),
                    None,
                )
                .await
        }
    };
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();
    let future = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();

    // No such acquirer, then no contract.
    let (status, body) = session("nope").await;
    assert_eq!((status.as_u16(), code(&body).as_str()), (404, "acquirer_session_not_found"), "{body}");
    let (status, _) = post(&server, &admin, "/api/v1/acquirers", json!({"id": "ccv", "name": "CCV"})).await;
    assert_eq!(status, 403, "acquirers are the operator's");
    post(&server, &op, "/api/v1/acquirers", json!({"id": "ccv", "name": "CCV"})).await;
    let (status, body) = session("ccv").await;
    assert_eq!((status.as_u16(), code(&body).as_str()), (404, "acquirer_session_not_found"));

    // A contract but no parameters yet: failed.
    let (status, contract) = post(&server, &op, &format!("/api/v1/merchants/{merchant_id}/acquirer-contracts"),
        json!({"acquirer_id": "ccv", "location_id": location, "acquirer_merchant_id": "M-100", "acquirer_terminal_id": "T-7"})).await;
    assert_eq!(status, 201, "{contract}");
    let (status, body) = session("ccv").await;
    assert_eq!((status.as_u16(), code(&body).as_str()), (409, "acquirer_session_failed"));

    // Success.
    let (status, set) = post(&server, &op, "/api/v1/acquirers/ccv/parameter-sets",
        json!({"document": {"emv": {"aid": ["A0000000041010"]}, "signature": "opaque"}, "valid_until": future})).await;
    assert_eq!(status, 201, "{set}");
    let (status, result) = session("ccv").await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["acquirer_terminal_id"], "T-7");
    assert_eq!(result["parameter_version"], 1);
    assert_eq!(result["document"]["emv"]["aid"][0], "A0000000041010");

    // Revoked: failed; a newer but expired set: expired.
    let (status, _) = post(&server, &op, "/api/v1/acquirers/ccv/parameter-sets/1/revoke", json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = session("ccv").await;
    assert_eq!((status.as_u16(), code(&body).as_str()), (409, "acquirer_session_failed"));
    // Parameters already past their validity are refused at publish, and nothing is published.
    let (status, body) = post(
        &server,
        &op,
        "/api/v1/acquirers/ccv/parameter-sets",
        json!({"document": {"emv": {}}, "valid_until": past}),
    )
    .await;
    assert_eq!((status.as_u16(), code(&body).as_str()), (400, "already_expired"), "{body}");
    assert_eq!(body["error"]["details"]["field"], "valid_until");
    let (status, body) = post(
        &server,
        &op,
        "/api/v1/acquirers/ccv/parameter-sets",
        json!({"document": {"emv": {}}, "valid_until": future}),
    )
    .await;
    assert_eq!((status, body["version"].clone()), (reqwest::StatusCode::CREATED, json!(2)), "{body}");
    // Time passes: the set's validity ends.
    let expire = |sql: &str| {
        let pool = db.pool();
        let mut conn = pool.get().unwrap();
        diesel::connection::SimpleConnection::batch_execute(&mut *conn, sql).unwrap();
    };
    expire(
        "UPDATE acquirer_parameter_sets SET valid_until = '2000-01-01 00:00:00' WHERE acquirer_id = 'ccv' AND version = 2",
    );
    let (status, body) = session("ccv").await;
    assert_eq!((status.as_u16(), code(&body).as_str()), (410, "acquirer_session_expired"), "{body}");

    // An expired contract: expired, even with fresh parameters.
    post(&server, &op, "/api/v1/acquirers", json!({"id": "worldline", "name": "Worldline"})).await;
    post(
        &server,
        &op,
        "/api/v1/acquirers/worldline/parameter-sets",
        json!({"document": {}, "valid_until": future}),
    )
    .await;
    let (status, body) = post(&server, &op, &format!("/api/v1/merchants/{merchant_id}/acquirer-contracts"),
        json!({"acquirer_id": "worldline", "acquirer_merchant_id": "W1", "acquirer_terminal_id": "WT1", "valid_until": past})).await;
    assert_eq!((status.as_u16(), code(&body).as_str()), (400, "already_expired"), "{body}");
    let (status, body) = post(&server, &op, &format!("/api/v1/merchants/{merchant_id}/acquirer-contracts"),
        json!({"acquirer_id": "worldline", "acquirer_merchant_id": "W1", "acquirer_terminal_id": "WT1", "valid_until": future})).await;
    assert_eq!(status, 201, "{body}");
    expire(
        "UPDATE acquirer_contracts SET valid_until = '2000-01-01 00:00:00' WHERE acquirer_id = 'worldline'",
    );
    let (status, body) = session("worldline").await;
    assert_eq!((status.as_u16(), code(&body).as_str()), (410, "acquirer_session_expired"));

    // The device detail shows the last session per acquirer.
    let (_, detail) = get(&server, &admin, &format!("/api/v1/devices/{device_id}")).await;
    let sessions = detail["acquirer_sessions"].as_array().unwrap();
    let by: std::collections::BTreeMap<&str, &str> = sessions
        .iter()
        .map(|s| (s["acquirer_id"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        by,
        std::collections::BTreeMap::from([
            ("ccv", "expired"),
            ("nope", "not_found"),
            ("worldline", "expired")
        ])
    );
    let (_, contracts) =
        get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/acquirer-contracts")).await;
    assert_eq!(contracts.as_array().unwrap().len(), 2);
});

backend_test!(locks_and_merchant_wide_changes_stay_with_the_right_people, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, loc_a, admin) =
        merchant(&server, &op, "Halles", "admin@halles.example", &["2500000001"]).await;
    // A manager with merchant-wide manage_settings who sees only location A.
    let (manager_id, manager) = invite(
        &server,
        &admin,
        merchant_id,
        "manager@halles.example",
        json!({"permissions": ["manage_settings"]}),
    )
    .await;
    let (_, group) =
        post(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/groups"), json!({"name": "A"})).await;
    let group = group["id"].as_i64().unwrap();
    server
        .call(
            Method::PUT,
            &format!("/api/v1/groups/{group}/grants/{loc_a}"),
            Some(&admin),
            Some(json!({"permissions": ["manage_settings"]})),
        )
        .await;
    server
        .call(Method::PUT, &format!("/api/v1/groups/{group}/members/{manager_id}"), Some(&admin), None)
        .await;
    let (status, _) =
        change(&server, &manager, "merchant", merchant_id, json!({"set": {"receipt.header": "x"}})).await;
    assert_eq!(status, 403, "the merchant level reaches locations the manager does not see");
    let (status, _) =
        change(&server, &manager, "location", loc_a, json!({"set": {"receipt.header": "A"}})).await;
    assert_eq!(status, 200);

    // A lock binds merchant users at the level it was set too.
    let (status, _) = change(
        &server,
        &op,
        "merchant",
        merchant_id,
        json!({"set": {"receipt.footer": "Merci"}, "lock": ["receipt.footer"]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) =
        change(&server, &admin, "merchant", merchant_id, json!({"set": {"receipt.footer": "Bye"}})).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("parameter_locked")));
    let (status, _) =
        change(&server, &admin, "merchant", merchant_id, json!({"unset": ["receipt.footer"]})).await;
    assert_eq!(status, 409);
    // Unlocked, the admin may change it again.
    let (status, _) =
        change(&server, &op, "merchant", merchant_id, json!({"unlock": ["receipt.footer"]})).await;
    assert_eq!(status, 200);
    let (status, _) =
        change(&server, &admin, "merchant", merchant_id, json!({"set": {"receipt.footer": "Bye"}})).await;
    assert_eq!(status, 200);

    // Global values and their history are the staff's.
    let (status, _) = get(&server, &admin, &format!("/api/v1/parameters/{T}/global/0/history")).await;
    assert_eq!(status, 404);
    // History shows who and why, never a digest of the content.
    let (_, history) =
        get(&server, &admin, &format!("/api/v1/parameters/{T}/merchant/{merchant_id}/history")).await;
    assert!(history[0].get("sha256").is_none(), "{history}");
});
