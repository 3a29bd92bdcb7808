//! The account side: orders, activation, login, 2FA, groups, scoping,
//! throttling, API tokens and the audit trail.

use reqwest::Method;
use serde_json::{Value, json};
use tms_e2e::fixtures::*;
use tms_e2e::{ServerBuilder, TestDatabase, backend_test};

backend_test!(first_order_creates_the_merchant_and_mails_its_admin, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (status, order) = post(
        &server,
        &op,
        "/api/v1/orders",
        order_for_new_merchant(
            "Boulangerie Martin",
            "Anne@Boulangerie.example",
            "12 rue de la Paix",
            &["1850123456", "1850123457"],
        ),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["merchant_created"], true);
    assert_eq!(order["location_created"], true);
    assert_eq!(order["activation_email_sent_to"], "anne@boulangerie.example");
    assert_eq!(order["terminals"].as_array().unwrap().len(), 2);
    assert_eq!(order["location"]["name"], "12 rue de la Paix, Paris");
    let merchant_id = order["merchant_id"].as_i64().unwrap();

    // The activation e-mail is in the outbox; its link sets the password once.
    let mail = server
        .outbox()
        .into_iter()
        .find(|m| m.contains("anne@boulangerie.example"))
        .expect("activation mail");
    assert!(mail.contains("Activate your Boulangerie Martin account"), "{mail}");
    let token = server.activation_token_for("anne@boulangerie.example");
    assert_eq!(token.len(), 64);
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "anne@boulangerie.example", "password": "anything at all"})),
        )
        .await;
    assert_eq!(status, 401, "no password before activation");
    let (status, body) = server
        .call(
            Method::POST,
            "/api/v1/auth/activate",
            None,
            Some(json!({"token": token, "password": "password123"})),
        )
        .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("weak_password")));
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/auth/activate",
            None,
            Some(json!({"token": token, "password": MERCHANT_PASSWORD})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = server
        .call(
            Method::POST,
            "/api/v1/auth/activate",
            None,
            Some(json!({"token": token, "password": MERCHANT_PASSWORD})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (400, Some("activation_token_invalid")),
        "single use"
    );

    let admin = server.login("anne@boulangerie.example", MERCHANT_PASSWORD).await;
    let (_, me) = get(&server, &admin, "/api/v1/auth/me").await;
    assert_eq!(me["is_admin"], true);
    assert_eq!(me["merchant_id"], merchant_id);
    let (_, merchant) = get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}")).await;
    assert_eq!(merchant["status"], "active");
    let (_, terminals) = get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/terminals")).await;
    assert_eq!(terminals.as_array().unwrap().len(), 2);

    // The same serial cannot be ordered twice, and nothing of the failed order remains.
    let (status, body) = post(
        &server,
        &op,
        "/api/v1/orders",
        order_for_new_merchant("Other", "other@shop.example", "3 rue X", &["1850123456"]),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (409, Some("terminal_already_registered")),
        "{body}"
    );
    let (_, merchants) = get(&server, &op, "/api/v1/merchants").await;
    assert_eq!(merchants.as_array().unwrap().len(), 1, "the refused order created no merchant");

    // Bad input names the field.
    let (status, body) =
        post(&server, &op, "/api/v1/orders", json!({"merchant_id": merchant_id, "delivery_address": address(""), "terminals": [{"serial": "A1B2C3D4", "model": "A80"}]})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["field"], "delivery_address.line1");
});

backend_test!(locations_come_only_from_orders_and_can_be_renamed, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location_id, admin) =
        merchant(&server, &op, "Café Lune", "lune@cafe.example", &["2000000001"]).await;

    // No endpoint creates a location.
    let (status, body) =
        post(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/locations"), json!({"name": "New"}))
            .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (405, Some("method_not_allowed")));

    // An order to the same address, spelled differently, lands at the same location.
    let (status, order) = post(
        &server,
        &op,
        "/api/v1/orders",
        json!({"merchant_id": merchant_id, "delivery_address": {"line1": "1, Rue de  RIVOLI", "postal_code": "75002", "city": "paris", "country": "fr"},
               "terminals": [{"serial": "2000000002", "model": "A80"}]}),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["location_created"], false);
    assert_eq!(order["location"]["id"], location_id);
    assert_eq!(order["merchant_created"], false);
    assert!(order.get("activation_email_sent_to").is_none());

    // A new address makes a new location.
    let (_, order) = post(
        &server,
        &op,
        "/api/v1/orders",
        json!({"merchant_id": merchant_id, "delivery_address": address("8 quai de Seine"), "location_name": "Quai",
               "terminals": [{"serial": "2000000003", "model": "A35"}]}),
    )
    .await;
    assert_eq!(order["location_created"], true);
    assert_eq!(order["location"]["name"], "Quai");
    let (_, locations) = get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/locations")).await;
    assert_eq!(locations.as_array().unwrap().len(), 2);

    let (status, renamed) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/locations/{location_id}"),
            Some(&admin),
            Some(json!({"name": "Rivoli"})),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "Rivoli");

    // Merchants cannot place orders.
    let (status, _) = post(
        &server,
        &admin,
        "/api/v1/orders",
        order_for_new_merchant("X", "x@x.example", "9 rue Y", &["2000000009"]),
    )
    .await;
    assert_eq!(status, 403);
});

