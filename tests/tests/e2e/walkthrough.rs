//! docs/terminal-api.md, run: its commands, in order, against a server set
//! up as the page says, and each answer it shows checked against the real
//! one, so the page cannot drift from the server.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tms_e2e::backend_test;
use tms_e2e::fixtures::*;

const PAGE: &str = include_str!("../../../docs/terminal-api.md");
const APP: &str = "eu.ccv.salespoint";
const SERIAL: &str = "5500000001";
const MERCHANT_EMAIL: &str = "gerant@tabac-rivoli.example";

/// The page's shell blocks, in order, and its answers: (the file a command
/// wrote, the JSON shown for it).
fn blocks(page: &str) -> (Vec<String>, Vec<(String, String)>) {
    let (mut commands, mut answers) = (Vec::new(), Vec::new());
    let mut lines = page.lines();
    let mut answer_file: Option<String> = None;
    while let Some(line) = lines.next() {
        if let Some(file) = line.strip_prefix("<!-- answer: ").and_then(|l| l.strip_suffix(" -->")) {
            answer_file = Some(file.trim().to_owned());
            continue;
        }
        let fence = match line.trim() {
            "```sh" => "sh",
            "```json" => "json",
            _ => continue,
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        match (fence, answer_file.take()) {
            ("sh", _) => commands.push(body.join("\n")),
            ("json", Some(file)) => answers.push((file, body.join("\n"))),
            _ => {}
        }
    }
    (commands, answers)
}

/// Every member name anywhere in a JSON value.
fn names(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                names(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| names(v, out)),
        _ => {}
    }
}

/// The member names a shown answer uses (it may abbreviate with `…`, so it
/// is read as text, not parsed).
fn shown_names(shown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = shown;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let word = &after[..end];
        let tail = after[end + 1..].trim_start();
        if tail.starts_with(':') {
            out.insert(word.to_owned());
        }
        rest = &after[end + 1..];
    }
    out
}

backend_test!(the_terminal_walkthrough_runs_as_written, |db| {
    let tools = ["bash", "curl", "jq", "openssl", "sha256sum", "xxd"];
    if tms_e2e::require_programs("curl, jq, openssl and xxd (the terminal walkthrough)", &tools).is_none() {
        return;
    }
    let (server, op) = server_with_operator(&db).await;
    let (merchant_id, location, _admin) =
        merchant(&server, &op, "Tabac Rivoli", MERCHANT_EMAIL, &[SERIAL]).await;
    let key = app_with_key(&server, &op, APP, "app").await;
    let v1 = publish_release(&server, &op, &key, APP, "app", "1.0.0", 100, &["A920"]).await;
    publish_release(&server, &op, &key, APP, "app", "2.0.0", 200, &["A920"]).await;
    let (status, body) = post(
        &server,
        &op,
        "/api/v1/deployments",
        json!({"app_id": APP, "version": "2.0.0", "target": "everyone"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    ccv_acquirer(&server, &op, merchant_id, Some(location), json!({"emv": {"aid": ["A0000000041010"]}}))
        .await;

    let (commands, answers) = blocks(PAGE);
    assert!(
        commands.len() >= 8 && answers.len() >= 6,
        "{} commands, {} answers",
        commands.len(),
        answers.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let script = format!("set -euo pipefail\n{}\n", commands.join("\n"));
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("TMS", &server.base_url)
        .env("MERCHANT_EMAIL", MERCHANT_EMAIL)
        .env("MERCHANT_PASSWORD", MERCHANT_PASSWORD)
        .env("SERIAL", SERIAL)
        .env("INSTALLED_SHA256", v1["artifact_sha256"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the walkthrough failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (file, shown) in answers {
        let real: Value = serde_json::from_slice(&std::fs::read(dir.path().join(&file)).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut present = BTreeSet::new();
        names(&real, &mut present);
        let missing: Vec<String> = shown_names(&shown).difference(&present).cloned().collect();
        assert!(missing.is_empty(), "{file} shows {missing:?}, which the real answer lacks: {real:#}");
    }
});
