//! The HTTP layer: thin handlers over the domain, one error envelope, one
//! observing middleware.

pub mod accounts;
pub mod acquirers;
pub mod artifacts;
pub mod commands;
pub mod contact;
pub mod devices;
pub mod error;
pub mod health;
pub mod limits;
pub mod observe;
pub mod parameters;
pub mod releases;
pub mod store;
pub mod terminal;
pub mod tls;
pub mod webhooks;

use std::sync::Arc;

use actix_web::{App, HttpServer, web};

use crate::accounts::users::AccountSettings;
use crate::blobs::BlobStore;
use crate::config::Config;
use crate::contact::ContactService;
use crate::db::Db;
use crate::http::error::{Error, ErrorCode};
use crate::mail::Mailer;
use crate::metrics::Metrics;

/// The bearer token of a request, if it sent one.
pub fn bearer_token(req: &actix_web::HttpRequest) -> Option<String> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The device token a terminal API call must send, or 401.
pub fn device_token(req: &actix_web::HttpRequest) -> Result<String, Error> {
    bearer_token(req).ok_or_else(|| {
        Error::new(ErrorCode::InvalidDeviceToken, "send the device token: Authorization: Bearer <token>")
    })
}

/// The client's address: the peer of the connection, or the address a
/// trusted reverse proxy forwarded for (`trusted_proxies`).
pub fn client_ip(req: &actix_web::HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let Some(state) = req.app_data::<web::Data<AppState>>() else { return Some(peer.to_string()) };
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    Some(state.trusted_proxies.client(peer, &forwarded).to_canonical().to_string())
}

/// What every handler may reach: passed in, never global.
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub blobs: BlobStore,
    pub metrics: Metrics,
    pub mailer: Mailer,
    pub accounts: AccountSettings,
    pub contact: Arc<ContactService>,
    /// The hawkBit DDI device API over the same planner.
    pub ddi: Arc<crate::ddi::DdiService>,
    /// The clock the server reads (the one `time::now` reads).
    pub clock: crate::time::Clock,
    pub trusted_proxies: crate::net::TrustedProxies,
    /// Seals secrets at rest.
    pub master_keys: Arc<crate::secrets::MasterKeys>,
    /// The certificate, when the server speaks HTTPS itself.
    pub tls: Option<Arc<tls::ReloadingCert>>,
    /// The console's latest counts of the fleet.
    pub fleet_summary: Arc<crate::devices::overview::SummaryCache>,
}

/// Bodies of the requests made before anyone is authenticated (logins,
/// activations): small, so that nobody can make the server read or store
/// megabytes for free.
pub const AUTH_BODY_LIMIT: usize = 16 * 1024;

/// JSON bodies up to `limit` bytes, malformed or oversized ones answered
/// with the error envelope.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(|err, _req| {
        let code = match &err {
            actix_web::error::JsonPayloadError::ContentType => ErrorCode::UnsupportedMediaType,
            actix_web::error::JsonPayloadError::Overflow { .. }
            | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => ErrorCode::PayloadTooLarge,
            actix_web::error::JsonPayloadError::Payload(e) if limits::is_too_slow(e) => {
                ErrorCode::RequestTimeout
            }
            _ => ErrorCode::InvalidJson,
        };
        Error::new(code, err.to_string()).into()
    })
}

/// Registers every route and the extractor settings that turn malformed input
/// into envelope errors.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config(1 << 20))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _req| Error::new(ErrorCode::BadRequest, err.to_string()).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _req| Error::new(ErrorCode::NotFound, err.to_string()).into()),
        )
        // Resources with per-method routes: a known path with the wrong method
        // answers 405 method_not_allowed, not 404.
        .service(web::resource("/healthz").route(web::get().to(health::healthz)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)))
        .service(web::resource("/metrics").route(web::get().to(health::metrics)))
        .service(web::resource("/openapi.json").route(web::get().to(health::openapi)))
        .service(web::resource("/.well-known/tms/answer-keys").route(web::get().to(health::answer_keys)))
        // Routes are tried in order and every pattern with a `{parameter}` is a
        // regex match: the terminals' hot routes come before the management API
        // (measured: 40 % of the server's CPU in the contact benchmark went to
        // matching the routes registered before it).
        .configure(contact::terminal_routes)
        .configure(terminal::routes)
        .configure(commands::terminal_routes)
        .configure(crate::ddi::routes)
        .configure(accounts::routes)
        .configure(devices::routes)
        .configure(commands::routes)
        .configure(webhooks::routes)
        .configure(releases::routes)
        .configure(parameters::routes)
        .configure(acquirers::routes)
        .configure(contact::routes)
        .configure(store::routes)
        // The merchant portal's pages, after every API route.
        .configure(crate::web::routes)
        .default_service(web::to(|| async {
            Err::<actix_web::HttpResponse, _>(Error::new(ErrorCode::NotFound, "no such endpoint"))
        }));
}