backend_test!(group_permissions_limit_what_a_user_sees_and_does, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, rivoli, admin) =
        merchant(&server, &op, "Fleurs", "admin@fleurs.example", &["3000000001"]).await;
    let (_, order) = post(
        &server,
        &op,
        "/api/v1/orders",
        json!({"merchant_id": merchant_id, "delivery_address": address("5 avenue Foch"), "terminals": [{"serial": "3000000002", "model": "A80"}]}),
    )
    .await;
    let foch = order["location"]["id"].as_i64().unwrap();

    let (clerk_id, clerk) = invite(
        &server,
        &admin,
        merchant_id,
        "clerk@fleurs.example",
        json!({"permissions": ["view_transactions"]}),
    )
    .await;
    let (_, locations) = get(&server, &clerk, &format!("/api/v1/merchants/{merchant_id}/locations")).await;
    assert_eq!(locations, json!([]), "no group, no location");
    let (_, terminals) = get(&server, &clerk, &format!("/api/v1/merchants/{merchant_id}/terminals")).await;
    assert_eq!(terminals, json!([]));

    let (status, group) = post(
        &server,
        &admin,
        &format!("/api/v1/merchants/{merchant_id}/groups"),
        json!({"name": "Foch team"}),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_i64().unwrap();
    let (status, _) = server
        .call(
            Method::PUT,
            &format!("/api/v1/groups/{group_id}/grants/{foch}"),
            Some(&admin),
            Some(json!({"permissions": ["view_transactions"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, group) = server
        .call(Method::PUT, &format!("/api/v1/groups/{group_id}/members/{clerk_id}"), Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(group["members"], json!([clerk_id]));

    let (_, locations) = get(&server, &clerk, &format!("/api/v1/merchants/{merchant_id}/locations")).await;
    let ids: Vec<i64> = locations.as_array().unwrap().iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![foch]);
    let (_, terminals) = get(&server, &clerk, &format!("/api/v1/merchants/{merchant_id}/terminals")).await;
    assert_eq!(terminals.as_array().unwrap().len(), 1);
    assert_eq!(terminals[0]["serial"], "3000000002");

    // Seeing a location is not managing it; an unseen location does not exist.
    let rename = |id: i64| format!("/api/v1/locations/{id}");
    let (status, _) =
        server.call(Method::PATCH, &rename(foch), Some(&clerk), Some(json!({"name": "F"}))).await;
    assert_eq!(status, 403);
    let (status, _) =
        server.call(Method::PATCH, &rename(rivoli), Some(&clerk), Some(json!({"name": "R"}))).await;
    assert_eq!(status, 404);
    server
        .call(
            Method::PUT,
            &format!("/api/v1/groups/{group_id}/grants/{foch}"),
            Some(&admin),
            Some(json!({"permissions": ["manage_settings"]})),
        )
        .await;
    let (status, body) =
        server.call(Method::PATCH, &rename(foch), Some(&clerk), Some(json!({"name": "Foch"}))).await;
    assert_eq!(status, 200, "{body}");

    // Without manage_users the clerk cannot invite.
    let (status, _) = post(
        &server,
        &clerk,
        &format!("/api/v1/merchants/{merchant_id}/users"),
        json!({"email": "x@fleurs.example"}),
    )
    .await;
    assert_eq!(status, 403);

    // Removing the grant takes the location away again.
    server
        .call(
            Method::PUT,
            &format!("/api/v1/groups/{group_id}/grants/{foch}"),
            Some(&admin),
            Some(json!({"permissions": []})),
        )
        .await;
    let (_, locations) = get(&server, &clerk, &format!("/api/v1/merchants/{merchant_id}/locations")).await;
    assert_eq!(locations, json!([]));
});

backend_test!(two_step_verification_guards_the_api_but_not_terminal_activation, |db| {
    let (server, op) = server_with_operator(&db).await;
    let email = "owner@velo.example";
    let (_, _, admin) = merchant(&server, &op, "Vélo", email, &["4000000001"]).await;

    let (status, enrollment) = post(&server, &admin, "/api/v1/auth/2fa/enroll", json!({})).await;
    assert_eq!(status, 200, "{enrollment}");
    assert!(
        enrollment["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/TMS:owner%40velo.example?secret=")
    );
    let secret = tms_server::auth::totp::base32_decode(enrollment["secret"].as_str().unwrap()).unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (status, body) = post(&server, &admin, "/api/v1/auth/2fa/confirm", json!({"code": "000000"})).await;
    assert!(status == 401 || tms_server::auth::totp::current_code(&secret, now()) == "000000", "{body}");
    let code = tms_server::auth::totp::current_code(&secret, now());
    let (status, recovery) = post(&server, &admin, "/api/v1/auth/2fa/confirm", json!({"code": code})).await;
    assert_eq!(status, 200, "{recovery}");
    let recovery: Vec<String> = serde_json::from_value(recovery["codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);

    // Password alone no longer opens the management API.
    let login = |body: Value| server.call(Method::POST, "/api/v1/auth/login", None, Some(body));
    let (status, body) = login(json!({"email": email, "password": MERCHANT_PASSWORD})).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("totp_required")));
    // The code already used to confirm is refused (no replay).
    let (status, body) =
        login(json!({"email": email, "password": MERCHANT_PASSWORD, "totp_code": code})).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("invalid_totp")), "{body}");
    // A recovery code works once.
    let (status, _) =
        login(json!({"email": email, "password": MERCHANT_PASSWORD, "totp_code": recovery[0]})).await;
    assert_eq!(status, 200);
    let (status, _) =
        login(json!({"email": email, "password": MERCHANT_PASSWORD, "totp_code": recovery[0]})).await;
    assert_eq!(status, 401);

    // The same e-mail and password still activate the app on a terminal.
    let pool = db.pool();
    let defaults = tms_server::config::Config::resolve(Default::default(), None, |_| {
        tms_server::config::Source::Default
    });
    let settings =
        tms_server::accounts::users::AccountSettings::from_config(&defaults, server.master_keys().into());
    let mut conn = pool.get().unwrap();
    let user = tms_server::accounts::users::check_terminal_activation_credentials(
        &mut conn,
        email,
        MERCHANT_PASSWORD,
        None,
        None,
        &settings,
    )
    .expect("2FA does not block terminal activation");
    assert!(user.totp_enabled);
    let (_, events) = get(&server, &op, "/api/v1/audit?action=auth.terminal_activation").await;
    assert_eq!(events[0]["detail"]["two_factor_enabled"], true);
});

backend_test!(repeated_bad_passwords_are_throttled, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3")]).await;
    let (_, _, _) = merchant(&server, &op, "Kiosque", "k@kiosque.example", &["5000000001"]).await;
    let login = |password: &str| {
        server.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "k@kiosque.example", "password": password})),
        )
    };
    for _ in 0..3 {
        let (status, body) = login("wrong password!").await;
        assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("invalid_credentials")));
    }
    let res = server
        .http
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"email": "k@kiosque.example", "password": MERCHANT_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "throttled even with the right password");
    let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");
    // Other accounts are not affected.
    server.login(OPERATOR, OPERATOR_PASSWORD).await;
});

