//! The TMS contact: signed answers, deployments, staged rollouts, feedback,
//! parameter diffs, and several server processes sharing one database.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tms_e2e::fixtures::*;
use tms_e2e::terminal::{Outcome, SimTerminal};
use tms_e2e::{ServerBuilder, TestServer, backend_test, run_tms};
use tms_packages::contact::{AnswerError, in_stage, sign_answer, verify_answer};
use tms_signing::PublicKey;

const APP: &str = "eu.ccv.salespoint";

async fn contact(server: &TestServer, t: &SimTerminal) -> Outcome {
    t.contact(&server.http, &server.base_url).await
}

/// Contacts, verifies and applies until the terminal is in sync.
async fn sync(server: &TestServer, t: &mut SimTerminal, trusted: &[PublicKey]) {
    for _ in 0..4 {
        match contact(server, t).await {
            Outcome::Answer(answer, body) => {
                t.accept(&answer, trusted).expect("a valid answer");
                if answer.status == "in_sync" {
                    return;
                }
                t.apply(&server.http, &server.base_url, &body).await;
            }
            Outcome::Refused(status, body) => panic!("contact refused: {status} {body}"),
        }
    }
    panic!("terminal {} never got in sync", t.device_id);
}

fn changes(outcome: &Outcome) -> &tms_packages::wire::contact::ContactBody {
    match outcome {
        Outcome::Answer(_, body) => body,
        Outcome::Refused(status, body) => panic!("contact refused: {status} {body}"),
    }
}

/// Contacts every terminal (8 at a time); returns each outcome in order.
async fn contact_all(server: &TestServer, fleet: &[SimTerminal]) -> Vec<Outcome> {
    futures_util::stream::iter(fleet.iter().map(|t| contact(server, t))).buffered(8).collect().await
}

/// Two processes on one database and one bucket, as behind a load balancer,
/// following the change log every `sync_ms`; an operator signed in on the
/// first, and the answer keys. None without an S3-compatible server.
async fn two_processes(
    db: &tms_e2e::TestDatabase,
    sync_ms: &str,
) -> Option<(tms_e2e::MotoServer, TestServer, TestServer, String, Vec<PublicKey>)> {
    let s3 = tms_e2e::MotoServer::start().await?;
    let a = ServerBuilder::new().database(db).s3(&s3).env("TMS_CONTACT_SYNC_MS", sync_ms).start().await;
    // Processes sharing a database share its master key file.
    let b = ServerBuilder::new()
        .database(db)
        .s3(&s3)
        .env("TMS_CONTACT_SYNC_MS", sync_ms)
        .env("TMS_MASTER_KEY_FILE", &a.master_key_file().display().to_string())
        .start()
        .await;
    a.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let op = a.login(OPERATOR, OPERATOR_PASSWORD).await;
    let trusted = answer_keys(&a).await;
    Some((s3, a, b, op, trusted))
}

