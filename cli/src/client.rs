//! A typed HTTP client for the TMS APIs.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tms_packages::wire::{ErrorEnvelope, Health, Readiness};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach the server at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// The server answered with its error envelope.
    #[error("{} ({}, HTTP {status})", envelope.error.message, envelope.error.code)]
    Api { status: StatusCode, envelope: ErrorEnvelope },
    #[error("unexpected answer from the server (HTTP {status}): {detail}")]
    Unexpected { status: StatusCode, detail: String },
}

/// Parses `--server`: an http or https URL (a bad one is a usage error).
pub fn parse_server_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".into());
    }
    Ok(url)
}

pub struct Client {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

/// What `GET /readyz` said.
pub enum ReadyState {
    Ready(Readiness),
    NotReady(ErrorEnvelope),
}

impl Client {
    pub fn new(base: Url, token: Option<String>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tms/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::InvalidUrl { url: base.to_string(), reason: e.to_string() })?;
        Ok(Client { base, token, http })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        // `join` would drop a path prefix (a server behind /tms/) without the slash.
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(path.trim_start_matches('/')).expect("relative API paths are valid")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|source| ClientError::Unreachable { url: url.to_string(), source })
    }

    /// Decodes a success body (an empty one as JSON `null`), or the error
    /// envelope of a failure.
    async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
        let status = response.status();
        let body =
            response.bytes().await.map_err(|e| ClientError::Unexpected { status, detail: e.to_string() })?;
        if status.is_success() {
            let body: &[u8] = if body.is_empty() { b"null" } else { &body };
            return serde_json::from_slice(body)
                .map_err(|e| ClientError::Unexpected { status, detail: e.to_string() });
        }
        match serde_json::from_slice::<ErrorEnvelope>(&body) {
            Ok(envelope) => Err(ClientError::Api { status, envelope }),
            Err(_) => Err(ClientError::Unexpected {
                status,
                detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            }),
        }
    }

    /// One API call: `body` is sent as JSON, the answer decoded as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body.map(|b| serde_json::to_value(b).expect("request bodies serialise"));
        Self::decode(self.send(method, path, body.as_ref()).await?).await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// Copies a (possibly huge) response body to `out` chunk by chunk, in
    /// constant memory; an error answer is decoded as usual.
    pub async fn download(&self, path: &str, out: &mut impl std::io::Write) -> Result<u64, ClientError> {
        let mut response = self.send(Method::GET, path, None).await?;
        if !response.status().is_success() {
            return Self::decode::<serde_json::Value>(response).await.map(|_| 0);
        }
        let status = response.status();
        let mut written = 0u64;
        while let Some(chunk) =
            response.chunk().await.map_err(|e| ClientError::Unexpected { status, detail: e.to_string() })?
        {
            out.write_all(&chunk).map_err(|e| ClientError::Unexpected {
                status,
                detail: format!("writing the output: {e}"),
            })?;
            written += chunk.len() as u64;
        }
        out.flush()
            .map_err(|e| ClientError::Unexpected { status, detail: format!("writing the output: {e}") })?;
        Ok(written)
    }

    /// Uploads a body stream with extra headers (artifact publishing).
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&str, String)],
        length: u64,
        body: reqwest::Body,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut request = self
            .http
            .post(url.clone())
            .timeout(std::time::Duration::from_secs(24 * 3600))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable { url: url.to_string(), source })?;
        Self::decode(response).await
    }

    /// Sends a small raw body (an image) with its content type; the answer is
    /// decoded as `T`.
    pub async fn send_bytes<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut request = self
            .http
            .request(method, url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable { url: url.to_string(), source })?;
        Self::decode(response).await
    }

    /// A GET with extra headers whose answer is streamed by the caller
    /// (resumable downloads); error answers are decoded as usual.
    pub async fn get_stream(
        &self,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        let mut request = self.http.get(url.clone()).timeout(std::time::Duration::from_secs(24 * 3600));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable { url: url.to_string(), source })?;
        if response.status().is_success() || response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(response);
        }
        Self::decode::<serde_json::Value>(response).await.and_then(|_| {
            Err(ClientError::Unexpected {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                detail: "unexpected success".into(),
            })
        })
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }

    pub async fn readiness(&self) -> Result<ReadyState, ClientError> {
        match self.get("/readyz").await {
            Ok(ready) => Ok(ReadyState::Ready(ready)),
            Err(ClientError::Api { status: StatusCode::SERVICE_UNAVAILABLE, envelope }) => {
                Ok(ReadyState::NotReady(envelope))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_a_base_prefix() {
        let c = Client::new(parse_server_url("https://tms.example/api").unwrap(), None).unwrap();
        assert_eq!(c.url("/healthz").as_str(), "https://tms.example/api/healthz");
        let c = Client::new(parse_server_url("http://127.0.0.1:8080").unwrap(), None).unwrap();
        assert_eq!(c.url("/readyz").as_str(), "http://127.0.0.1:8080/readyz");
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(parse_server_url("ftp://x").is_err());
        assert!(parse_server_url("not a url").is_err());
    }
}