backend_test!(a_merchant_cannot_reach_another_merchants_objects, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (a, _, admin_a) = merchant(&server, &op, "A", "admin@a.example", &["6000000001"]).await;
    let (b, b_location, admin_b) = merchant(&server, &op, "B", "admin@b.example", &["6000000002"]).await;
    let (b_user, _) = invite(&server, &admin_b, b, "clerk@b.example", json!({})).await;
    let (_, b_group) =
        post(&server, &admin_b, &format!("/api/v1/merchants/{b}/groups"), json!({"name": "B team"})).await;
    let b_group = b_group["id"].as_i64().unwrap();
    let (_, b_me) = get(&server, &admin_b, "/api/v1/auth/me").await;
    let b_admin = b_me["id"].as_i64().unwrap();

    // Every management endpoint, with B's ids, as A's admin.
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/merchants/{b}"), None),
        (Method::GET, format!("/api/v1/merchants/{b}/locations"), None),
        (Method::GET, format!("/api/v1/merchants/{b}/terminals"), None),
        (Method::GET, format!("/api/v1/merchants/{b}/users"), None),
        (Method::POST, format!("/api/v1/merchants/{b}/users"), Some(json!({"email": "spy@a.example"}))),
        (Method::GET, format!("/api/v1/merchants/{b}/groups"), None),
        (Method::POST, format!("/api/v1/merchants/{b}/groups"), Some(json!({"name": "spies"}))),
        (Method::PATCH, format!("/api/v1/locations/{b_location}"), Some(json!({"name": "pwned"}))),
        (Method::GET, format!("/api/v1/users/{b_user}"), None),
        (Method::GET, format!("/api/v1/users/{b_admin}"), None),
        (Method::PATCH, format!("/api/v1/users/{b_user}"), Some(json!({"permissions": ["manage_users"]}))),
        (Method::DELETE, format!("/api/v1/users/{b_user}"), None),
        (Method::POST, format!("/api/v1/users/{b_user}/activation-email"), None),
        (Method::GET, format!("/api/v1/groups/{b_group}"), None),
        (Method::DELETE, format!("/api/v1/groups/{b_group}"), None),
        (
            Method::PUT,
            format!("/api/v1/groups/{b_group}/grants/{b_location}"),
            Some(json!({"permissions": ["view_transactions"]})),
        ),
        (Method::PUT, format!("/api/v1/groups/{b_group}/members/{b_user}"), None),
        (Method::DELETE, format!("/api/v1/groups/{b_group}/members/{b_user}"), None),
    ];
    for (method, path, body) in calls {
        let (status, res) = server.call(method.clone(), &path, Some(&admin_a), body).await;
        assert_eq!(status, 404, "{method} {path} as another merchant: {res}");
        assert_eq!(res["error"]["code"], "not_found");
        assert!(!res.to_string().contains("admin@b.example"), "{res}");
    }
    // A's own ids mixed with B's: a group of A cannot take B's location or user.
    let (_, a_group) =
        post(&server, &admin_a, &format!("/api/v1/merchants/{a}/groups"), json!({"name": "A team"})).await;
    let a_group = a_group["id"].as_i64().unwrap();
    let (status, _) = server
        .call(
            Method::PUT,
            &format!("/api/v1/groups/{a_group}/grants/{b_location}"),
            Some(&admin_a),
            Some(json!({"permissions": ["view_transactions"]})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call(Method::PUT, &format!("/api/v1/groups/{a_group}/members/{b_user}"), Some(&admin_a), None)
        .await;
    assert_eq!(status, 404);
    // Lists show only A; the audit trail of B is empty to A.
    let (_, merchants) = get(&server, &admin_a, "/api/v1/merchants").await;
    assert_eq!(merchants.as_array().unwrap().len(), 1);
    assert_eq!(merchants[0]["id"], a);
    let (_, audit) = get(&server, &admin_a, &format!("/api/v1/audit?merchant_id={b}")).await;
    assert_eq!(audit, json!([]));
    let (_, audit) = get(&server, &admin_a, "/api/v1/audit").await;
    assert!(audit.as_array().unwrap().iter().all(|e| e["merchant_id"] == a), "{audit}");

    // Nothing of B changed.
    let (_, user) = get(&server, &admin_b, &format!("/api/v1/users/{b_user}")).await;
    assert_eq!(user["permissions"], json!([]));
    let (_, locations) = get(&server, &admin_b, &format!("/api/v1/merchants/{b}/locations")).await;
    assert_ne!(locations[0]["name"], "pwned");
});

