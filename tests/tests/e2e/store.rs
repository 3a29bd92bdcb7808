//! The merchant app store: what a merchant's catalogue offers, installs and
//! uninstalls delivered by the contact, and the status terminals report.

use reqwest::Method;
use serde_json::{Value, json};
use tms_e2e::fixtures::*;
use tms_e2e::terminal::{Outcome, SimTerminal};
use tms_e2e::{TestServer, backend_test, run_tms};
use tms_packages::wire::contact::{AppInstruction, ContactBody};
use tms_signing::PublicKey;

const SALESPOINT: &str = "eu.ccv.salespoint";
const TIPS: &str = "com.example.tips";
const PARKING: &str = "com.example.parking";
const LOYALTY: &str = "com.example.loyalty";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR not really a picture";

async fn contact(server: &TestServer, t: &mut SimTerminal, trusted: &[PublicKey]) -> ContactBody {
    match t.contact(&server.http, &server.base_url).await {
        Outcome::Answer(answer, body) => {
            t.accept(&answer, trusted).expect("a valid answer");
            body
        }
        Outcome::Refused(status, body) => panic!("contact refused: {status} {body}"),
    }
}

fn only_change<'a>(body: &'a ContactBody, app_id: &str) -> &'a AppInstruction {
    assert_eq!(body.apps.len(), 1, "{:?}", body.apps);
    assert_eq!(body.apps[0].app_id, app_id);
    &body.apps[0]
}

fn app_ids(catalogue: &Value) -> Vec<&str> {
    catalogue.as_array().expect("a list").iter().map(|a| a["app_id"].as_str().unwrap()).collect()
}

fn terminal(view: &Value, device_id: i64) -> &Value {
    view["terminals"].as_array().unwrap().iter().find(|t| t["device_id"] == device_id).expect("listed")
}

/// The store's view of the app once the terminal shows `status` (inventories
/// reach the database at the next contact flush).
async fn store_status(server: &TestServer, token: &str, app_id: &str, device_id: i64, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, view) = get(server, token, &format!("/api/v1/store/apps/{app_id}")).await;
        assert_eq!(code, 200, "{view}");
        if terminal(&view, device_id)["status"] == status {
            return view;
        }
        assert!(std::time::Instant::now() < deadline, "terminal {device_id} never became {status}: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Registers a store (or private) app with a listing and publishes releases.
async fn store_app(
    server: &TestServer,
    op: &str,
    app_id: &str,
    visibility: &str,
    category: &str,
    releases: &[(&str, u64, &[&str])],
) -> tms_signing::PrivateKey {
    let key = app_with_key(server, op, app_id, "app").await;
    let (status, app) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/apps/{app_id}"),
            Some(op),
            Some(json!({"visibility": visibility, "summary": format!("{app_id} for your shop"),
                        "description": "Long text", "category": category})),
        )
        .await;
    assert_eq!(status, 200, "{app}");
    for (version, code, models) in releases {
        publish_release(server, op, &key, app_id, "app", version, *code, models).await;
    }
    key
}

