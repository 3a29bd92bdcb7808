//! Accounts set up through the API, as the tests of every area need them.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{ServerBuilder, TestDatabase, TestServer};

pub const OPERATOR: &str = "ops@psp.example";
pub const OPERATOR_PASSWORD: &str = "operator pass phrase";
pub const MERCHANT_PASSWORD: &str = "pain au chocolat 42";

pub async fn server_with_operator(db: &TestDatabase) -> (TestServer, String) {
    server_with_operator_and(db, &[]).await
}

pub async fn server_with_operator_and(db: &TestDatabase, env: &[(&str, &str)]) -> (TestServer, String) {
    let mut builder = ServerBuilder::new().database(db);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let server = builder.start().await;
    server.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let token = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    (server, token)
}

pub fn address(line1: &str) -> Value {
    json!({"line1": line1, "postal_code": "75002", "city": "Paris", "country": "FR"})
}

pub fn order_for_new_merchant(company: &str, contact: &str, line1: &str, serials: &[&str]) -> Value {
    json!({
        "company_name": company,
        "contact_email": contact,
        "delivery_address": address(line1),
        "terminals": serials.iter().map(|s| json!({"serial": s, "model": "A920"})).collect::<Vec<_>>(),
    })
}

pub async fn post(server: &TestServer, token: &str, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
    server.call(Method::POST, path, Some(token), Some(body)).await
}

pub async fn get(server: &TestServer, token: &str, path: &str) -> (reqwest::StatusCode, Value) {
    server.call(Method::GET, path, Some(token), None).await
}

