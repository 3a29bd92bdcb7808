//! `tms-bench portal`: the merchant portal's page times for a merchant with
//! many terminals and transactions. It seeds them through the real APIs
//! (activations, then transaction uploads through the terminal API, spread
//! over a year), signs in through the login form as a browser does, then
//! asks each page in turn and reads the server's own time from each
//! answer's `Server-Timing` header (the target: under 50 ms for every page).

use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::{ServerBuilder, TestServer};

#[derive(Args, Debug, Clone)]
pub struct PortalArgs {
    /// Terminals of the merchant
    #[arg(long, default_value_t = 200)]
    pub terminals: usize,
    /// Transactions, spread over the terminals and the last year
    #[arg(long, default_value_t = 1_000_000)]
    pub transactions: usize,
    /// Requests per page
    #[arg(long, default_value_t = 100)]
    pub requests: usize,
    /// sqlite or postgres
    #[arg(long = "backend", value_name = "BACKEND", default_value = "sqlite", value_parser = crate::fleet_bench::postgres_backend, action = clap::ArgAction::Set)]
    pub postgres: bool,
}

const BATCH: usize = 1000;
const TARGET_MS: f64 = 50.0;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The value of a form field in a page (`name="csrf" value="…"`).
fn form_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[at..].split('"').next()?.to_owned())
}

fn cookie_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all("set-cookie").iter().find_map(|v| {
        let text = v.to_str().ok()?;
        let (pair, _) = text.split_once(';').unwrap_or((text, ""));
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

/// A browser's session: the login form's double-submit cookie, then the
/// session cookie it sets.
pub async fn sign_in(server: &TestServer, email: &str, password: &str) -> String {
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let form = client.get(server.url("/login")).send().await.expect("login page");
    let form_cookie = cookie_of(&form, "tms_form").expect("form cookie");
    let html = form.text().await.expect("login html");
    let csrf = form_value(&html, "csrf").expect("csrf field");
    let signed = client
        .post(server.url("/login"))
        .header("cookie", format!("tms_form={form_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("csrf", csrf.as_str()),
                    ("email", email),
                    ("password", password),
                    ("next", "/"),
                ])
                .finish(),
        )
        .send()
        .await
        .expect("login");
    assert_eq!(signed.status(), 303, "signed in");
    cookie_of(&signed, "tms_session").expect("session cookie")
}

pub async fn run(args: PortalArgs) {
    let db = crate::fleet_bench::bench_database(args.postgres);
    let server = ServerBuilder::new()
        .database(&db)
        .env("TMS_LOG_LEVEL", "warn,tms_server::http=info")
        .env("TMS_CONTACT_FLUSH_MS", "200")
        .start()
        .await;
    server.create_operator(OPERATOR, "operator_admin", OPERATOR_PASSWORD);
    let op = server.login(OPERATOR, OPERATOR_PASSWORD).await;
    let email = "bench@portal.example";
    let serials: Vec<String> = (0..args.terminals).map(|i| format!("PB{i:08}")).collect();
    let serial_refs: Vec<&str> = serials.iter().map(String::as_str).collect();
    let (merchant_id, location, _admin) = merchant(&server, &op, "Portal Bench", email, &serial_refs).await;

    eprintln!("activating {} terminals…", args.terminals);
    let started = Instant::now();
    let mut terminals = Vec::new();
    for serial in &serials {
        let mut t = activated_terminal(&server, email, (merchant_id, location), serial, "A920").await;
        // Each reports its state once, as a terminal in service has.
        if let crate::terminal::Outcome::Answer(answer, body) =
            t.contact(&server.http, &server.base_url).await
        {
            let _ = answer;
            t.apply(&server.http, &server.base_url, &body).await;
        }
        terminals.push(t);
    }
    eprintln!("  {:.1} s", started.elapsed().as_secs_f64());

    eprintln!("seeding {} transactions through the terminal API…", args.transactions);
    let started = Instant::now();
    let year_ago = chrono::Utc::now() - chrono::Duration::days(365);
    let step_ms = (365 * 24 * 3600 * 1000) / args.transactions.max(1) as i64;
    let batches: Vec<(usize, usize)> = (0..args.transactions)
        .step_by(BATCH)
        .map(|start| (start, BATCH.min(args.transactions - start)))
        .collect();
    let tokens: Vec<String> = terminals.iter().map(|t| t.token.clone()).collect();
    futures_util::stream::iter(batches.into_iter().map(|(start, n)| {
        let token = tokens[(start / BATCH) % tokens.len()].clone();
        let server = &server;
        async move {
            let batch: Vec<Value> = (start..start + n)
                .map(|i| {
                    json!({
                        "terminal_tx_id": format!("PB{i:010}"),
                        "occurred_at": (year_ago + chrono::Duration::milliseconds(i as i64 * step_ms)).to_rfc3339(),
                        "type": if i % 40 == 0 { "refund" } else { "payment" },
                        "amount_minor": 100 + (i % 9000) as i64,
                        "currency": "EUR",
                        "acquirer": "CCV",
                        "masked_card": "**** **** **** 4242",
                        "status": if i % 50 == 0 { "failure" } else { "success" },
                        "receipt_printed": i % 3 == 0,
                    })
                })
                .collect();
            let (status, body) = post(server, &token, "/api/v1/terminal/transactions", json!({"transactions": batch})).await;
            assert_eq!(status, 200, "upload failed: {body}");
        }
    }))
    .buffer_unordered(2)
    .collect::<Vec<()>>()
    .await;
    eprintln!("  {:.1} s", started.elapsed().as_secs_f64());

    let session = sign_in(&server, email, MERCHANT_PASSWORD).await;
    let get_page = |path: String| get_page(&server, &session, path);
    // An older page of the transactions: the cursor of the fifth page.
    let mut deep = "/transactions".to_owned();
    for _ in 0..5 {
        let (_, _, _, body) = get_page(deep.clone()).await;
        let Some(at) = body.find("rel=\"next\"") else { break };
        let start = body[..at].rfind("href=\"").expect("next link") + 6;
        deep = body[start..].split('"').next().expect("href").replace("&amp;", "&");
    }
    let device = terminals[0].device_id;
    let pages: Vec<(&str, String)> = vec![
        ("home", "/".into()),
        ("locations", "/locations".into()),
        ("terminals", "/terminals".into()),
        ("terminal", format!("/terminals/{device}")),
        ("transactions", "/transactions".into()),
        ("transactions, one terminal", format!("/transactions?terminal={device}")),
        ("transactions, one day", {
            let day = (chrono::Utc::now() - chrono::Duration::days(100)).format("%Y-%m-%d");
            format!("/transactions?from={day}&to={day}")
        }),
        ("transactions, 6th page", deep),
        ("terminal settings", format!("/locations/{location}/settings")),
        ("app store", "/store".into()),
        ("users and groups", "/users".into()),
        ("activity", "/activity".into()),
        ("profile", "/profile".into()),
    ];
    eprintln!();
    eprintln!(
        "merchant portal, {} terminals, {} transactions, {}: server time per page ({} requests each)",
        args.terminals,
        args.transactions,
        if args.postgres { "postgres" } else { "sqlite" },
        args.requests
    );
    let results = measure_pages(&server, &session, &pages, args.requests, TARGET_MS).await;
    println!(
        "{}",
        json!({
            "benchmark": "portal_pages",
            "backend": if args.postgres { "postgres" } else { "sqlite" },
            "terminals": args.terminals,
            "transactions": args.transactions,
            "requests_per_page": args.requests,
            "target_p99_ms": TARGET_MS,
            "pages": results,
        })
    );
}

/// One page as a signed-in browser asks it: (status, the server's own time
/// in ms from `Server-Timing`, the time seen by the client in ms, body).
pub async fn get_page(
    server: &TestServer,
    session: &str,
    path: String,
) -> (reqwest::StatusCode, Option<f64>, f64, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let started = Instant::now();
    let response = client
        .get(server.url(&path))
        .header("cookie", format!("tms_session={session}"))
        .send()
        .await
        .expect("page");
    let status = response.status();
    let timing = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("dur=").nth(1))
        .and_then(|v| v.parse::<f64>().ok());
    let body = response.text().await.expect("page body");
    (status, timing, started.elapsed().as_secs_f64() * 1e3, body)
}

