//! Secrets at rest: sealed under the master key in the database, in its
//! dumps and in the blob store, and still readable after a key rotation.

use serde_json::json;
use tms_e2e::fixtures::*;
use tms_e2e::{Backend, TestDatabase, TestServer, backend_test};

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The database as bytes: the SQLite file with its journal, or a plain
/// (uncompressed) dump of the PostgreSQL database.
fn database_bytes(db: &TestDatabase) -> Vec<u8> {
    match db.backend {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let mut bytes = std::fs::read(path).unwrap();
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            bytes
        }
        Backend::Postgres => {
            let out = std::process::Command::new("pg_dump")
                .args(["--data-only", "--format=plain", "--dbname", &db.url])
                .output()
                .expect("pg_dump");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(contains(&out.stdout, "COPY public.users"), "a real dump");
            out.stdout
        }
    }
}

/// Where each secret is found in clear: the database and every blob.
fn found_in_clear(db: &TestDatabase, server: &TestServer, secrets: &[&str]) -> Vec<String> {
    let database = database_bytes(db);
    assert!(contains(&database, "coffre@coffre.example"), "what is not secret is found: the search works");
    let mut places = vec![("database".to_owned(), database)];
    let blobs = files_under(&server.data_dir.join("blobs"));
    assert!(!blobs.is_empty(), "the parameter set is in the blob store");
    for file in blobs {
        places.push((file.display().to_string(), std::fs::read(&file).unwrap()));
    }
    let mut found = Vec::new();
    for secret in secrets {
        for (place, bytes) in &places {
            if contains(bytes, secret) {
                found.push(format!("{secret} in {place}"));
            }
        }
    }
    found
}

fn sealed_columns(db: &TestDatabase) -> Vec<String> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let pool = db.pool();
    let mut conn = pool.get().unwrap();
    diesel::sql_query(
        "SELECT private_pem AS value FROM server_keys \
         UNION ALL SELECT totp_secret FROM users WHERE totp_secret IS NOT NULL \
         UNION ALL SELECT document FROM acquirer_parameter_sets \
         UNION ALL SELECT COALESCE(sealed_with, 'clear') FROM parameter_set_versions \
         UNION ALL SELECT code_hash FROM recovery_codes",
    )
    .load::<Text>(&mut *conn)
    .unwrap()
    .into_iter()
    .map(|t| t.value)
    .collect()
}