pub async fn activate(server: &TestServer, email: &str, password: &str) {
    let token = server.activation_token_for(email);
    let (status, body) = server
        .call(
            Method::POST,
            "/api/v1/auth/activate",
            None,
            Some(json!({"token": token, "password": password})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
}

/// A merchant created by a first order, with its admin activated and logged
/// in: (merchant id, first location id, admin token).
pub async fn merchant(
    server: &TestServer,
    op: &str,
    company: &str,
    admin: &str,
    serials: &[&str],
) -> (i64, i64, String) {
    let (status, order) = post(
        server,
        op,
        "/api/v1/orders",
        order_for_new_merchant(company, admin, "1 rue de Rivoli", serials),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    activate(server, admin, MERCHANT_PASSWORD).await;
    let token = server.login(admin, MERCHANT_PASSWORD).await;
    (order["merchant_id"].as_i64().unwrap(), order["location"]["id"].as_i64().unwrap(), token)
}

/// Invites a user, activates and logs them in: (user id, token).
pub async fn invite(
    server: &TestServer,
    admin: &str,
    merchant_id: i64,
    email: &str,
    body: Value,
) -> (i64, String) {
    let mut body = body;
    body["email"] = json!(email);
    let (status, user) = post(server, admin, &format!("/api/v1/merchants/{merchant_id}/users"), body).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["status"], "invited");
    activate(server, email, MERCHANT_PASSWORD).await;
    (user["id"].as_i64().unwrap(), server.login(email, MERCHANT_PASSWORD).await)
}

/// Both activation steps; returns the final status and body.
pub async fn activate_device(
    server: &TestServer,
    email: &str,
    password: &str,
    app: &str,
    hardware_id: &str,
    location_id: i64,
    name: &str,
) -> (reqwest::StatusCode, Value) {
    activate_device_of_model(server, email, password, app, hardware_id, location_id, name, "A920").await
}

#[allow(clippy::too_many_arguments)]
pub async fn activate_device_of_model(
    server: &TestServer,
    email: &str,
    password: &str,
    app: &str,
    hardware_id: &str,
    location_id: i64,
    name: &str,
    model: &str,
) -> (reqwest::StatusCode, Value) {
    let (status, ticket) = server
        .call(
            Method::POST,
            "/api/v1/terminal/activation/start",
            None,
            Some(json!({"email": email, "password": password, "app": app, "hardware_id": hardware_id, "model": model})),
        )
        .await;
    if status != 200 {
        return (status, ticket);
    }
    server
        .call(
            Method::POST,
            "/api/v1/terminal/activation/complete",
            None,
            Some(json!({"ticket": ticket["ticket"], "location_id": location_id, "device_name": name})),
        )
        .await
}

/// A payment terminal of `model` activated by a merchant admin at a
/// location, as a simulated terminal with no apps yet.
pub async fn activated_terminal(
    server: &TestServer,
    admin_email: &str,
    (merchant_id, location_id): (i64, i64),
    serial: &str,
    model: &str,
) -> crate::terminal::SimTerminal {
    let (status, device) = activate_device_of_model(
        server,
        admin_email,
        MERCHANT_PASSWORD,
        "salespoint",
        serial,
        location_id,
        serial,
        model,
    )
    .await;
    assert_eq!(status, 201, "{device}");
    crate::terminal::SimTerminal::new(
        device["device_id"].as_i64().expect("device id"),
        device["device_token"].as_str().expect("device token"),
        (merchant_id, location_id),
        model,
    )
}

/// A transaction as a terminal uploads it.
pub fn transaction(id: &str, minutes_ago: i64, amount_minor: i64, currency: &str, status: &str) -> Value {
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    json!({
        "terminal_tx_id": id,
        "occurred_at": at.to_rfc3339(),
        "type": "payment",
        "amount_minor": amount_minor,
        "currency": currency,
        "acquirer": "CCV",
        "masked_card": "**** **** **** 4242",
        "status": status,
        "receipt_printed": true,
    })
}

/// A group of the merchant that grants `permissions` at `location` to
/// `members`; returns its id.
pub async fn group_granting(
    server: &TestServer,
    admin: &str,
    merchant_id: i64,
    name: &str,
    location: i64,
    permissions: Value,
    members: &[i64],
) -> i64 {
    let (status, group) =
        post(server, admin, &format!("/api/v1/merchants/{merchant_id}/groups"), json!({"name": name})).await;
    assert_eq!(status, 201, "{group}");
    let group = group["id"].as_i64().expect("group id");
    let (status, body) = server
        .call(
            Method::PUT,
            &format!("/api/v1/groups/{group}/grants/{location}"),
            Some(admin),
            Some(json!({"permissions": permissions})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for member in members {
        let (status, body) = server
            .call(Method::PUT, &format!("/api/v1/groups/{group}/members/{member}"), Some(admin), None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    group
}

/// Seeds a fleet into the server's database with `tms-server fleet seed` and
/// returns its simulated terminals (models in turn, apps none yet).
pub fn seed_fleet(
    server: &TestServer,
    terminals: u64,
    merchants: u32,
    locations_per_merchant: u32,
    models: &str,
) -> Vec<crate::terminal::SimTerminal> {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.csv");
    let out = server
        .command()
        .args(["fleet", "seed", "--terminals", &terminals.to_string()])
        .args(["--merchants", &merchants.to_string()])
        .args(["--locations-per-merchant", &locations_per_merchant.to_string()])
        .args(["--models", models, "--token-seed", &format!("seed-{}", rand::random::<u64>())])
        .arg("--tokens")
        .arg(&tokens)
        .output()
        .expect("run fleet seed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    crate::terminal::load_fleet(&tokens)
}

/// The answer-signing keys terminals trust.
pub async fn answer_keys(server: &TestServer) -> Vec<tms_signing::PublicKey> {
    let (status, published) = server.get_json("/.well-known/tms/answer-keys").await;
    assert_eq!(status, 200, "{published}");
    published["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| tms_signing::PublicKey::parse(k["public_key"].as_str().expect("hex")).expect("a key"))
        .collect()
}

/// Registers an app with a fresh publisher key.
pub async fn app_with_key(
    server: &TestServer,
    op: &str,
    app_id: &str,
    kind: &str,
) -> tms_signing::PrivateKey {
    let (status, body) = post(
        server,
        op,
        "/api/v1/apps",
        json!({"id": app_id, "name": app_id, "kind": kind, "visibility": "system"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = tms_signing::PrivateKey::generate();
    let (status, body) = post(
        server,
        op,
        &format!("/api/v1/apps/{app_id}/keys"),
        json!({"name": "ci", "public_key": key.public_key().to_hex()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    key
}

/// Signs and publishes a small release; returns its view.
#[allow(clippy::too_many_arguments)]
pub async fn publish_release(
    server: &TestServer,
    op: &str,
    key: &tms_signing::PrivateKey,
    app_id: &str,
    kind: &str,
    version: &str,
    code: u64,
    models: &[&str],
) -> Value {
    publish_release_needing(server, op, key, app_id, kind, version, code, models, None).await
}

/// A deployment of `version` of `app_id` to every terminal; its view.
pub async fn deploy_to_everyone(server: &TestServer, op: &str, app_id: &str, version: &str) -> Value {
    let (status, body) = post(
        server,
        op,
        "/api/v1/deployments",
        json!({"app_id": app_id, "version": version, "target": "everyone"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Holds a deployment of `version` of `app_id` for everyone and starts its
/// rollout with `rules`: (deployment id, rollout view).
pub async fn rollout_to_everyone(
    server: &TestServer,
    op: &str,
    app_id: &str,
    version: &str,
    rules: Value,
) -> (i64, Value) {
    let (status, deployment) = post(
        server,
        op,
        "/api/v1/deployments",
        json!({"app_id": app_id, "version": version, "target": "everyone", "hold": true}),
    )
    .await;
    assert_eq!(status, 201, "{deployment}");
    let id = deployment["id"].as_i64().expect("deployment id");
    let (status, rollout) = post(server, op, &format!("/api/v1/deployments/{id}/rollout"), rules).await;
    assert_eq!(status, 201, "{rollout}");
    (id, rollout)
}

/// The artifact [`publish_release`] publishes for a version: 32 KiB that
/// do not compress, most of it shared by every version of the app and two
/// 1 KiB chunks of its own, as a new APK changes some entries. A delta
/// between two versions therefore carries little of its own and depends on
/// its base: applied to another base it gives bytes the sha256 check
/// refuses.
pub fn artifact_of(app_id: &str, version: &str) -> Vec<u8> {
    const CHUNK: usize = 1024;
    const CHUNKS: usize = 32;
    // Seeded by name, so each version of each app is its own and stable.
    let noise = |seed: &str, len: usize| {
        let digest = tms_signing::Sha256Digest::of(seed.as_bytes());
        let seed = u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"));
        crate::delta_bench::noise(len, seed)
    };
    let own = tms_signing::Sha256Digest::of(format!("{app_id} {version}").as_bytes()).as_bytes()[0] as usize;
    let own = 1 + own % (CHUNKS - 1);
    let mut bytes = Vec::with_capacity(CHUNK * CHUNKS);
    for i in 0..CHUNKS {
        if i == 0 || i == own {
            bytes.extend(noise(&format!("{app_id} {version} {i}"), CHUNK));
        } else {
            bytes.extend(noise(&format!("{app_id} {i}"), CHUNK));
        }
    }
    bytes
}

/// [`publish_release`] of a release that needs at least `min_firmware`.
#[allow(clippy::too_many_arguments)]
pub async fn publish_release_needing(
    server: &TestServer,
    op: &str,
    key: &tms_signing::PrivateKey,
    app_id: &str,
    kind: &str,
    version: &str,
    code: u64,
    models: &[&str],
    min_firmware: Option<&str>,
) -> Value {
    use base64::Engine;
    let bytes = artifact_of(app_id, version);
    let manifest = tms_packages::releases::SignedManifest::sign(
        tms_packages::releases::ReleaseManifest {
            app_id: app_id.into(),
            kind: kind.into(),
            version: version.into(),
            version_code: code,
            artifact_sha256: tms_signing::Sha256Digest::of(&bytes).to_hex(),
            artifact_size: bytes.len() as u64,
            models: models.iter().map(|m| m.to_string()).collect(),
            min_firmware: min_firmware.map(str::to_owned),
            release_notes: format!("{version} notes"),
            created_at: "2026-11-27T12:00:00Z".into(),
        },
        key,
    );
    let header = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&manifest).unwrap());
    let res = server
        .http
        .post(server.url(&format!("/api/v1/apps/{app_id}/releases")))
        .bearer_auth(op)
        .header("x-tms-signed-manifest", header)
        .body(bytes)
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status(), 201);
    res.json().await.expect("a release view")
}

/// Acquirer `ccv` with a contract for a merchant's location (or the whole
/// merchant) and a parameter set holding `document`, valid 30 days.
pub async fn ccv_acquirer(
    server: &TestServer,
    op: &str,
    merchant_id: i64,
    location: Option<i64>,
    document: Value,
) {
    post(server, op, "/api/v1/acquirers", json!({"id": "ccv", "name": "CCV"})).await;
    let (status, body) = post(
        server,
        op,
        &format!("/api/v1/merchants/{merchant_id}/acquirer-contracts"),
        json!({"acquirer_id": "ccv", "location_id": location, "acquirer_merchant_id": "M-100", "acquirer_terminal_id": "T-7"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let valid_until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let (status, body) = post(
        server,
        op,
        "/api/v1/acquirers/ccv/parameter-sets",
        json!({"document": document, "valid_until": valid_until}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