backend_test!(api_tokens_last_admins_and_the_audit_trail, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, _, admin) =
        merchant(&server, &op, "Presse", "admin@presse.example", &["8000000001"]).await;

    let (status, created) =
        post(&server, &admin, "/api/v1/auth/tokens", json!({"name": "ci", "expires_in_days": 90})).await;
    assert_eq!(status, 201, "{created}");
    let api_token = created["token"].as_str().unwrap().to_owned();
    assert!(api_token.starts_with("tms_a_"));
    let (status, me) = get(&server, &api_token, "/api/v1/auth/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], "admin@presse.example");
    let (_, tokens) = get(&server, &admin, "/api/v1/auth/tokens").await;
    assert!(!tokens.to_string().contains(&api_token), "tokens are never shown again");
    let token_id = created["id"].as_i64().unwrap();
    let (status, _) =
        server.call(Method::DELETE, &format!("/api/v1/auth/tokens/{token_id}"), Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, body) = get(&server, &api_token, "/api/v1/auth/me").await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) =
        post(&server, &admin, "/api/v1/auth/tokens", json!({"name": "x", "expires_in_days": 0})).await;
    assert_eq!(status, 400);

    // The only admin cannot step down.
    let (_, me) = get(&server, &admin, "/api/v1/auth/me").await;
    let admin_id = me["id"].as_i64().unwrap();
    let (status, body) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            Some(&admin),
            Some(json!({"is_admin": false})),
        )
        .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("last_admin")));

    let (clerk_id, _) = invite(&server, &admin, merchant_id, "clerk@presse.example", json!({})).await;
    let (status, _) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{clerk_id}"),
            Some(&admin),
            Some(json!({"permissions": ["export_transactions"]})),
        )
        .await;
    assert_eq!(status, 200);

    // Who did what to whom, with before and after.
    let (_, events) = get(&server, &admin, &format!("/api/v1/audit?subject=user:{clerk_id}")).await;
    let actions: Vec<&str> =
        events.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["user.update", "auth.login", "user.activate", "user.invite"]);
    assert_eq!(events[0]["actor"], "admin@presse.example");
    assert_eq!(events[0]["detail"]["before"]["permissions"], "");
    assert_eq!(events[0]["detail"]["after"]["permissions"], "export_transactions");
    assert_eq!(events[0]["source_ip"], "127.0.0.1");
    // Up to a time: the end of the invitation's second keeps it; a time before it keeps nothing.
    let invited_at =
        chrono::DateTime::parse_from_rfc3339(events[3]["occurred_at"].as_str().unwrap()).unwrap();
    let until = (invited_at + chrono::Duration::milliseconds(999)).to_rfc3339();
    let until = url::form_urlencoded::byte_serialize(until.as_bytes()).collect::<String>();
    let (_, earlier) =
        get(&server, &admin, &format!("/api/v1/audit?subject=user:{clerk_id}&until={until}")).await;
    assert_eq!(earlier.as_array().unwrap().last().unwrap()["action"], "user.invite");
    let (_, none) =
        get(&server, &admin, &format!("/api/v1/audit?subject=user:{clerk_id}&until=2000-01-01T00:00:00Z"))
            .await;
    assert_eq!(none.as_array().unwrap().len(), 0, "{none}");
    let (status, bad) = get(&server, &admin, "/api/v1/audit?until=yesterday").await;
    assert_eq!((status.as_u16(), bad["error"]["code"].as_str()), (400, Some("invalid_request")), "{bad}");
    let (_, by_operator) =
        get(&server, &op, &format!("/api/v1/audit?merchant_id={merchant_id}&action=order.create")).await;
    assert_eq!(by_operator.as_array().unwrap().len(), 1);
    assert_eq!(by_operator[0]["actor"], OPERATOR);
    let (status, _) = get(&server, &admin, "/api/v1/audit?limit=1").await;
    assert_eq!(status, 200);

    // Logging out ends the session.
    let (status, _) = post(&server, &admin, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(status, 204);
    let (status, _) = get(&server, &admin, "/api/v1/auth/me").await;
    assert_eq!(status, 401);
});

#[tokio::test]
async fn operator_bootstrap_refuses_a_second_user_with_the_same_email() {
    let db = TestDatabase::sqlite();
    let server = ServerBuilder::new().database(&db).start().await;
    server.create_operator("root@psp.example", "operator_admin", OPERATOR_PASSWORD);
    let out = server
        .command()
        .args(["operator", "create", "--email", "Root@PSP.example", "--role", "support", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            writeln!(child.stdin.take().unwrap(), "{OPERATOR_PASSWORD}")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has an account"));
    let (status, _) = server.call(Method::GET, "/api/v1/merchants", None, None).await;
    assert_eq!(status, 401, "the management API needs a token");
}

#[tokio::test]
async fn activation_mail_goes_over_smtp_when_configured() {
    let sink = tms_e2e::SmtpSink::start().await;
    let db = TestDatabase::sqlite();
    let (server, op) = server_with_operator_and(
        &db,
        &[("TMS_SMTP_URL", &sink.url()), ("TMS_MAIL_FROM", "TMS <no-reply@psp.example>")],
    )
    .await;
    let (status, order) = post(
        &server,
        &op,
        "/api/v1/orders",
        order_for_new_merchant("Épicerie", "owner@epicerie.example", "2 rue Haute", &["9000000001"]),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["activation_email_sent_to"], "owner@epicerie.example");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("To: owner@epicerie.example"), "{}", messages[0]);
    assert!(messages[0].contains("From: TMS <no-reply@psp.example>"), "{}", messages[0]);
    assert!(server.outbox().is_empty(), "nothing goes to the outbox when SMTP is configured");
}

backend_test!(failed_logins_are_also_throttled_per_client_address, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_LOGIN_MAX_FAILURES_PER_ADDRESS", "4")]).await;
    let (_, _, _) = merchant(&server, &op, "Tabac", "t@tabac.example", &["9200000001"]).await;
    // Guessing across many accounts from one address. Without
    // trusted_proxies, claiming other addresses in X-Forwarded-For changes
    // nothing: the peer is the client.
    for i in 0..4 {
        let (status, _, _) =
            login_from(&server, &format!("203.0.113.{i}"), &format!("guess{i}@tabac.example"), "nope nope")
                .await;
        assert_eq!(status, 401);
    }
    let (status, body) = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "t@tabac.example", "password": MERCHANT_PASSWORD})),
        )
        .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (429, Some("too_many_attempts")), "{body}");
});