backend_test!(no_secret_is_kept_in_clear_and_a_master_key_rotation_keeps_each_readable, |db| {
    let (server, op) = server_with_operator_and(&db, &[("TMS_ADJUSTABLE_CLOCK", "true")]).await;
    let email = "coffre@coffre.example";
    let (merchant_id, location_id, admin) = merchant(&server, &op, "Coffre", email, &["7300000001"]).await;
    let terminal = activated_terminal(&server, email, (merchant_id, location_id), "7300000001", "A920").await;

    // A two-step secret, its recovery codes, a secret parameter, an
    // acquirer document, and the answer-signing key the server made.
    let (_, enrollment) = post(&server, &admin, "/api/v1/auth/2fa/enroll", json!({})).await;
    let totp_secret = enrollment["secret"].as_str().unwrap().to_owned();
    let secret = tms_server::auth::totp::base32_decode(&totp_secret).unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (status, recovery) = post(
        &server,
        &admin,
        "/api/v1/auth/2fa/confirm",
        json!({"code": tms_server::auth::totp::current_code(&secret, now())}),
    )
    .await;
    assert_eq!(status, 200, "{recovery}");
    let recovery_code = recovery["codes"][0].as_str().unwrap().to_owned();
    let menu_password = "739204861537";
    let (status, body) = post(
        &server,
        &admin,
        &format!("/api/v1/parameters/tms.terminal/location/{location_id}"),
        json!({"set": {"merchant_menu.password": menu_password}, "reason": "new code"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let acquirer_key = "acquirer-zmk-5F3A9C";
    ccv_acquirer(&server, &op, merchant_id, None, json!({"zmk": acquirer_key})).await;
    let signing_pem = {
        let pool = db.pool();
        let key =
            tms_server::server_keys::current_signing_key(&mut pool.get().unwrap(), &server.master_keys())
                .unwrap();
        key.to_pem().unwrap()
    };
    // The key's base64 body: what a PEM in clear would show.
    let signing_body: String = signing_pem.lines().filter(|l| !l.starts_with("-----")).collect();

    let secrets = [totp_secret.as_str(), recovery_code.as_str(), menu_password, acquirer_key, &signing_body];
    assert_eq!(found_in_clear(&db, &server, &secrets), Vec::<String>::new());
    let stored = sealed_columns(&db);
    assert!(stored.iter().all(|v| !v.contains("BEGIN PRIVATE KEY")), "{stored:?}");
    assert!(
        stored.iter().any(|v| v.starts_with("$argon2id$")),
        "recovery codes take a slow hash: {stored:?}"
    );
    let first_key = server.master_keys().current_id();
    assert!(
        stored.iter().filter(|v| !v.starts_with("$argon2")).all(|v| v.contains(&first_key)),
        "{stored:?}"
    );
    let key_file = std::fs::read_to_string(server.data_dir.join("master.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(server.data_dir.join("master.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is its owner's only");
    }

    // Everything still works, sealed: the terminal gets the password and
    // the acquirer's document; the owner logs in with a code.
    let mut clock_offset = 0;
    let mut in_use = async || {
        let tms_e2e::terminal::Outcome::Answer(_, body) =
            terminal.contact(&server.http, &server.base_url).await
        else {
            panic!("the terminal's contact was refused")
        };
        let answer = serde_json::to_string(&body).unwrap();
        assert!(answer.contains(menu_password), "the terminal gets its parameter: {answer}");
        let (status, session) = server
            .call(
                reqwest::Method::POST,
                "/api/v1/terminal/acquirer-sessions/ccv",
                Some(&terminal.token),
                None,
            )
            .await;
        assert_eq!((status.as_u16(), &session["document"]["zmk"]), (200, &json!(acquirer_key)), "{session}");
        // A code is good once: the next one comes 30 s later.
        server.advance_clock(&op, 60).await;
        clock_offset += 60;
        let code = tms_server::auth::totp::current_code(&secret, now() + clock_offset);
        let (status, body) = server
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": MERCHANT_PASSWORD, "totp_code": code})),
            )
            .await;
        assert_eq!(status, 200, "the two-step secret opens: {body}");
    };
    in_use().await;

    // A rotation while the server runs: a new key seals everything again,
    // the old one leaves the file, and nothing stops working.
    let out = server.command().args(["keys", "rotate-master"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let second_key = server.master_keys().current_id();
    assert_ne!(second_key, first_key);
    assert!(said.contains(&format!("new master key {second_key} (was {first_key})")), "{said}");
    assert!(said.contains("sealed again: 3 values, 1 parameter sets"), "{said}");
    let rotated_file = std::fs::read_to_string(server.data_dir.join("master.key")).unwrap();
    assert!(!rotated_file.contains(&first_key), "the old key left the file: {rotated_file}");
    assert_ne!(rotated_file, key_file);
    let stored = sealed_columns(&db);
    assert!(
        stored.iter().filter(|v| !v.starts_with("$argon2")).all(|v| v.contains(&second_key)),
        "{stored:?}"
    );
    in_use().await;
    assert_eq!(found_in_clear(&db, &server, &secrets), Vec::<String>::new());

    // Without its key file (a restore that forgot it), the database is not
    // given a new key that would open none of its secrets.
    let elsewhere = tempfile::tempdir().unwrap();
    let missing = elsewhere.path().join("master.key");
    let out =
        server.command().env("TMS_MASTER_KEY_FILE", &missing).args(["keys", "rotate"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no master key file") && err.contains(&second_key), "{err}");
    assert!(!missing.exists());

    let (_, rotation) = get(&server, &op, "/api/v1/audit?action=keys.rotate_master").await;
    assert_eq!(rotation[0]["detail"]["to"], second_key, "{rotation}");
    assert_eq!(rotation[0]["detail"]["dropped"][0], first_key.as_str(), "{rotation}");
    let (status, audit) = get(&server, &op, "/api/v1/audit?limit=200").await;
    assert_eq!(status, 200);
    assert!(!serde_json::to_string(&audit).unwrap().contains(menu_password), "{audit}");
});