backend_test!(merchants_install_compatible_store_apps_and_see_what_their_terminals_report, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_CONTACT_FLUSH_MS", "200")]).await;
    let trusted = answer_keys(&server).await;
    let system_key = app_with_key(&server, &op, SALESPOINT, "app").await;
    publish_release(&server, &op, &system_key, SALESPOINT, "app", "4.0.0", 400, &["A920", "A80"]).await;
    let tips_key = store_app(
        &server,
        &op,
        TIPS,
        "store",
        "tipping",
        &[("1.0.0", 100, &["A920"]), ("1.1.0", 110, &["A920"])],
    )
    .await;
    store_app(&server, &op, PARKING, "store", "parking", &[("1.0.0", 100, &["X990"])]).await;
    store_app(&server, &op, LOYALTY, "private", "loyalty", &[("2.0.0", 200, &["A920", "A80"])]).await;

    let (a_id, a_location, a_admin) =
        merchant(&server, &op, "Boulangerie", "admin@boul.example", &["SA-0001", "SA-0002", "SA-0003"]).await;
    let (b_id, b_location, b_admin) =
        merchant(&server, &op, "Garage", "admin@garage.example", &["SB-0001"]).await;
    let mut t1 =
        activated_terminal(&server, "admin@boul.example", (a_id, a_location), "SA-0001", "A920").await;
    let mut t2 =
        activated_terminal(&server, "admin@boul.example", (a_id, a_location), "SA-0002", "A920").await;
    let mut t3 =
        activated_terminal(&server, "admin@boul.example", (a_id, a_location), "SA-0003", "A80").await;
    let mut t4 =
        activated_terminal(&server, "admin@garage.example", (b_id, b_location), "SB-0001", "A920").await;

    // The private app is offered to the garage only.
    let (status, app) =
        server.call(Method::PUT, &format!("/api/v1/apps/{LOYALTY}/merchants/{b_id}"), Some(&op), None).await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["merchants"], json!([b_id]));

    // The bakery sees the store app that fits its terminals: not the system
    // app, not the app for another model, not the garage's private app.
    let (status, catalogue) = get(&server, &a_admin, "/api/v1/store/apps").await;
    assert_eq!(status, 200, "{catalogue}");
    assert_eq!(app_ids(&catalogue), [TIPS]);
    assert_eq!(catalogue[0]["current_version"], "1.1.0");
    assert_eq!(catalogue[0]["category"], "tipping");
    let (_, found) = get(&server, &a_admin, "/api/v1/store/apps?search=TIP%20shop").await;
    assert_eq!(app_ids(&found), [TIPS]);
    let (_, found) = get(&server, &a_admin, "/api/v1/store/apps?search=parking").await;
    assert!(app_ids(&found).is_empty(), "{found}");
    let (_, found) = get(&server, &a_admin, "/api/v1/store/apps?category=loyalty").await;
    assert!(app_ids(&found).is_empty(), "{found}");
    let (status, _) = get(&server, &a_admin, &format!("/api/v1/store/apps/{LOYALTY}")).await;
    assert_eq!(status, 404, "another merchant's private app does not exist for the bakery");
    let (status, body) = post(
        &server,
        &a_admin,
        &format!("/api/v1/store/apps/{LOYALTY}/install"),
        json!({"devices": [t1.device_id]}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (_, catalogue) = get(&server, &b_admin, "/api/v1/store/apps").await;
    assert_eq!(app_ids(&catalogue), [LOYALTY, TIPS]);

    // A user without install_apps has no store.
    let (_, clerk) =
        invite(&server, &a_admin, a_id, "clerk@boul.example", json!({"permissions": ["view_transactions"]}))
            .await;
    let (status, body) = get(&server, &clerk, "/api/v1/store/apps").await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");

    // The listing's icon, served to merchants whose store offers the app.
    let res = server
        .http
        .put(server.url(&format!("/api/v1/apps/{TIPS}/icon")))
        .bearer_auth(&op)
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = server
        .http
        .put(server.url(&format!("/api/v1/apps/{TIPS}/icon")))
        .bearer_auth(&op)
        .body("<svg/>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415, "only PNG, JPEG and WebP");
    let (_, view) = get(&server, &a_admin, &format!("/api/v1/store/apps/{TIPS}")).await;
    let res = server
        .http
        .get(server.url(view["icon_path"].as_str().unwrap()))
        .bearer_auth(&a_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.bytes().await.unwrap().as_ref(), PNG);

    // The store view: which terminals could get which release.
    assert_eq!(view["removable"], true);
    assert_eq!(view["compatible_models"], json!(["A920"]));
    assert_eq!(terminal(&view, t1.device_id)["installable_version"], "1.1.0");
    assert_eq!(terminal(&view, t1.device_id)["status"], "not_installed");
    assert!(terminal(&view, t3.device_id).get("installable_version").is_none(), "{view}");

    // An incompatible terminal is refused, naming its model; nothing is created.
    let (status, body) = post(
        &server,
        &a_admin,
        &format!("/api/v1/store/apps/{TIPS}/install"),
        json!({"devices": [t1.device_id, t3.device_id]}),
    )
    .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("app_incompatible")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("A80"), "{body}");
    assert_eq!(body["error"]["details"]["model"], "A80");
    assert!(contact(&server, &mut t1, &trusted).await.apps.is_empty(), "a refused request delivers nothing");

    // Install on t1: exactly t1 gets the newest compatible release at its next contact.
    let (status, request) = post(
        &server,
        &a_admin,
        &format!("/api/v1/store/apps/{TIPS}/install"),
        json!({"devices": [t1.device_id]}),
    )
    .await;
    assert_eq!(status, 201, "{request}");
    assert_eq!(request["terminals"], json!([{"device_id": t1.device_id, "version": "1.1.0"}]));
    let body = contact(&server, &mut t1, &trusted).await;
    let change = only_change(&body, TIPS);
    assert_eq!(
        (change.change.as_str(), change.release.as_ref().unwrap().version.as_str()),
        ("install", "1.1.0")
    );
    assert_eq!(change.action, tms_packages::contact::ActionType::Soft);
    for t in [&mut t2, &mut t3, &mut t4] {
        assert!(
            contact(&server, t, &trusted).await.apps.is_empty(),
            "terminal {} was not chosen",
            t.device_id
        );
    }
    let (_, view) = get(&server, &a_admin, &format!("/api/v1/store/apps/{TIPS}")).await;
    assert_eq!(terminal(&view, t1.device_id)["status"], "requested");
    t1.apply(&server.http, &server.base_url, &body).await;
    let (_, view) = get(&server, &a_admin, &format!("/api/v1/store/apps/{TIPS}")).await;
    assert_eq!(terminal(&view, t1.device_id)["status"], "installed", "{view}");
    assert!(contact(&server, &mut t1, &trusted).await.apps.is_empty(), "installed: in sync");

    // Install on t2, which fails: the store shows the terminal's error.
    let (status, _) = post(
        &server,
        &a_admin,
        &format!("/api/v1/store/apps/{TIPS}/install"),
        json!({"devices": [t2.device_id]}),
    )
    .await;
    assert_eq!(status, 201);
    let body = contact(&server, &mut t2, &trusted).await;
    let deployment = only_change(&body, TIPS).deployment_id;
    assert_eq!(t2.feedback(&server.http, &server.base_url, deployment, TIPS, "downloading", None).await, 204);
    let (_, view) = get(&server, &a_admin, &format!("/api/v1/store/apps/{TIPS}")).await;
    assert_eq!(
        (terminal(&view, t2.device_id)["status"].as_str(), terminal(&view, t2.device_id)["report"].as_str()),
        (Some("requested"), Some("downloading"))
    );
    assert_eq!(
        t2.feedback(&server.http, &server.base_url, deployment, TIPS, "failed", Some("insufficient_storage"))
            .await,
        204
    );
    let (_, view) = get(&server, &a_admin, &format!("/api/v1/store/apps/{TIPS}")).await;
    assert_eq!(terminal(&view, t2.device_id)["status"], "failed", "{view}");
    assert!(
        terminal(&view, t2.device_id)["error"].as_str().unwrap().contains("insufficient_storage"),
        "{view}"
    );
    let (_, catalogue) = get(&server, &a_admin, "/api/v1/store/apps").await;
    assert_eq!(
        (catalogue[0]["installed_on"].as_u64(), catalogue[0]["failed_on"].as_u64()),
        (Some(1), Some(1))
    );

    // A system app cannot be uninstalled.
    let (status, body) = post(
        &server,
        &a_admin,
        &format!("/api/v1/store/apps/{SALESPOINT}/uninstall"),
        json!({"devices": [t1.device_id]}),
    )
    .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("app_not_removable")), "{body}");

    // The operator's later release reaches the terminals that have the app,
    // and installs it nowhere else.
    publish_release(&server, &op, &tips_key, TIPS, "app", "1.2.0", 120, &["A920"]).await;
    let (status, d) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": TIPS, "version": "1.2.0", "target": "everyone"}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let body = contact(&server, &mut t1, &trusted).await;
    let change = only_change(&body, TIPS);
    assert_eq!(
        (change.change.as_str(), change.release.as_ref().unwrap().version.as_str()),
        ("update", "1.2.0")
    );
    t1.apply(&server.http, &server.base_url, &body).await;
    for t in [&mut t3, &mut t4] {
        assert!(
            contact(&server, t, &trusted).await.apps.is_empty(),
            "terminal {} never chose the app",
            t.device_id
        );
    }

    // Uninstall: removed at the next contact, and the operator's deployment
    // does not bring it back.
    let (status, request) = post(
        &server,
        &a_admin,
        &format!("/api/v1/store/apps/{TIPS}/uninstall"),
        json!({"devices": [t1.device_id]}),
    )
    .await;
    assert_eq!(status, 201, "{request}");
    let body = contact(&server, &mut t1, &trusted).await;
    assert_eq!(only_change(&body, TIPS).change.as_str(), "remove");
    store_status(&server, &a_admin, TIPS, t1.device_id, "removal_requested").await;
    t1.apply(&server.http, &server.base_url, &body).await;
    assert!(contact(&server, &mut t1, &trusted).await.apps.is_empty(), "removed and left alone");
    store_status(&server, &a_admin, TIPS, t1.device_id, "not_installed").await;

    // The garage installs its private app on a whole location through the CLI.
    let creds = tempfile::tempdir().unwrap();
    let creds = creds.path().join("credentials.json");
    let (code, _, err) = run_tms(
        &server,
        &creds,
        &["login", "--email", "admin@garage.example", "--password-stdin"],
        Some(MERCHANT_PASSWORD),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_tms(&server, &creds, &["store", "list"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(LOYALTY) && out.contains(TIPS), "{out}");
    let (code, out, err) =
        run_tms(&server, &creds, &["store", "install", LOYALTY, "--location", &b_location.to_string()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2.0.0"), "{out}");
    let body = contact(&server, &mut t4, &trusted).await;
    assert_eq!(only_change(&body, LOYALTY).change.as_str(), "install");
    t4.apply(&server.http, &server.base_url, &body).await;
    let (code, out, err) = run_tms(&server, &creds, &["store", "show", LOYALTY], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("installed"), "{out}");
    let (code, _, err) = run_tms(
        &server,
        &creds,
        &["store", "uninstall", SALESPOINT, "--devices", &t4.device_id.to_string()],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("system app"), "{err}");
});

async fn put_image(
    server: &TestServer,
    token: &str,
    path: &str,
    method: Method,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let res =
        server.http.request(method, server.url(path)).bearer_auth(token).body(bytes).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

backend_test!(store_access_follows_permissions_locations_and_operator_roles, |db| {
    let (server, op) = server_with_operator(&db).await;
    store_app(&server, &op, TIPS, "store", "tipping", &[("1.0.0", 100, &["A920"])]).await;
    store_app(&server, &op, LOYALTY, "private", "loyalty", &[("1.0.0", 100, &["A920"])]).await;
    let (m, shop, admin) = merchant(&server, &op, "Boulangerie", "admin@boul.example", &["SA-0001"]).await;
    let (status, order) = post(
        &server,
        &op,
        "/api/v1/orders",
        json!({"merchant_id": m, "delivery_address": address("8 quai de Seine"),
               "terminals": [{"serial": "SA-0002", "model": "A920"}]}),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let quay = order["location"]["id"].as_i64().unwrap();
    let t1 = activated_terminal(&server, "admin@boul.example", (m, shop), "SA-0001", "A920").await;
    let t2 = activated_terminal(&server, "admin@boul.example", (m, quay), "SA-0002", "A920").await;

    // A user with install_apps at the shop only sees and installs there.
    let (user_id, user) = invite(&server, &admin, m, "shop@boul.example", json!({})).await;
    group_granting(&server, &admin, m, "Shop", shop, json!(["install_apps"]), &[user_id]).await;
    let (status, catalogue) = get(&server, &user, "/api/v1/store/apps").await;
    assert_eq!(status, 200, "{catalogue}");
    assert_eq!(app_ids(&catalogue), [TIPS]);
    let (_, view) = get(&server, &user, &format!("/api/v1/store/apps/{TIPS}")).await;
    let seen: Vec<i64> =
        view["terminals"].as_array().unwrap().iter().map(|t| t["device_id"].as_i64().unwrap()).collect();
    assert_eq!(seen, [t1.device_id]);
    let install = format!("/api/v1/store/apps/{TIPS}/install");
    let (status, _) = post(&server, &user, &install, json!({"devices": [t2.device_id]})).await;
    assert_eq!(status, 404, "a terminal the user does not see");
    let (status, _) = post(&server, &user, &install, json!({"locations": [quay]})).await;
    assert_eq!(status, 404, "a location the user does not see");
    let (status, body) = post(&server, &user, &install, json!({})).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, body) = post(&server, &user, &install, json!({"locations": [shop]})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["terminals"], json!([{"device_id": t1.device_id, "version": "1.0.0"}]));

    // Operators act for a merchant they name; release engineers do not act for merchants.
    let (status, body) = get(&server, &op, "/api/v1/store/apps").await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, catalogue) = get(&server, &op, &format!("/api/v1/store/apps?merchant_id={m}")).await;
    assert_eq!((status.as_u16(), app_ids(&catalogue)), (200, vec![TIPS]));
    assert_eq!(catalogue[0]["requested_on"], 1, "{catalogue}");
    server.create_operator("re@psp.example", "release_engineer", OPERATOR_PASSWORD);
    let re = server.login("re@psp.example", OPERATOR_PASSWORD).await;
    let (status, _) = get(&server, &re, &format!("/api/v1/store/apps?merchant_id={m}")).await;
    assert_eq!(status, 403);
    let (status, _) = get(&server, &admin, &format!("/api/v1/store/apps?merchant_id={}", m + 1000)).await;
    assert_eq!(status, 404, "a merchant user names only its own merchant");

    // Granting and withdrawing a private app.
    let grant = format!("/api/v1/apps/{LOYALTY}/merchants/{m}");
    assert_eq!(server.call(Method::PUT, &grant, Some(&op), None).await.0, 200);
    let (_, catalogue) = get(&server, &admin, "/api/v1/store/apps").await;
    assert_eq!(app_ids(&catalogue), [LOYALTY, TIPS]);
    let (status, _) = post(
        &server,
        &admin,
        &format!("/api/v1/store/apps/{LOYALTY}/install"),
        json!({"devices": [t2.device_id]}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, app) = server.call(Method::DELETE, &grant, Some(&op), None).await;
    assert_eq!((status.as_u16(), &app["merchants"]), (200, &json!([])));
    let (_, catalogue) = get(&server, &admin, "/api/v1/store/apps").await;
    assert_eq!(app_ids(&catalogue), [TIPS]);
    let (_, pending) = get(&server, &op, &format!("/api/v1/deployments?app_id={LOYALTY}")).await;
    assert_eq!(pending[0]["status"], "superseded", "an install not delivered ends with the offer: {pending}");
    let (status, _) = post(
        &server,
        &admin,
        &format!("/api/v1/store/apps/{LOYALTY}/uninstall"),
        json!({"devices": [t2.device_id]}),
    )
    .await;
    assert_eq!(status, 404, "an app neither offered nor on the terminal does not exist for the merchant");

    // A later request replaces an earlier one for the same terminal.
    let (status, removal) = post(
        &server,
        &user,
        &format!("/api/v1/store/apps/{TIPS}/uninstall"),
        json!({"devices": [t1.device_id]}),
    )
    .await;
    assert_eq!(status, 201, "{removal}");
    let (_, deployments) = get(&server, &op, &format!("/api/v1/deployments?app_id={TIPS}")).await;
    let statuses: Vec<(&str, &str)> = deployments
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["kind"].as_str().unwrap(), d["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("removal", "active"), ("release", "superseded")]);
    assert_eq!(deployments[0]["origin"], "store");
    let (status, body) = post(
        &server,
        &op,
        &format!("/api/v1/deployments/{}/rollout", deployments[0]["id"]),
        json!({"stages": [10, 100], "success_percent": 90, "max_failures": "1"}),
    )
    .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("rollout_state")), "{body}");

    // An app made `system` is the operator's alone: merchants' requests end.
    let (status, _) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/apps/{TIPS}"),
            Some(&op),
            Some(json!({"visibility": "system"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, deployments) = get(&server, &op, &format!("/api/v1/deployments?app_id={TIPS}")).await;
    assert_eq!(deployments[0]["status"], "superseded", "{deployments}");
    server
        .call(Method::PATCH, &format!("/api/v1/apps/{TIPS}"), Some(&op), Some(json!({"visibility": "store"})))
        .await;

    // Listing changes: validated, and only for release engineers and operator admins.
    let app_path = format!("/api/v1/apps/{TIPS}");
    for bad in [json!({"visibility": "public"}), json!({"summary": "x".repeat(201)}), json!({"name": " "})] {
        let (status, body) = server.call(Method::PATCH, &app_path, Some(&op), Some(bad)).await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    let (status, _) =
        server.call(Method::PATCH, &app_path, Some(&admin), Some(json!({"summary": "mine"}))).await;
    assert_eq!(status, 403);

    // Screenshots: added, served to merchants the store offers the app to, removed.
    let (status, app) =
        put_image(&server, &op, &format!("{app_path}/screenshots"), Method::POST, PNG.to_vec()).await;
    assert_eq!(status, 200, "{app}");
    let shot = app["screenshot_paths"][0].as_str().unwrap().to_owned();
    let res = server.http.get(server.url(&shot)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.bytes().await.unwrap().as_ref()), (200, PNG));
    let id = shot.rsplit('/').next().unwrap();
    let (status, app) =
        server.call(Method::DELETE, &format!("{app_path}/screenshots/{id}"), Some(&op), None).await;
    assert_eq!((status.as_u16(), &app["screenshot_paths"]), (200, &json!([])));
    assert_eq!(server.get(&shot).await.status(), 401, "images are for signed-in callers");
    let (status, _) = get(&server, &admin, &shot).await;
    assert_eq!(status, 404);
    let mut big = PNG.to_vec();
    big.resize(2 * 1024 * 1024 + 1, 0);
    let (status, body) = put_image(&server, &op, &format!("{app_path}/icon"), Method::PUT, big).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");
});