backend_test!(nobody_grants_more_than_they_hold, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, loc_a, admin) =
        merchant(&server, &op, "Halles", "admin@halles.example", &["9300000001"]).await;
    let (_, order) = post(&server, &op, "/api/v1/orders",
        json!({"merchant_id": merchant_id, "delivery_address": address("7 rue B"), "terminals": [{"serial": "9300000002", "model": "A80"}]})).await;
    let loc_b = order["location"]["id"].as_i64().unwrap();
    let (manager_id, manager) = invite(
        &server,
        &admin,
        merchant_id,
        "manager@halles.example",
        json!({"permissions": ["manage_users"]}),
    )
    .await;
    let (_, group_a) =
        post(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/groups"), json!({"name": "A"})).await;
    let group_a = group_a["id"].as_i64().unwrap();
    server
        .call(
            Method::PUT,
            &format!("/api/v1/groups/{group_a}/grants/{loc_a}"),
            Some(&admin),
            Some(json!({"permissions": ["view_transactions"]})),
        )
        .await;
    server
        .call(Method::PUT, &format!("/api/v1/groups/{group_a}/members/{manager_id}"), Some(&admin), None)
        .await;
    // The user list (every e-mail, 2FA state and group) is for those who manage users.
    let (_, clerk) = invite(
        &server,
        &admin,
        merchant_id,
        "clerk@halles.example",
        json!({"permissions": ["view_transactions"]}),
    )
    .await;
    let users = format!("/api/v1/merchants/{merchant_id}/users");
    let (status, body) = get(&server, &clerk, &users).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, listed) = get(&server, &manager, &users).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");

    // Not to themselves…
    let (status, _) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{manager_id}"),
            Some(&manager),
            Some(json!({"permissions": ["manage_users", "export_transactions"]})),
        )
        .await;
    assert_eq!(status, 403);
    // …nor to others beyond what they hold.
    let (status, body) = post(
        &server,
        &manager,
        &format!("/api/v1/merchants/{merchant_id}/users"),
        json!({"email": "x@halles.example", "permissions": ["manage_settings"]}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(
        &server,
        &manager,
        &format!("/api/v1/merchants/{merchant_id}/users"),
        json!({"email": "y@halles.example", "permissions": ["manage_users"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = post(
        &server,
        &manager,
        &format!("/api/v1/merchants/{merchant_id}/users"),
        json!({"email": "z@halles.example", "is_admin": true}),
    )
    .await;
    assert_eq!(status, 403);

    // Groups: only what they hold where they see it, and never their own membership.
    let (_, group) =
        post(&server, &manager, &format!("/api/v1/merchants/{merchant_id}/groups"), json!({"name": "mine"}))
            .await;
    let group = group["id"].as_i64().unwrap();
    let grant = |location: i64, perms: Value| {
        let path = format!("/api/v1/groups/{group}/grants/{location}");
        let server = &server;
        let manager = manager.clone();
        async move { server.call(Method::PUT, &path, Some(&manager), Some(json!({"permissions": perms}))).await.0 }
    };
    assert_eq!(grant(loc_a, json!(["manage_settings"])).await, 403);
    assert_eq!(grant(loc_b, json!(["view_transactions"])).await, 404, "an unseen location does not exist");
    assert_eq!(grant(loc_a, json!(["view_transactions"])).await, 200);
    let (status, _) = server
        .call(Method::PUT, &format!("/api/v1/groups/{group}/members/{manager_id}"), Some(&manager), None)
        .await;
    assert_eq!(status, 403);

    // An API token cannot mint further credentials.
    let (_, created) =
        post(&server, &admin, "/api/v1/auth/tokens", json!({"name": "ci", "expires_in_days": 1})).await;
    let api = created["token"].as_str().unwrap();
    let (status, _) =
        post(&server, api, "/api/v1/auth/tokens", json!({"name": "more", "expires_in_days": 730})).await;
    assert_eq!(status, 403);
    let (status, _) = post(&server, api, "/api/v1/auth/2fa/enroll", json!({})).await;
    assert_eq!(status, 403);
});

backend_test!(throttling_ignores_the_case_of_the_email, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_LOGIN_MAX_FAILURES_PER_ACCOUNT", "2")]).await;
    let (_, _, _) = merchant(&server, &op, "Case", "case@case.example", &["9400000001"]).await;
    for email in ["CASE@case.example", "Case@Case.Example"] {
        let (status, _) = server
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": "wrong wrong"})),
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "case@case.example", "password": MERCHANT_PASSWORD})),
        )
        .await;
    assert_eq!(status, 429);
});

backend_test!(changing_ones_password_ends_other_sessions, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (_, _, first) = merchant(&server, &op, "Pwd", "pwd@pwd.example", &["9600000001"]).await;
    let second = server.login("pwd@pwd.example", MERCHANT_PASSWORD).await;
    let change = |current: &str, new: &str| {
        server.call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&second),
            Some(json!({"current_password": current, "new_password": new})),
        )
    };
    let (status, body) = change("not it at all", "brand new pass phrase").await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("invalid_credentials")));
    let (status, body) = change(MERCHANT_PASSWORD, "password123").await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("weak_password")));
    let (status, token) =
        post(&server, &second, "/api/v1/auth/tokens", json!({"name": "ci", "expires_in_days": 30})).await;
    assert_eq!(status, 201, "{token}");
    let api_token = token["token"].as_str().unwrap().to_owned();
    assert_eq!(get(&server, &api_token, "/api/v1/auth/me").await.0, 200);
    let (status, _) = change(MERCHANT_PASSWORD, "brand new pass phrase").await;
    assert_eq!(status, 204);
    let (status, _) = get(&server, &first, "/api/v1/auth/me").await;
    assert_eq!(status, 401, "the other session ended");
    let (status, _) = get(&server, &api_token, "/api/v1/auth/me").await;
    assert_eq!(status, 401, "an API token does not outlive the password it was made under");
    let (status, _) = get(&server, &second, "/api/v1/auth/me").await;
    assert_eq!(status, 200, "this one goes on");
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "pwd@pwd.example", "password": MERCHANT_PASSWORD})),
        )
        .await;
    assert_eq!(status, 401);
    server.login("pwd@pwd.example", "brand new pass phrase").await;
    // From the CLI too.
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    tms_e2e::run_tms(
        &server,
        &creds,
        &["login", "--email", "pwd@pwd.example", "--password-stdin"],
        Some("brand new pass phrase"),
    );
    let (code, out, err) = tms_e2e::run_tms(
        &server,
        &creds,
        &["password", "--stdin"],
        Some("brand new pass phrase\nanother long phrase"),
    );
    assert_eq!(code, 0, "{out}{err}");
    server.login("pwd@pwd.example", "another long phrase").await;
});

