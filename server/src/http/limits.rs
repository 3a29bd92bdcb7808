//! What one client can hold: how slowly a request body may arrive, and how
//! many connections one address may keep open to the terminal API.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web;
use bytes::Bytes;
use futures_util::Stream;

use super::AppState;
use super::error::{Error, ErrorCode};

/// How a request body must keep arriving.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// The longest pause between two pieces of a body.
    pub idle: Duration,
    /// The average rate a body must keep up once `grace` has passed: slow
    /// links pass, a client dripping bytes to hold a connection does not.
    pub min_bytes_per_sec: u64,
    pub grace: Duration,
}

/// A body read under a [`BodyPace`]: one that pauses or drags ends in an
/// error the handlers turn into `408 request_timeout`.
struct PacedBody {
    inner: Payload,
    pace: BodyPace,
    started: Instant,
    received: u64,
    idle: Pin<Box<tokio::time::Sleep>>,
    ended: bool,
}

/// `body`, read under `pace`.
pub fn paced(body: Payload, pace: BodyPace) -> Payload {
    let paced = PacedBody {
        inner: body,
        pace,
        started: Instant::now(),
        received: 0,
        idle: Box::pin(tokio::time::sleep(pace.idle)),
        ended: false,
    };
    Payload::from(Box::pin(paced) as Pin<Box<dyn Stream<Item = _>>>)
}

/// The error of a body that came too slowly.
pub fn too_slow(why: String) -> PayloadError {
    PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, why))
}

/// Whether a body could not be read because it came too slowly.
pub fn is_too_slow(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

impl Stream for PacedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                let elapsed = self.started.elapsed();
                let due = elapsed.saturating_sub(self.pace.grace).as_secs_f64()
                    * self.pace.min_bytes_per_sec as f64;
                if (self.received as f64) < due {
                    self.ended = true;
                    let why = format!(
                        "the request body came at less than {} bytes a second ({} bytes in {:.0} s)",
                        self.pace.min_bytes_per_sec,
                        self.received,
                        elapsed.as_secs_f64()
                    );
                    return Poll::Ready(Some(Err(too_slow(why))));
                }
                let next = Instant::now() + self.pace.idle;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => {
                self.ended = true;
                Poll::Ready(other)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.ended = true;
                    let why = format!("the request body stopped for {} s", self.pace.idle.as_secs());
                    Poll::Ready(Some(Err(too_slow(why))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Open connections per client address; each connection holds a
/// [`ConnectionSlot`] that gives its place back when the connection closes.
#[derive(Debug, Default)]
pub struct ConnectionCounter {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in the count, and how many its address had open
/// with it.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    pub address: IpAddr,
    pub open_with_it: usize,
}

impl ConnectionCounter {
    pub fn open(self: &Arc<Self>, address: IpAddr) -> ConnectionSlot {
        let mut open = self.open.lock().expect("connection count lock");
        let count = open.entry(address).or_default();
        *count += 1;
        ConnectionSlot { counter: self.clone(), address, open_with_it: *count }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().expect("connection count lock");
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// The peer of a new connection, plain or TLS.
pub fn peer_of(io: &dyn std::any::Any) -> Option<IpAddr> {
    use actix_web::rt::net::TcpStream;
    if let Some(tcp) = io.downcast_ref::<TcpStream>() {
        return tcp.peer_addr().ok().map(|a| a.ip().to_canonical());
    }
    io.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
        .and_then(|tls| tls.get_ref().0.peer_addr().ok())
        .map(|a| a.ip().to_canonical())
}

/// Paces every request body, and refuses terminal API requests on a
/// connection opened past its address's limit (an address that is a trusted
/// proxy is not limited: it speaks for many clients).
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    if req.path().starts_with("/api/v1/terminal/")
        && let Some(slot) = req.conn_data::<ConnectionSlot>()
        && slot.open_with_it > state.config.max_connections_per_address
        && !state.trusted_proxies.is_proxy(slot.address)
    {
        let refusal = Error::new(
            ErrorCode::TooManyConnections,
            format!(
                "this address has more than {} connections open to the terminal API",
                state.config.max_connections_per_address
            ),
        );
        let mut res = actix_web::ResponseError::error_response(&refusal);
        res.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(req.into_response(res));
    }
    let has_body = req.headers().contains_key(actix_web::http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()) != Some(0));
    if !has_body {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    let pace = BodyPace {
        idle: Duration::from_secs(state.config.body_idle_secs),
        min_bytes_per_sec: state.config.body_min_bytes_per_sec,
        grace: Duration::from_secs(10),
    };
    let (http_req, payload) = req.into_parts();
    let req = ServiceRequest::from_parts(http_req, paced(payload, pace));
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    const PACE: BodyPace =
        BodyPace { idle: Duration::from_secs(20), min_bytes_per_sec: 1024, grace: Duration::from_secs(10) };

    /// A body whose pieces come from the test, as slowly as it likes.
    fn body() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, Payload) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (Ok::<_, PayloadError>(chunk), rx))
        });
        (tx, paced(Payload::from(Box::pin(stream) as Pin<Box<dyn Stream<Item = _>>>), PACE))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_is_cut_after_the_idle_pause() {
        let (tx, mut body) = body();
        tx.send(Bytes::from_static(b"{")).unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"{"));
        let err = body.next().await.unwrap().unwrap_err();
        assert!(is_too_slow(&err), "{err}");
        assert!(err.to_string().contains("stopped for 20 s"), "{err}");
        assert!(body.next().await.is_none(), "nothing after the cut");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dripping_body_is_cut_a_slow_link_is_not() {
        // 100 bytes every 19 s: never idle 20 s, but far below 1 KiB/s.
        let (tx, mut dripping) = body();
        let mut cut = None;
        for n in 0..10 {
            tx.send(Bytes::from(vec![b'x'; 100])).unwrap();
            match dripping.next().await.unwrap() {
                Ok(_) => tokio::time::advance(Duration::from_secs(19)).await,
                Err(e) => {
                    cut = Some((n, e));
                    break;
                }
            }
        }
        let (n, err) = cut.expect("the drip is cut");
        assert!(is_too_slow(&err) && err.to_string().contains("less than 1024 bytes a second"), "{err}");
        assert_eq!(n, 1, "cut at the first piece past the grace period");
        // A slow link, 4 KiB every second for a minute, passes.
        let (tx, mut slow) = body();
        for _ in 0..60 {
            tx.send(Bytes::from(vec![b'x'; 4096])).unwrap();
            slow.next().await.unwrap().unwrap();
            tokio::time::advance(Duration::from_secs(1)).await;
        }
    }
}
