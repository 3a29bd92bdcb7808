//! The server's answer-signing keys (the groundwork of the TMS contact).

use serde_json::json;
use tms_e2e::backend_test;
use tms_packages::contact::{AnswerError, sign_answer, verify_answer};
use tms_signing::PublicKey;

backend_test!(answer_keys_are_published_and_rotate, |db| {
    let server = tms_e2e::ServerBuilder::new().database(&db).start().await;
    let (status, published) = server.get_json("/.well-known/tms/answer-keys").await;
    assert_eq!(status, 200, "{published}");
    let first = published["current"].as_str().unwrap().to_owned();
    assert_eq!(published["keys"].as_array().unwrap().len(), 1);

    // An answer signed with the current key verifies against the published keys.
    let pool = db.pool();
    let key = tms_server::server_keys::current_signing_key(&mut pool.get().unwrap()).unwrap();
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