/// A login through a proxy that says it comes from `ip`: status,
/// `Retry-After` and body.
async fn login_from(
    server: &tms_e2e::TestServer,
    ip: &str,
    email: &str,
    password: &str,
) -> (u16, Option<u64>, Value) {
    let res = server
        .http
        .post(server.url("/api/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry_after, res.json().await.unwrap_or(Value::Null))
}

backend_test!(guesses_from_elsewhere_slow_the_guesser_and_never_stop_the_shops_terminals, |db| {
    let (server, op) = server_with_operator_and(
        &db,
        &[
            ("TMS_TRUSTED_PROXIES", "127.0.0.0/8, ::1"),
            ("TMS_LOGIN_MAX_FAILURES_PER_ACCOUNT", "8"),
            ("TMS_ADJUSTABLE_CLOCK", "true"),
        ],
    )
    .await;
    let email = "patron@fournil.example";
    let (merchant_id, location_id, _) = merchant(&server, &op, "Fournil", email, &["7100000001"]).await;
    let terminal = activated_terminal(&server, email, (merchant_id, location_id), "7100000001", "A920").await;
    let attacker = "203.0.113.9";
    let owner = "198.51.100.7";

    // Three free failures, then the guesser waits 30 s, then 60 s...
    for _ in 0..3 {
        assert_eq!(login_from(&server, attacker, email, "guess guess").await.0, 401);
    }
    let (status, retry_after, body) = login_from(&server, attacker, email, MERCHANT_PASSWORD).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("too_many_attempts")), "{body}");
    assert!((1..=30).contains(&retry_after.unwrap()), "{retry_after:?}");
    // ...while the owner, elsewhere, is not kept out.
    let (status, _, body) = login_from(&server, owner, email, MERCHANT_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let (_, events) = get(&server, &op, "/api/v1/audit?action=auth.login").await;
    assert_eq!(events[0]["source_ip"], owner, "the audit log names the forwarded client: {}", events[0]);
    server.advance_clock(&op, 30).await;
    assert_eq!(login_from(&server, attacker, email, "guess guess").await.0, 401);
    let (status, retry_after, _) = login_from(&server, attacker, email, "guess guess").await;
    assert_eq!(status, 429);
    assert!((31..=60).contains(&retry_after.unwrap()), "the wait doubled: {retry_after:?}");

    // Guessers at more addresses use up the account's ceiling (8 here):
    // then nobody logs in with a password from anywhere new...
    for i in 10..13 {
        for _ in 0..3 {
            login_from(&server, &format!("203.0.113.{i}"), email, "guess guess").await;
        }
    }
    let (status, retry_after, _) = login_from(&server, owner, email, MERCHANT_PASSWORD).await;
    assert_eq!(status, 429, "the account's ceiling holds, whatever the address");
    assert!(retry_after.unwrap() > 60, "{retry_after:?}");
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/terminal/activation/start",
            None,
            Some(json!({"email": email, "password": MERCHANT_PASSWORD, "app": "salespoint", "hardware_id": "7100000002", "model": "A920"})),
        )
        .await;
    assert_eq!(status, 429, "activating a new terminal is a login from somewhere new");
    // ...but the shop's activated terminal does: only its own failures count.
    let device_login = |password: &'static str| {
        server.call(
            Method::POST,
            "/api/v1/terminal/login",
            Some(&terminal.token),
            Some(json!({"email": email, "password": password})),
        )
    };
    assert_eq!(device_login("typo typo").await.0, 401);
    assert_eq!(device_login(MERCHANT_PASSWORD).await.0, 204, "a known terminal logs in");
});

fn login_failure_rows(db: &TestDatabase) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let pool = db.pool();
    let mut conn = pool.get().unwrap();
    diesel::sql_query("SELECT count(*) AS n FROM login_failures").get_result::<Count>(&mut *conn).unwrap().n
}

backend_test!(codes_guessed_between_password_only_logins_are_throttled_per_account, |db| {
    let (server, op) = server_with_operator(&db).await;
    let email = "owner@cles.example";
    let (_, _, admin) = merchant(&server, &op, "Clés", email, &["4100000001"]).await;
    let (_, enrollment) = post(&server, &admin, "/api/v1/auth/2fa/enroll", json!({})).await;
    let secret = tms_server::auth::totp::base32_decode(enrollment["secret"].as_str().unwrap()).unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = tms_server::auth::totp::current_code(&secret, now());
    assert_eq!(post(&server, &admin, "/api/v1/auth/2fa/confirm", json!({"code": code})).await.0, 200);
    let login = |body: Value| server.call(Method::POST, "/api/v1/auth/login", None, Some(body));
    let wrong = |n: u32| {
        let right = tms_server::auth::totp::current_code(&secret, now());
        let guess = format!("{:06}", n);
        if guess == right { "999999".to_owned() } else { guess }
    };

    // The attack: the right password, a wrong code, then the password alone
    // (which answers totp_required), over and over. The default allows five
    // failures per account; the password-only requests forgive none.
    let mut wrong_codes_tried = 0;
    for n in 0..12 {
        let (status, body) =
            login(json!({"email": email, "password": MERCHANT_PASSWORD, "totp_code": wrong(n)})).await;
        if status == 429 {
            break;
        }
        assert_eq!(body["error"]["code"], "invalid_totp", "{body}");
        wrong_codes_tried += 1;
        let (status, body) = login(json!({"email": email, "password": MERCHANT_PASSWORD})).await;
        if status == 429 {
            break;
        }
        assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("totp_required")), "{body}");
    }
    assert_eq!(wrong_codes_tried, 5, "five wrong codes, then the account waits");
    // Throttled, even the right code waits; nothing more is written meanwhile.
    let rows = login_failure_rows(&db);
    let right = tms_server::auth::totp::current_code(&secret, now());
    let (status, _) = login(json!({"email": email, "password": MERCHANT_PASSWORD, "totp_code": right})).await;
    assert_eq!(status, 429);
    assert_eq!(login_failure_rows(&db), rows, "a refused attempt leaves nothing");
});

