//! The server's configuration: one typed struct, built from layers.
//!
//! Precedence, lowest first: built-in defaults < TOML file (`--config`) <
//! `TMS_*` environment variables < command-line flags. Every resolved value
//! remembers which layer it came from, so `tms-server config` can say so.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, ValueEnum};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    ParseFile { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{setting}: {message}")]
    Invalid { setting: &'static str, message: String },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// Declares every setting once and derives from that list the command-line and
/// environment arguments, the TOML file layer, the resolved `Config` and the
/// provenance bookkeeping, so the four can never disagree.
///
/// Each entry: `name: ParsedType => ResolvedType = default, env "TMS_NAME", secret?;`
/// where `ResolvedType` is `ParsedType` or `Option<ParsedType>`.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident : $ty:ty => $resolved:ty = $default:expr, env $env:literal, secret $secret:literal;
    )*) => {
        /// Settings as given on the command line or in `TMS_*` variables.
        #[derive(clap::Args, Clone, Default)]
        pub struct SettingsArgs {
            $(
                $(#[doc = $doc])*
                // Hidden from the generated help, which would repeat every
                // setting under each command: `tms-server --help` lists them
                // once ([`Config::SETTINGS_HELP`]).
                #[arg(long, env = $env, global = true, hide = true)]
                pub $field: Option<$ty>,
            )*
        }

        /// Settings as written in the TOML configuration file.
        #[derive(Deserialize, Clone, Default)]
        #[serde(deny_unknown_fields)]
        pub struct FileSettings {
            $( pub $field: Option<$ty>, )*
        }

        /// The effective configuration of one server process. Not `Debug`:
        /// printing it whole would leak secrets; use [`Config::describe`].
        #[derive(Serialize, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: $resolved, )*
            #[serde(skip)]
            sources: BTreeMap<&'static str, Source>,
        }

        impl Config {
            /// Resolves every setting from its layers. `arg_source` tells, for a
            /// setting given through `args`, whether it came from a flag or from
            /// its environment variable.
            pub fn resolve(
                args: SettingsArgs,
                file: Option<(PathBuf, FileSettings)>,
                arg_source: impl Fn(&'static str) -> Source,
            ) -> Config {
                let (file_path, file) = match file {
                    Some((path, settings)) => (Some(path), settings),
                    None => (None, FileSettings::default()),
                };
                let mut sources = BTreeMap::new();
                $(
                    let $field: $resolved = match (args.$field, file.$field) {
                        (Some(v), _) => {
                            sources.insert(stringify!($field), arg_source(stringify!($field)));
                            <$resolved>::from(v)
                        }
                        (None, Some(v)) => {
                            sources.insert(
                                stringify!($field),
                                Source::File(file_path.clone().unwrap_or_default()),
                            );
                            <$resolved>::from(v)
                        }
                        (None, None) => {
                            sources.insert(stringify!($field), Source::Default);
                            $default
                        }
                    };
                )*
                Config { $( $field, )* sources }
            }

            /// (name, environment variable, description) of each setting, in
            /// declaration order, for `tms-server --help`.
            pub const SETTINGS_HELP: &'static [(&'static str, &'static str, &'static str)] =
                &[$( (stringify!($field), $env, concat!($($doc),*)), )*];

            /// The environment variable of each setting, in declaration order.
            pub const ENV_VARS: &'static [(&'static str, &'static str)] =
                &[$( (stringify!($field), $env), )*];

            /// Whether a setting's value must never be printed.
            fn is_secret(name: &str) -> bool {
                false $( || ($secret && name == stringify!($field)) )*
            }
        }
    };
}

