//! The middleware every request passes through: request id, tracing span,
//! metrics, and the guarantee that every error response carries the envelope.

use std::collections::BTreeMap;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::http::AppState;
use crate::http::error::{ErrorCode, envelope};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `f` as if handling the request `id` (for code outside the middleware).
pub fn with_request_id<R>(id: &str, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id.to_owned(), f)
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A caller's own id is kept when it is short and plain, so a request can be
/// followed across a proxy; anything else is replaced by a fresh random id.
fn request_id_for(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()))
}

/// The methods each route answers, as an `Allow` value, from the API
/// document (a route missing from it gets no `Allow`).
fn allowed_methods(pattern: &str) -> Option<HeaderValue> {
    static ALLOWED: std::sync::OnceLock<std::collections::HashMap<String, HeaderValue>> =
        std::sync::OnceLock::new();
    let allowed = ALLOWED.get_or_init(|| {
        use utoipa::OpenApi;
        crate::openapi::ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .filter_map(|(path, item)| {
                let methods: Vec<&str> = [
                    ("GET", item.get.is_some()),
                    ("HEAD", item.head.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, present)| present.then_some(m))
                .collect();
                let value = HeaderValue::from_str(&methods.join(", ")).ok()?;
                Some((path.clone(), value))
            })
            .collect()
    });
    allowed.get(pattern).cloned()
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id_for(&req);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());

    // Handlers turn their errors into responses themselves, so an `Err` here
    // only comes from the framework's plumbing; it cannot be rewritten without
    // the request, which routing needs to own exclusively.
    let mut res = match REQUEST_ID.scope(id.clone(), next.call(req).instrument(span.clone())).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) => {
            tracing::error!(parent: &span, error = %err, "request failed before reaching a handler");
            return Err(err);
        }
    };

    let status = res.status();
    if (status.is_client_error() || status.is_server_error()) && !is_ours(&res) {
        // The framework's own errors (no route, wrong method, …) come as
        // plain text; clients get the same envelope as from our handlers.
        let code = ErrorCode::for_status(status.as_u16());
        let message = if code == ErrorCode::Internal {
            if let Some(err) = res.response().error() {
                tracing::error!(parent: &span, error = %err, "internal error");
            }
            "internal error".to_owned()
        } else {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        };
        let mut replacement = REQUEST_ID.sync_scope(id.clone(), || envelope(code, &message, BTreeMap::new()));
        *replacement.status_mut() = status;
        // A 405 names the methods the resource answers (RFC 9110, 15.5.6).
        if status == actix_web::http::StatusCode::METHOD_NOT_ALLOWED
            && let Some(allowed) = res.request().match_pattern().and_then(|p| allowed_methods(&p))
        {
            replacement.headers_mut().insert(header::ALLOW, allowed);
        }
        res = res.into_response(replacement);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    if state.as_ref().is_some_and(|s| s.tls.is_some()) {
        res.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(super::tls::HSTS));
    }

    let elapsed = started.elapsed();
    // Pages say how long the server took to make them (read by tms-bench
    // and by a browser's developer tools); the terminals' answers do not pay for it.
    if res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
        && let Ok(value) = HeaderValue::from_str(&format!("app;dur={:.2}", elapsed.as_secs_f64() * 1e3))
    {
        res.headers_mut().insert(header::HeaderName::from_static("server-timing"), value);
    }
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    if let Some(state) = state {
        state.metrics.observe_request(&route, method_label(res.request().method()), status.as_u16(), elapsed);
    }
    let _entered = span.enter();
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1e3, "request failed");
    } else {
        tracing::debug!(status = status.as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1e3, "request done");
    }
    Ok(res)
}

/// Any method token is valid HTTP; only the standard ones become label
/// values, so odd requests cannot grow the metrics without bound.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// An answer our handlers wrote: the JSON envelope, or a portal page.
fn is_ours(res: &ServiceResponse<BoxBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"))
}