/// Asks each page `requests` times; prints a row per page (server time
/// p50, p99, max; client p50) and returns them as JSON.
pub async fn measure_pages(
    server: &TestServer,
    session: &str,
    pages: &[(&str, String)],
    requests: usize,
    target_ms: f64,
) -> Vec<Value> {
    let mut results = Vec::new();
    eprintln!("  {:<28} {:>9} {:>9} {:>9}   {:>10}", "page", "p50 ms", "p99 ms", "max ms", "client p50");
    for (name, path) in pages {
        let mut server_ms = Vec::new();
        let mut client_ms = Vec::new();
        for _ in 0..requests {
            let (status, timing, client_time, _) = get_page(server, session, path.clone()).await;
            assert_eq!(status, 200, "{name}: {path}");
            server_ms.push(timing.expect("a Server-Timing header"));
            client_ms.push(client_time);
        }
        server_ms.sort_by(f64::total_cmp);
        client_ms.sort_by(f64::total_cmp);
        let (p50, p99, max) =
            (percentile(&server_ms, 50.0), percentile(&server_ms, 99.0), server_ms[server_ms.len() - 1]);
        eprintln!(
            "  {name:<28} {p50:>9.2} {p99:>9.2} {max:>9.2}   {:>10.2}{}",
            percentile(&client_ms, 50.0),
            if p99 < target_ms { "" } else { "  MISSED" }
        );
        results.push(json!({"page": name, "path": path, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
                            "client_p50_ms": percentile(&client_ms, 50.0), "within_target": p99 < target_ms}));
    }
    results
}
