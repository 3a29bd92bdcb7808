//! Attack traffic on loopback, bounded in count and time: slow bodies and
//! connection hoarding.

use std::time::Duration;

use tms_e2e::{ServerBuilder, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection that sends `head` and then nothing: what the server
/// answered, and whether it closed the connection within `within`.
async fn send_and_see(addr: &str, head: &str, within: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut answer)).await.is_ok();
    (String::from_utf8_lossy(&answer).to_string(), closed)
}

async fn send_and_wait(addr: &str, head: &str, within: Duration) -> String {
    send_and_see(addr, head, within).await.0
}

#[tokio::test]
async fn a_body_that_stops_gets_408_and_its_connection_is_closed() {
    let db = TestDatabase::sqlite();
    let server = ServerBuilder::new().database(&db).env("TMS_BODY_IDLE_SECS", "1").start().await;
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    // Twenty clients announce 1,000 bytes and send one, on a login and on
    // the terminal API.
    let mut held = Vec::new();
    for n in 0..20 {
        let path = if n % 2 == 0 { "/api/v1/auth/login" } else { "/api/v1/terminal/activation/start" };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: tms\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        let addr = addr.clone();
        held.push(tokio::spawn(async move { send_and_see(&addr, &head, Duration::from_secs(30)).await }));
    }
    // Meanwhile the server answers everyone else.
    assert_eq!(server.get("/healthz").await.status(), 200);
    for answer in held {
        let (answer, closed) = answer.await.unwrap();
        assert!(closed, "the connection is closed: {answer}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
        assert!(answer.contains("stopped for 1 s"), "{answer}");
    }
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection_to_the_terminal_api() {
    let db = TestDatabase::sqlite();
    let server = ServerBuilder::new().database(&db).env("TMS_MAX_CONNECTIONS_PER_ADDRESS", "5").start().await;
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    // Five connections held by bodies that never come (each within the
    // body's idle allowance).
    let mut hoard = Vec::new();
    for _ in 0..5 {
        let mut held = TcpStream::connect(&addr).await.unwrap();
        let head = "POST /api/v1/terminal/activation/start HTTP/1.1\r\nHost: tms\r\n\
                    Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
        held.write_all(head.as_bytes()).await.unwrap();
        hoard.push(held);
    }
    let probe = "GET /api/v1/terminal/nothing HTTP/1.1\r\nHost: tms\r\nConnection: close\r\n\r\n";
    // The server takes the five in as its workers get to them.
    let mut answer = String::new();
    for _ in 0..100 {
        answer = send_and_wait(&addr, probe, Duration::from_secs(10)).await;
        if answer.starts_with("HTTP/1.1 429") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 429"), "the sixth connection is refused: {answer}");
    // The server closes a refused connection itself.
    let (answer, closed) = send_and_see(
        &addr,
        "GET /api/v1/terminal/nothing HTTP/1.1\r\nHost: tms\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 429") && closed, "{answer}");
    assert!(answer.contains("\"code\":\"too_many_connections\""), "{answer}");
    assert!(answer.to_lowercase().contains("connection: close"), "{answer}");
    // The management API and the pages are not limited this way.
    let health = send_and_wait(
        &addr,
        "GET /healthz HTTP/1.1\r\nHost: tms\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Connections given back, the address is served again.
    drop(hoard);
    let mut answer = String::new();
    for _ in 0..100 {
        answer = send_and_wait(&addr, probe, Duration::from_secs(10)).await;
        if !answer.starts_with("HTTP/1.1 429") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}
