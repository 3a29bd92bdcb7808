//! The operator console in a real Chromium: the fleet overview, the
//! terminal search, a terminal's plan explained for support, a paused
//! rollout over time and resumed after a confirmation that says what it
//! will do, operator users and the audit log, apps with their keys and a
//! release withdrawn. Every page visited is saved as a PNG at desktop and
//! phone widths.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tms_e2e::backend_test;
use tms_e2e::browser::Browser;
use tms_e2e::fixtures::*;
use tms_e2e::terminal::{Outcome, SimTerminal};
use tms_e2e::{Backend, TestServer};
use tms_signing::PublicKey;

const APP: &str = "eu.ccv.payment";

fn test_name(base: &str, db: &tms_e2e::TestDatabase) -> String {
    let backend = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    format!("{base}-{backend}")
}

/// Signs in through the login form and waits for the page after it.
async fn sign_in(browser: &mut Browser, server: &TestServer, email: &str, password: &str) {
    browser.goto(&server.url("/login")).await;
    browser.fill("#email", email).await;
    browser.fill("#password", password).await;
    browser.click("form[action='/login'] button[type=submit]").await;
    for _ in 0..200 {
        if !browser.url().await.ends_with("/login") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not signed in: {}", browser.body_text().await);
}

async fn sign_out(browser: &mut Browser) {
    browser.click("form[action='/logout'] button[type=submit]").await;
    for _ in 0..200 {
        if browser.url().await.ends_with("/login") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not signed out");
}

async fn sync(server: &TestServer, t: &mut SimTerminal, trusted: &[PublicKey]) {
    for _ in 0..4 {
        match t.contact(&server.http, &server.base_url).await {
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
    panic!("not in sync after four contacts");
}

/// Applies the rollout's rules until it is `status` (reports are written
/// in batches, so one may land just after an evaluation).
async fn wait_for_rollout(server: &TestServer, op: &str, deployment: i64, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, view) =
            post(server, op, &format!("/api/v1/deployments/{deployment}/rollout/evaluate"), json!({})).await;
        assert_eq!(code, 200, "{view}");
        if view["status"] == status {
            return view;
        }
        assert!(Instant::now() < deadline, "the rollout never became {status}: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

backend_test!(console_shows_the_fleet_explains_a_terminal_and_resumes_a_paused_rollout, |db| {
    let (server, op) = server_with_operator_and(
        &db,
        &[
            ("TMS_CONTACT_FLUSH_MS", "100"),
            ("TMS_CONSOLE_SUMMARY_SECS", "1"),
            ("TMS_ADJUSTABLE_CLOCK", "true"),
            // The supervisor's passes (and its counts of paused rollouts) run during the test.
            ("TMS_ROLLOUT_CHECK_SECS", "1"),
        ],
    )
    .await;
    let email = "gerant@epicerie.example";
    let serials = ["6100000001", "6100000002", "6100000003", "6100000004", "6100000005", "6100000006"];
    let (merchant_id, location, _) = merchant(&server, &op, "Épicerie Fine", email, &serials).await;
    let trusted = answer_keys(&server).await;
    let mut fleet = Vec::new();
    for serial in serials {
        fleet.push(activated_terminal(&server, email, (merchant_id, location), serial, "A920").await);
    }
    let key = app_with_key(&server, &op, APP, "app").await;
    publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    publish_release(&server, &op, &key, APP, "app", "1.1.0", 110, &["A920"]).await;
    deploy_to_everyone(&server, &op, APP, "1.0.0").await;
    for t in fleet.iter_mut() {
        sync(&server, t, &trusted).await;
    }
    // 1.1.0 in two stages; one failure pauses it.
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "1.1.0",
        json!({"stages": [50, 100], "success_percent": 100, "max_failures": "0"}),
    )
    .await;
    let (mut failed, mut waiting) = (None, None);
    for t in fleet.iter_mut() {
        let Outcome::Answer(answer, body) = t.contact(&server.http, &server.base_url).await else {
            panic!("contact refused")
        };
        t.accept(&answer, &trusted).expect("a valid answer");
        let offered = body.apps.iter().any(|a| a.release.as_ref().is_some_and(|r| r.version == "1.1.0"));
        if offered && failed.is_none() {
            let code = t
                .feedback(&server.http, &server.base_url, id, APP, "failed", Some("insufficient_storage"))
                .await;
            assert_eq!(code, 204);
            failed = Some(t.device_id);
        } else if !offered && waiting.is_none() {
            waiting = Some(t.device_id);
        }
    }
    let waiting = waiting.expect("a terminal outside the first stage");
    failed.expect("a terminal in the first stage");
    let paused = wait_for_rollout(&server, &op, id, "paused").await;
    // Counted again two minutes later (a paused rollout is counted when
    // asked, and by the supervisor once a minute): the stages over time.
    server.advance_clock(&op, 120).await;
    let (code, again) =
        post(&server, &op, &format!("/api/v1/deployments/{id}/rollout/evaluate"), json!({})).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["stage_stats"], paused["stage_stats"], "{again}");
    let (code, history) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout/history")).await;
    assert_eq!(code, 200, "{history}");
    let counts = history["counts"].as_array().expect("counts");
    assert!(counts.len() >= 2, "{history}");
    assert_eq!(history["step_minutes"], 1, "{history}");
    assert_eq!(counts.last().unwrap()["stages"], paused["stage_stats"], "{history}");
    let (code, _) = get(&server, &op, "/api/v1/deployments/999999/rollout/history").await;
    assert_eq!(code, 404);

    let Some(mut browser) = Browser::start(&test_name("console", &db), "en-GB,en").await else { return };
    // The operator lands on the console's overview.
    sign_in(&mut browser, &server, OPERATOR, OPERATOR_PASSWORD).await;
    assert!(browser.url().await.ends_with("/console/"), "{}", browser.url().await);
    browser.expect_heading("Fleet overview").await;
    // The counts are taken every second here; the page shows the latest.
    for _ in 0..100 {
        if browser.text("#fleet-totals").await.contains("6 active terminals") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        browser.goto(&server.url("/console/")).await;
    }
    assert!(browser.text("#fleet-totals").await.contains("6 active terminals"));
    let models = browser.text("#chart-models table").await;
    assert!(models.contains("A920") && models.contains("6"), "{models}");
    let versions = browser.text("#chart-app-0 table").await;
    assert!(versions.contains("1.0.0"), "{versions}");
    assert!(browser.text("#rollouts").await.contains("Paused"));
    assert!(browser.exists("#chart-models svg rect").await);
    assert!(browser.exists("#chart-contacts svg polyline").await);
    browser.snap("overview").await;

    // Support on the phone: the serial as the merchant reads it off the terminal.
    browser.click("a[href='/console/terminals']").await;
    browser.expect_heading("Terminals").await;
    browser.fill("#f-serial", "61000000").await;
    browser.click("form[role=search] button[type=submit]").await;
    for _ in 0..200 {
        if browser.url().await.contains("serial=61000000") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = browser.script("return document.querySelectorAll('#found tbody tr').length").await;
    assert_eq!(rows, 6, "{}", browser.body_text().await);
    browser.snap("search").await;
    // All six were in contact minutes ago: online, none silent for a day.
    browser.goto(&server.url("/console/terminals?contact=online")).await;
    let rows = browser.script("return document.querySelectorAll('#found tbody tr').length").await;
    assert_eq!(rows, 6, "{}", browser.body_text().await);
    browser.goto(&server.url("/console/terminals?contact=silent_24h")).await;
    browser.expect_text("No terminal matches this search.").await;
    browser.goto(&server.url("/console/terminals?serial=61000000")).await;
    browser.fill("#f-serial", "99").await;
    browser.click("form[role=search] button[type=submit]").await;
    browser.expect_text("No terminal matches this search.").await;

    // Why a terminal has not got 1.1.0: the rollout is paused.
    browser.goto(&server.url(&format!("/console/terminals/{waiting}"))).await;
    browser.expect_text("What it will get next, and why").await;
    let plan = browser.text("#plan").await;
    assert!(plan.contains(&format!("Deployment #{id} ({APP} 1.1.0) is paused")), "{plan}");
    assert!(browser.text("#history").await.contains("Installed"));
    browser.snap("terminal-rollout-paused").await;

    // The rollout: paused by the failure, which the page names.
    browser.goto(&server.url(&format!("/console/deployments/{id}"))).await;
    assert_eq!(browser.text("#rollout-status").await, "Paused");
    assert_eq!(
        browser.text("#rollout-reason").await,
        "Paused by itself: 1 failed, more than the limit of 0."
    );
    assert!(browser.text("#failures").await.contains("insufficient_storage"));
    assert!(browser.exists("#stage-1 svg rect.failed").await);
    // The stage over time: a band of failures, the counts in a table too.
    assert!(browser.exists("#stage-1 svg.stacked-area polygon.failed").await);
    assert!(browser.text("#counted-at").await.starts_with("Counted at"));
    let rows =
        browser.script("return document.querySelectorAll('#stage-1 .counts-table tbody tr').length").await;
    // (The supervisor may have counted once more since.)
    assert!(rows.as_u64().is_some_and(|n| n >= counts.len() as u64), "{rows}");
    browser.snap("rollout-paused").await;
    browser.click("#rollout-commands a[href$='/rollout/resume']").await;
    browser.expect_heading("Resume").await;
    let stage_devices = paused["stage_stats"][0]["devices"].as_u64().unwrap();
    let installed = paused["stage_stats"][0]["installed"].as_u64().unwrap();
    let effect = browser.text("#effect").await;
    assert!(
        effect.contains(&format!("offered again to the {} terminals", stage_devices - installed)),
        "{effect}"
    );
    browser.snap("confirm-resume").await;
    browser
        .click(&format!("form[action='/console/deployments/{id}/rollout/resume'] button[type=submit]"))
        .await;
    browser.expect_text("The rollout is running again.").await;
    let (_, now) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(now["status"], "running", "{now}");
    browser.snap("rollout-resumed").await;

    // Running again, the rollout has reached the first stage only: a
    // terminal outside it is told apart, which support can tell the merchant.
    let mut outside = None;
    for t in &fleet {
        let (status, plan) = get(&server, &op, &format!("/api/v1/devices/{}/plan", t.device_id)).await;
        assert_eq!(status, 200, "{plan}");
        if plan["apps"][0]["considered"].as_array().is_some_and(|c| {
            c.iter().any(|d| d["deployment_id"] == id && d["detail"]["reason"] == "not_in_stage")
        }) {
            outside = Some(t.device_id);
        }
    }
    let waiting = outside.expect("a terminal outside the first stage");
    browser.goto(&server.url(&format!("/console/terminals/{waiting}"))).await;
    browser.expect_text("What it will get next, and why").await;
    let plan = browser.text("#plan").await;
    assert!(plan.contains("Not in the rollout's stages yet"), "{plan}");
    assert!(plan.contains("Decides"), "{plan}");
    browser.snap("terminal").await;

    // In French.
    browser.click("form.lang button[value=fr]").await;
    browser.expect_text("Ce qu’il recevra ensuite, et pourquoi").await;
    browser.goto(&server.url("/console/")).await;
    browser.expect_heading("Vue d’ensemble du parc").await;
    assert!(browser.text("#fleet-totals").await.contains("6 terminaux actifs"));
    browser.snap("overview-fr").await;
    browser.goto(&server.url(&format!("/console/terminals/{waiting}"))).await;
    assert!(browser.text("#plan").await.contains("Pas encore dans les étapes du déploiement"));
    browser.snap("terminal-fr").await;
    browser.goto(&server.url(&format!("/console/deployments/{id}"))).await;
    // Resumed since: no reason left to give.
    assert!(!browser.exists("#rollout-reason").await);
    browser.snap("rollout-fr").await;
    browser.goto(&server.url("/console/terminals?model=A920")).await;
    browser.snap("search-fr").await;
    browser.click("form.lang button[value=en]").await;
    browser.expect_heading("Terminals").await;

    // Support sees the rollout but may not steer it.
    sign_out(&mut browser).await;
    server.create_operator("support@psp.example", "support", OPERATOR_PASSWORD);
    sign_in(&mut browser, &server, "support@psp.example", OPERATOR_PASSWORD).await;
    browser.goto(&server.url(&format!("/console/deployments/{id}"))).await;
    browser.expect_text("Running").await;
    assert!(!browser.exists("#rollout-commands").await);
    browser.goto(&server.url(&format!("/console/deployments/{id}/rollout/pause"))).await;
    browser.expect_text("The rollout has moved on since that page was shown").await;
    let logs = server.logs();
    assert!(!logs.iter().any(|l| l.contains("could not evaluate rollouts")), "{logs:?}");
    browser.snap("support-rollout").await;

    // A merchant's user is sent to the portal's side of the house.
    sign_out(&mut browser).await;
    sign_in(&mut browser, &server, email, MERCHANT_PASSWORD).await;
    browser.goto(&server.url("/console/")).await;
    browser.expect_text("This console is for the operator's staff").await;
    browser.snap("merchant-refused").await;
});

backend_test!(console_operator_users_keep_an_admin_and_the_audit_log_tells_who_did_what, |db| {
    let (server, _op) = server_with_operator(&db).await;
    server.create_operator("release@psp.example", "release_engineer", OPERATOR_PASSWORD);
    let Some(mut browser) = Browser::start(&test_name("console-operators", &db), "en-GB,en").await else {
        return;
    };
    sign_in(&mut browser, &server, OPERATOR, OPERATOR_PASSWORD).await;
    browser.click("a[href='/console/operators']").await;
    browser.expect_heading("Operator users").await;
    // A colleague invited from the page.
    browser.fill("#invite-email", "support@psp.example").await;
    browser.select("#invite-role", "support").await;
    browser.click("#invite button[type=submit]").await;
    browser.expect_text("The invitation is sent.").await;
    assert!(browser.text("#operators").await.contains("support@psp.example"));
    browser.snap("operators").await;
    // The only operator admin cannot disable themselves, nor become support.
    let me = browser
        .script("return document.querySelector('#operators tr .tag').closest('tr').id")
        .await
        .as_str()
        .expect("my row")
        .to_owned();
    browser.click(&format!("#{me} button[value=disable]")).await;
    browser.expect_text("This would leave no active operator admin").await;
    browser.snap("last-admin-refused").await;
    browser.select(&format!("#{me} select"), "support").await;
    browser.click(&format!("#{me} .role-form button[type=submit]")).await;
    browser.expect_text("This would leave no active operator admin").await;
    // The release engineer is made support, then back.
    let release_row = browser
        .script(
            "return [...document.querySelectorAll('#operators tbody tr')]\
             .find(r => r.innerText.includes('release@psp.example')).id",
        )
        .await
        .as_str()
        .expect("the release engineer's row")
        .to_owned();
    browser.select(&format!("#{release_row} select"), "support").await;
    browser.click(&format!("#{release_row} .role-form button[type=submit]")).await;
    browser.expect_text("The operator is changed.").await;
    // The page already says it: the first change's message goes first, so
    // the wait below is for the second answer, not the first one's text.
    browser.script("document.querySelectorAll('.flash').forEach(e => e.remove()); return null").await;
    browser.select(&format!("#{release_row} select"), "release_engineer").await;
    browser.click(&format!("#{release_row} .role-form button[type=submit]")).await;
    browser.expect_text("The operator is changed.").await;

    // The audit log names who did it, filtered by action.
    browser.goto(&server.url("/console/audit?what=operator.role_change")).await;
    browser.expect_heading("Audit log").await;
    let rows = browser.script("return document.querySelectorAll('#audit tbody tr').length").await;
    assert_eq!(rows, 2, "{}", browser.body_text().await);
    let audit = browser.text("#audit").await;
    assert!(audit.contains(OPERATOR) && audit.contains("Changed an operator's role"), "{audit}");
    browser.snap("audit").await;
    browser.goto(&server.url("/console/audit?what=operator.role_change&until=2020-01-31")).await;
    browser.expect_text("No event matches these filters.").await;
    browser.goto(&server.url("/console/audit?what=operator.role_change&until=someday")).await;
    browser.expect_text("The day is not a date (YYYY-MM-DD); it was left out.").await;
    assert_eq!(browser.script("return document.querySelectorAll('#audit tbody tr').length").await, 2);
    browser.goto(&server.url("/console/audit?who=nobody@psp.example")).await;
    browser.expect_text("No account has this e-mail address.").await;
    browser.goto(&server.url("/console/audit?what=operator.role_change")).await;
    browser.click("form.lang button[value=fr]").await;
    browser.expect_heading("Journal d’audit").await;
    browser.expect_text("Rôle d'un opérateur modifié").await;
    browser.snap("audit-fr").await;
    browser.goto(&server.url("/console/operators")).await;
    browser.expect_heading("Utilisateurs opérateur").await;
    browser.snap("operators-fr").await;
    browser.click("form.lang button[value=en]").await;
    browser.expect_heading("Operator users").await;

    // A release engineer sees neither the operator users nor the audit log.
    sign_out(&mut browser).await;
    sign_in(&mut browser, &server, "release@psp.example", OPERATOR_PASSWORD).await;
    browser.expect_heading("Fleet overview").await;
    assert!(!browser.exists("a[href='/console/operators']").await);
    assert!(!browser.exists("a[href='/console/audit']").await);
    browser.goto(&server.url("/console/operators")).await;
    browser.expect_text("You do not have the permission this needs").await;
    browser.snap("release-engineer-refused").await;
});

backend_test!(console_apps_show_releases_and_keys_and_withdraw_after_a_confirmation, |db| {
    let (server, op) = server_with_operator(&db).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    publish_release(&server, &op, &key, APP, "app", "1.1.0", 110, &["A920", "A80"]).await;
    let (id, _) = rollout_to_everyone(
        &server,
        &op,
        APP,
        "1.1.0",
        json!({"stages": [10, 100], "success_percent": 95, "max_failures": "1%"}),
    )
    .await;
    server.create_operator("release@psp.example", "release_engineer", OPERATOR_PASSWORD);
    server.create_operator("support@psp.example", "support", OPERATOR_PASSWORD);
    let Some(mut browser) = Browser::start(&test_name("console-apps", &db), "en-GB,en").await else { return };

    // A release engineer finds the app and its releases, newest first.
    sign_in(&mut browser, &server, "release@psp.example", OPERATOR_PASSWORD).await;
    browser.click("a[href='/console/apps']").await;
    browser.expect_heading("Apps").await;
    assert!(browser.text("#apps").await.contains(APP));
    browser.snap("apps").await;
    browser.click(&format!("#apps a[href='/console/apps/{APP}']")).await;
    browser.expect_text("Publisher keys").await;
    let releases = browser.text("#releases").await;
    assert!(releases.find("1.1.0").unwrap() < releases.find("1.0.0").unwrap(), "{releases}");
    assert!(releases.contains("A920, A80"), "{releases}");
    assert!(browser.text("#keys").await.contains(&key.public_key().key_id()));
    browser.snap("app").await;

    // A key that is not one is refused with what to paste, the name kept.
    browser.fill("#key-name", "release laptop").await;
    browser.fill("#key-public", "not a key").await;
    browser.click("#add-key button[type=submit]").await;
    browser.expect_text("This public key cannot be read").await;
    assert_eq!(browser.script("return document.querySelector('#key-name').value").await, "release laptop");
    browser.snap("key-refused").await;
    let laptop = tms_signing::PrivateKey::generate().public_key();
    browser.fill("#key-public", &laptop.to_hex()).await;
    browser.click("#add-key button[type=submit]").await;
    browser.expect_text("The publisher key is added.").await;
    let laptop_id = laptop.key_id();
    assert!(browser.text(&format!("#key-{laptop_id}")).await.contains("Active"));
    // Revoked after a confirmation naming it.
    browser.click(&format!("#key-{laptop_id} a.button")).await;
    browser.expect_heading("Revoke a publisher key").await;
    assert!(browser.text("#effect").await.contains("“release laptop”"));
    browser.snap("confirm-revoke").await;
    browser.click("form.actions button[type=submit]").await;
    browser.expect_text("The publisher key is revoked").await;
    assert!(browser.text(&format!("#key-{laptop_id}")).await.contains("Revoked"));

    // Withdrawing 1.1.0: the confirmation says what stops.
    browser.click("#release-1\\.1\\.0 a.button").await;
    browser.expect_heading("Withdraw a release").await;
    let effect = browser.text("#effect").await;
    assert!(effect.contains(&format!("{APP} 1.1.0 will never be offered")), "{effect}");
    assert!(
        effect.contains("1 deployments deliver it now") && effect.contains("1 of their rollouts"),
        "{effect}"
    );
    browser.snap("confirm-withdraw").await;
    browser.click("form.actions button[type=submit]").await;
    browser.expect_text("The release is withdrawn").await;
    assert!(browser.text("#release-1\\.1\\.0").await.contains("Withdrawn"));
    assert!(!browser.exists("#release-1\\.1\\.0 a.button").await);
    browser.snap("withdrawn").await;
    let (_, now) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(now["status"], "halted", "{now}");
    let (_, release) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/1.1.0")).await;
    assert!(release["withdrawn_at"].is_string(), "{release}");
    // A confirmation opened again after the fact changes nothing.
    browser.goto(&server.url(&format!("/console/apps/{APP}/releases/1.1.0/withdraw"))).await;
    browser.expect_text("This release was already withdrawn.").await;

    // In French.
    browser.click("form.lang button[value=fr]").await;
    browser.expect_text("Clés d’éditeur").await;
    assert!(browser.text("#release-1\\.1\\.0").await.contains("Retirée"));
    browser.snap("app-fr").await;
    browser.goto(&server.url(&format!("/console/apps/{APP}/releases/1.0.0/withdraw"))).await;
    browser.expect_heading("Retirer une version").await;
    browser.snap("confirm-withdraw-fr").await;
    browser.click("form.lang button[value=en]").await;
    browser.expect_heading("Withdraw a release").await;

    // Support reads the app but changes nothing.
    sign_out(&mut browser).await;
    sign_in(&mut browser, &server, "support@psp.example", OPERATOR_PASSWORD).await;
    browser.goto(&server.url(&format!("/console/apps/{APP}"))).await;
    browser.expect_text("Publisher keys").await;
    assert!(!browser.exists("#add-key").await);
    assert!(!browser.exists("#releases a.button").await);
    browser.snap("app-support").await;
    browser.goto(&server.url(&format!("/console/apps/{APP}/releases/1.0.0/withdraw"))).await;
    browser.expect_text("You do not have the permission this needs.").await;
    let (_, release) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/1.0.0")).await;
    assert!(release["withdrawn_at"].is_null(), "{release}");
});

backend_test!(console_deployment_to_a_device_group_previews_what_the_rollout_then_reaches, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_CONTACT_FLUSH_MS", "100")]).await;
    server.create_operator("release@psp.example", "release_engineer", OPERATOR_PASSWORD);
    let email = "gerant@boulangerie.example";
    // Twelve A920 and two A35 in the pilot group, two A920 outside it.
    let serials: Vec<String> = (1..=16).map(|i| format!("62000000{i:02}")).collect();
    let refs: Vec<&str> = serials.iter().map(String::as_str).collect();
    let (merchant_id, location, _) = merchant(&server, &op, "Boulangerie Pilote", email, &refs).await;
    let trusted = answer_keys(&server).await;
    let mut fleet = Vec::new();
    for (i, serial) in refs.iter().enumerate() {
        let model = if (12..14).contains(&i) { "A35" } else { "A920" };
        fleet.push(activated_terminal(&server, email, (merchant_id, location), serial, model).await);
    }
    let pilot: Vec<i64> = fleet[..14].iter().map(|t| t.device_id).collect();
    let key = app_with_key(&server, &op, APP, "app").await;
    publish_release(&server, &op, &key, APP, "app", "2.0.0", 200, &["A920"]).await;

    // The same preview through the API: what the page will say.
    let (code, preview) = post(
        &server,
        &op,
        "/api/v1/deployments/preview",
        json!({"app_id": APP, "version": "2.0.0", "target": format!("devices:{}", pilot.iter().map(i64::to_string).collect::<Vec<_>>().join(","))}),
    )
    .await;
    assert_eq!(code, 200, "{preview}");
    assert_eq!(preview["targeted"], 14, "{preview}");
    assert_eq!(preview["receive"], 12, "{preview}");
    assert_eq!(preview["incompatible"], json!([{"model": "A35", "reason": "model", "terminals": 2}]));
    let (code, refused) = post(
        &server,
        &op,
        "/api/v1/deployments/preview",
        json!({"app_id": APP, "version": "9.9.9", "target": "everyone"}),
    )
    .await;
    assert_eq!(code, 404, "{refused}");
    let (code, refused) = post(
        &server,
        &op,
        "/api/v1/deployments/preview",
        json!({"app_id": APP, "version": "2.0.0", "target": "group:77"}),
    )
    .await;
    assert_eq!(
        (code.as_u16(), refused["error"]["code"].as_str()),
        (400, Some("invalid_target")),
        "{refused}"
    );

    let Some(mut browser) = Browser::start(&test_name("console-new-deployment", &db), "en-GB,en").await
    else {
        return;
    };
    sign_in(&mut browser, &server, "release@psp.example", OPERATOR_PASSWORD).await;
    // The pilot group, listed by hand; a dynamic group of the A35s.
    browser.goto(&server.url("/console/groups")).await;
    browser.expect_heading("Device groups").await;
    browser.fill("#group-name", "Pilot shops").await;
    browser.click("#kind-static").await;
    browser.fill("#group-devices", &pilot.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")).await;
    browser.click("#new-group button[type=submit]").await;
    browser.expect_text("The group is created.").await;
    assert!(
        browser.text("#group-size").await.contains("14 active terminals"),
        "{}",
        browser.body_text().await
    );
    browser.snap("group").await;
    let group_url = browser.url().await;
    let group_id: i64 = group_url.rsplit('/').next().unwrap().parse().expect("a group id");
    browser.goto(&server.url("/console/groups")).await;
    browser.fill("#group-name", "Every A35").await;
    browser.fill("#group-filter", "model=A35 and firmware>").await;
    browser.click("#new-group button[type=submit]").await;
    browser.expect_text("This filter cannot be read").await;
    browser.fill("#group-filter", "model=A35").await;
    browser.click("#new-group button[type=submit]").await;
    browser.expect_text("The group is created.").await;
    assert!(
        browser.text("#group-size").await.contains("2 active terminals"),
        "{}",
        browser.body_text().await
    );
    browser.goto(&server.url("/console/groups")).await;
    assert!(browser.text("#groups").await.contains("14 terminals listed"));
    browser.snap("groups").await;

    // From the pilot group's page to a new deployment, staged 10 % first.
    browser.goto(&group_url).await;
    browser.click("a[href^='/console/deployments/new']").await;
    browser.expect_heading("New deployment").await;
    browser.select("#release", &format!("{APP}@2.0.0")).await;
    assert!(
        browser.script("return document.querySelector('#target-group').checked").await.as_bool().unwrap()
    );
    browser.fill("#stages", "10, 100").await;
    browser.fill("#success_percent", "100").await;
    browser.fill("#max_failures", "0").await;
    assert!(!browser.exists("#create").await);
    browser.click("button[value=preview]").await;
    browser.expect_text("What it reaches").await;
    let headline = browser.text("#preview-headline").await;
    assert_eq!(headline, "Its target holds 14 terminals: 12 will receive it, 2 are incompatible.");
    let details = browser.text("#preview-details").await;
    assert!(details.contains("2 are incompatible: the release does not run on A35."), "{details}");
    assert!(browser.text("#preview-stage").await.contains("The first stage (10 %) takes about 1 of"));
    browser.snap("preview").await;
    // Changed after its preview: previewed again, not saved.
    browser.fill("#stages", "10, 50, 100").await;
    browser.click("#create").await;
    browser.expect_text("The form changed since its preview").await;
    let (_, none) = get(&server, &op, "/api/v1/deployments").await;
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{none}");
    browser.fill("#stages", "10, 100").await;
    browser.click("button[value=preview]").await;
    // The new page has the preview without the note that the form changed.
    for _ in 0..200 {
        if !browser.exists("#refusal").await && browser.exists("#preview").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.click("#create").await;
    browser.expect_text("The deployment is saved.").await;
    let id: i64 = browser
        .url()
        .await
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .and_then(|s| s.parse().ok())
        .expect("the deployment's page");
    assert_eq!(browser.text("#rollout-status").await, "Running");
    browser.snap("deployment-created").await;
    let (_, created) = get(&server, &op, &format!("/api/v1/deployments/{id}")).await;
    assert_eq!(created["target"], format!("group:{group_id}"), "{created}");
    assert_eq!(created["rollout"]["stages"], json!([10.0, 100.0]), "{created}");

    // The terminals call: the first stage's terminals are offered it, and
    // the rollout counts exactly those.
    let offered_in = |body: &tms_packages::wire::contact::ContactBody| {
        body.apps.iter().any(|a| a.release.as_ref().is_some_and(|r| r.version == "2.0.0"))
    };
    let mut first_stage = 0u64;
    for t in fleet.iter_mut() {
        let Outcome::Answer(answer, body) = t.contact(&server.http, &server.base_url).await else {
            panic!("contact refused")
        };
        t.accept(&answer, &trusted).expect("a valid answer");
        if offered_in(&body) {
            first_stage += 1;
            t.apply(&server.http, &server.base_url, &body).await;
        }
    }
    let (_, status) = get(&server, &op, &format!("/api/v1/deployments/{id}/rollout")).await;
    assert_eq!(status["stage_stats"][0]["devices"], first_stage, "{status}");
    wait_for_rollout(&server, &op, id, "waiting_approval").await;
    // Every stage open: exactly the twelve the preview announced.
    let (code, approved) =
        post(&server, &op, &format!("/api/v1/deployments/{id}/rollout/approve"), json!({})).await;
    assert_eq!(code, 200, "{approved}");
    let mut receiving = Vec::new();
    for t in fleet.iter_mut() {
        let Outcome::Answer(answer, body) = t.contact(&server.http, &server.base_url).await else {
            panic!("contact refused")
        };
        t.accept(&answer, &trusted).expect("a valid answer");
        if offered_in(&body) {
            receiving.push(t.device_id);
        }
    }
    assert_eq!(receiving.len() as u64 + first_stage, preview["receive"].as_u64().unwrap(), "{receiving:?}");
    assert!(receiving.iter().all(|d| pilot[..12].contains(d)), "{receiving:?}");

    // In French, at the same place.
    browser.click("form.lang button[value=fr]").await;
    browser.expect_text("Se déconnecter").await;
    browser.goto(&server.url(&format!("/console/deployments/new?group={group_id}"))).await;
    browser.expect_heading("Nouveau déploiement").await;
    browser.select("#release", &format!("{APP}@2.0.0")).await;
    browser.fill("#stages", "10, 200").await;
    browser.click("button[value=preview]").await;
    browser.expect_text("Les paliers sont des pourcentages croissants").await;
    browser.fill("#stages", "").await;
    browser.click("button[value=preview]").await;
    browser.expect_text("Ce qu’il atteint").await;
    // The first stage's terminals run it now.
    assert_eq!(
        browser.text("#preview-headline").await,
        format!("Sa cible compte 14 terminaux : {} la recevront, 2 sont incompatibles.", 12 - first_stage)
    );
    browser.snap("preview-fr").await;
    browser.goto(&server.url("/console/groups")).await;
    browser.snap("groups-fr").await;

    // Support reads the groups but creates no deployment.
    sign_out(&mut browser).await;
    server.create_operator("support@psp.example", "support", OPERATOR_PASSWORD);
    sign_in(&mut browser, &server, "support@psp.example", OPERATOR_PASSWORD).await;
    browser.goto(&server.url("/console/deployments")).await;
    assert!(!browser.exists("#new-deployment-link").await);
    browser.goto(&server.url("/console/deployments/new")).await;
    browser.expect_text("créent les déploiements").await;
});

backend_test!(console_support_changes_a_location_parameter_after_seeing_the_diff_and_the_count, |db| {
    let (server, op) = server_with_operator(&db).await;
    server.create_operator("support@psp.example", "support", OPERATOR_PASSWORD);
    let email = "gerant@fromagerie.example";
    let serials = ["6300000001", "6300000002", "6300000003"];
    let (merchant_id, location, _) = merchant(&server, &op, "Fromagerie", email, &serials).await;
    let mut devices = Vec::new();
    for serial in serials {
        devices.push(
            activated_terminal(&server, email, (merchant_id, location), serial, "A920").await.device_id,
        );
    }
    app_with_key(&server, &op, APP, "app").await;
    let every = json!(["global", "merchant", "location", "device"]);
    let schema = json!({"keys": {
        "tip_percent": {"type": "integer", "min": 0, "max": 30, "default": 5, "levels": every, "description": "Tip suggested on the receipt"},
        "currency": {"type": "enum", "values": ["EUR", "CHF"], "default": "EUR", "levels": every},
        "contactless": {"type": "boolean", "default": true, "levels": every},
        "admin_pin": {"type": "secret", "max_len": 8, "min_len": 4, "digits": true, "levels": every},
        "header": {"type": "string", "max_len": 40, "levels": every}
    }});
    let (code, body) = server
        .call(reqwest::Method::PUT, &format!("/api/v1/apps/{APP}/parameter-schema"), Some(&op), Some(schema))
        .await;
    assert_eq!(code, 200, "{body}");
    // Every terminal: a 10 % tip, and the currency locked.
    let (code, body) = post(
        &server,
        &op,
        &format!("/api/v1/parameters/{APP}/global/0"),
        json!({"set": {"tip_percent": 10, "currency": "EUR"}, "lock": ["currency"], "reason": "launch"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // The preview through the API: nothing saved.
    let (code, preview) = post(
        &server,
        &op,
        &format!("/api/v1/parameters/{APP}/location/{location}/preview"),
        json!({"set": {"tip_percent": 15}}),
    )
    .await;
    assert_eq!(code, 200, "{preview}");
    assert_eq!(preview["terminals"], 3, "{preview}");
    assert_eq!(
        preview["changes"],
        json!([{"key": "tip_percent", "before": 10, "before_origin": "global", "after": 15, "after_origin": "location"}])
    );
    let (code, refused) = post(
        &server,
        &op,
        &format!("/api/v1/parameters/{APP}/location/{location}/preview"),
        json!({"set": {"currency": "CHF"}}),
    )
    .await;
    assert_eq!(
        (code.as_u16(), refused["error"]["code"].as_str()),
        (409, Some("parameter_locked")),
        "{refused}"
    );
    let (_, history) =
        get(&server, &op, &format!("/api/v1/parameters/{APP}/location/{location}/history")).await;
    assert_eq!(history, json!([]));

    let Some(mut browser) = Browser::start(&test_name("console-parameters", &db), "en-GB,en").await else {
        return;
    };
    sign_in(&mut browser, &server, "support@psp.example", OPERATOR_PASSWORD).await;
    browser.click("a[href='/console/parameters']").await;
    browser.expect_heading("Parameters").await;
    browser.select("#app", APP).await;
    browser.select("#level", "location").await;
    browser.fill("#scope", &location.to_string()).await;
    browser.click("#choose-scope button[type=submit]").await;
    browser.expect_heading(&format!("{APP} — location #{location}")).await;
    assert!(browser.text("#scope-terminals").await.contains("3 active terminals"));
    let tip = browser.text("#key-tip_percent .effective").await;
    assert!(tip.contains("10") && tip.contains("every terminal"), "{tip}");
    let currency = browser.text("#key-currency").await;
    assert!(currency.contains("locked at the level: every terminal"), "{currency}");
    assert!(!browser.exists("#v-currency").await);
    browser.snap("location").await;

    // A value the schema refuses is refused, naming the key (the browser
    // itself keeps numbers within their bounds).
    browser.fill("#v-admin_pin", "12").await;
    browser.click("button[value=review]").await;
    browser.expect_text("Not saved: admin_pin").await;
    browser.fill("#v-admin_pin", "").await;
    // Tip 15 and no contactless here: the diff and the count come first.
    browser.fill("#v-tip_percent", "15").await;
    browser.select("#v-contactless", "false").await;
    browser.click("button[value=review]").await;
    browser.expect_text("What the change does").await;
    assert_eq!(
        browser.text("#review-reach").await,
        "It reaches the 3 active terminals of this scope (a terminal with its own value for a key keeps it)."
    );
    let diff = browser.text("#diff").await;
    assert!(
        diff.contains("tip_percent")
            && diff.contains("10 (every terminal)")
            && diff.contains("15 (set here)"),
        "{diff}"
    );
    assert!(diff.contains("contactless") && diff.contains("true (default)"), "{diff}");
    let (_, history) =
        get(&server, &op, &format!("/api/v1/parameters/{APP}/location/{location}/history")).await;
    assert_eq!(history, json!([]), "nothing is saved by a review");
    browser.snap("review").await;
    browser.fill("#reason", "Summer promotion").await;
    browser.click("#save").await;
    browser.expect_text("The parameters are saved").await;
    let rows = browser.text("#history").await;
    assert!(rows.contains("support@psp.example") && rows.contains("Summer promotion"), "{rows}");
    assert!(rows.contains("contactless, tip_percent"), "{rows}");
    browser.snap("saved").await;
    // What a terminal of the location gets now, and from where.
    let (_, effective) =
        get(&server, &op, &format!("/api/v1/devices/{}/parameters?app={APP}", devices[0])).await;
    assert_eq!(effective["values"]["tip_percent"], json!({"value": 15, "origin": "location"}), "{effective}");
    assert_eq!(
        effective["values"]["contactless"],
        json!({"value": false, "origin": "location"}),
        "{effective}"
    );

    // From a terminal's page to its own parameters, in French.
    browser.click("form.lang button[value=fr]").await;
    browser.expect_text("Se déconnecter").await;
    browser.goto(&server.url(&format!("/console/terminals/{}", devices[0]))).await;
    // (It lists the parameters of what the terminal runs; the app is not installed yet.)
    assert!(
        browser.exists(&format!("a[href='/console/parameters/tms.terminal/device/{}']", devices[0])).await
    );
    browser.goto(&server.url(&format!("/console/parameters/{APP}/device/{}", devices[0]))).await;
    browser.expect_heading(&format!("{APP} — terminal n° {}", devices[0])).await;
    let tip = browser.text("#key-tip_percent .effective").await;
    assert!(tip.contains("15") && tip.contains("point de vente"), "{tip}");
    browser.fill("#v-admin_pin", "2580").await;
    browser.click("button[value=review]").await;
    browser.expect_text("Ce que fait le changement").await;
    assert!(
        browser.text("#review-reach").await.contains("le 1 terminal actif"),
        "{}",
        browser.text("#review-reach").await
    );
    let diff = browser.text("#diff").await;
    assert!(diff.contains("admin_pin") && diff.contains("(set)") && !diff.contains("2580"), "{diff}");
    browser.snap("review-fr").await;
    browser.goto(&server.url(&format!("/console/parameters/{APP}/location/{location}"))).await;
    browser.snap("location-fr").await;
});

backend_test!(console_release_engineer_publishes_a_release_signed_with_tms_sign, |db| {
    let (server, op) = server_with_operator(&db).await;
    server.create_operator("release@psp.example", "release_engineer", OPERATOR_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds.json");
    let tms = |args: &[&str]| tms_e2e::run_tms(&server, &creds, args, None);
    let keys = dir.path().join("keys");
    let (code, _, err) = tms(&["keygen", "--out", keys.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, body) = post(
        &server,
        &op,
        "/api/v1/apps",
        json!({"id": APP, "name": "Salespoint", "kind": "app", "visibility": "system"}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let public = std::fs::read_to_string(keys.join("publisher.pub")).unwrap();
    let (code, body) = post(
        &server,
        &op,
        &format!("/api/v1/apps/{APP}/keys"),
        json!({"name": "release team", "public_key": public}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // Signed offline with the CLI, as the page explains.
    let bytes: Vec<u8> =
        (0..3 * 1024 * 1024 + 17).map(|i: u32| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
    let file = dir.path().join("salespoint-3.0.0.apk");
    std::fs::write(&file, &bytes).unwrap();
    let key = keys.join("publisher.key");
    let sign = |version: &str, code: &str, models: &str| {
        let (status, _, err) = tms(&[
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--app",
            APP,
            "--version",
            version,
            "--version-code",
            code,
            "--models",
            models,
            file.to_str().unwrap(),
        ]);
        assert_eq!(status, 0, "{err}");
    };
    sign("3.0.0", "300", "A920,A80");
    let manifest = dir.path().join("salespoint-3.0.0.apk.manifest.json");
    assert!(manifest.exists());
    let other = dir.path().join("other.apk");
    std::fs::write(&other, &bytes[..bytes.len() - 1]).unwrap();

    let Some(mut browser) = Browser::start(&test_name("console-publish", &db), "en-GB,en").await else {
        return;
    };
    sign_in(&mut browser, &server, "release@psp.example", OPERATOR_PASSWORD).await;
    browser.goto(&server.url(&format!("/console/apps/{APP}"))).await;
    browser.expect_heading("Salespoint").await;
    browser.snap("app-before").await;
    // Not the file that was signed: refused, nothing published.
    browser.send_file("#manifest", &manifest).await;
    browser.send_file("#artifact", &other).await;
    browser.click("#publish button[type=submit]").await;
    browser.expect_text("The artifact is not the file that was signed").await;
    let (code, _) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/3.0.0")).await;
    assert_eq!(code, 404);
    browser.snap("publish-refused").await;
    // The signed file: published, listed, byte for byte.
    browser.send_file("#manifest", &manifest).await;
    browser.send_file("#artifact", &file).await;
    browser.click("#publish button[type=submit]").await;
    browser.expect_text("The release is published").await;
    let releases = browser.text("#releases").await;
    assert!(
        releases.contains("3.0.0") && releases.contains("3.0 MiB") && releases.contains("A920"),
        "{releases}"
    );
    assert!(browser.url().await.ends_with(&format!("/console/apps/{APP}")), "{}", browser.url().await);
    browser.snap("published").await;
    let (code, release) = get(&server, &op, &format!("/api/v1/apps/{APP}/releases/3.0.0")).await;
    assert_eq!(code, 200, "{release}");
    assert_eq!(release["artifact_size"], bytes.len());
    assert_eq!(release["artifact_sha256"], tms_signing::Sha256Digest::of(&bytes).to_hex());
    // Again: the version is taken.
    browser.send_file("#manifest", &manifest).await;
    browser.send_file("#artifact", &file).await;
    browser.click("#publish button[type=submit]").await;
    browser.expect_text("This version is already published.").await;
    // Without the script too (a copy of the form has no listener): the
    // browser posts the form itself and follows the server's redirect.
    std::fs::remove_file(&manifest).unwrap();
    sign("3.0.1", "301", "A920");
    browser
        .script("const f = document.querySelector('#publish'); f.replaceWith(f.cloneNode(true)); return null")
        .await;
    browser.send_file("#manifest", &manifest).await;
    browser.send_file("#artifact", &file).await;
    browser.click("#publish button[type=submit]").await;
    browser.expect_text("The release is published").await;
    assert!(browser.text("#releases").await.contains("3.0.1"));

    browser.click("form.lang button[value=fr]").await;
    browser.expect_text("Se déconnecter").await;
    browser.goto(&server.url(&format!("/console/apps/{APP}"))).await;
    browser.expect_text("Publier une version").await;
    browser.snap("app-fr").await;
    // Support reads the app but sees no upload.
    sign_out(&mut browser).await;
    server.create_operator("support@psp.example", "support", OPERATOR_PASSWORD);
    sign_in(&mut browser, &server, "support@psp.example", OPERATOR_PASSWORD).await;
    browser.goto(&server.url(&format!("/console/apps/{APP}"))).await;
    assert!(!browser.exists("#publish").await);
});

backend_test!(console_support_orders_terminals_for_a_new_merchant_and_finds_it, |db| {
    let (server, op) = server_with_operator(&db).await;
    server.create_operator("support@psp.example", "support", OPERATOR_PASSWORD);
    server.create_operator("release@psp.example", "release_engineer", OPERATOR_PASSWORD);
    // Someone else's terminal: its serial cannot be ordered again.
    merchant(&server, &op, "Librairie", "libraire@example.fr", &["6400000009"]).await;

    let Some(mut browser) = Browser::start(&test_name("console-merchants", &db), "en-GB,en").await else {
        return;
    };
    sign_in(&mut browser, &server, "support@psp.example", OPERATOR_PASSWORD).await;
    browser.click("a[href='/console/merchants']").await;
    browser.expect_heading("Merchants").await;
    browser.click("#new-order-link").await;
    browser.expect_heading("New order").await;
    browser.fill("#company_name", "Crêperie du Port").await;
    browser.fill("#contact_email", "gerant@creperie.example").await;
    browser.fill("#line1", "3 quai de la Fosse").await;
    browser.fill("#postal_code", "44000").await;
    browser.fill("#city", "Nantes").await;
    browser.fill("#terminals", "6400000001 A920\n6400000009 A920").await;
    browser.click("#new-order button[type=submit]").await;
    browser.expect_text("Already registered: 6400000009. Nothing was saved.").await;
    assert_eq!(browser.attribute("#company_name", "value").await.as_deref(), Some("Crêperie du Port"));
    browser.snap("order-refused").await;
    browser.fill("#terminals", "6400000001 A920\n6400000002 a35").await;
    browser.click("#new-order button[type=submit]").await;
    browser.expect_text("the merchant is created and the activation e-mail is sent").await;
    browser.expect_heading("Crêperie du Port").await;
    let registered = browser.text("#registered").await;
    assert!(registered.contains("6400000001") && registered.contains("A35"), "{registered}");
    assert!(browser.text("#locations").await.contains("Nantes"));
    assert!(browser.text("#users").await.contains("gerant@creperie.example"));
    assert!(server.outbox().iter().any(|m| m.contains("gerant@creperie.example")), "the activation e-mail");
    browser.snap("merchant").await;
    let merchant_url = browser.url().await;

    // Found again by part of its name, of its address, or its id.
    browser.goto(&server.url("/console/merchants?q=crêperie")).await;
    assert_eq!(browser.script("return document.querySelectorAll('#merchants tbody tr').length").await, 1);
    browser.goto(&server.url("/console/merchants?q=%40creperie")).await;
    assert!(browser.text("#merchants").await.contains("Crêperie du Port"));
    browser.goto(&server.url("/console/merchants")).await;
    assert_eq!(browser.script("return document.querySelectorAll('#merchants tbody tr').length").await, 2);
    browser.snap("merchants").await;
    // More terminals for the same merchant, at the same address: the same location.
    browser.goto(&merchant_url).await;
    browser.click("a[href^='/console/orders/new?merchant=']").await;
    assert!(browser.text("#order-merchant").await.contains("Crêperie du Port"));
    browser.fill("#line1", "3 quai de la Fosse").await;
    browser.fill("#postal_code", "44000").await;
    browser.fill("#city", "Nantes").await;
    browser.fill("#terminals", "6400000003 A920").await;
    browser.click("#new-order button[type=submit]").await;
    browser.expect_text("The order is saved: the terminals are registered.").await;
    assert_eq!(browser.script("return document.querySelectorAll('#locations tbody tr').length").await, 1);
    assert!(browser.text("#registered").await.contains("6400000003"));

    browser.click("form.lang button[value=fr]").await;
    browser.expect_text("Se déconnecter").await;
    browser.goto(&merchant_url).await;
    browser.expect_text("Terminaux commandés").await;
    browser.snap("merchant-fr").await;
    browser.goto(&server.url("/console/orders/new")).await;
    browser.snap("order-fr").await;

    // A release engineer's console has no merchants.
    sign_out(&mut browser).await;
    sign_in(&mut browser, &server, "release@psp.example", OPERATOR_PASSWORD).await;
    assert!(!browser.exists("a[href='/console/merchants']").await);
    browser.goto(&merchant_url).await;
    assert!(!browser.body_text().await.contains("Crêperie du Port"));
});

backend_test!(console_acquirers_their_parameter_sets_and_a_merchants_contract, |db| {
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, _, _) =
        merchant(&server, &op, "Boucherie", "boucher@example.fr", &["6500000001"]).await;
    let Some(mut browser) = Browser::start(&test_name("console-acquirers", &db), "en-GB,en").await else {
        return;
    };
    sign_in(&mut browser, &server, OPERATOR, OPERATOR_PASSWORD).await;
    browser.click("a[href='/console/acquirers']").await;
    browser.expect_heading("Acquirers").await;
    browser.fill("#acquirer-id", "ccv").await;
    browser.fill("#acquirer-name", "CCV Acquiring").await;
    browser.click("#new-acquirer button[type=submit]").await;
    browser.expect_text("The acquirer is added.").await;
    assert!(browser.text("#acquirer-ccv .latest").await.contains("No parameter set yet"));
    // A parameter set: a JSON document and its expiry.
    browser.click("#acquirer-ccv summary").await;
    browser.fill("#document-ccv", "not json").await;
    browser.fill("#valid-ccv", "2031-12-31").await;
    browser.click("#acquirer-ccv form[action$='/parameter-sets'] button[type=submit]").await;
    browser.expect_text("The document is a JSON object").await;
    browser.click("#acquirer-ccv summary").await;
    browser.fill("#document-ccv", r#"{"floor_limit": 0, "contactless_limit": 5000}"#).await;
    browser.script("document.querySelector('#valid-ccv').value = '2031-12-31'; return null").await;
    browser.click("#acquirer-ccv form[action$='/parameter-sets'] button[type=submit]").await;
    browser.expect_text("The parameter set is added").await;
    assert!(browser.text("#acquirer-ccv .latest").await.contains("version 1"));
    browser.snap("acquirers").await;
    let (_, listed) = get(&server, &op, "/api/v1/acquirers").await;
    assert_eq!(listed[0]["latest_version"], 1, "{listed}");
    // Revoking says what it does first.
    browser.click("#acquirer-ccv a.danger").await;
    browser.expect_heading("Revoke a parameter set").await;
    assert!(browser.text("#effect").await.contains("Version 1 of CCV Acquiring's parameters"));
    browser.snap("confirm-revoke").await;
    browser.click("form[action$='/parameter-sets/1/revoke'] button[type=submit]").await;
    browser.expect_text("The parameter set is revoked.").await;

    // The merchant's contract with it, from the merchant's page.
    browser.goto(&server.url(&format!("/console/merchants/{merchant_id}"))).await;
    browser.fill("#acquirer_merchant_id", "M-778812").await;
    browser.fill("#acquirer_terminal_id", "T-0001").await;
    browser.click("#new-contract button[type=submit]").await;
    browser.expect_text("The contract is added.").await;
    let contracts = browser.text("#contracts").await;
    assert!(contracts.contains("ccv") && contracts.contains("M-778812 / T-0001"), "{contracts}");
    browser.snap("merchant-contract").await;
    let (_, api) = get(&server, &op, &format!("/api/v1/merchants/{merchant_id}/acquirer-contracts")).await;
    assert_eq!(api[0]["acquirer_merchant_id"], "M-778812", "{api}");

    browser.click("form.lang button[value=fr]").await;
    browser.expect_text("Se déconnecter").await;
    browser.goto(&server.url("/console/acquirers")).await;
    browser.expect_heading("Acquéreurs").await;
    browser.snap("acquirers-fr").await;
});