/// Looks at the certificate files every `every_secs` and serves a renewed
/// certificate from the next handshake on; a reload is audited.
fn spawn_tls_reload(state: web::Data<AppState>, cert: Arc<tls::ReloadingCert>, every_secs: u64) {
    actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(every_secs)).await;
            match cert.reload_if_changed() {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(cert = %cert.cert_path().display(), "TLS certificate reloaded");
                    let detail = serde_json::json!({"cert": cert.cert_path().display().to_string()});
                    let recorded = state
                        .db
                        .run(move |conn| {
                            crate::db::audit::record(
                                conn,
                                &crate::db::audit::NewAuditEvent::now(
                                    "tms-server",
                                    "tls.reload",
                                    "tls",
                                    &detail,
                                ),
                            )
                        })
                        .await;
                    if let Err(e) = recorded {
                        tracing::error!(error = %e, "recording the TLS reload");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS files changed but do not load: the certificate in use stays")
                }
            }
        }
    });
}

/// Serves on `listener` (bound before anything else started, so a taken
/// port is the first thing reported) until SIGTERM, then drains in-flight
/// requests for up to `shutdown_timeout_secs`.
pub async fn serve(state: AppState, listener: std::net::TcpListener) -> std::io::Result<()> {
    let config = state.config.clone();
    let state = web::Data::new(state);
    let adjustable_clock = state.clock.is_adjustable();
    let mut server = HttpServer::new({
        let state = state.clone();
        move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(limits::limit))
                .wrap(actix_web::middleware::from_fn(observe::observe))
                .configure(|cfg| {
                    // Only a test's server has this route at all.
                    if adjustable_clock {
                        cfg.service(
                            web::resource("/api/v1/test/clock").route(web::post().to(health::advance_clock)),
                        );
                    }
                    configure(cfg)
                })
        }
    })
    .shutdown_timeout(config.shutdown_timeout_secs)
    .on_connect({
        let connections = Arc::new(limits::ConnectionCounter::default());
        move |io, extensions| {
            if let Some(address) = limits::peer_of(io) {
                extensions.insert(connections.open(address));
            }
        }
    });
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    let server = match &state.tls {
        Some(cert) => {
            let tls_config = cert.server_config().map_err(std::io::Error::other)?;
            spawn_tls_reload(state.clone(), cert.clone(), config.tls_reload_secs);
            server.listen_rustls_0_23(listener, tls_config)?
        }
        None => server.listen(listener)?,
    };
    let listen: Vec<String> = server.addrs().iter().map(ToString::to_string).collect();
    // Signals are ours, registered before the server says it listens: actix
    // registers its own only once the server first runs, and a SIGTERM sent
    // right after "listening" would otherwise kill the process outright.
    // SIGTERM drains in-flight requests; SIGINT and SIGQUIT stop at once.
    let server = server.disable_signals().run();
    let handle = server.handle();
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;
        tokio::spawn(async move {
            let graceful = tokio::select! {
                _ = terminate.recv() => true,
                _ = interrupt.recv() => false,
                _ = quit.recv() => false,
            };
            tracing::info!(graceful, "stopping");
            handle.stop(graceful).await;
        });
    }
    tracing::info!(
        listen = %listen.join(","),
        data_dir = %config.data_dir.display(),
        database = %crate::config::mask_url_password(&config.database_url()),
        object_store = %state.blobs.description(),
        version = env!("CARGO_PKG_VERSION"),
        "tms-server listening"
    );
    server.await?;
    tracing::info!("tms-server stopped");
    Ok(())
}