settings! {
    /// Address and port the HTTP server listens on; port 0 picks a free port [default: 127.0.0.1:8080]
    listen: SocketAddr => SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), env "TMS_LISTEN", secret false;
    /// Directory for the SQLite database, local blobs and the e-mail outbox, created if missing [default: ./tms-data]
    data_dir: PathBuf => PathBuf = PathBuf::from("./tms-data"), env "TMS_DATA_DIR", secret false;
    /// Database: sqlite://PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DB; the backend follows the
    /// scheme [default: sqlite://DATA_DIR/tms.sqlite]
    database_url: String => Option<String> = None, env "TMS_DATABASE_URL", secret false;
    /// Maximum number of pooled database connections [default: 16]
    db_pool_size: u32 => u32 = 16, env "TMS_DB_POOL_SIZE", secret false;
    /// Blob storage: file://PATH or s3://BUCKET[/PREFIX] [default: file://DATA_DIR/blobs]
    object_store_url: String => Option<String> = None, env "TMS_OBJECT_STORE_URL", secret false;
    /// S3 endpoint of an S3-compatible server (e.g. http://127.0.0.1:9000); AWS when unset
    s3_endpoint: String => Option<String> = None, env "TMS_S3_ENDPOINT", secret false;
    /// S3 region [default: AWS_REGION, else us-east-1]
    s3_region: String => Option<String> = None, env "TMS_S3_REGION", secret false;
    /// S3 access key id (falls back to AWS_ACCESS_KEY_ID and instance credentials)
    s3_access_key_id: String => Option<String> = None, env "TMS_S3_ACCESS_KEY_ID", secret false;
    /// S3 secret access key (falls back to AWS_SECRET_ACCESS_KEY)
    s3_secret_access_key: String => Option<String> = None, env "TMS_S3_SECRET_ACCESS_KEY", secret true;
    /// Allow plain-HTTP S3 endpoints, for local S3-compatible servers (true/false) [default: false]
    s3_allow_http: bool => bool = false, env "TMS_S3_ALLOW_HTTP", secret false;
    /// Log line format [default: text]
    log_format: LogFormat => LogFormat = LogFormat::Text, env "TMS_LOG_FORMAT", secret false;
    /// Log filter, e.g. "info" or "info,tms_server=debug" [default: info]
    log_level: String => String = "info".to_owned(), env "TMS_LOG_LEVEL", secret false;
    /// HTTP worker threads [default: number of CPU cores]
    workers: usize => Option<usize> = None, env "TMS_WORKERS", secret false;
    /// Seconds given to in-flight requests to finish after SIGTERM [default: 30]
    shutdown_timeout_secs: u64 => u64 = 30, env "TMS_SHUTDOWN_TIMEOUT_SECS", secret false;
    /// Base URL people reach the TMS at, used in links sent by e-mail [default: http://LISTEN]
    public_url: String => Option<String> = None, env "TMS_PUBLIC_URL", secret false;
    /// SMTP server for e-mail, e.g. smtps://user:password@mail.example:465 or
    /// smtp://127.0.0.1:25; without it e-mail is written to DATA_DIR/outbox
    smtp_url: String => Option<String> = None, env "TMS_SMTP_URL", secret false;
    /// Sender of e-mail [default: TMS <tms@localhost>]
    mail_from: String => String = "TMS <tms@localhost>".to_owned(), env "TMS_MAIL_FROM", secret false;
    /// Hours an account activation or invitation link stays valid [default: 168]
    activation_ttl_hours: u64 => u64 = 168, env "TMS_ACTIVATION_TTL_HOURS", secret false;
    /// Hours a login session lasts [default: 12]
    session_ttl_hours: u64 => u64 = 12, env "TMS_SESSION_TTL_HOURS", secret false;
    /// Minutes without a request after which a browser session ends (the session's hours still bound it) [default: 30]
    session_idle_minutes: u64 => u64 = 30, env "TMS_SESSION_IDLE_MINUTES", secret false;
    /// Failed logins for one account from one client address (or one activated terminal) before each further attempt waits [default: 3]
    login_free_failures: u32 => u32 = 3, env "TMS_LOGIN_FREE_FAILURES", secret false;
    /// Seconds the first attempt past the free failures waits after the last failure; each further failure doubles the wait [default: 30]
    login_first_delay_secs: u64 => u64 = 30, env "TMS_LOGIN_FIRST_DELAY_SECS", secret false;
    /// Longest wait between attempts for one account from one source [default: 900]
    login_max_delay_secs: u64 => u64 = 900, env "TMS_LOGIN_MAX_DELAY_SECS", secret false;
    /// Failed logins per account from every source together within the window, after which the account's logins wait for the window to pass (logins on activated terminals excepted) [default: 100]
    login_max_failures_per_account: u32 => u32 = 100, env "TMS_LOGIN_MAX_FAILURES_PER_ACCOUNT", secret false;
    /// Failed logins per client address, whatever the accounts, within the window [default: 50]
    login_max_failures_per_address: u32 => u32 = 50, env "TMS_LOGIN_MAX_FAILURES_PER_ADDRESS", secret false;
    /// Wrong two-step codes per account from every source together within the window; only a complete login forgives them [default: 5]
    login_max_code_failures_per_account: u32 => u32 = 5, env "TMS_LOGIN_MAX_CODE_FAILURES_PER_ACCOUNT", secret false;
    /// Seconds over which failed logins are counted [default: 3600]
    login_failure_window_secs: u64 => u64 = 3600, env "TMS_LOGIN_FAILURE_WINDOW_SECS", secret false;
    /// Seconds a request body may pause before the request is refused with 408 (a client holding a connection by sending slowly) [default: 20]
    body_idle_secs: u64 => u64 = 20, env "TMS_BODY_IDLE_SECS", secret false;
    /// Bytes a second a request body must keep up on average after its first 10 seconds; far below any real link, so artifact uploads that stream for minutes pass [default: 1024]
    body_min_bytes_per_sec: u64 => u64 = 1024, env "TMS_BODY_MIN_BYTES_PER_SEC", secret false;
    /// Connections one client address may hold open to the terminal API (a shop's terminals share one address behind its router); requests on connections past it get 429 and the connection closes; trusted proxies are not limited [default: 256]
    max_connections_per_address: usize => usize = 256, env "TMS_MAX_CONNECTIONS_PER_ADDRESS", secret false;
    /// Days a blob no row names stays before it is deleted (so a backup in progress or a racing publish never loses one) [default: 7]
    blob_gc_grace_days: u64 => u64 = 7, env "TMS_BLOB_GC_GRACE_DAYS", secret false;
    /// Seconds between passes of blob collection [default: 3600]
    blob_gc_interval_secs: u64 => u64 = 3600, env "TMS_BLOB_GC_INTERVAL_SECS", secret false;
    /// Earlier releases of the same app each release gets a binary delta from, built in the background (0: none) [default: 3]
    delta_from_releases: usize => usize = 3, env "TMS_DELTA_FROM_RELEASES", secret false;
    /// Largest base artifact a delta is built from, in MiB: building holds base and target in memory plus zstd's window [default: 1024]
    delta_max_base_mib: u64 => u64 = 1024, env "TMS_DELTA_MAX_BASE_MIB", secret false;
    /// zstd level deltas are built at (long-distance matching finds what versions share; higher levels barely shrink deltas and cost far more time) [default: 9]
    delta_level: i32 => i32 = 9, env "TMS_DELTA_LEVEL", secret false;
    /// Seconds between looks for releases whose deltas are not built yet [default: 60]
    delta_check_secs: u64 => u64 = 60, env "TMS_DELTA_CHECK_SECS", secret false;
    /// Terminals a group command is queued for per second, so a group of 100,000 is not asked at once [default: 500]
    command_fanout_per_sec: u64 => u64 = 500, env "TMS_COMMAND_FANOUT_PER_SEC", secret false;
    /// Days a log a terminal uploaded is kept; then it is deleted from the object store [default: 30]
    log_retention_days: u64 => u64 = 30, env "TMS_LOG_RETENTION_DAYS", secret false;
    /// Seconds between sweeps that expire commands past their time and delete logs past their retention [default: 30]
    command_sweep_secs: u64 => u64 = 30, env "TMS_COMMAND_SWEEP_SECS", secret false;
    /// Hours without a contact after which an active terminal is missing (a merchant may have its own) [default: 24]
    missing_after_hours: u64 => u64 = 24, env "TMS_MISSING_AFTER_HOURS", secret false;
    /// Seconds between passes that find missing terminals and those back [default: 60]
    missing_check_secs: u64 => u64 = 60, env "TMS_MISSING_CHECK_SECS", secret false;
    /// Seconds between counts of the fleet by model, firmware and app version for the console's overview (a full scan) [default: 300]
    console_summary_secs: u64 => u64 = 300, env "TMS_CONSOLE_SUMMARY_SECS", secret false;
    /// Milliseconds between looks for webhook deliveries due [default: 1000]
    webhook_poll_ms: u64 => u64 = 1000, env "TMS_WEBHOOK_POLL_MS", secret false;
    /// Seconds a webhook receiver has to answer before the attempt counts as failed [default: 10]
    webhook_timeout_secs: u64 => u64 = 10, env "TMS_WEBHOOK_TIMEOUT_SECS", secret false;
    /// PEM file of the TLS certificate chain: with tls_key, the server speaks HTTPS itself (and sends HSTS); without, plain HTTP, for loopback or behind a TLS-terminating proxy
    tls_cert: PathBuf => Option<PathBuf> = None, env "TMS_TLS_CERT", secret false;
    /// PEM file of the TLS certificate's private key
    tls_key: PathBuf => Option<PathBuf> = None, env "TMS_TLS_KEY", secret false;
    /// Seconds between looks at the TLS files: a renewed certificate is served from then on, without a restart [default: 10]
    tls_reload_secs: u64 => u64 = 10, env "TMS_TLS_RELOAD_SECS", secret false;
    /// File holding the master keys that seal secrets at rest (two-step secrets, answer-signing keys, secret parameters, acquirer documents); created with mode 0600 on first start; back it up apart from the database [default: DATA_DIR/master.key]
    master_key_file: PathBuf => Option<PathBuf> = None, env "TMS_MASTER_KEY_FILE", secret false;
    /// Addresses or CIDR ranges of reverse proxies, comma-separated (e.g. 10.0.0.0/8,::1): a request from one of them is attributed to the client its X-Forwarded-For header names, for throttling and the audit log; without it the connection's peer is the client
    trusted_proxies: String => Option<String> = None, env "TMS_TRUSTED_PROXIES", secret false;
    /// Largest release artifact accepted, in bytes [default: 4294967296 (4 GiB)]
    max_artifact_bytes: u64 => u64 = 4 << 30, env "TMS_MAX_ARTIFACT_BYTES", secret false;
    /// Seconds a signed contact answer stays valid; a terminal refuses it afterwards, so this bounds how long an attacker can freeze a terminal on an old answer [default: 3600]
    answer_ttl_secs: u64 => u64 = 3600, env "TMS_ANSWER_TTL_SECS", secret false;
    /// Answers are issued on a grid of this many seconds, so answers shared by terminals with the same target never go back in time; a replay within one step cannot be told apart [default: 60]
    answer_step_secs: u64 => u64 = 60, env "TMS_ANSWER_STEP_SECS", secret false;
    /// Milliseconds between polls of the change log: a change made through any server process reaches the contact answers of every other within this delay [default: 1000]
    contact_sync_ms: u64 => u64 = 1000, env "TMS_CONTACT_SYNC_MS", secret false;
    /// Milliseconds between batched writes of terminals' last contact and reported inventory [default: 5000]
    contact_flush_ms: u64 => u64 = 5000, env "TMS_CONTACT_FLUSH_MS", secret false;
    /// Seconds between rollout evaluations (advance a successful stage, pause on failures) [default: 15]
    rollout_check_secs: u64 => u64 = 15, env "TMS_ROLLOUT_CHECK_SECS", secret false;
    /// Seconds a terminal has to install an offered release, on top of its download at the slow-link speed; silence past that deadline counts as a timed-out attempt (retried as its deployment says) [default: 3600]
    action_timeout_secs: u64 => u64 = 3600, env "TMS_ACTION_TIMEOUT_SECS", secret false;
    /// Download speed, in bytes a second, that an offer's deadline allows for (256 kbit/s: a 100 MiB release adds 53 minutes) [default: 32768]
    slow_link_bytes_per_sec: u64 => u64 = 32768, env "TMS_SLOW_LINK_BYTES_PER_SEC", secret false;
    /// Tenant name in the hawkBit DDI device API's paths (/{tenant}/controller/v1/{controllerId}); the tenant is this operator's whole fleet, devices of every merchant [default: DEFAULT]
    ddi_tenant: String => String = "DEFAULT".to_owned(), env "TMS_DDI_TENANT", secret false;
    /// Whether DDI devices may authenticate with their own TargetToken (issued by POST /api/v1/linux-devices) [default: true]
    ddi_target_tokens: bool => bool = true, env "TMS_DDI_TARGET_TOKENS", secret false;
    /// The DDI tenant's GatewayToken: a device presenting it is named by its controller id alone; unset, gateway authentication is off
    ddi_gateway_token: String => Option<String> = None, env "TMS_DDI_GATEWAY_TOKEN", secret true;
    /// Location (id) where a DDI device polling for the first time with the gateway token is registered; unset, only registered devices are served (as Android terminals are)
    ddi_register_location: i64 => Option<i64> = None, env "TMS_DDI_REGISTER_LOCATION", secret false;
    /// Model a DDI device registered through the gateway token gets: firmware releases name it among their models [default: LINUX]
    ddi_register_model: String => String = "LINUX".to_owned(), env "TMS_DDI_REGISTER_MODEL", secret false;
    /// For tests only, never in production: lets an operator admin move the server's clock forward (POST /api/v1/test/clock), so tests drive time instead of waiting for it [default: false]
    adjustable_clock: bool => bool = false, env "TMS_ADJUSTABLE_CLOCK", secret false;
}