/// A fleet of A920 terminals running 1.0.0 of the app, in sync, with 2.0.0
/// published for a deployment to offer them.
async fn fleet_on_1_0_0(
    server: &TestServer,
    op: &str,
    terminals: u64,
    merchants: u32,
    locations_per_merchant: u32,
) -> Vec<SimTerminal> {
    let trusted = answer_keys(server).await;
    let key = app_with_key(server, op, APP, "app").await;
    let v1 = publish_release(server, op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    publish_release(server, op, &key, APP, "app", "2.0.0", 200, &["A920"]).await;
    let sha1 = v1["artifact_sha256"].as_str().unwrap().to_owned();
    let mut fleet: Vec<SimTerminal> =
        seed_fleet(server, terminals, merchants, locations_per_merchant, "A920")
            .into_iter()
            .map(|t| t.with_app(APP, "1.0.0", 100, &sha1))
            .collect();
    for t in fleet.iter_mut() {
        sync(server, t, &trusted).await;
    }
    fleet
}

/// Applies the rollout's rules (as the supervisor does) until it reaches
/// `status`: terminals' reports are written in batches, so a report may land
/// just after an evaluation.
async fn wait_for_rollout(server: &TestServer, op: &str, deployment: i64, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let evaluate = format!("/api/v1/deployments/{deployment}/rollout/evaluate");
    loop {
        let (code, view) = post(server, op, &evaluate, json!({})).await;
        assert_eq!(code, 200, "{view}");
        if view["status"] == status {
            return view;
        }
        assert!(Instant::now() < deadline, "rollout never became {status}: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

backend_test!(answer_keys_are_published_and_rotate, |db| {
    let server = tms_e2e::ServerBuilder::new().database(&db).start().await;
    let (status, published) = server.get_json("/.well-known/tms/answer-keys").await;
    assert_eq!(status, 200, "{published}");
    let first = published["current"].as_str().unwrap().to_owned();
    assert_eq!(published["keys"].as_array().unwrap().len(), 1);

    // An answer signed with the current key verifies against the published keys.
    let pool = db.pool();
    let master_keys = server.master_keys();
    let key = tms_server::server_keys::current_signing_key(&mut pool.get().unwrap(), &master_keys).unwrap();
    assert_eq!(key.public_key().key_id(), first);
    let answer = sign_answer(json!({"apps": []}), 1_000, 600, &key).unwrap();
    let trusted: Vec<PublicKey> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| PublicKey::parse(k["public_key"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(verify_answer(&answer, &trusted, 1_200, None, 60), Ok(()));

    // Rotation: a new current key; the old one stays published (retired) for answers not yet expired.
    let out = server.command().args(["keys", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, published) = server.get_json("/.well-known/tms/answer-keys").await;
    let second = published["current"].as_str().unwrap();
    assert_ne!(second, first);
    let keys = published["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let old = keys.iter().find(|k| k["key_id"] == first.as_str()).unwrap();
    assert!(old["retired_at"].is_string());
    let trusted: Vec<PublicKey> =
        keys.iter().map(|k| PublicKey::parse(k["public_key"].as_str().unwrap()).unwrap()).collect();
    assert_eq!(verify_answer(&answer, &trusted, 1_200, None, 60), Ok(()), "old answers still verify");
    assert_eq!(verify_answer(&answer, &trusted, 1_700, None, 60), Err(AnswerError::Expired));
});

backend_test!(a_terminal_in_sync_gets_the_short_shared_answer, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_ADJUSTABLE_CLOCK", "true")]).await;
    let trusted = answer_keys(&server).await;
    let mut fleet = seed_fleet(&server, 4, 1, 1, "A920");

    // First contact: the terminal holds no parameters, so it gets the full set.
    let first = contact(&server, &fleet[0]).await;
    let Outcome::Answer(answer, body) = &first else { panic!("{first:?}") };
    assert_eq!(answer.status, "changes");
    assert_eq!(body.device_id, Some(fleet[0].device_id));
    let terminal_params =
        body.parameters.iter().find(|p| p.app_id == "tms.terminal").expect("terminal parameters");
    assert!(terminal_params.full);
    assert_eq!(
        terminal_params.changed["merchant_menu.password"],
        json!("99999"),
        "terminals get secrets in clear"
    );
    fleet[0].accept(answer, &trusted).unwrap();
    // Another terminal refuses it: it names fleet[0].
    let mut other = fleet[1].clone();
    assert_eq!(other.accept(answer, &trusted), Err(AnswerError::NotForThisTerminal));

    // A tampered or expired answer is refused by the reference verification.
    let mut tampered = answer.answer.clone();
    tampered.body["parameters"][0]["changed"]["merchant_menu.password"] = json!("12345");
    assert_eq!(
        verify_answer(&tampered, &trusted, answer.answer.issued_at, None, 60),
        Err(AnswerError::BadSignature)
    );
    assert_eq!(
        verify_answer(&answer.answer, &trusted, answer.answer.expires_at, None, 60),
        Err(AnswerError::Expired)
    );

    // Once applied, the terminal is in sync: the answer is its digest alone,
    // signed once and shared with every terminal whose target is the same.
    for t in fleet.iter_mut() {
        sync(&server, t, &trusted).await;
    }
    let a = contact(&server, &fleet[0]).await;
    let b = contact(&server, &fleet[1]).await;
    let (Outcome::Answer(a, body_a), Outcome::Answer(b, _)) = (&a, &b) else { panic!("{a:?} {b:?}") };
    assert_eq!(a.status, "in_sync");
    assert_eq!(a.answer.body, json!({"target_digest": fleet[0].state.digest()}));
    assert_eq!(body_a.target_digest, fleet[0].state.digest());
    assert_eq!(a.answer, b.answer, "the same target shares one signature");
    assert!(a.next_contact_secs >= 270 && a.next_contact_secs <= 330, "{}", a.next_contact_secs);
    fleet[0].accept(a, &trusted).unwrap();

    // A digest that does not match the state, and a deactivated terminal.
    let mut request = fleet[0].request();
    request.digest = "00".repeat(32);
    let res = server
        .http
        .post(server.url("/api/v1/terminal/contact"))
        .bearer_auth(&fleet[0].token)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "state_digest_mismatch");
    let (status, body) =
        post(&server, &op, &format!("/api/v1/devices/{}/deactivate", fleet[1].device_id), json!({})).await;
    assert_eq!(status, 200, "{body}");
    // Its reports are refused first (this process still knows its token),
    // then its contacts.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fleet[1].feedback(&server.http, &server.base_url, 1, "any.app", "installed", None).await != 401 {
        assert!(Instant::now() < deadline, "reports still taken after deactivation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match contact(&server, &fleet[1]).await {
            Outcome::Refused(401, body) => {
                assert_eq!(body["error"]["code"], "device_deactivated");
                break;
            }
            other => assert!(Instant::now() < deadline, "still served after deactivation: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Last contact and the reported inventory are recorded in batches; the
    // plan writes what the process gathered first.
    let (status, plan) = get(&server, &op, &format!("/api/v1/devices/{}/plan", fleet[0].device_id)).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["firmware"], "9.0.0");
    assert_eq!(plan["in_sync"], true, "{plan}");
    let (_, device) = get(&server, &op, &format!("/api/v1/devices/{}", fleet[0].device_id)).await;
    assert!(device["last_contact_at"].is_string(), "{device}");
    assert_eq!(device["firmware_version"], "9.0.0", "{device}");
    let reported: Vec<String> = fleet[0]
        .state
        .apps
        .iter()
        .map(|a| format!("{} {} ({})", a.app_id, a.version, a.version_code))
        .collect();
    assert_eq!(device["installed_apps"], json!(reported), "{device}");
    // The list filters on the last contact: fleet[0] called within the minute.
    let minute_ago = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let list =
        |filter: &str| format!("/api/v1/merchants/{}/devices?{filter}={minute_ago}", fleet[0].merchant_id);
    let ids = |devices: &Value| -> Vec<i64> {
        devices.as_array().expect("a list").iter().map(|d| d["id"].as_i64().unwrap()).collect()
    };
    let (status, after) = get(&server, &op, &list("contacted_after")).await;
    assert_eq!(status, 200, "{after}");
    assert!(ids(&after).contains(&fleet[0].device_id), "{after}");
    let (_, before) = get(&server, &op, &list("contacted_before")).await;
    assert!(!ids(&before).contains(&fleet[0].device_id), "{before}");

    // A later contact moves the recorded time on (the plan writes what the
    // process has gathered first, and fails if that fails).
    server.advance_clock(&op, 2).await;
    contact(&server, &fleet[0]).await;
    let (status, plan) = get(&server, &op, &format!("/api/v1/devices/{}/plan", fleet[0].device_id)).await;
    assert_eq!(status, 200, "{plan}");
    let (_, later) = get(&server, &op, &format!("/api/v1/devices/{}", fleet[0].device_id)).await;
    assert!(later["last_contact_at"].as_str() > device["last_contact_at"].as_str(), "{device} then {later}");
});

backend_test!(a_staged_release_reaches_exactly_its_stage_of_compatible_terminals, |db| {
    let (server, op) = server_with_operator(&db).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let v1 = publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920", "A80"]).await;
    let v2 = publish_release(&server, &op, &key, APP, "app", "2.0.0", 200, &["A920", "A80"]).await;
    // A third of the fleet is of a model the release does not support.
    let sha1 = v1["artifact_sha256"].as_str().unwrap().to_owned();
    let fleet: Vec<SimTerminal> = seed_fleet(&server, 10_000, 20, 5, "A920,A80,A35")
        .into_iter()
        .map(|t| t.with_app(APP, "1.0.0", 100, &sha1))
        .collect();

    let (status, deployment) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "version": "2.0.0", "target": "everyone", "hold": true}),
    )
    .await;
    assert_eq!(status, 201, "{deployment}");
    assert_eq!(deployment["status"], "held");
    let id = deployment["id"].as_i64().unwrap();
    // Held: nobody gets it yet.
    assert!(changes(&contact(&server, &fleet[0]).await).apps.is_empty());

    let (status, rollout) = post(
        &server,
        &op,
        &format!("/api/v1/deployments/{id}/rollout"),
        json!({"stages": [10, 50, 100], "success_percent": 95, "max_failures": "2%", "auto_advance": false}),
    )
    .await;
    assert_eq!(status, 201, "{rollout}");
    let rollout_id = rollout["id"].as_i64().unwrap();

    let outcomes = contact_all(&server, &fleet).await;
    let mut offered = 0;
    let mut compatible = 0;
    for (t, outcome) in fleet.iter().zip(&outcomes) {
        let body = changes(outcome);
        let in_stage = in_stage(rollout_id, t.device_id, 1_000);
        let fits = t.state.model != "A35";
        compatible += usize::from(fits);
        match body.apps.first() {
            Some(change) => {
                assert!(
                    in_stage && fits,
                    "terminal {} ({}) is outside the stage or incompatible",
                    t.device_id,
                    t.state.model
                );
                assert_eq!((change.change.as_str(), change.deployment_id), ("update", id));
                let release = change.release.as_ref().unwrap();
                assert_eq!(release.release_id, v2["id"].as_i64().unwrap());
                assert_eq!(release.sha256, v2["artifact_sha256"].as_str().unwrap());
                assert_eq!(release.download_path, format!("/api/v1/terminal/artifacts/{}", release.sha256));
                offered += 1;
            }
            None => assert!(!(in_stage && fits), "terminal {} is in the stage but got nothing", t.device_id),
        }
    }
    let fraction = offered as f64 * 100.0 / compatible as f64;
    assert!(
        (fraction - 10.0).abs() <= 1.0,
        "{offered} of {compatible} compatible terminals: {fraction:.2} %"
    );

    // Raising the stage only adds terminals.
    let (status, view) =
        post(&server, &op, &format!("/api/v1/deployments/{id}/rollout/approve"), json!({})).await;
    assert_eq!(status, 409, "not waiting for approval yet: {view}");
    assert_eq!(view["error"]["code"], "rollout_state");
    let view = wait_for_rollout_status(&server, &op, id).await;
    assert_eq!(
        view["stage_stats"][0]["pending"].as_u64().unwrap() as usize,
        view["stage_stats"][0]["devices"].as_u64().unwrap() as usize
    );
    // The support tool explains a terminal outside the stage and an incompatible one.
    let outside =
        fleet.iter().find(|t| t.state.model == "A920" && !in_stage(rollout_id, t.device_id, 1_000)).unwrap();
    let (_, plan) = get(&server, &op, &format!("/api/v1/devices/{}/plan", outside.device_id)).await;
    let considered = &plan["apps"][0]["considered"][0];
    assert_eq!(considered["detail"]["reason"], "not_in_stage", "{plan}");
    let a35 = fleet.iter().find(|t| t.state.model == "A35").unwrap();
    let (_, plan) = get(&server, &op, &format!("/api/v1/devices/{}/plan", a35.device_id)).await;
    assert!(plan["apps"][0]["considered"].as_array().unwrap().iter().any(|c| c["detail"]["reason"] == "model_incompatible" || c["detail"]["reason"] == "not_in_stage"), "{plan}");
});

backend_test!(a_stage_counts_as_compatible_only_the_terminals_the_planner_would_offer_the_release, |db| {
    let (server, op) = server_with_operator(&db).await;
    let trusted = answer_keys(&server).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let v1 = publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    publish_release_needing(&server, &op, &key, APP, "app", "2.0.0", 200, &["A920"], Some("9.0.0")).await;
    let sha1 = v1["artifact_sha256"].as_str().unwrap().to_owned();
    // Half the fleet reports firmware 9.0.0; the other half has never said
    // which it runs: the planner offers those nothing, so they cannot hold
    // the stage back.
    let mut fleet: Vec<SimTerminal> = seed_fleet(&server, 8, 1, 1, "A920")
        .into_iter()
        .map(|t| t.with_app(APP, "1.0.0", 100, &sha1))
        .collect();
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "2.0.0",
        json!({"stages": [100], "success_percent": 100, "max_failures": "0"}),
    )
    .await;
    for t in fleet.iter_mut().take(4) {
        sync(&server, t, &trusted).await;
        assert_eq!(t.state.apps[0].version, "2.0.0");
    }
    let view = wait_for_rollout(&server, &op, id, "completed").await;
    assert_eq!(view["stage_stats"][0]["installed"], 4, "{view}");
    // A status read changes nothing: the same view twice.
    let (_, read) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    let (_, again) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(read, again);
});

/// The rollout's statistics without waiting for a state.
async fn wait_for_rollout_status(server: &TestServer, op: &str, deployment: i64) -> Value {
    let (code, view) = get(server, op, &format!("/api/v1/deployments/{deployment}/rollout")).await;
    assert_eq!(code, 200, "{view}");
    view
}

backend_test!(failures_in_the_first_stage_pause_it_and_rollback_delivers_the_previous_release, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_ROLLOUT_CHECK_SECS", "1")]).await;
    let mut fleet = fleet_on_1_0_0(&server, &op, 60, 2, 2).await;

    // Through the CLI, as a release engineer would.
    let creds = tempfile::tempdir().unwrap();
    let creds = creds.path().join("credentials.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let (code, out, err) = run_tms(
        &server,
        &creds,
        &[
            "--json",
            "deploy",
            "create",
            "--release",
            &format!("{APP}@2.0.0"),
            "--to",
            "everyone",
            "--action",
            "forced",
            "--hold",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"].as_i64().unwrap();
    let (code, _, err) = run_tms(
        &server,
        &creds,
        &[
            "rollout",
            "start",
            &id.to_string(),
            "--stages",
            "20,100",
            "--success",
            "100",
            "--max-failures",
            "1",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");

    // The first stage's terminals get the release; two of them fail to install it.
    let mut reached = Vec::new();
    for (i, t) in fleet.iter_mut().enumerate() {
        let outcome = contact(&server, t).await;
        let body = changes(&outcome).clone();
        if let Some(change) = body.apps.first() {
            assert_eq!(change.action, tms_packages::contact::ActionType::Forced);
            reached.push(i);
        }
    }
    assert!(reached.len() >= 3, "stage 1 reached {} terminals", reached.len());
    for i in &reached[..2] {
        let t = &fleet[*i];
        assert_eq!(t.feedback(&server.http, &server.base_url, id, APP, "downloading", None).await, 204);
        assert_eq!(
            t.feedback(&server.http, &server.base_url, id, APP, "failed", Some("install_failed")).await,
            204
        );
    }
    let view = wait_for_rollout(&server, &op, id, "paused").await;
    assert_eq!(view["current_stage"], 0, "paused before stage 2: {view}");
    assert!(view["status_reason"].as_str().unwrap().contains("failures"), "{view}");
    assert_eq!(view["status_reason_detail"]["code"], "failure_limit", "{view}");
    assert_eq!(view["status_reason_detail"]["failed"], 2, "{view}");
    assert_eq!(view["stage_stats"][0]["failed"], 2, "{view}");
    let (code, out, err) = run_tms(&server, &creds, &["rollout", "status", &id.to_string()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("paused"), "{out}");
    // Paused: nobody else is offered the release.
    for (i, t) in fleet.iter().enumerate() {
        if !reached.contains(&i) {
            assert!(
                changes(&contact(&server, t).await).apps.is_empty(),
                "terminal {i} offered a paused release"
            );
        }
    }
    // The push history shows the failure.
    let (_, history) =
        get(&server, &op, &format!("/api/v1/devices/{}/actions", fleet[reached[0]].device_id)).await;
    assert_eq!(history[0]["status"], "failed", "{history}");
    assert_eq!(history[0]["error_code"], "install_failed");

    // Those that installed 2.0.0 get 1.0.0 back after the rollback; the rest stay.
    let installed = reached[2];
    let v2_sha = match &contact(&server, &fleet[installed]).await {
        Outcome::Answer(..) => {
            // It was offered 2.0.0 before the pause; it installed it.
            let (_, release) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/2.0.0")).await;
            release["artifact_sha256"].as_str().unwrap().to_owned()
        }
        other => panic!("{other:?}"),
    };
    fleet[installed].install(APP, "2.0.0", 200, &v2_sha);
    let (code, out, err) =
        run_tms(&server, &creds, &["--json", "rollout", "rollback", &id.to_string()], None);
    assert_eq!(code, 0, "{err}");
    let rollback = serde_json::from_str::<Value>(&out).unwrap()["rollback_deployment_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = changes(&contact(&server, &fleet[installed]).await).clone();
        if let Some(change) = body.apps.first() {
            assert_eq!((change.change.as_str(), change.deployment_id), ("rollback", rollback));
            assert_eq!(change.release.as_ref().unwrap().version, "1.0.0");
            break;
        }
        assert!(Instant::now() < deadline, "the rollback never reached the terminal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let untouched = (0..fleet.len()).find(|i| !reached.contains(i)).unwrap();
    assert!(changes(&contact(&server, &fleet[untouched]).await).apps.is_empty());
    let (code, out, err) =
        run_tms(&server, &creds, &["device", "plan", &fleet[installed].device_id.to_string()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&rollback.to_string()), "{out}");
});

backend_test!(a_parameter_change_at_a_location_sends_only_the_changed_keys, |db| {
    let (server, op) = server_with_operator(&db).await;
    let trusted = answer_keys(&server).await;
    let mut fleet = seed_fleet(&server, 6, 1, 2, "A920");
    for t in fleet.iter_mut() {
        sync(&server, t, &trusted).await;
    }
    let location = fleet[0].location_id;
    let (status, body) = post(
        &server,
        &op,
        &format!("/api/v1/parameters/tms.terminal/location/{location}"),
        json!({"set": {"receipt.header": "Chez Marcel"}, "reason": "new owner"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for t in fleet.iter_mut() {
        let outcome = contact(&server, t).await;
        let body = changes(&outcome).clone();
        if t.location_id == location {
            assert_eq!(body.parameters.len(), 1, "{body:?}");
            let update = &body.parameters[0];
            assert!(!update.full);
            assert_eq!(update.changed, [("receipt.header".to_owned(), json!("Chez Marcel"))].into());
            assert!(update.removed.is_empty());
            t.apply(&server.http, &server.base_url, &body).await;
            let Outcome::Answer(answer, _) = contact(&server, t).await else { panic!() };
            assert_eq!(answer.status, "in_sync");
        } else {
            assert!(body.parameters.is_empty(), "another location's terminal: {body:?}");
        }
    }
});

backend_test!(a_change_through_one_process_reaches_the_others_within_the_sync_delay, |db| {
    let Some((_s3, a, b, op, trusted)) = two_processes(&db, "250").await else { return };
    let mut fleet = seed_fleet(&a, 2, 1, 1, "A920");
    for t in fleet.iter_mut() {
        sync(&b, t, &trusted).await;
    }
    // B has the terminal's target cached; the change is made through A.
    let (status, body) = post(
        &a,
        &op,
        &format!("/api/v1/parameters/tms.terminal/device/{}", fleet[0].device_id),
        json!({"set": {"receipt.footer": "Merci"}, "reason": "test"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // B follows the change log every 250 ms here; the deadline is only a
    // guard against a process that never follows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = contact(&b, &fleet[0]).await;
        if !changes(&outcome).parameters.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "process B never served the new target");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A deactivation through A is refused by B as well.
    let (status, _) =
        post(&a, &op, &format!("/api/v1/devices/{}/deactivate", fleet[1].device_id), json!({})).await;
    assert_eq!(status, 200);
    loop {
        if let Outcome::Refused(401, _) = contact(&b, &fleet[1]).await {
            break;
        }
        assert!(Instant::now() < deadline, "process B still serves a deactivated terminal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
});

backend_test!(groups_windows_removals_and_a_stage_that_succeeds_advances_by_itself, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_ROLLOUT_CHECK_SECS", "1")]).await;
    let trusted = answer_keys(&server).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let v1 = publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920", "A80"]).await;
    publish_release(&server, &op, &key, APP, "app", "1.1.0", 110, &["A920", "A80"]).await;
    let sha1 = v1["artifact_sha256"].as_str().unwrap().to_owned();
    let mut fleet: Vec<SimTerminal> = seed_fleet(&server, 8, 1, 1, "A920,A80")
        .into_iter()
        .map(|t| t.with_app(APP, "1.0.0", 100, &sha1))
        .collect();
    for t in fleet.iter_mut() {
        sync(&server, t, &trusted).await;
    }

    // A dynamic group of the A80s, made with the CLI.
    let creds = tempfile::tempdir().unwrap();
    let creds = creds.path().join("credentials.json");
    tms_e2e::login_tms(&server, &creds, OPERATOR, OPERATOR_PASSWORD);
    let (code, out, err) = run_tms(
        &server,
        &creds,
        &[
            "--json",
            "device",
            "group",
            "create",
            "a80s",
            "--filter",
            "model=A80 and app:eu.ccv.salespoint<110",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let group = serde_json::from_str::<Value>(&out).unwrap()["id"].as_i64().unwrap();
    let (code, _, err) =
        run_tms(&server, &creds, &["device", "group", "create", "bad", "--filter", "colour=red"], None);
    assert_ne!(code, 0);
    assert!(err.contains("unknown field"), "{err}");

    // A maintenance window that opens in two to three minutes, the terminals' local time.
    let local_min = ((chrono::Utc::now().timestamp() + 3_600).rem_euclid(86_400) / 60 + 3) % 1_440;
    let end_min = (local_min + 60) % 1_440;
    let window =
        format!("{:02}:{:02}-{:02}:{:02}", local_min / 60, local_min % 60, end_min / 60, end_min % 60);
    let (status, windowed) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "version": "1.1.0", "target": format!("group:{group}"), "window": window, "wifi_only": true}),
    )
    .await;
    assert_eq!(status, 201, "{windowed}");
    for t in &fleet {
        let Outcome::Answer(answer, body) = contact(&server, t).await else { panic!() };
        assert!(body.apps.is_empty(), "nothing before the window opens");
        if t.state.model == "A80" {
            // Sooner than the interval: when the window opens (plus up to a minute of jitter).
            assert!(answer.next_contact_secs <= 180 + 61, "{}", answer.next_contact_secs);
        }
    }
    let a80 = fleet.iter().position(|t| t.state.model == "A80").unwrap();
    let (_, plan) = get(&server, &op, &format!("/api/v1/devices/{}/plan", fleet[a80].device_id)).await;
    assert_eq!(plan["apps"][0]["change"], "update", "{plan}");
    let deferred = plan["apps"][0]["deferred_secs"].as_u64().unwrap();
    assert!((60..=180).contains(&deferred), "{plan}");
    let (status, _) =
        post(&server, &op, &format!("/api/v1/deployments/{}/cancel", windowed["id"]), json!({})).await;
    assert_eq!(status, 200);

    // A removal for a list of devices outranks everything else for them.
    let (status, removal) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "remove": true, "target": format!("devices:{}", fleet[0].device_id)}),
    )
    .await;
    assert_eq!(status, 201, "{removal}");
    let body = changes(&contact(&server, &fleet[0]).await).clone();
    assert_eq!(body.apps[0].change.as_str(), "remove");
    assert!(body.apps[0].release.is_none());
    let (status, _) =
        post(&server, &op, &format!("/api/v1/deployments/{}/cancel", removal["id"]), json!({})).await;
    assert_eq!(status, 200);

    // A stage whose terminals all install advances by itself.
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "1.1.0",
        json!({"stages": [50, 100], "success_percent": 100, "max_failures": "0"}),
    )
    .await;
    let mut advanced = false;
    for _ in 0..3 {
        for t in fleet.iter_mut() {
            let body = changes(&contact(&server, t).await).clone();
            t.apply(&server.http, &server.base_url, &body).await;
        }
        let (_, view) =
            post(&server, &op, &format!("/api/v1/deployments/{id}/rollout/evaluate"), json!({})).await;
        if view["current_stage"] == 1 || view["status"] == "completed" {
            advanced = true;
            break;
        }
    }
    assert!(advanced, "the rollout never advanced");
    for t in fleet.iter_mut() {
        sync(&server, t, &trusted).await;
    }
    let view = wait_for_rollout(&server, &op, id, "completed").await;
    assert_eq!(view["stage_stats"][0]["installed"], view["stage_stats"][0]["devices"], "{view}");
    assert!(fleet.iter().all(|t| t.state.apps[0].version == "1.1.0"));
});

backend_test!(answers_planned_in_memory_equal_those_computed_from_the_database, |db| {
    // Process A keeps its terminals' targets and plans the new deployments in
    // memory; process B has never seen them and computes from the database.
    let Some((_s3, a, b, op, trusted)) = two_processes(&db, "100").await else { return };
    let key = app_with_key(&a, &op, APP, "app").await;
    let v1 = publish_release(&a, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    publish_release(&a, &op, &key, APP, "app", "1.1.0", 110, &["A920"]).await;
    let tips_key = app_with_key(&a, &op, "eu.ccv.tips", "app").await;
    publish_release(&a, &op, &tips_key, "eu.ccv.tips", "app", "3.0.0", 300, &["A920"]).await;
    let sha1 = v1["artifact_sha256"].as_str().unwrap().to_owned();
    let mut fleet: Vec<SimTerminal> =
        seed_fleet(&a, 4, 1, 1, "A920").into_iter().map(|t| t.with_app(APP, "1.0.0", 100, &sha1)).collect();
    for t in fleet.iter_mut() {
        sync(&a, t, &trusted).await;
    }

    // An update for everyone, an install and a removal for one terminal each.
    let mut deployments = Vec::new();
    for request in [
        json!({"app_id": APP, "version": "1.1.0", "target": "everyone"}),
        json!({"app_id": "eu.ccv.tips", "version": "3.0.0", "target": format!("devices:{}", fleet[0].device_id)}),
        json!({"app_id": APP, "remove": true, "target": format!("devices:{}", fleet[1].device_id)}),
    ] {
        let (status, body) = post(&a, &op, "/api/v1/deployments", request).await;
        assert_eq!(status, 201, "{body}");
        deployments.push(body["id"].as_i64().unwrap());
    }
    // B follows A's change log every 100 ms here: wait until it has seen
    // the last deployment (a contact changes nothing a terminal holds).
    let deadline = Instant::now() + Duration::from_secs(30);
    while changes(&contact(&b, &fleet[1]).await).apps.iter().all(|i| i.deployment_id != deployments[2]) {
        assert!(Instant::now() < deadline, "process B never saw the new deployments");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut offered = 0;
    for t in fleet.iter_mut() {
        for round in 0..2 {
            let (Outcome::Answer(from_a, body_a), Outcome::Answer(from_b, body_b)) =
                (contact(&a, t).await, contact(&b, t).await)
            else {
                panic!("a contact was refused");
            };
            assert_eq!(from_a.status, from_b.status, "terminal {} round {round}", t.device_id);
            assert_eq!(
                serde_json::to_value(&body_a).unwrap(),
                serde_json::to_value(&body_b).unwrap(),
                "terminal {} round {round}",
                t.device_id
            );
            t.accept(&from_a, &trusted).expect("A's answer verifies");
            if round == 1 {
                // Applied: both see it in sync at the same target.
                assert_eq!(from_a.status, "in_sync", "terminal {}: {body_a:?}", t.device_id);
                break;
            }
            assert_eq!(from_a.status, "changes", "terminal {}", t.device_id);
            offered += body_a.apps.len();
            t.apply(&a.http, &a.base_url, &body_a).await;
        }
    }
    // Four updates (one of which is a removal instead) and one install.
    assert_eq!(offered, 5);
    assert!(fleet[0].state.apps.iter().any(|x| x.app_id == "eu.ccv.tips" && x.version == "3.0.0"));
    assert!(fleet[1].state.apps.is_empty());
    assert!(fleet[2..].iter().all(|t| t.state.apps[0].version == "1.1.0"));

    // A burst of feedback, good and bad, written in shared transactions:
    // each report gets its own answer and a bad one costs only itself.
    // A deployment that does not reach a terminal answers as one that does
    // not exist: the install for fleet[0] is not the others' to report on.
    let (update, install) = (deployments[0], deployments[1]);
    let burst = fleet.iter().enumerate().flat_map(|(i, t)| {
        [
            (t, update, APP, "downloading", None, 204),
            (t, update + 1_000, APP, "installed", None, 404),
            (t, update, "eu.ccv.tips", "installed", None, 404),
            (t, update, APP, "failed", None, 400),
            (t, update, APP, "failed", Some("install_failed"), 204),
            (t, install, "eu.ccv.tips", "downloading", None, if i == 0 { 204 } else { 404 }),
        ]
    });
    let server = &a;
    let answers: Vec<(u16, u16)> =
        futures_util::stream::iter(burst.map(|(t, d, app, status, code, want)| async move {
            (t.feedback(&server.http, &server.base_url, d, app, status, code).await, want)
        }))
        .buffer_unordered(20)
        .collect()
        .await;
    assert!(answers.iter().all(|(got, want)| got == want), "{answers:?}");
    for (i, t) in fleet.iter().enumerate() {
        let (_, history) = get(&b, &op, &format!("/api/v1/devices/{}/actions", t.device_id)).await;
        let of_update: Vec<&Value> =
            history.as_array().unwrap().iter().filter(|e| e["deployment_id"] == update).collect();
        // installed when it applied the update (not the one that removed
        // the app instead), downloading, failed: no trace of the refused ones.
        assert_eq!(of_update.len(), if i == 1 { 2 } else { 3 }, "{history}");
        assert!(of_update.iter().any(|e| e["error_code"] == "install_failed"), "{history}");
        let of_install = history.as_array().unwrap().iter().filter(|e| e["deployment_id"] == install).count();
        assert_eq!(of_install > 0, i == 0, "{history}");
    }
});

backend_test!(a_batch_of_reports_that_fails_whole_is_written_one_report_at_a_time, |db| {
    let (server, op) = server_with_operator(&db).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    let fleet = seed_fleet(&server, 2, 1, 1, "A920");
    let (status, deployment) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "version": "1.0.0", "target": "everyone"}),
    )
    .await;
    assert_eq!(status, 201, "{deployment}");
    let id = deployment["id"].as_i64().unwrap();
    let report = |deployment_id: i64, status: &str| tms_packages::wire::contact::FeedbackRequest {
        deployment_id,
        app_id: APP.into(),
        status: status.into(),
        progress_percent: None,
        error_code: None,
        message: Some("from the batch test".into()),
        download: None,
    };
    let (installed, unknown, orphan) =
        (report(id, "installed"), report(id + 1_000, "installed"), report(id, "failed"));
    // A device that does not exist fails the whole batch (a foreign key):
    // written again one by one, the good report lands and the others fail alone.
    let batch = [(fleet[0].device_id, &installed), (fleet[1].device_id, &unknown), (i64::MAX, &orphan)];
    let pool = db.pool();
    let mut conn = pool.get().unwrap();
    let results = tms_server::contact::feedback::write_reports(&mut conn, &batch).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(results[1].as_ref().unwrap_err().code(), tms_packages::wire::ErrorCode::NotFound);
    assert_eq!(results[2].as_ref().unwrap_err().code(), tms_packages::wire::ErrorCode::Internal);
    let (_, history) = get(&server, &op, &format!("/api/v1/devices/{}/actions", fleet[0].device_id)).await;
    let events = history.as_array().unwrap();
    assert_eq!(events.len(), 1, "{history}");
    assert_eq!(
        (events[0]["status"].as_str(), events[0]["message"].as_str()),
        (Some("installed"), Some("from the batch test"))
    );
    let (_, rollout_free) =
        get(&server, &op, &format!("/api/v1/devices/{}/actions", fleet[1].device_id)).await;
    assert_eq!(rollout_free, json!([]));
    // A whole batch of good reports goes in at once, the latest per device standing.
    let downloading = report(id, "downloading");
    let batch = [(fleet[1].device_id, &downloading), (fleet[1].device_id, &installed)];
    let results = tms_server::contact::feedback::write_reports(&mut conn, &batch).unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let (_, history) = get(&server, &op, &format!("/api/v1/devices/{}/actions", fleet[1].device_id)).await;
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
});

backend_test!(a_rollback_takes_each_model_back_to_its_own_last_release_and_says_who_stays, |db| {
    let (server, op) = server_with_operator(&db).await;
    let trusted = answer_keys(&server).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let v43 = publish_release(&server, &op, &key, APP, "app", "4.3.0", 430, &["A920", "A80"]).await;
    let v44 = publish_release(&server, &op, &key, APP, "app", "4.4.0", 440, &["A920"]).await;
    let v45 = publish_release(&server, &op, &key, APP, "app", "4.5.0", 450, &["A920", "A80", "A35"]).await;
    let sha = v45["artifact_sha256"].as_str().unwrap().to_owned();
    let mut fleet: Vec<SimTerminal> = seed_fleet(&server, 6, 1, 1, "A920,A80,A35")
        .into_iter()
        .map(|t| t.with_app(APP, "4.5.0", 450, &sha))
        .collect();
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "4.5.0",
        json!({"stages": [100], "success_percent": 100, "max_failures": "0"}),
    )
    .await;
    for t in fleet.iter_mut() {
        sync(&server, t, &trusted).await;
    }
    // What the terminals reported reaches the database (the plan writes it first).
    let (status, _) = get(&server, &op, &format!("/api/v1/devices/{}/plan", fleet[0].device_id)).await;
    assert_eq!(status, 200);

    let (status, view) =
        post(&server, &op, &format!("/api/v1/deployments/{id}/rollout/rollback"), json!({})).await;
    assert_eq!(status, 200, "{view}");
    let reason = view["status_reason"].as_str().unwrap();
    assert!(reason.contains("2 terminals (A35)") && reason.contains("stay on 4.5.0"), "{reason}");
    for t in fleet.iter() {
        let body = changes(&contact(&server, t).await).clone();
        let want = match t.state.model.as_str() {
            "A920" => Some(&v44),
            "A80" => Some(&v43),
            _ => None,
        };
        match want {
            Some(release) => {
                let change = body.apps.first().unwrap_or_else(|| panic!("{} got nothing", t.state.model));
                assert_eq!(change.change.as_str(), "rollback");
                assert_eq!(
                    change.release.as_ref().unwrap().release_id,
                    release["id"].as_i64().unwrap(),
                    "{}",
                    t.state.model
                );
            }
            None => assert!(body.apps.is_empty(), "an A35 has no earlier release: {body:?}"),
        }
    }
});

backend_test!(withdrawing_the_release_halts_its_rollout_and_its_terminals_do_not_count_as_failing, |db| {
    let (server, op) = server_with_operator(&db).await;
    let fleet = fleet_on_1_0_0(&server, &op, 4, 1, 1).await;
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "2.0.0",
        json!({"stages": [100], "success_percent": 100, "max_failures": "0"}),
    )
    .await;
    let body = changes(&contact(&server, &fleet[0]).await).clone();
    assert_eq!(body.apps.len(), 1, "{body:?}");
    let (status, _) =
        post(&server, &op, &format!("/api/v1/apps/{APP}/releases/2.0.0/withdraw"), json!({})).await;
    assert_eq!(status, 200);
    // Halted at once, with the reason, not at the supervisor's next pass.
    let (_, view) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(
        (view["status"].as_str(), view["status_reason"].as_str()),
        (Some("halted"), Some("the release was withdrawn")),
        "{view}"
    );
    // The terminal that was offered it reports the withdrawal: not its failure.
    let code =
        fleet[0].feedback(&server.http, &server.base_url, id, APP, "failed", Some("release_withdrawn")).await;
    assert_eq!(code, 204);
    let (_, view) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(view["stage_stats"][0]["failed"], 0, "{view}");
    // Nobody is offered it any more.
    for t in &fleet {
        assert!(changes(&contact(&server, t).await).apps.is_empty());
    }
});

backend_test!(a_terminal_reporting_another_model_than_registered_is_flagged_and_audited_once, |db| {
    let (server, op) = server_with_operator(&db).await;
    let mut fleet = seed_fleet(&server, 2, 1, 1, "A920");
    fleet[0].state.model = "A80".into();
    for _ in 0..2 {
        contact(&server, &fleet[0]).await;
        contact(&server, &fleet[1]).await;
    }
    // The plan writes what the process gathered first.
    get(&server, &op, &format!("/api/v1/devices/{}/plan", fleet[0].device_id)).await;
    let (_, swapped) = get(&server, &op, &format!("/api/v1/devices/{}", fleet[0].device_id)).await;
    assert_eq!(
        (swapped["model"].as_str(), swapped["reported_model"].as_str()),
        (Some("A920"), Some("A80")),
        "{swapped}"
    );
    let (_, honest) = get(&server, &op, &format!("/api/v1/devices/{}", fleet[1].device_id)).await;
    assert!(honest.get("reported_model").is_none(), "{honest}");
    let (status, events) = get(&server, &op, "/api/v1/audit?action=device.model_mismatch").await;
    assert_eq!(status, 200, "{events}");
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], format!("device:{}", fleet[0].device_id));
});

backend_test!(the_failure_report_that_crosses_the_limit_pauses_the_rollout_before_it_is_answered, |db| {
    // The supervisor's pass is far off (15 s by default): the report itself pauses.
    let (server, op) = server_with_operator(&db).await;
    let fleet = fleet_on_1_0_0(&server, &op, 6, 1, 1).await;
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "2.0.0",
        json!({"stages": [100], "success_percent": 100, "max_failures": "1"}),
    )
    .await;
    for t in &fleet {
        assert_eq!(changes(&contact(&server, t).await).apps.len(), 1);
    }
    let report = "install_failed";
    assert_eq!(fleet[0].feedback(&server.http, &server.base_url, id, APP, "failed", Some(report)).await, 204);
    let (_, view) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(view["status"], "running", "one failure is within the limit: {view}");
    assert_eq!(fleet[1].feedback(&server.http, &server.base_url, id, APP, "failed", Some(report)).await, 204);
    let (_, view) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(view["status"], "paused", "{view}");
    assert!(view["status_reason"].as_str().unwrap().contains("2 failures"), "{view}");
    // No offer follows the report that crossed the limit.
    for t in &fleet[2..] {
        assert!(changes(&contact(&server, t).await).apps.is_empty());
    }
});

/// The rollout's rules applied now, as the supervisor's next pass would.
async fn evaluate(server: &TestServer, op: &str, deployment: i64) -> Value {
    let (code, view) =
        post(server, op, &format!("/api/v1/deployments/{deployment}/rollout/evaluate"), json!({})).await;
    assert_eq!(code, 200, "{view}");
    view
}

/// Writes what the contact noted (offers among it) now: the plan endpoint flushes.
async fn flush(server: &TestServer, op: &str, t: &SimTerminal) {
    let (code, plan) = get(server, op, &format!("/api/v1/devices/{}/plan", t.device_id)).await;
    assert_eq!(code, 200, "{plan}");
}

fn offered(outcome: &Outcome) -> bool {
    !changes(outcome).apps.is_empty()
}

backend_test!(a_terminal_silent_after_an_offer_times_out_by_a_deadline_that_allows_for_its_download, |db| {
    // 600 s to install, plus the download at one byte a second: the
    // artifact's size in seconds.
    let (server, op) = server_with_operator_and(
        &db,
        &[
            ("TMS_ADJUSTABLE_CLOCK", "true"),
            ("TMS_ACTION_TIMEOUT_SECS", "600"),
            ("TMS_SLOW_LINK_BYTES_PER_SEC", "1"),
        ],
    )
    .await;
    let fleet = fleet_on_1_0_0(&server, &op, 4, 1, 1).await;
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "2.0.0",
        json!({"stages": [100], "success_percent": 100, "max_failures": "1"}),
    )
    .await;
    let mut size = 0;
    for t in &fleet {
        let body = changes(&contact(&server, t).await).clone();
        size = body.apps[0].release.as_ref().unwrap().size;
    }
    assert!(size > 1_000, "the deadline must be told from the base alone: {size}");
    // One starts and goes quiet, one never says a word, two install.
    assert_eq!(fleet[0].feedback(&server.http, &server.base_url, id, APP, "downloading", None).await, 204);
    for t in &fleet[2..] {
        assert_eq!(t.feedback(&server.http, &server.base_url, id, APP, "installed", None).await, 204);
    }
    flush(&server, &op, &fleet[0]).await;

    // Past the base time but within the download's: still waiting.
    server.advance_clock(&op, 600 + size - 60).await;
    let view = evaluate(&server, &op, id).await;
    assert_eq!(view["status"], "running", "{view}");
    assert_eq!(view["stage_stats"][0]["failed"], 0, "{view}");
    assert_eq!(view["stage_stats"][0]["in_progress"], 1, "{view}");
    assert_eq!(view["stage_stats"][0]["pending"], 1, "offered, not heard of: {view}");

    // Past the deadline: both time out, count as failures and pause the rollout.
    server.advance_clock(&op, 120).await;
    let view = evaluate(&server, &op, id).await;
    assert_eq!(view["status"], "paused", "{view}");
    assert!(view["status_reason"].as_str().unwrap().contains("2 failures"), "{view}");
    let stats = &view["stage_stats"][0];
    assert_eq!((stats["failed"].as_u64(), stats["timed_out"].as_u64()), (Some(2), Some(2)), "{view}");
    assert_eq!(stats["installed"], 2, "{view}");

    // The history's last word is the timeout, not the download left at 40 %.
    let (_, history) = get(&server, &op, &format!("/api/v1/devices/{}/actions", fleet[0].device_id)).await;
    assert_eq!(history[0]["status"], "timed_out", "{history}");
    assert_eq!(history[0]["error_code"], "timed_out", "{history}");
    assert_eq!(history[1]["status"], "downloading", "{history}");
    let (_, history) = get(&server, &op, &format!("/api/v1/devices/{}/actions", fleet[1].device_id)).await;
    assert_eq!(history[0]["status"], "timed_out", "a terminal that never reported: {history}");

    let (code, failures) = get(&server, &op, &format!("/api/v1/deployments/{id}/failures")).await;
    assert_eq!(code, 200, "{failures}");
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), 2, "{failures:?}");
    for f in failures {
        assert_eq!((f["status"].as_str(), f["attempts"].as_u64()), (Some("timed_out"), Some(1)), "{f}");
        assert_eq!(f["failed_for_good"], false, "{f}");
        assert!(f["retry_at"].is_string(), "{f}");
    }
});

backend_test!(a_failed_install_is_offered_again_after_each_delay_and_then_no_more, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_ADJUSTABLE_CLOCK", "true")]).await;
    let fleet = fleet_on_1_0_0(&server, &op, 1, 1, 1).await;
    let t = &fleet[0];
    let creds = tempfile::tempdir().unwrap();
    let creds = creds.path().join("credentials.json");
    let login = ["login", "--email", OPERATOR, "--password-stdin"];
    assert_eq!(run_tms(&server, &creds, &login, Some(OPERATOR_PASSWORD)).0, 0);
    let target = format!("devices:{}", t.device_id);
    let release = format!("{APP}@2.0.0");
    // What it would reach, first: the one terminal, which runs 1.0.0.
    let preview = ["--json", "deploy", "create", "--release", &release, "--to", &target, "--preview"];
    let (code, out, err) = run_tms(&server, &creds, &preview, None);
    assert_eq!(code, 0, "{err}");
    let reach: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((reach["targeted"].as_u64(), reach["receive"].as_u64()), (Some(1), Some(1)), "{reach}");
    let (_, none) = get(&server, &op, "/api/v1/deployments").await;
    assert!(none.as_array().unwrap().iter().all(|d| d["version"] != "2.0.0"), "a preview saves nothing");
    let create =
        ["--json", "deploy", "create", "--release", &release, "--to", &target, "--retry-delays", "0,1h"];
    let (code, out, err) = run_tms(&server, &creds, &create, None);
    assert_eq!(code, 0, "{err}");
    let deployment: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (deployment["retry_delays"].as_str(), deployment["max_postpones"].as_u64()),
        (Some("0,1h"), Some(10))
    );
    let id = deployment["id"].as_i64().unwrap();
    let fail = || async {
        assert_eq!(t.feedback(&server.http, &server.base_url, id, APP, "downloading", None).await, 204);
        assert_eq!(
            t.feedback(&server.http, &server.base_url, id, APP, "failed", Some("install_failed")).await,
            204
        );
    };

    // The first failure is retried at the next contact; the same failure
    // sent twice is one attempt.
    assert!(offered(&contact(&server, t).await));
    fail().await;
    assert_eq!(
        t.feedback(&server.http, &server.base_url, id, APP, "failed", Some("install_failed")).await,
        204
    );
    assert!(offered(&contact(&server, t).await), "retried at once");
    // The second waits an hour.
    fail().await;
    assert!(!offered(&contact(&server, t).await), "held back for an hour");
    let (_, plan) = get(&server, &op, &format!("/api/v1/devices/{}/plan", t.device_id)).await;
    assert!(plan["apps"][0]["retry_at"].is_string(), "{plan}");
    let (_, failures) = get(&server, &op, &format!("/api/v1/deployments/{id}/failures")).await;
    assert_eq!(failures[0]["attempts"], 2, "{failures}");
    server.advance_clock(&op, 3_601).await;
    assert!(offered(&contact(&server, t).await), "offered again after the hour");
    // The third is for good.
    fail().await;
    assert!(!offered(&contact(&server, t).await));
    let (_, failures) = get(&server, &op, &format!("/api/v1/deployments/{id}/failures")).await;
    assert_eq!(failures.as_array().unwrap().len(), 1, "{failures}");
    assert_eq!(
        (failures[0]["attempts"].as_u64(), failures[0]["failed_for_good"].as_bool()),
        (Some(3), Some(true))
    );
    let (code, out, err) = run_tms(&server, &creds, &["rollout", "failures", &id.to_string()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("failed for good") && out.contains("install_failed"), "{out}");
    let (code, out, err) = run_tms(&server, &creds, &["device", "plan", &t.device_id.to_string()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("held back   for good"), "{out}");
    server.advance_clock(&op, 3 * 86_400).await;
    assert!(!offered(&contact(&server, t).await), "never offered again");
});

backend_test!(postponing_is_not_a_failure_until_the_deployments_limit_is_passed, |db| {
    let (server, op) = server_with_operator_and(
        &db,
        &[("TMS_ADJUSTABLE_CLOCK", "true"), ("TMS_ACTION_TIMEOUT_SECS", "600")],
    )
    .await;
    let fleet = fleet_on_1_0_0(&server, &op, 1, 1, 1).await;
    let t = &fleet[0];
    let (status, deployment) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "version": "2.0.0", "target": "everyone", "hold": true, "max_postpones": 2}),
    )
    .await;
    assert_eq!(status, 201, "{deployment}");
    let id = deployment["id"].as_i64().unwrap();
    // No failure allowed: the postponement that becomes one pauses the rollout.
    let rules = json!({"stages": [100], "success_percent": 100, "max_failures": "0"});
    assert_eq!(post(&server, &op, &format!("/api/v1/deployments/{id}/rollout"), rules).await.0, 201);
    assert!(offered(&contact(&server, t).await));
    flush(&server, &op, t).await;
    let postpone = || t.feedback(&server.http, &server.base_url, id, APP, "postponed", None);

    // Two postponements: not failures, and each gives the terminal its time again.
    assert_eq!(postpone().await, 204);
    server.advance_clock(&op, 500).await;
    assert_eq!(postpone().await, 204);
    server.advance_clock(&op, 500).await;
    let view = evaluate(&server, &op, id).await;
    assert_eq!(view["status"], "running", "postponing is no failure: {view}");
    let stats = &view["stage_stats"][0];
    assert_eq!((stats["failed"].as_u64(), stats["postponed"].as_u64()), (Some(0), Some(1)), "{view}");

    // The third is one too many: a failed attempt, and it says why.
    assert_eq!(postpone().await, 204);
    let (_, failures) = get(&server, &op, &format!("/api/v1/deployments/{id}/failures")).await;
    assert_eq!(failures.as_array().unwrap().len(), 1, "{failures}");
    assert_eq!(failures[0]["error_code"], "postponed_too_often", "{failures}");
    assert_eq!(failures[0]["attempts"], 1, "{failures}");
    let (_, history) = get(&server, &op, &format!("/api/v1/devices/{}/actions", t.device_id)).await;
    assert_eq!(
        (history[0]["status"].as_str(), history[1]["status"].as_str()),
        (Some("failed"), Some("postponed"))
    );
    // The report that made it a failure paused the rollout before it was answered.
    let (_, view) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(view["status"], "paused", "{view}");
    assert_eq!(view["stage_stats"][0]["failed"], 1, "{view}");
});

backend_test!(a_share_limit_pauses_the_rollout_on_the_report_that_crosses_it, |db| {
    // The supervisor's pass is far off (15 s by default): the report itself pauses.
    let (server, op) = server_with_operator(&db).await;
    let fleet = fleet_on_1_0_0(&server, &op, 20, 1, 1).await;
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "2.0.0",
        json!({"stages": [100], "success_percent": 100, "max_failures": "10%"}),
    )
    .await;
    for t in &fleet[..3] {
        assert!(offered(&contact(&server, t).await));
    }
    // 10 % of 20 terminals tolerates two failures; reports within the
    // same second, which a once-a-second full count would let through.
    for (i, t) in fleet[..3].iter().enumerate() {
        assert_eq!(
            t.feedback(&server.http, &server.base_url, id, APP, "failed", Some("install_failed")).await,
            204
        );
        let (_, view) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
        let expected = if i < 2 { "running" } else { "paused" };
        assert_eq!(view["status"], expected, "after {} failures: {view}", i + 1);
    }
    for t in &fleet[3..] {
        assert!(!offered(&contact(&server, t).await), "no offer follows the report that crossed the limit");
    }
});
