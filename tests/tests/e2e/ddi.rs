//! hawkBit's DDI device API: hawkBit's documented exchanges replayed and
//! checked field by field, and a DDI client others wrote (the `hawkbit`
//! crate) installing a staged release, failing, and being cancelled.

use hawkbit::ddi::{Client, ClientAuthorization, Execution, Finished};
use md5::Digest as _;
use serde_json::{Value, json};
use tms_e2e::fixtures::*;
use tms_e2e::run_tms;
use tms_e2e::{ServerBuilder, TestServer, backend_test};

const OS: &str = "eu.kiosk.os";
const MODEL: &str = "KIOSK-X86";

/// A Linux device registered at a location: its TargetToken.
async fn register(server: &TestServer, op: &str, location: i64, controller: &str) -> (i64, String) {
    let (status, body) = post(
        server,
        op,
        "/api/v1/linux-devices",
        json!({"location_id": location, "controller_id": controller, "model": MODEL}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["device"]["kind"], "linux", "{body}");
    assert_eq!(body["device"]["model"], MODEL, "{body}");
    (body["device"]["id"].as_i64().unwrap(), body["target_token"].as_str().unwrap().to_owned())
}

fn ddi_url(server: &TestServer, controller: &str, rest: &str) -> String {
    server.url(&format!("/DEFAULT/controller/v1/{controller}{rest}"))
}

/// A DDI call with a TargetToken: (status, JSON body or Null).
async fn ddi(
    server: &TestServer,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let mut request =
        server.http.request(method, url).header("authorization", format!("TargetToken {token}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let res = request.send().await.expect("a DDI call");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn sleep_secs(poll: &Value) -> u64 {
    let sleep = poll["config"]["polling"]["sleep"].as_str().expect("config.polling.sleep");
    let parts: Vec<u64> = sleep.split(':').map(|p| p.parse().expect("HH:MM:SS")).collect();
    assert_eq!(parts.len(), 3, "{sleep}");
    parts[0] * 3_600 + parts[1] * 60 + parts[2]
}

/// The keys of an object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

backend_test!(hawkbits_documented_exchanges_replay_field_by_field, |db| {
    let (server, op) = server_with_operator_and(
        &db,
        &[("TMS_DDI_GATEWAY_TOKEN", "gw-secret"), ("TMS_CONTACT_FLUSH_MS", "100")],
    )
    .await;
    let (merchant_id, location, _) =
        merchant(&server, &op, "Parking Lyon", "parking@example.com", &["SN-ANDROID-1"]).await;
    let (device_id, token) = register(&server, &op, location, "kiosk-001").await;
    let base = ddi_url(&server, "kiosk-001", "");
    let get_ = reqwest::Method::GET;

    // Refusals: no token, another device's token, another tenant, a gateway
    // token that is wrong, an unknown controller the gateway may not register.
    let res = server.http.get(&base).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let (status, body) = ddi(&server, get_.clone(), &ddi_url(&server, "kiosk-002", ""), &token, None).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (401, Some("invalid_device_token")));
    let (status, _) =
        ddi(&server, get_.clone(), &server.url("/OTHER/controller/v1/kiosk-001"), &token, None).await;
    assert_eq!(status, 404);
    let gateway = |token: &'static str, controller: &'static str| {
        server
            .http
            .get(ddi_url(&server, controller, ""))
            .header("authorization", format!("GatewayToken {token}"))
            .send()
    };
    assert_eq!(gateway("wrong", "kiosk-001").await.unwrap().status(), 401);
    let res = gateway("gw-secret", "kiosk-new").await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "unknown_controller");
    // The gateway token names a registered device by its controller id alone.
    assert_eq!(gateway("gw-secret", "kiosk-001").await.unwrap().status(), 200);

    // The root poll, nothing deployed: the sleep and a request for attributes.
    let (status, poll) = ddi(&server, get_.clone(), &base, &token, None).await;
    assert_eq!(status, 200, "{poll}");
    assert_eq!(keys(&poll), ["_links", "config"]);
    assert!((270..=330).contains(&sleep_secs(&poll)), "the contact interval with jitter: {poll}");
    assert_eq!(keys(&poll["_links"]), ["configData"]);
    assert_eq!(poll["_links"]["configData"]["href"], format!("{base}/configData"));

    // configData, as hawkBit's example sends it.
    let (status, _) = ddi(
        &server,
        reqwest::Method::PUT,
        &format!("{base}/configData"),
        &token,
        Some(json!({"mode": "merge", "data": {"VIN": "JH4TB2H26CC000000", "hwRevision": "2"},
            "status": {"result": {"finished": "success"}, "execution": "closed", "details": []}})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = ddi(
        &server,
        reqwest::Method::PUT,
        &format!("{base}/configData"),
        &token,
        Some(json!({"mode": "append", "data": {}})),
    )
    .await;
    assert_eq!((status.as_u16(), body["error"]["details"]["field"].as_str()), (400, Some("mode")), "{body}");
    let (_, poll) = ddi(&server, get_.clone(), &base, &token, None).await;
    assert_eq!(keys(&poll), ["config"], "nothing waits: {poll}");
    let (_, view) = get(&server, &op, &format!("/api/v1/devices/{device_id}")).await;
    assert_eq!(view["attributes"], json!({"VIN": "JH4TB2H26CC000000", "hwRevision": "2"}), "{view}");

    // A firmware release for its model, delivered forced: a deploymentBase.
    let key = app_with_key(&server, &op, OS, "firmware").await;
    let release = publish_release(&server, &op, &key, OS, "firmware", "1.0.0", 100, &[MODEL]).await;
    let release_id = release["id"].as_i64().unwrap();
    let (status, deployment) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": OS, "version": "1.0.0", "target": "everyone", "action": "forced"}),
    )
    .await;
    assert_eq!(status, 201, "{deployment}");
    let action = deployment["id"].as_i64().unwrap();
    let (_, poll) = ddi(&server, get_.clone(), &base, &token, None).await;
    assert_eq!(keys(&poll["_links"]), ["deploymentBase"], "{poll}");
    let href = poll["_links"]["deploymentBase"]["href"].as_str().unwrap();
    assert_eq!(href, format!("{base}/deploymentBase/{action}?c={release_id}"));

    let (status, base_doc) = ddi(&server, get_.clone(), href, &token, None).await;
    assert_eq!(status, 200, "{base_doc}");
    assert_eq!(keys(&base_doc), ["deployment", "id"]);
    assert_eq!(base_doc["id"], action.to_string());
    let d = &base_doc["deployment"];
    assert_eq!(keys(d), ["chunks", "download", "update"], "no window, no maintenanceWindow: {d}");
    assert_eq!((d["download"].as_str(), d["update"].as_str()), (Some("forced"), Some("forced")));
    let chunk = &d["chunks"][0];
    assert_eq!(keys(chunk), ["artifacts", "metadata", "name", "part", "version"]);
    assert_eq!((chunk["part"].as_str(), chunk["name"].as_str()), (Some("os"), Some(OS)));
    assert_eq!(chunk["version"], "1.0.0");
    let artifact = &chunk["artifacts"][0];
    assert_eq!(keys(artifact), ["_links", "filename", "hashes", "size"]);
    let bytes = artifact_of(OS, "1.0.0");
    let name = format!("{OS}-1.0.0.bin");
    assert_eq!(artifact["filename"], name);
    assert_eq!(artifact["size"], bytes.len());
    assert_eq!(artifact["hashes"]["sha256"], release["artifact_sha256"]);
    assert_eq!(artifact["hashes"]["sha1"], hex::encode(sha1::Sha1::digest(&bytes)));
    assert_eq!(artifact["hashes"]["md5"], hex::encode(md5::Md5::digest(&bytes)));
    let download = format!("{base}/softwaremodules/{release_id}/artifacts/{name}");
    assert_eq!(keys(&artifact["_links"]), ["download", "download-http", "md5sum", "md5sum-http"]);
    assert_eq!(artifact["_links"]["download"]["href"], download);
    assert_eq!(artifact["_links"]["md5sum"]["href"], format!("{download}.MD5SUM"));
    let metadata = chunk["metadata"].as_array().unwrap();
    assert!(
        metadata.iter().any(|m| m["key"] == "tms.signature" && m["value"].as_str().unwrap().len() == 128)
    );

    // The artifact, whole, by range, and its MD5SUM.
    let fetch = |range: Option<&'static str>, url: String| {
        let mut r = server.http.get(url).header("authorization", format!("TargetToken {token}"));
        if let Some(range) = range {
            r = r.header("range", range);
        }
        r.send()
    };
    let res = fetch(None, download.clone()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let res = fetch(Some("bytes=1000-"), download.clone()).await.unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[1000..]);
    let res = fetch(None, format!("{download}.MD5SUM")).await.unwrap();
    assert_eq!(res.text().await.unwrap(), format!("{}  {name}\n", hex::encode(md5::Md5::digest(&bytes))));
    assert_eq!(
        fetch(None, format!("{base}/softwaremodules/{release_id}/artifacts/other.bin"))
            .await
            .unwrap()
            .status(),
        404
    );

    // Feedback as hawkBit documents it: proceeding with progress, then closed.
    let feedback = format!("{base}/deploymentBase/{action}/feedback");
    let (status, _) = ddi(
        &server,
        reqwest::Method::POST,
        &feedback,
        &token,
        Some(
            json!({"id": action.to_string(), "time": "20140511T121314", "status": {"execution": "proceeding",
            "result": {"finished": "none", "progress": {"cnt": 2, "of": 5}}, "details": ["Writing image"]}}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = ddi(
        &server,
        reqwest::Method::POST,
        &feedback,
        &token,
        Some(json!({"status": {"execution": "finished", "result": {"finished": "success"}}})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["details"]["field"].as_str()),
        (400, Some("status.execution"))
    );
    let (_, history) = get(&server, &op, &format!("/api/v1/devices/{device_id}/actions")).await;
    assert_eq!(history[0]["status"], "installing", "{history}");
    assert_eq!(history[0]["progress_percent"], 40, "{history}");
    assert_eq!(history[0]["message"], "Writing image", "{history}");
    let (status, _) = ddi(
        &server,
        reqwest::Method::POST,
        &feedback,
        &token,
        Some(json!({"status": {"execution": "closed", "result": {"finished": "success"}, "details": []}})),
    )
    .await;
    assert_eq!(status, 200);

    // Installed: the poll links the installed base, which reads as the action did.
    let (_, poll) = ddi(&server, get_.clone(), &base, &token, None).await;
    assert_eq!(keys(&poll["_links"]), ["installedBase"], "{poll}");
    let href = poll["_links"]["installedBase"]["href"].as_str().unwrap();
    assert_eq!(href, format!("{base}/installedBase/{action}"));
    let (status, installed) = ddi(&server, get_.clone(), href, &token, None).await;
    assert_eq!(status, 200, "{installed}");
    assert_eq!(installed["id"], action.to_string());
    assert_eq!(installed["actionHistory"]["status"], "FINISHED");
    assert_eq!(installed["deployment"]["chunks"], d["chunks"]);
    // What the device runs shows where support looks.
    let mut firmware = Value::Null;
    for _ in 0..50 {
        let (_, view) = get(&server, &op, &format!("/api/v1/devices/{device_id}")).await;
        firmware = view["firmware_version"].clone();
        if firmware == "1.0.0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(firmware, "1.0.0");

    // confirmationBase: auto-confirm is off, nothing waits for a confirmation.
    let (status, confirmation) =
        ddi(&server, get_.clone(), &format!("{base}/confirmationBase"), &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(confirmation["autoConfirm"]["state"], "inactive");
    assert_eq!(keys(&confirmation["_links"]), ["activateAutoConfirm"], "{confirmation}");
    assert_eq!(
        confirmation["_links"]["activateAutoConfirm"]["href"],
        format!("{base}/confirmationBase/activateAutoConfirm")
    );

    // An action the device never worked on, once cancelled, is gone.
    let v2 = publish_release(&server, &op, &key, OS, "firmware", "2.0.0", 200, &[MODEL]).await;
    assert_eq!(v2["version"], "2.0.0");
    let (_, deployment) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": OS, "version": "2.0.0", "target": "everyone", "action": "download_only"}),
    )
    .await;
    let second = deployment["id"].as_i64().unwrap();
    let (_, poll) = ddi(&server, get_.clone(), &base, &token, None).await;
    let href = poll["_links"]["deploymentBase"]["href"].as_str().unwrap().to_owned();
    let (_, doc) = ddi(&server, get_.clone(), &href, &token, None).await;
    assert_eq!(
        (doc["deployment"]["download"].as_str(), doc["deployment"]["update"].as_str()),
        (Some("forced"), Some("skip"))
    );
    let (status, _) = post(&server, &op, &format!("/api/v1/deployments/{second}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = ddi(
        &server,
        reqwest::Method::POST,
        &format!("{base}/deploymentBase/{second}/feedback"),
        &token,
        Some(json!({"status": {"execution": "proceeding", "result": {"finished": "none"}}})),
    )
    .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (410, Some("action_gone")), "{body}");
    let (status, _) = ddi(&server, get_.clone(), &href, &token, None).await;
    assert_eq!(status, 404);

    // A deactivated device is refused at once, cached or not.
    let (status, _) = post(&server, &op, &format!("/api/v1/devices/{device_id}/deactivate"), json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = ddi(&server, get_.clone(), &base, &token, None).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (401, Some("device_deactivated")),
        "{body}"
    );

    // An Android terminal's token is no TargetToken.
    let android =
        activated_terminal(&server, "parking@example.com", (merchant_id, location), "SN-ANDROID-1", "A920")
            .await;
    let (status, _) = ddi(&server, get_, &ddi_url(&server, "SN-ANDROID-1", ""), &android.token, None).await;
    assert_eq!(status, 401);
});

backend_test!(a_device_polling_first_with_the_gateway_token_registers_where_configured, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, _) =
        merchant(&server, &op, "Borne Nantes", "borne@example.com", &["SN-B-1"]).await;
    // The same database under a server configured to register DDI devices.
    let keep = tempfile::tempdir().unwrap();
    let key_file = keep.path().join("master.key");
    std::fs::copy(server.master_key_file(), &key_file).unwrap();
    server.terminate().await;
    let server = ServerBuilder::new()
        .database(&db)
        .env("TMS_MASTER_KEY_FILE", &key_file.display().to_string())
        .env("TMS_DDI_GATEWAY_TOKEN", "gw")
        .env("TMS_DDI_REGISTER_LOCATION", &location.to_string())
        .env("TMS_DDI_REGISTER_MODEL", "charger-v2")
        .start()
        .await;
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let poll = |controller: &'static str| {
        server.http.get(ddi_url(&server, controller, "")).header("authorization", "GatewayToken gw").send()
    };
    assert_eq!(poll("charger-7").await.unwrap().status(), 200);
    assert_eq!(poll("charger-7").await.unwrap().status(), 200, "registered once");
    let (_, devices) = get(&server, &op, &format!("/api/v1/merchants/{merchant_id}/devices")).await;
    let found: Vec<&Value> =
        devices.as_array().unwrap().iter().filter(|d| d["hardware_id"] == "charger-7").collect();
    assert_eq!(found.len(), 1, "{devices}");
    assert_eq!((found[0]["kind"].as_str(), found[0]["model"].as_str()), (Some("linux"), Some("CHARGER-V2")));
    assert_eq!(found[0]["location_id"], location);
    // A controller id that is not one is refused, not registered.
    assert_eq!(poll("a%20b").await.unwrap().status(), 404);
});

/// A `hawkbit` crate client for a device, configured with the server's URL,
/// the tenant, the controller id and the token only.
fn client(server: &TestServer, controller: &str, token: &str) -> Client {
    Client::new(
        &server.base_url,
        "DEFAULT",
        controller,
        ClientAuthorization::TargetToken(token.to_owned()),
        None,
        None,
        None,
    )
    .expect("a DDI client")
}

/// Polls, downloads (resuming from `partial` bytes already on disk, if
/// any), checks the three hashes and reports progress: the update, ready
/// for its final feedback.
async fn download_and_check(
    client: &Client,
    dir: &std::path::Path,
    partial: Option<&[u8]>,
) -> hawkbit::ddi::Update {
    let reply = client.poll().await.expect("a poll");
    let update = reply.update().expect("an update waits").fetch().await.expect("its deploymentBase");
    let chunk = update.chunks().next().expect("a chunk");
    let artifact = chunk.artifacts().next().expect("an artifact");
    if let Some(bytes) = partial {
        let folder = dir.join(chunk.name());
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{}.part", artifact.filename())), bytes).unwrap();
    }
    update
        .send_feedback(Execution::Download, Finished::None, vec!["downloading"])
        .await
        .expect("download feedback");
    let downloaded = update.download(dir).await.expect("the download");
    for file in &downloaded {
        file.check_sha256().await.expect("sha256");
        file.check_sha1().await.expect("sha1");
        file.check_md5().await.expect("md5");
    }
    update
        .send_feedback_with_progress(
            Execution::Proceeding,
            Finished::None,
            json!({"cnt": 1, "of": 2}),
            vec!["installing"],
        )
        .await
        .expect("progress feedback");
    update
}

async fn rollout(server: &TestServer, op: &str, id: i64) -> Value {
    let (status, view) =
        post(server, op, &format!("/api/v1/deployments/{id}/rollout/evaluate"), json!({})).await;
    assert_eq!(status, 200, "{view}");
    view
}

backend_test!(a_ddi_client_others_wrote_installs_a_staged_release_fails_and_is_cancelled, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (_, location, _) = merchant(&server, &op, "Vending Paris", "vending@example.com", &["SN-V-1"]).await;
    // The first through the CLI, the others through the API.
    let creds = tempfile::tempdir().unwrap();
    let creds = creds.path().join("c.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let location_arg = location.to_string();
    let (code, out, err) = tms_e2e::run_tms(
        &server,
        &creds,
        &[
            "device",
            "register-linux",
            "--location",
            &location_arg,
            "--controller-id",
            "vend-00",
            "--model",
            MODEL,
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let registered: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(registered["device"]["kind"], "linux");
    let mut fleet = vec![(
        registered["device"]["id"].as_i64().unwrap(),
        "vend-00".to_owned(),
        registered["target_token"].as_str().unwrap().to_owned(),
    )];
    for i in 1..12 {
        let controller = format!("vend-{i:02}");
        let (id, token) = register(&server, &op, location, &controller).await;
        fleet.push((id, controller, token));
    }
    let key = app_with_key(&server, &op, OS, "firmware").await;
    publish_release(&server, &op, &key, OS, "firmware", "1.0.0", 100, &[MODEL]).await;
    let bytes = artifact_of(OS, "1.0.0");

    // 1.0.0 in two stages: half the fleet, then everyone.
    let (id, view) = rollout_to_everyone(
        &server,
        &op,
        OS,
        "1.0.0",
        json!({"stages": [50, 100], "success_percent": 100, "max_failures": "0"}),
    )
    .await;
    let rollout_id = view["id"].as_i64().unwrap();
    let in_first: Vec<bool> = fleet
        .iter()
        .map(|(device, ..)| tms_packages::contact::in_stage(rollout_id, *device, 5_000))
        .collect();
    assert!(in_first.iter().filter(|i| **i).count() >= 2 && in_first.iter().any(|i| !*i), "{in_first:?}");
    let dir = tempfile::tempdir().unwrap();
    for (n, ((_, controller, token), first)) in fleet.iter().zip(&in_first).enumerate() {
        let c = client(&server, controller, token);
        if !first {
            assert!(c.poll().await.unwrap().update().is_none(), "{controller} is outside the first stage");
            continue;
        }
        // The first device resumes a download interrupted after 10,000 bytes.
        let partial = (n == in_first.iter().position(|f| *f).unwrap()).then_some(&bytes[..10_000]);
        let update = download_and_check(&c, &dir.path().join(controller), partial).await;
        assert_eq!(update.action_id(), id.to_string());
        update.send_feedback(Execution::Closed, Finished::Success, vec!["flashed"]).await.unwrap();
        let on_disk =
            std::fs::read(dir.path().join(controller).join(OS).join(format!("{OS}-1.0.0.bin"))).unwrap();
        assert_eq!(on_disk, bytes, "{controller} downloaded the image whole");
    }
    let view = rollout(&server, &op, id).await;
    assert_eq!(view["current_stage"], 1, "the first stage succeeded: {view}");
    let installed_first = in_first.iter().filter(|i| **i).count() as u64;
    assert_eq!(view["stage_stats"][0]["installed"], installed_first, "{view}");
    for ((_, controller, token), first) in fleet.iter().zip(&in_first) {
        if *first {
            continue;
        }
        let c = client(&server, controller, token);
        let update = download_and_check(&c, &dir.path().join(controller), None).await;
        update.send_feedback(Execution::Closed, Finished::Success, vec![]).await.unwrap();
    }
    let view = rollout(&server, &op, id).await;
    assert_eq!(view["status"], "completed", "{view}");
    for (_, controller, token) in &fleet {
        let reply = client(&server, controller, token).poll().await.unwrap();
        assert!(reply.update().is_none() && reply.cancel_action().is_none(), "{controller} is done");
    }

    // 2.0.0: one device of the first stage fails, which pauses the rollout;
    // another, installing meanwhile, is cancelled with the deployment.
    publish_release(&server, &op, &key, OS, "firmware", "2.0.0", 200, &[MODEL]).await;
    let (id, view) = rollout_to_everyone(
        &server,
        &op,
        OS,
        "2.0.0",
        json!({"stages": [50, 100], "success_percent": 100, "max_failures": "0"}),
    )
    .await;
    let rollout_id = view["id"].as_i64().unwrap();
    let staged: Vec<&(i64, String, String)> = fleet
        .iter()
        .filter(|(device, ..)| tms_packages::contact::in_stage(rollout_id, *device, 5_000))
        .collect();
    assert!(staged.len() >= 2, "{} in the first stage", staged.len());
    let (_, failing, failing_token) = staged[0];
    let (_, cancelled, cancelled_token) = staged[1];
    let c = client(&server, cancelled, cancelled_token);
    let working = download_and_check(&c, &dir.path().join("v2").join(cancelled), None).await;
    let f = client(&server, failing, failing_token);
    let update = download_and_check(&f, &dir.path().join("v2").join(failing), None).await;
    update.send_feedback(Execution::Closed, Finished::Failure, vec!["image does not boot"]).await.unwrap();
    let (_, view) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(view["status"], "paused", "the failure paused it: {view}");
    assert_eq!(view["stage_stats"][0]["failed"], 1, "{view}");
    let (_, failures) = get(&server, &op, &format!("/api/v1/deployments/{id}/failures")).await;
    assert_eq!(failures[0]["error_code"], "ddi_failure", "{failures}");

    let (status, _) = post(&server, &op, &format!("/api/v1/deployments/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    let reply = c.poll().await.unwrap();
    assert!(reply.update().is_none(), "a cancelled action is not offered again");
    let cancel = reply.cancel_action().expect("the cancellation reaches the client");
    assert_eq!(cancel.id().await.unwrap(), working.action_id());
    cancel.send_feedback(Execution::Closed, Finished::Success, vec!["stopped"]).await.unwrap();
    let reply = c.poll().await.unwrap();
    assert!(reply.cancel_action().is_none() && reply.update().is_none(), "cancelled, it stays on 1.0.0");
});

backend_test!(an_action_that_needs_confirmation_waits_for_the_device, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (_, location, _) = merchant(&server, &op, "Parking Lille", "lille@example.com", &["SN-L-1"]).await;
    let (device_id, token) = register(&server, &op, location, "gate-1").await;
    let base = ddi_url(&server, "gate-1", "");
    let key = app_with_key(&server, &op, OS, "firmware").await;
    let release = publish_release(&server, &op, &key, OS, "firmware", "1.0.0", 100, &[MODEL]).await;
    let release_id = release["id"].as_i64().unwrap();
    // Through the CLI, as a release engineer would.
    let creds = tempfile::tempdir().unwrap();
    let creds = creds.path().join("c.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let (code, out, err) = run_tms(
        &server,
        &creds,
        &[
            "deploy",
            "create",
            "--release",
            &format!("{OS}@1.0.0"),
            "--to",
            "everyone",
            "--action",
            "forced",
            "--confirmation-required",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let deployment: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deployment["confirmation_required"], true, "{deployment}");
    let action = deployment["id"].as_i64().unwrap();

    // The poll links the confirmation, not the deployment.
    let (_, poll) = ddi(&server, reqwest::Method::GET, &base, &token, None).await;
    assert_eq!(keys(&poll["_links"]), ["configData", "confirmationBase"], "{poll}");
    let href = format!("{base}/confirmationBase/{action}?c={release_id}");
    assert_eq!(poll["_links"]["confirmationBase"]["href"], href);
    let (status, _) =
        ddi(&server, reqwest::Method::GET, &format!("{base}/deploymentBase/{action}"), &token, None).await;
    assert_eq!(status, 404, "not delivered before it is confirmed");
    let (_, confirmation) =
        ddi(&server, reqwest::Method::GET, &format!("{base}/confirmationBase"), &token, None).await;
    assert_eq!(confirmation["autoConfirm"]["state"], "inactive");
    assert_eq!(keys(&confirmation["_links"]), ["activateAutoConfirm", "confirmationBase"], "{confirmation}");
    assert_eq!(confirmation["_links"]["confirmationBase"]["href"], href);
    let (status, waiting) = ddi(&server, reqwest::Method::GET, &href, &token, None).await;
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(keys(&waiting), ["confirmation", "id"]);
    assert_eq!(waiting["id"], action.to_string());
    assert_eq!(waiting["confirmation"]["update"], "forced");
    assert_eq!(waiting["confirmation"]["chunks"][0]["version"], "1.0.0");

    // The hawkbit crate's client denies it (it keeps waiting), then confirms it.
    let c = client(&server, "gate-1", &token);
    let reply = c.poll().await.unwrap();
    assert!(reply.update().is_none());
    let request = reply.confirmation_base().expect("a confirmation is asked");
    assert_eq!(request.update_info().await.unwrap().action_id(), action.to_string());
    request.decline().await.unwrap();
    let (_, events) = get(&server, &op, "/api/v1/audit?action=device.ddi_denied").await;
    assert!(events.to_string().contains(&format!("device:{device_id}")), "{events}");
    let reply = c.poll().await.unwrap();
    assert!(reply.update().is_none(), "a denied action waits");
    reply.confirmation_base().expect("still asked").confirm().await.unwrap();
    let reply = c.poll().await.unwrap();
    assert!(reply.confirmation_base().is_none());
    let update = reply.update().expect("confirmed, it is delivered").fetch().await.unwrap();
    assert_eq!(update.action_id(), action.to_string());
    update.send_feedback(Execution::Closed, Finished::Success, vec![]).await.unwrap();
    let (status, body) = ddi(
        &server,
        reqwest::Method::POST,
        &format!("{base}/confirmationBase/{action}/feedback"),
        &token,
        Some(json!({"confirmation": "confirmed", "code": 1, "details": []})),
    )
    .await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (410, Some("action_gone")), "{body}");

    // With auto-confirm on, the next such action is delivered at once.
    let (status, _) = ddi(
        &server,
        reqwest::Method::POST,
        &format!("{base}/confirmationBase/activateAutoConfirm"),
        &token,
        Some(json!({"initiator": "maintenance", "remark": "unattended"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, confirmation) =
        ddi(&server, reqwest::Method::GET, &format!("{base}/confirmationBase"), &token, None).await;
    assert_eq!(confirmation["autoConfirm"]["state"], "active");
    assert_eq!(keys(&confirmation["_links"]), ["deactivateAutoConfirm"]);
    publish_release(&server, &op, &key, OS, "firmware", "2.0.0", 200, &[MODEL]).await;
    let (_, second) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": OS, "version": "2.0.0", "target": "everyone", "confirmation_required": true}),
    )
    .await;
    let reply = c.poll().await.unwrap();
    assert!(reply.confirmation_base().is_none());
    let update = reply.update().expect("auto-confirmed").fetch().await.unwrap();
    assert_eq!(update.action_id(), second["id"].as_i64().unwrap().to_string());
});

backend_test!(support_registers_a_linux_device_in_the_console_and_sees_what_it_reports, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, _, _) =
        merchant(&server, &op, "Recharge Rennes", "rennes@example.com", &["SN-R-1"]).await;
    let backend = match db.backend {
        tms_e2e::Backend::Sqlite => "sqlite",
        tms_e2e::Backend::Postgres => "postgres",
    };
    let Some(mut browser) =
        tms_e2e::browser::Browser::start(&format!("console-linux-device-{backend}"), "en-GB,en").await
    else {
        return;
    };
    browser.goto(&server.url("/login")).await;
    browser.fill("#email", OPERATOR).await;
    browser.fill("#password", OPERATOR_PASSWORD).await;
    browser.click("form[action='/login'] button[type=submit]").await;
    browser.expect_text("Sign out").await;

    // Registered from the merchant's page; a bad controller id is refused
    // in the reader's words and the form keeps what was typed.
    browser.goto(&server.url(&format!("/console/merchants/{merchant_id}"))).await;
    browser.expect_text("Linux devices (hawkBit DDI)").await;
    browser.fill("#linux-controller", "charger 42").await;
    browser.fill("#linux-model", "kiosk-x86").await;
    browser.click("#new-linux-device button[type=submit]").await;
    browser.expect_text("The controller id takes letters").await;
    assert_eq!(browser.script("return document.querySelector('#linux-model').value").await, "kiosk-x86");
    browser.snap("register-refused").await;
    browser.fill("#linux-controller", "charger-42").await;
    browser.click("#new-linux-device button[type=submit]").await;
    browser.expect_heading("Linux device registered").await;
    let token = browser.text("#target-token").await;
    assert!(token.starts_with("tms_t_"), "{token}");
    browser.snap("registered").await;

    // What the device reports shows on its page.
    let base = ddi_url(&server, "charger-42", "");
    let (status, _) = ddi(
        &server,
        reqwest::Method::PUT,
        &format!("{base}/configData"),
        &token,
        Some(json!({"data": {"hwRevision": "B2", "connector": "CCS2"}})),
    )
    .await;
    assert_eq!(status, 200);
    browser.click("a[href^='/console/terminals/']").await;
    browser.expect_heading("charger-42").await;
    let facts = browser.text("#facts").await;
    assert!(facts.contains("Linux device (hawkBit DDI)") && facts.contains("KIOSK-X86"), "{facts}");
    let attributes = browser.text("#attributes").await;
    assert!(attributes.contains("connector") && attributes.contains("CCS2"), "{attributes}");
    assert!(!browser.exists("#installed").await && !browser.body_text().await.contains("reported its apps"));
    browser.snap("linux-device").await;

    // A deployment that waits for the devices' confirmation says so.
    let key = app_with_key(&server, &op, OS, "firmware").await;
    publish_release(&server, &op, &key, OS, "firmware", "1.0.0", 100, &["KIOSK-X86"]).await;
    let (_, deployment) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": OS, "version": "1.0.0", "target": "everyone", "confirmation_required": true}),
    )
    .await;
    let deployment_page = server.url(&format!("/console/deployments/{}", deployment["id"]));
    browser.goto(&deployment_page).await;
    assert!(browser.text("#confirmation").await.contains("confirm before installing"));
    browser.snap("deployment-confirmation").await;

    browser.click("form.lang button[value=fr]").await;
    browser.expect_text("Se déconnecter").await;
    browser.goto(&server.url(&format!("/console/merchants/{merchant_id}"))).await;
    browser.expect_text("Appareils Linux (hawkBit DDI)").await;
    browser.snap("merchant-fr").await;
    // A second device, registered in French, and its page.
    browser.fill("#linux-controller", "charger-43").await;
    browser.fill("#linux-model", "kiosk-x86").await;
    browser.click("#new-linux-device button[type=submit]").await;
    browser.expect_heading("Appareil Linux enregistré").await;
    browser.snap("registered-fr").await;
    browser.click("a[href^='/console/terminals/']").await;
    browser.expect_heading("charger-43").await;
    assert!(browser.text("#facts").await.contains("Appareil Linux (hawkBit DDI)"));
    browser.snap("linux-device-fr").await;
    browser.goto(&deployment_page).await;
    assert!(browser.text("#confirmation").await.contains("confirment avant d’installer"));
    browser.snap("deployment-confirmation-fr").await;
});