/// Which database backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}

/// Where blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreLocation {
    LocalDir(PathBuf),
    S3 { bucket: String, prefix: Option<String> },
}

impl Config {
    /// Resolves the configuration from parsed command-line matches: flags and
    /// `TMS_*` variables come through `args`; `config_file` is read if given.
    pub fn load(
        args: SettingsArgs,
        matches: &ArgMatches,
        config_file: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let file = config_file.map(read_file).transpose()?;
        let config = Config::resolve(args, file, |name| {
            let env =
                Config::ENV_VARS.iter().find(|(field, _)| *field == name).map(|(_, env)| *env).unwrap_or("?");
            match matches.value_source(name) {
                Some(ValueSource::EnvVariable) => Source::Env(env),
                _ => Source::Flag,
            }
        });
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.database()?;
        self.object_store()?;
        for (setting, value) in [
            ("db_pool_size", u64::from(self.db_pool_size)),
            ("body_idle_secs", self.body_idle_secs),
            ("command_fanout_per_sec", self.command_fanout_per_sec),
            ("missing_check_secs", self.missing_check_secs),
            ("command_sweep_secs", self.command_sweep_secs),
            ("log_retention_days", self.log_retention_days),
            ("delta_check_secs", self.delta_check_secs),
            ("blob_gc_interval_secs", self.blob_gc_interval_secs),
            ("tls_reload_secs", self.tls_reload_secs),
            ("webhook_poll_ms", self.webhook_poll_ms),
            ("console_summary_secs", self.console_summary_secs),
            ("webhook_timeout_secs", self.webhook_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid { setting, message: "must be at least 1".into() });
            }
        }
        if self.workers == Some(0) {
            return Err(ConfigError::Invalid { setting: "workers", message: "must be at least 1".into() });
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| ConfigError::Invalid { setting: "log_level", message: e.to_string() })?;
        self.trusted_proxies()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                setting: "tls_cert",
                message: "give both tls_cert and tls_key (TMS_TLS_CERT, TMS_TLS_KEY), or neither".into(),
            });
        }
        if !(1..=24 * 90).contains(&self.missing_after_hours) {
            return Err(ConfigError::Invalid {
                setting: "missing_after_hours",
                message: "from 1 hour to 90 days (2160)".into(),
            });
        }
        Ok(())
    }

    /// The master key file in effect (explicit, or in the data dir).
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub fn trusted_proxies(&self) -> Result<crate::net::TrustedProxies, ConfigError> {
        crate::net::TrustedProxies::parse(self.trusted_proxies.as_deref().unwrap_or(""))
            .map_err(|message| ConfigError::Invalid { setting: "trusted_proxies", message })
    }

    /// The base URL for links in e-mail, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.tls_cert.is_some() => format!("https://{}", self.listen),
            None => format!("http://{}", self.listen),
        }
    }

    /// The database URL in effect (explicit, or the SQLite file in the data dir).
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("tms.sqlite").display()),
        }
    }

    /// The backend and the connection string diesel expects for it.
    pub fn database(&self) -> Result<(DatabaseBackend, String), ConfigError> {
        let url = self.database_url();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(invalid_db("sqlite:// needs a file path"));
            }
            Ok((DatabaseBackend::Sqlite, path.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok((DatabaseBackend::Postgres, url))
        } else {
            Err(invalid_db("must start with sqlite:// or postgres://"))
        }
    }

    /// Where blobs live, from `object_store_url` (or the data dir).
    pub fn object_store(&self) -> Result<ObjectStoreLocation, ConfigError> {
        let Some(raw) = &self.object_store_url else {
            return Ok(ObjectStoreLocation::LocalDir(self.data_dir.join("blobs")));
        };
        let invalid =
            |message: &str| ConfigError::Invalid { setting: "object_store_url", message: message.to_owned() };
        if let Some(path) = raw.strip_prefix("file://") {
            if path.is_empty() {
                return Err(invalid("file:// needs a directory path"));
            }
            return Ok(ObjectStoreLocation::LocalDir(PathBuf::from(path)));
        }
        if let Some(rest) = raw.strip_prefix("s3://") {
            let (bucket, prefix) = match rest.split_once('/') {
                Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
                None => (rest, ""),
            };
            if bucket.is_empty() {
                return Err(invalid("s3:// needs a bucket name"));
            }
            return Ok(ObjectStoreLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            });
        }
        Err(invalid("must start with file:// or s3://"))
    }

    /// Where a setting's value came from.
    pub fn source(&self, name: &str) -> Source {
        self.sources.get(name).cloned().unwrap_or(Source::Default)
    }

    /// `name = value  (source)` lines for every setting, secrets masked and
    /// derived defaults spelled out.
    pub fn describe(&self) -> Vec<(String, String, String)> {
        let serde_json::Value::Object(values) =
            serde_json::to_value(self).expect("config serialises to a JSON object")
        else {
            unreachable!("Config is a struct");
        };
        let mut out = Vec::new();
        for (name, _) in Config::ENV_VARS {
            let value = &values[*name];
            let source = self.source(name);
            let shown = match (*name, value) {
                ("public_url", serde_json::Value::Null) => {
                    format!("{} (derived from listen)", self.public_url())
                }
                (_, serde_json::Value::Null) => match *name {
                    "database_url" => format!("{} (derived from data_dir)", self.database_url()),
                    "object_store_url" => {
                        format!("file://{} (derived from data_dir)", self.data_dir.join("blobs").display())
                    }
                    "master_key_file" => {
                        format!("{} (derived from data_dir)", self.master_key_path().display())
                    }
                    _ => "(unset)".to_owned(),
                },
                (n, _) if Config::is_secret(n) => "********".to_owned(),
                ("database_url" | "smtp_url", serde_json::Value::String(url)) => mask_url_password(url),
                (_, serde_json::Value::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            };
            out.push(((*name).to_owned(), shown, source.to_string()));
        }
        out
    }
}

