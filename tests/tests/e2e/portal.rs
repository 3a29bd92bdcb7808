//! The merchant portal in a real Chromium: a merchant signs in, types and
//! clicks, and the tests check both what the page shows and what the
//! system did (the API's view, the terminals' next contact). Every page
//! visited is saved as a PNG at desktop and phone widths.

use reqwest::Method;
use serde_json::{Value, json};
use tms_e2e::backend_test;
use tms_e2e::browser::Browser;
use tms_e2e::fixtures::*;
use tms_e2e::terminal::{Outcome, SimTerminal};
use tms_e2e::{Backend, TestServer};
use tms_signing::PublicKey;

fn test_name(base: &str, db: &tms_e2e::TestDatabase) -> String {
    let backend = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    format!("{base}-{backend}")
}

/// A real 8×8 black-and-white PNG (a checkerboard).
fn tiny_png() -> Vec<u8> {
    hex::decode(
        "89504e470d0a1a0a0000000d4948445200000008000000080100000000ec7483260000000e49444154789c\
         6358c510ca808401214403fd2b236fdf0000000049454e44ae426082",
    )
    .expect("hex")
}

/// Signs in through the login form (no second step).
async fn sign_in(browser: &mut Browser, server: &TestServer, email: &str, password: &str) {
    browser.goto(&server.url("/login")).await;
    browser.fill("#email", email).await;
    browser.fill("#password", password).await;
    browser.click("form[action='/login'] button[type=submit]").await;
    for _ in 0..200 {
        if browser.exists("form[action='/logout']").await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("not signed in: {}", browser.body_text().await);
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

/// Waits until the server has written the terminal's last contact (contacts
/// are recorded in batches).
async fn wait_for_contact(server: &TestServer, token: &str, device_id: i64) {
    for _ in 0..200 {
        let (_, device) = get(server, token, &format!("/api/v1/devices/{device_id}")).await;
        if device["last_contact_at"].is_string() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the contact of device {device_id} was never recorded");
}

async fn location_name(server: &TestServer, token: &str, merchant_id: i64, location: i64) -> String {
    let (_, locations) = get(server, token, &format!("/api/v1/merchants/{merchant_id}/locations")).await;
    locations
        .as_array()
        .expect("locations")
        .iter()
        .find(|l| l["id"] == location)
        .and_then(|l| l["name"].as_str())
        .expect("the location")
        .to_owned()
}

/// A page on another origin (another port of the same host, so the same
/// site for the browser's SameSite rules) whose form posts itself to the
/// portal: what a forged cross-site request looks like.
async fn forging_page(target: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    let page = format!(
        "<!doctype html><html><body><form id=f method=post action=\"{target}\">\
         <input name=name value=Hacked><input name=csrf value=guessed></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{address}/")
}

backend_test!(portal_sign_in_with_two_steps_switch_language_and_refuse_forged_forms, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_ADJUSTABLE_CLOCK", "true")]).await;
    let email = "owner@boulangerie.example";
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Boulangerie Martin", email, &["5100000001"]).await;
    // Two-step verification on, as the merchant set it up in an authenticator app.
    let (status, enrollment) = post(&server, &admin, "/api/v1/auth/2fa/enroll", json!({})).await;
    assert_eq!(status, 200, "{enrollment}");
    let secret = tms_server::auth::totp::base32_decode(enrollment["secret"].as_str().unwrap()).unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = tms_server::auth::totp::current_code(&secret, now());
    let (status, body) = post(&server, &admin, "/api/v1/auth/2fa/confirm", json!({"code": code})).await;
    assert_eq!(status, 200, "{body}");
    // The next code: half a minute on, on the server's clock.
    server.advance_clock(&op, 30).await;

    let Some(mut browser) = Browser::start(&test_name("sign-in", &db), "fr-FR,fr").await else { return };
    // Signed out, the portal's home leads to the login page, in French (Accept-Language).
    browser.goto(&server.url("/")).await;
    assert!(browser.url().await.ends_with("/login"), "{}", browser.url().await);
    browser.expect_heading("Connexion").await;
    browser.snap("login").await;

    // A wrong password: said plainly, the e-mail kept.
    browser.fill("#email", email).await;
    browser.fill("#password", "not-the-password").await;
    browser.click("form[action='/login'] button[type=submit]").await;
    browser.expect_text("incorrect").await;
    assert_eq!(browser.attribute("#email", "value").await.as_deref(), Some(email));
    browser.snap("login-wrong-password").await;

    // The right password, then the code.
    browser.fill("#password", MERCHANT_PASSWORD).await;
    browser.click("form[action='/login'] button[type=submit]").await;
    browser.expect_heading("Vérification en deux étapes").await;
    browser.snap("login-code").await;
    browser.fill("#code", "000000").await;
    browser.click("form[action='/login/code'] button[type=submit]").await;
    let wrong_code = tms_server::auth::totp::current_code(&secret, now() + 30) == "000000";
    if !wrong_code {
        browser.expect_text("Ce code est incorrect").await;
        browser.snap("login-code-wrong").await;
    }
    browser.fill("#code", &tms_server::auth::totp::current_code(&secret, now() + 30)).await;
    browser.click("form[action='/login/code'] button[type=submit]").await;
    browser.expect_heading("Vue d'ensemble").await;
    let session = browser.cookie("tms_session").await.expect("a session cookie");
    // The session cookie is the browser's alone: the page's scripts cannot read it.
    let script_sees = browser.script("return document.cookie").await;
    assert!(!script_sees.as_str().unwrap_or_default().contains("tms_session"), "{script_sees}");
    browser.snap("home-fr").await;

    // The language switch: English, kept for this user on the next page.
    browser.click("button[name=lang][value=en]").await;
    browser.expect_heading("Overview").await;
    browser.snap("home-en").await;
    browser.goto(&server.url("/activity")).await;
    browser.expect_heading("Activity").await;
    browser.expect_text("Signed in").await;
    browser.snap("activity-en").await;

    // A page of another site posts a rename form with the merchant's cookie:
    // refused, nothing changed.
    let before = location_name(&server, &admin, merchant_id, location).await;
    let forger = forging_page(server.url(&format!("/locations/{location}/name"))).await;
    browser.goto(&forger).await;
    for _ in 0..100 {
        if browser.url().await.starts_with(&server.base_url) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    browser.expect_text("This form has expired").await;
    browser.snap("forged-form-refused").await;
    assert_eq!(location_name(&server, &admin, merchant_id, location).await, before);

    // Signing out ends the session: the old cookie no longer opens a page.
    browser.goto(&server.url("/")).await;
    browser.click("form[action='/logout'] button").await;
    browser.expect_text("You are signed out").await;
    assert!(browser.url().await.ends_with("/login"));
    browser.snap("signed-out").await;
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url("/"))
        .header("Cookie", format!("tms_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303);
    assert_eq!(replay.headers()["location"], "/login");
});

backend_test!(portal_merchant_tasks_reach_the_terminals, |db| {
    // Contacts are written in batches; a short interval keeps the wait short.
    let (server, op) = server_with_operator_and(&db, &[("TMS_CONTACT_FLUSH_MS", "100")]).await;
    let email = "gerant@cafe.example";
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Café du Marché", email, &["5200000001", "5200000002"]).await;
    let trusted = answer_keys(&server).await;
    let mut caisse_1 =
        activated_terminal(&server, email, (merchant_id, location), "5200000001", "A920").await;
    let mut caisse_2 =
        activated_terminal(&server, email, (merchant_id, location), "5200000002", "A920").await;
    sync(&server, &mut caisse_1, &trusted).await;
    sync(&server, &mut caisse_2, &trusted).await;
    for (terminal, ids) in
        [(&caisse_1, ["a-1", "a-2", "a-3"].as_slice()), (&caisse_2, ["b-1", "b-2"].as_slice())]
    {
        let txs: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| transaction(id, 10 + i as i64, 1250, "EUR", "success"))
            .collect();
        let (status, body) = server
            .call(
                Method::POST,
                "/api/v1/terminal/transactions",
                Some(&terminal.token),
                Some(json!({"transactions": txs})),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }

    for terminal in [&caisse_1, &caisse_2] {
        wait_for_contact(&server, &admin, terminal.device_id).await;
    }

    let Some(mut browser) = Browser::start(&test_name("merchant-tasks", &db), "en-GB,en").await else {
        return;
    };
    sign_in(&mut browser, &server, email, MERCHANT_PASSWORD).await;
    browser.expect_heading("Overview").await;
    browser.expect_text("2 of 2 terminals online").await;
    browser.snap("home").await;

    // Rename a location.
    browser.goto(&server.url("/locations")).await;
    browser.snap("locations").await;
    browser.fill(&format!("#name-{location}"), "Café du Port").await;
    browser.click(&format!("#location-{location} form button")).await;
    browser.expect_text("The location was renamed").await;
    assert_eq!(location_name(&server, &admin, merchant_id, location).await, "Café du Port");
    browser.snap("location-renamed").await;

    // Transactions of one terminal, and the CSV of exactly those.
    browser.goto(&server.url("/transactions")).await;
    browser.expect_text("5 transactions, net €62.50").await;
    browser.snap("transactions").await;
    browser.select("#f-terminal", &caisse_1.device_id.to_string()).await;
    browser.click("form.filters button[type=submit]").await;
    browser.expect_text("3 transactions, net €37.50").await;
    browser.snap("transactions-filtered").await;
    let export = browser.attribute("a[download]", "href").await.expect("an export link");
    let session = browser.cookie("tms_session").await.expect("session cookie");
    let csv = server
        .http
        .get(server.url(&export))
        .header("Cookie", format!("tms_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,terminal_tx_id,"), "{csv}");
    let mut ids: Vec<&str> = lines[1..].iter().map(|l| l.split(',').nth(1).unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec!["a-1", "a-2", "a-3"], "{csv}");

    // All time: the page comes at once, its totals after it (their own request).
    browser.goto(&server.url("/transactions?from=")).await;
    browser.expect_text("5 transactions, net €62.50").await;
    assert!(!browser.exists("[data-load-into]").await, "the totals replaced their link");

    // Terminal settings: a weak merchant password is refused before saving;
    // a new receipt header reaches the terminals, alone.
    browser.goto(&server.url(&format!("/locations/{location}/settings"))).await;
    browser.expect_text("default password 99999").await;
    browser.snap("settings").await;
    browser.fill("#password", "12345").await;
    browser.click("form.stack button[type=submit]").await;
    browser.expect_text("run of digits").await;
    browser.snap("settings-weak-password").await;
    browser.fill("#password", "").await;
    browser.fill("#header", "Café du Port").await;
    browser.click("form.stack button[type=submit]").await;
    browser.expect_text("The settings were saved").await;
    browser.snap("settings-saved").await;
    let Outcome::Answer(answer, body) = caisse_1.contact(&server.http, &server.base_url).await else {
        panic!("no answer")
    };
    caisse_1.accept(&answer, &trusted).expect("valid");
    let params = body.parameters.iter().find(|p| p.app_id == "tms.terminal").expect("terminal parameters");
    assert!(!params.full);
    assert_eq!(serde_json::to_value(&params.changed).unwrap(), json!({"receipt.header": "Café du Port"}));
    caisse_1.apply(&server.http, &server.base_url, &body).await;

    // A receipt logo: a file that is not a PNG is refused; a PNG is previewed
    // and reaches the terminals.
    let dir = tempfile::tempdir().unwrap();
    let not_png = dir.path().join("logo.txt");
    std::fs::write(&not_png, "not an image").unwrap();
    browser.send_file("#logo", &not_png).await;
    browser.click("#logo-form button[type=submit]").await;
    browser.expect_text("This file is not a PNG image").await;
    let png = dir.path().join("logo.png");
    std::fs::write(&png, tiny_png()).unwrap();
    browser.send_file("#logo", &png).await;
    browser.click("#logo-form button[type=submit]").await;
    browser.expect_text("The settings were saved").await;
    assert!(browser.exists("img.logo-preview").await);
    browser.snap("settings-logo").await;
    let Outcome::Answer(_, body) = caisse_1.contact(&server.http, &server.base_url).await else {
        panic!("no answer")
    };
    let params = body.parameters.iter().find(|p| p.app_id == "tms.terminal").expect("terminal parameters");
    use base64::Engine;
    assert_eq!(
        params.changed["receipt.logo"],
        json!(base64::engine::general_purpose::STANDARD.encode(tiny_png())),
        "only the logo changed: {:?}",
        params.changed
    );
    assert_eq!(params.changed.len(), 1);

    // Deactivate the second terminal: after a confirmation that says what
    // happens, its credential is refused.
    browser.goto(&server.url("/terminals")).await;
    browser.snap("terminals").await;
    browser.click(&format!("a[href='/terminals/{}']", caisse_2.device_id)).await;
    browser.snap("terminal").await;
    browser.click(&format!("a[href='/terminals/{}/deactivate']", caisse_2.device_id)).await;
    browser.expect_text("becomes free").await;
    browser.snap("deactivate-confirm").await;
    browser.click("form.actions button[type=submit]").await;
    browser.expect_text("The terminal was deactivated").await;
    browser.snap("terminal-deactivated").await;
    let Outcome::Refused(status, body) = caisse_2.contact(&server.http, &server.base_url).await else {
        panic!("a deactivated terminal was answered")
    };
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("device_deactivated")), "{body}");

    // The same pages in French.
    browser.click("button[name=lang][value=fr]").await;
    browser.expect_text("Numéro de série").await;
    browser.snap("terminal-fr").await;
    for (path, heading) in [
        ("/terminals".to_owned(), "Terminaux".to_owned()),
        ("/transactions".to_owned(), "Transactions".to_owned()),
        (format!("/locations/{location}/settings"), "Paramètres des terminaux : Café du Port".to_owned()),
        ("/locations".to_owned(), "Points de vente".to_owned()),
    ] {
        browser.goto(&server.url(&path)).await;
        browser.expect_heading(&heading).await;
        browser.snap(&format!("{}-fr", path.trim_start_matches('/').replace('/', "-"))).await;
    }
    browser.expect_text("Paramètres des terminaux").await;
});

backend_test!(portal_activation_link_and_forgotten_password, |db| {
    let (server, op) = server_with_operator(&db).await;
    let email = "patronne@fleuriste.example";
    let (status, order) = post(
        &server,
        &op,
        "/api/v1/orders",
        order_for_new_merchant("Fleurs de Lys", email, "3 quai de la Tournelle", &["5300000001"]),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let first_link = server.url(&format!("/activate?token={}", server.activation_token_for(email)));

    let Some(mut browser) = Browser::start(&test_name("passwords", &db), "fr-FR,fr").await else { return };
    // The order's e-mail link: the rules are shown before anything is typed.
    browser.goto(&first_link).await;
    browser.expect_heading("Choisissez votre mot de passe").await;
    browser.expect_text("Au moins 10 caractères").await;
    browser.snap("activate").await;
    // Two different passwords, then one that breaks a rule: said in French, nothing set.
    browser.fill("#password", "bouquet de pivoines").await;
    browser.fill("#repeat", "bouquet de tulipes").await;
    browser.click("form[action='/activate'] button").await;
    browser.expect_text("Les deux mots de passe diffèrent").await;
    browser.fill("#password", "patronne-2026!").await;
    browser.fill("#repeat", "patronne-2026!").await;
    browser.click("form[action='/activate'] button").await;
    browser.expect_text("ne doit pas contenir le nom de votre adresse").await;
    browser.snap("activate-refused").await;
    browser.fill("#password", "bouquet de pivoines").await;
    browser.fill("#repeat", "bouquet de pivoines").await;
    browser.click("form[action='/activate'] button").await;
    browser.expect_text("Votre mot de passe est enregistré").await;
    browser.snap("activated").await;
    sign_in(&mut browser, &server, email, "bouquet de pivoines").await;
    browser.expect_heading("Vue d'ensemble").await;
    // The link worked once.
    browser.goto(&first_link).await;
    browser.fill("#password", "encore un autre mot").await;
    browser.fill("#repeat", "encore un autre mot").await;
    browser.click("form[action='/activate'] button").await;
    browser.expect_text("Ce lien a déjà servi ou a expiré").await;
    browser.snap("link-spent").await;
    let old_session = browser.cookie("tms_session").await.expect("signed in");

    // Forgotten password: the same answer for an unknown address (and no mail).
    let mails_before = server.outbox().len();
    browser.goto(&server.url("/login")).await;
    browser.click("a[href='/password/forgot']").await;
    browser.expect_heading("Mot de passe oublié").await;
    browser.snap("forgot").await;
    browser.fill("#email", "personne@nulle-part.example").await;
    browser.click("form[action='/password/forgot'] button").await;
    browser.expect_text("Si cette adresse a un compte").await;
    assert_eq!(server.outbox().len(), mails_before);
    browser.goto(&server.url("/password/forgot")).await;
    browser.fill("#email", email).await;
    browser.click("form[action='/password/forgot'] button").await;
    browser.expect_text("Si cette adresse a un compte").await;
    browser.snap("forgot-sent").await;
    assert_eq!(server.outbox().len(), mails_before + 1);
    let reset_link = server.url(&format!("/activate?token={}", server.activation_token_for(email)));
    browser.goto(&reset_link).await;
    browser.fill("#password", "gerbe de roses rouges").await;
    browser.fill("#repeat", "gerbe de roses rouges").await;
    browser.click("form[action='/activate'] button").await;
    browser.expect_text("Votre mot de passe est enregistré").await;
    // The reset ended the session the old password opened.
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url("/"))
        .header("Cookie", format!("tms_session={old_session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303);
    sign_in(&mut browser, &server, email, "gerbe de roses rouges").await;
    browser.expect_heading("Vue d'ensemble").await;

    // Two-step verification from the profile: a QR code drawn by the server,
    // a first code, recovery codes once; the other sessions end.
    let other_session = server.login(email, "gerbe de roses rouges").await;
    browser.click("a[href='/profile']").await;
    browser.expect_heading("Votre profil").await;
    browser.snap("profile").await;
    browser.click("form[action='/profile/two-factor/start'] button").await;
    browser.expect_text("Scannez ce code").await;
    assert!(browser.exists(".qr svg").await, "the QR code is an inline SVG");
    browser.snap("two-factor-setup").await;
    let secret = browser.text("#secret").await;
    let secret = tms_server::auth::totp::base32_decode(&secret).expect("a base32 secret");
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    browser.fill("#code", &tms_server::auth::totp::current_code(&secret, now())).await;
    browser.click("form[action='/profile/two-factor/confirm'] button").await;
    browser.expect_heading("Vos codes de secours").await;
    let codes = browser.text("#recovery-codes").await;
    assert_eq!(codes.lines().filter(|l| !l.trim().is_empty()).count(), 10, "{codes}");
    browser.snap("recovery-codes").await;
    let (status, _) = get(&server, &other_session, "/api/v1/auth/me").await;
    assert_eq!(status, 401, "turning two-step verification on ends the other sessions");
    browser.click("a.button.primary").await;
    browser.expect_text("Activée : la connexion demande un code").await;
    browser.snap("profile-two-factor-on").await;
});

backend_test!(portal_app_store_installs_on_the_terminals_ticked, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_CONTACT_FLUSH_MS", "100")]).await;
    let email = "owner@tabac.example";
    let serials = ["5400000001", "5400000002", "5400000003"];
    let (merchant_id, location, _) = merchant(&server, &op, "Tabac de la Gare", email, &serials).await;
    let trusted = answer_keys(&server).await;
    let mut counter_1 = activated_terminal(&server, email, (merchant_id, location), serials[0], "A920").await;
    let mut counter_2 = activated_terminal(&server, email, (merchant_id, location), serials[1], "A920").await;
    let mut kiosk = activated_terminal(&server, email, (merchant_id, location), serials[2], "P400").await;
    for t in [&mut counter_1, &mut counter_2, &mut kiosk] {
        sync(&server, t, &trusted).await;
    }
    let tips = "com.example.tips";
    let key = app_with_key(&server, &op, tips, "app").await;
    let (status, app) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/apps/{tips}"),
            Some(&op),
            Some(json!({"visibility": "store", "name": "Pourboires", "summary": "Tips on the card payment",
                        "description": "Your customers add a tip when they pay by card.", "category": "Payments"})),
        )
        .await;
    assert_eq!(status, 200, "{app}");
    publish_release(&server, &op, &key, tips, "app", "1.0.0", 1, &["A920"]).await;
    // The listing's icon and a screenshot, as real images.
    for (method, path) in [(Method::PUT, "icon"), (Method::POST, "screenshots")] {
        let res = server
            .http
            .request(method, server.url(&format!("/api/v1/apps/{tips}/{path}")))
            .bearer_auth(&op)
            .body(tiny_png())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }

    let Some(mut browser) = Browser::start(&test_name("store", &db), "en-GB,en").await else { return };
    sign_in(&mut browser, &server, email, MERCHANT_PASSWORD).await;
    browser.goto(&server.url("/store")).await;
    browser.expect_text("Tips on the card payment").await;
    browser.snap("store").await;
    browser.click(&format!("a[href='/store/{tips}']")).await;
    browser.expect_heading("Pourboires").await;
    // The images come through the portal's own addresses, with the session.
    // (An image may still be loading when the page's text is there.)
    for img in [".app-head img.app-icon", ".shots img"] {
        let mut loaded = json!(false);
        for _ in 0..100 {
            loaded = browser
                .script(&format!(
                    "const i = document.querySelector('{img}'); return i && i.complete && i.naturalWidth"
                ))
                .await;
            if loaded == json!(8) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(loaded, json!(8), "{img} shows the 8×8 picture");
    }
    // The kiosk's model has no release: its box cannot be ticked, and says why.
    let kiosk_box = format!("#device-{}", kiosk.device_id);
    assert_eq!(browser.attribute(&kiosk_box, "disabled").await.as_deref(), Some("true"));
    browser.expect_text("No version of this app runs on this terminal (model P400").await;
    browser.snap("store-app").await;
    browser.click(&format!("#device-{}", counter_1.device_id)).await;
    browser.click("button.primary[type=submit]").await;
    browser.expect_text("The installation is requested").await;
    browser.expect_text("Waiting for the terminal").await;
    browser.snap("store-install-requested").await;

    // Only the ticked terminal is offered the app at its next contact.
    let Outcome::Answer(answer, body) = counter_1.contact(&server.http, &server.base_url).await else {
        panic!()
    };
    counter_1.accept(&answer, &trusted).expect("valid");
    assert_eq!(body.apps.len(), 1, "{:?}", body.apps);
    assert_eq!(body.apps[0].app_id, tips);
    let Outcome::Answer(answer, body) = counter_2.contact(&server.http, &server.base_url).await else {
        panic!()
    };
    assert_eq!(answer.status, "in_sync", "{body:?}");

    // The terminal installs it and says so: the open page follows by itself.
    let Outcome::Answer(_, body) = counter_1.contact(&server.http, &server.base_url).await else { panic!() };
    counter_1.apply(&server.http, &server.base_url, &body).await;
    let Outcome::Answer(answer, _) = counter_1.contact(&server.http, &server.base_url).await else {
        panic!()
    };
    counter_1.accept(&answer, &trusted).expect("valid");
    browser.expect_text("Installed (1.0.0)").await;
    browser.snap("store-installed").await;

    // The same pages in French.
    browser.click("button[name=lang][value=fr]").await;
    browser.expect_text("Installée (1.0.0)").await;
    browser.snap("store-app-fr").await;
    browser.goto(&server.url("/store")).await;
    browser.expect_heading("Boutique d'applications").await;
    browser.snap("store-fr").await;
});

backend_test!(portal_users_groups_and_the_locked_profile, |db| {
    let (server, op) = server_with_operator(&db).await;
    let email = "owner@pharmacie.example";
    let (merchant_id, location, admin) =
        merchant(&server, &op, "Pharmacie Centrale", email, &["5500000001", "5500000002"]).await;
    // A cashier who activated the app on a terminal is logged in there.
    let cashier = "caisse@pharmacie.example";
    let (cashier_id, _) =
        invite(&server, &admin, merchant_id, cashier, json!({"permissions": ["activate_app"]})).await;
    group_granting(&server, &admin, merchant_id, "Caisses", location, json!(["activate_app"]), &[cashier_id])
        .await;
    let (status, device) = activate_device(
        &server,
        cashier,
        MERCHANT_PASSWORD,
        "salespoint",
        "5500000001",
        location,
        "Comptoir",
    )
    .await;
    assert_eq!(status, 201, "{device}");

    let Some(mut browser) = Browser::start(&test_name("users", &db), "fr-FR,fr").await else { return };
    sign_in(&mut browser, &server, email, MERCHANT_PASSWORD).await;
    browser.goto(&server.url("/users")).await;
    browser.expect_heading("Utilisateurs et groupes").await;
    browser.expect_text("Comptoir").await;
    browser.snap("users").await;

    // Invite a user: the e-mail goes out, the list shows them invited.
    browser.fill("#invite-email", "compta@pharmacie.example").await;
    browser.click("#invite-export_transactions").await;
    browser.click("form[action='/users'] button[type=submit]").await;
    browser.expect_text("L'invitation est envoyée").await;
    browser.expect_text("compta@pharmacie.example").await;
    server.activation_token_for("compta@pharmacie.example");

    // The cashier, logged in on a terminal, cannot be removed.
    browser.click(&format!("#user-{cashier_id} form button")).await;
    browser.expect_text("est connecté à l'application sur Comptoir").await;
    browser.snap("user-locked").await;
    let (_, still) = get(&server, &admin, &format!("/api/v1/users/{cashier_id}")).await;
    assert_eq!(still["email"], cashier);

    // A group that lets its members see the transactions of the location.
    browser.fill("#group-name", "Comptabilité").await;
    browser.click("form[action='/groups'] button").await;
    browser.expect_text("Le groupe est créé").await;
    let (_, groups) = get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/groups")).await;
    let group_id = groups.as_array().unwrap().iter().find(|g| g["name"] == "Comptabilité").unwrap()["id"]
        .as_i64()
        .unwrap();
    browser.click(&format!("#group-{group_id} input[value='{location}:view_transactions']")).await;
    browser.click(&format!("form[action='/groups/{group_id}/grants'] button")).await;
    browser.expect_text("Le groupe est enregistré").await;
    let (_, listed) = get(&server, &admin, &format!("/api/v1/merchants/{merchant_id}/users")).await;
    let accountant =
        listed.as_array().unwrap().iter().find(|u| u["email"] == "compta@pharmacie.example").unwrap()["id"]
            .as_i64()
            .unwrap();
    browser.select(&format!("#add-{group_id}"), &accountant.to_string()).await;
    browser.click(&format!("form[action='/groups/{group_id}/members'] button")).await;
    browser.expect_text("Le groupe est enregistré").await;
    browser.snap("group").await;
    let (_, group) = get(&server, &admin, &format!("/api/v1/groups/{group_id}")).await;
    assert_eq!(group["members"], json!([accountant]), "{group}");
    assert_eq!(
        group["grants"],
        json!([{"location_id": location, "permissions": ["view_transactions"]}]),
        "{group}"
    );

    // The cashier's navigation offers only what the cashier may open.
    browser.click("form[action='/logout'] button").await;
    browser.expect_text("Vous êtes déconnecté").await;
    sign_in(&mut browser, &server, cashier, MERCHANT_PASSWORD).await;
    let nav: Vec<String> = browser
        .script("return Array.from(document.querySelectorAll('nav a'), a => a.getAttribute('href'))")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(nav, vec!["/", "/locations", "/terminals"], "activate_app alone opens no other section");
    assert!(!browser.body_text().await.contains("Vous êtes déconnecté"), "a message is shown once");
    browser.snap("cashier-home").await;
});