backend_test!(oversized_logins_are_refused_and_leave_nothing_behind, |db| {
    let (server, _op) = server_with_operator(&db).await;
    let login = |body: Value| server.call(Method::POST, "/api/v1/auth/login", None, Some(body));
    let before = login_failure_rows(&db);
    // 900,000 characters: the body is refused before it is read whole.
    let (status, body) =
        login(json!({"email": format!("{}@x.example", "a".repeat(900_000)), "password": "x"})).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    // Longer than an address can be: refused, and not written down.
    let (status, body) =
        login(json!({"email": format!("{}@x.example", "a".repeat(300)), "password": "x"})).await;
    assert_eq!((status.as_u16(), body["error"]["details"]["field"].as_str()), (400, Some("email")), "{body}");
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/terminal/activation/start",
            None,
            Some(json!({"email": "a".repeat(20_000), "password": "x", "app": "salespoint", "hardware_id": "1", "model": "A920"})),
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(login_failure_rows(&db), before);
    // Wrong passwords: three are written down, then each refusal writes nothing.
    for _ in 0..3 {
        let (status, _) = login(json!({"email": "nobody@x.example", "password": "wrong"})).await;
        assert_eq!(status, 401);
    }
    let after_three = login_failure_rows(&db);
    for _ in 0..10 {
        let (status, _) = login(json!({"email": "nobody@x.example", "password": "wrong"})).await;
        assert_eq!(status, 429);
    }
    assert_eq!(login_failure_rows(&db), after_three);
});

backend_test!(a_forgotten_password_is_reset_through_the_api_and_the_cli, |db| {
    let (server, op) = server_with_operator(&db).await;
    let email = "oubli@oubli.example";
    let (_, _, session) = merchant(&server, &op, "Oubli", email, &["4200000001"]).await;
    let reset = |email: &str| {
        server.call(Method::POST, "/api/v1/auth/password-reset", None, Some(json!({"email": email})))
    };
    let sent = server.outbox().len();
    // An unknown address gets the same answer, and nothing is sent.
    assert_eq!(reset("nobody@oubli.example").await.0, 202);
    assert_eq!(server.outbox().len(), sent);

    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    let (code, out, err) = tms_e2e::run_tms(&server, &creds, &["password-reset", "--email", email], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("on its way"), "{out}");
    assert_eq!(server.outbox().len(), sent + 1);
    let token = server.activation_token_for(email);
    let set = |token: String, password: &str| {
        server.call(
            Method::POST,
            "/api/v1/auth/activate",
            None,
            Some(json!({"token": token, "password": password})),
        )
    };
    assert_eq!(set(token.clone(), "a fresh pass phrase").await.0, 204);
    assert_eq!(get(&server, &session, "/api/v1/auth/me").await.0, 401, "a reset ends every session");
    server.login(email, "a fresh pass phrase").await;
    assert_eq!(set(token, "yet another pass phrase").await.0, 400, "the link works once");

    // Operators too.
    assert_eq!(reset(OPERATOR).await.0, 202);
    let token = server.activation_token_for(OPERATOR);
    assert_eq!(set(token, "an operator's new phrase").await.0, 204);
    server.login(OPERATOR, "an operator's new phrase").await;
    assert_eq!(get(&server, &op, "/api/v1/auth/me").await.0, 401);
});

/// Invites an operator and sets their password; returns their id and a session.
async fn operator_with(server: &tms_e2e::TestServer, op: &str, email: &str, role: &str) -> (i64, String) {
    let (status, user) = post(server, op, "/api/v1/operators", json!({"email": email, "role": role})).await;
    assert_eq!(status, 201, "{user}");
    activate(server, email, "staff pass phrase").await;
    (user["id"].as_i64().unwrap(), server.login(email, "staff pass phrase").await)
}