fn invalid_db(message: &str) -> ConfigError {
    ConfigError::Invalid { setting: "database_url", message: message.to_owned() }
}

fn read_file(path: &Path) -> Result<(PathBuf, FileSettings), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::ReadFile { path: path.to_owned(), source })?;
    let settings = toml::from_str(&text)
        .map_err(|source| ConfigError::ParseFile { path: path.to_owned(), source: Box::new(source) })?;
    Ok((path.to_owned(), settings))
}

/// Replaces the password of a URL (`postgres://u:secret@h/db`, or a
/// `password=` query parameter) with asterisks. A URL that does not parse is
/// shown as its scheme only, since where its password sits is unknown.
pub fn mask_url_password(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        let scheme = raw.split_once("://").map(|(s, _)| s).unwrap_or("?");
        return format!("{scheme}://********");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("********"));
    }
    if url.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v =
                    if k.eq_ignore_ascii_case("password") { "********".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: SettingsArgs, file: Option<FileSettings>) -> Config {
        Config::resolve(args, file.map(|f| (PathBuf::from("tms.toml"), f)), |_| Source::Flag)
    }

    #[test]
    fn defaults_need_no_configuration() {
        let config = resolve(SettingsArgs::default(), None);
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.database().unwrap(), (DatabaseBackend::Sqlite, "./tms-data/tms.sqlite".into()));
        assert_eq!(
            config.object_store().unwrap(),
            ObjectStoreLocation::LocalDir(PathBuf::from("./tms-data/blobs"))
        );
        assert_eq!(config.source("listen"), Source::Default);
    }

    #[test]
    fn args_beat_file_beat_defaults() {
        let file = FileSettings {
            listen: Some("0.0.0.0:9000".parse().unwrap()),
            db_pool_size: Some(4),
            ..Default::default()
        };
        let args = SettingsArgs { listen: Some("127.0.0.1:7000".parse().unwrap()), ..Default::default() };
        let config = resolve(args, Some(file));
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.source("listen"), Source::Flag);
        assert_eq!(config.db_pool_size, 4);
        assert_eq!(config.source("db_pool_size"), Source::File(PathBuf::from("tms.toml")));
        assert_eq!(config.source("shutdown_timeout_secs"), Source::Default);
    }

    #[test]
    fn backend_follows_the_url_scheme() {
        let with_url = |url: &str| {
            resolve(SettingsArgs { database_url: Some(url.into()), ..Default::default() }, None).database()
        };
        assert_eq!(with_url("postgres://u@h/db").unwrap().0, DatabaseBackend::Postgres);
        assert_eq!(with_url("postgresql://u@h/db").unwrap().0, DatabaseBackend::Postgres);
        assert_eq!(
            with_url("sqlite:///var/tms.db").unwrap(),
            (DatabaseBackend::Sqlite, "/var/tms.db".into())
        );
        assert!(with_url("mysql://u@h/db").is_err());
        assert!(with_url("sqlite://").is_err());
    }

    #[test]
    fn s3_urls_split_bucket_and_prefix() {
        let with_url = |url: &str| {
            resolve(SettingsArgs { object_store_url: Some(url.into()), ..Default::default() }, None)
                .object_store()
        };
        assert_eq!(
            with_url("s3://tms/blobs/").unwrap(),
            ObjectStoreLocation::S3 { bucket: "tms".into(), prefix: Some("blobs".into()) }
        );
        assert_eq!(
            with_url("s3://tms").unwrap(),
            ObjectStoreLocation::S3 { bucket: "tms".into(), prefix: None }
        );
        assert!(with_url("s3://").is_err());
        assert!(with_url("gs://x").is_err());
    }

    #[test]
    fn secrets_and_url_passwords_are_masked() {
        let args = SettingsArgs {
            database_url: Some("postgres://tms:hunter2@db/tms".into()),
            s3_secret_access_key: Some("very-secret".into()),
            ..Default::default()
        };
        let shown = resolve(args, None).describe();
        let text = format!("{shown:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!mask_url_password("postgres://h/db?user=u&password=pw1").contains("pw1"));
        assert!(!mask_url_password("postgres://u:p/ss@h/db").contains("ss@"));
        assert!(!text.contains("very-secret"), "{text}");
        assert!(text.contains("postgres://tms:********@db/tms"), "{text}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("tms-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "listn = \"127.0.0.1:1\"\n").unwrap();
        let Err(err) = read_file(&path) else { panic!("a typo in a key must be refused") };
        let err = err.to_string();
        assert!(err.contains("listn"), "{err}");
    }
}
