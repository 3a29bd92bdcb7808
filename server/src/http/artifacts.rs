//! Serving artifacts: GET and HEAD with ETag (the sha256), a single byte
//! range (206, or 416 when unsatisfiable), If-Range and If-None-Match,
//! streamed from the object store in constant memory.

use std::collections::BTreeMap;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use tms_signing::Sha256Digest;

use crate::http::AppState;
use crate::http::error::{Error, ErrorCode, envelope};

/// What a `Range` header asks of a resource of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) range: the whole resource.
    Full,
    /// Bytes `start..end` (end exclusive).
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Parses one `bytes=` range (`a-b`, `a-`, `-n`). Several ranges, other units
/// or malformed values fall back to the whole resource, as RFC 9110 allows.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeRequest::Full };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeRequest::Full };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last n bytes.
        let Ok(n) = last.parse::<u64>() else { return RangeRequest::Full };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        (size.saturating_sub(n), size)
    } else {
        let Ok(start) = first.parse::<u64>() else { return RangeRequest::Full };
        let end = if last.is_empty() {
            size
        } else {
            match last.parse::<u64>() {
                Ok(l) if l >= start => l.saturating_add(1).min(size),
                _ => return RangeRequest::Full,
            }
        };
        if start >= size {
            return RangeRequest::Unsatisfiable;
        }
        (start, end)
    };
    RangeRequest::Partial { start: range.0, end: range.1 }
}

/// Answers a download of the blob `digest` of `size` bytes.
pub async fn serve(
    state: &AppState,
    req: &HttpRequest,
    digest: Sha256Digest,
    size: u64,
    file_name: &str,
) -> Result<HttpResponse, Error> {
    let etag = format!("\"{digest}\"");
    let header_str =
        |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // If-None-Match compares weakly (RFC 9110, 13.1.2): `W/"…"` matches.
    if header_str(header::IF_NONE_MATCH).is_some_and(|v| {
        v.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    }) {
        return Ok(HttpResponse::NotModified().insert_header((header::ETAG, etag)).finish());
    }
    // If-Range: the range holds only while the client's copy is this one.
    let range_allowed = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = if range_allowed {
        parse_range(header_str(header::RANGE).as_deref(), size)
    } else {
        RangeRequest::Full
    };

    let (status, start, end) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeRequest::Unsatisfiable => {
            let mut res = envelope(
                ErrorCode::RangeNotSatisfiable,
                &format!("the artifact has {size} bytes"),
                BTreeMap::new(),
            );
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return Ok(res);
        }
    };
    let mut builder = HttpResponse::build(status);
    builder
        .insert_header((header::ETAG, etag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")))
        .insert_header((header::CACHE_CONTROL, "private, max-age=31536000, immutable"));
    if status == StatusCode::PARTIAL_CONTENT {
        builder.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1)));
    }
    if req.method() == Method::HEAD {
        // The declared size is the answer; actix never sends a HEAD body.
        let nothing = futures_util::stream::empty::<Result<bytes::Bytes, actix_web::Error>>();
        return Ok(builder.no_chunking(end - start).streaming(nothing));
    }
    let range = (status == StatusCode::PARTIAL_CONTENT).then_some(start..end);
    let stream = state.blobs.read_range(&digest, range).await?;
    let body = stream.map(|chunk| {
        chunk.map_err(|e| {
            tracing::error!(error = %e, "artifact stream failed");
            actix_web::error::ErrorInternalServerError("artifact stream failed")
        })
    });
    Ok(builder.no_chunking(end - start).streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial { start: 0, end: 10 });
        assert_eq!(parse_range(Some("bytes=50-"), 100), Partial { start: 50, end: 100 });
        assert_eq!(parse_range(Some("bytes=-10"), 100), Partial { start: 90, end: 100 });
        assert_eq!(parse_range(Some("bytes=-500"), 100), Partial { start: 0, end: 100 });
        assert_eq!(parse_range(Some("bytes=90-500"), 100), Partial { start: 90, end: 100 });
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=9-3"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-18446744073709551615"), 100), Partial { start: 0, end: 100 });
        assert_eq!(parse_range(Some("bytes=-18446744073709551615"), 100), Partial { start: 0, end: 100 });
    }
}