backend_test!(operators_are_listed_changed_disabled_and_the_last_admin_stays, |db| {
    let (server, op) = server_with_operator(&db).await;
    let server = &server;
    let (support_id, support) = operator_with(server, &op, "support@psp.example", "support").await;
    let (status, token) =
        post(server, &support, "/api/v1/auth/tokens", json!({"name": "script", "expires_in_days": 30})).await;
    assert_eq!(status, 201, "{token}");
    let support_token = token["token"].as_str().unwrap().to_owned();
    let change = async |session: &str, id: i64, body: Value| {
        server.call(Method::PATCH, &format!("/api/v1/operators/{id}"), Some(session), Some(body)).await
    };

    // Only operator admins list and change operators.
    let (status, list) = get(server, &op, "/api/v1/operators").await;
    assert_eq!(status, 200);
    let roles: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["email"].as_str().unwrap().to_owned(), u["operator_role"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        roles,
        [
            (OPERATOR.to_owned(), "operator_admin".to_owned()),
            ("support@psp.example".into(), "support".into())
        ]
    );
    assert_eq!(get(server, &support, "/api/v1/operators").await.0, 403);
    let (_, me) = get(server, &op, "/api/v1/auth/me").await;
    let admin_id = me["id"].as_i64().unwrap();
    assert_eq!(change(&support, admin_id, json!({"disabled": true})).await.0, 403);

    // Disabled: no login, and the session and the API token end (from the CLI).
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    tms_e2e::login_tms(server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let (code, out, err) =
        tms_e2e::run_tms(server, &creds, &["operator", "disable", &support_id.to_string()], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("support@psp.example") && out.contains("disabled"), "{out}");
    assert_eq!(get(server, &support, "/api/v1/auth/me").await.0, 401);
    assert_eq!(get(server, &support_token, "/api/v1/auth/me").await.0, 401);
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "support@psp.example", "password": "staff pass phrase"})),
        )
        .await;
    assert_eq!(status, 401);
    // Enabled again, with another role.
    let (status, body) =
        change(&op, support_id, json!({"disabled": false, "role": "release_engineer"})).await;
    assert_eq!((status.as_u16(), body["status"].as_str()), (200, Some("active")), "{body}");
    assert_eq!(body["operator_role"], "release_engineer");
    server.login("support@psp.example", "staff pass phrase").await;
    let (code, out, _) = tms_e2e::run_tms(server, &creds, &["operator", "list"], None);
    assert_eq!(code, 0);
    assert!(out.contains("release_engineer") && out.contains("active"), "{out}");
    let (status, body) = change(&op, support_id, json!({"role": "king"})).await;
    assert_eq!((status.as_u16(), body["error"]["details"]["field"].as_str()), (400, Some("role")), "{body}");

    // The last active operator admin can neither leave nor step down.
    let (status, body) = change(&op, admin_id, json!({"disabled": true})).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("last_admin")), "{body}");
    let (status, body) = change(&op, admin_id, json!({"role": "support"})).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("last_admin")), "{body}");
    // With a second admin, two disabling each other at once: one stays.
    let (second_id, second) = operator_with(server, &op, "second@psp.example", "operator_admin").await;
    let (a, b) = tokio::join!(
        change(&op, second_id, json!({"disabled": true})),
        change(&second, admin_id, json!({"disabled": true}))
    );
    assert!(!(a.0 == 200 && b.0 == 200), "both admins disabled: {a:?} {b:?}");
    let survivor = if a.0 == 200 { &op } else { &second };
    let (status, list) = get(server, survivor, "/api/v1/operators").await;
    assert_eq!(status, 200, "the survivor is still an admin: {list}");
    let active_admins = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["operator_role"] == "operator_admin" && u["status"] == "active")
        .count();
    assert_eq!(active_admins, 1, "{list}");

    let (_, events) = get(server, survivor, "/api/v1/audit?limit=50").await;
    let actions: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["operator.disable", "operator.enable", "operator.role_change"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
});

backend_test!(security_events_are_in_the_audit_log_without_what_was_typed, |db| {
    let (server, op) = server_with_operator(&db).await;
    let email = "veille@veille.example";
    let (_, _, admin) = merchant(&server, &op, "Veille", email, &["4300000001"]).await;
    let login = |email: &'static str, password: &'static str, code: Option<String>| {
        let server = &server;
        async move {
            let mut body = json!({"email": email, "password": password});
            if let Some(code) = code {
                body["totp_code"] = json!(code);
            }
            server.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await
        }
    };
    let events = |token: String, action: &'static str| {
        let server = &server;
        async move { get(server, &token, &format!("/api/v1/audit?action={action}")).await.1 }
    };

    // A wrong password, and an account that does not exist.
    assert_eq!(login(email, "typed-secret-1", None).await.0, 401);
    assert_eq!(login("ghost@veille.example", "typed-secret-2", None).await.0, 401);
    let failed = events(op.clone(), "auth.login_failed").await;
    assert_eq!(failed.as_array().unwrap().len(), 2, "{failed}");
    assert_eq!(failed[1]["actor"], email);
    assert_eq!(failed[1]["detail"]["reason"], "wrong_password");
    assert_eq!(failed[1]["detail"]["via"], "api");
    assert_eq!(failed[1]["source_ip"], "127.0.0.1");
    assert_eq!(failed[0]["detail"]["reason"], "unknown_account");
    assert!(failed[0]["subject"].as_str().unwrap().starts_with("account:"), "{failed}");
    let all = get(&server, &op, "/api/v1/audit?limit=200").await.1.to_string();
    for typed in ["typed-secret-1", "typed-secret-2", "ghost@veille.example"] {
        assert!(!all.contains(typed), "{typed} is not kept: {all}");
    }
    // The merchant's admin sees the failures on the merchant's own accounts.
    let own = events(admin.clone(), "auth.login_failed").await;
    assert_eq!(own.as_array().unwrap().len(), 1, "{own}");

    // The failure that makes the next attempts wait says so.
    for _ in 0..3 {
        login(OPERATOR, "not the pass phrase", None).await;
    }
    let throttled = events(op.clone(), "auth.throttled").await;
    assert_eq!(throttled.as_array().unwrap().len(), 1, "{throttled}");
    assert_eq!(throttled[0]["actor"], OPERATOR);
    assert!(throttled[0]["detail"]["retry_after_secs"].as_u64().unwrap() > 0, "{throttled}");

    // Two-step verification on, a recovery code used.
    let (_, enrollment) = post(&server, &admin, "/api/v1/auth/2fa/enroll", json!({})).await;
    let secret = tms_server::auth::totp::base32_decode(enrollment["secret"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = tms_server::auth::totp::current_code(&secret, now);
    let (_, recovery) = post(&server, &admin, "/api/v1/auth/2fa/confirm", json!({"code": code})).await;
    let recovery_code = recovery["codes"][3].as_str().unwrap().to_owned();
    let (status, body) = login(email, MERCHANT_PASSWORD, Some(recovery_code.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(events(op.clone(), "user.two_factor_enable").await.as_array().unwrap().len(), 1);
    let used = events(op.clone(), "auth.recovery_code_used").await;
    assert_eq!(used[0]["detail"]["remaining"], 9, "{used}");
    assert!(!used.to_string().contains(&recovery_code));

    // Key rotations from the command line.
    let out = server.command().args(["keys", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated = events(op.clone(), "keys.rotate").await;
    assert_eq!(rotated[0]["actor"], "tms-server keys rotate", "{rotated}");
});
