//! `tms-server`: runs the TMS, or one of its operator commands.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tms_packages::accounts::OperatorRole;
use tms_server::accounts::users::AccountSettings;
use tms_server::blobs::BlobStore;
use tms_server::config::{Config, LogFormat, SettingsArgs};
use tms_server::contact::{ContactService, ContactSettings};
use tms_server::db::Db;
use tms_server::http::{self, AppState};
use tms_server::mail::Mailer;
use tms_server::metrics::Metrics;

/// The TMS server: the terminal API that payment terminals contact, the
/// management API behind the `tms` CLI, and the store of signed releases.
///
/// With no configuration at all it keeps everything under ./tms-data (a SQLite
/// file and a blob folder) and listens on 127.0.0.1:8080.
///
/// Every setting below can also be given in the TOML file named by --config
/// (as `name = value`, with underscores: `db_pool_size = 8`) or in its TMS_*
/// environment variable. Precedence: defaults < file < environment < flags.
/// Every command reads the same settings (its database, data directory, …).
#[derive(Parser)]
#[command(name = "tms-server", version, max_term_width = 100)]
struct Cli {
    /// TOML configuration file
    #[arg(long, env = "TMS_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    settings: SettingsArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (what runs when no command is given)
    Serve,
    /// Print the effective configuration, secrets masked, and where each value came from
    Config,
    /// Apply pending database migrations and exit (the server also does this at start-up)
    Migrate {
        /// Say what an upgrade would apply, and whether this server can run against the
        /// database, without changing anything
        #[arg(long)]
        check: bool,
    },
    /// Take a consistent backup while the server serves: the database (SQLite's VACUUM INTO, or
    /// pg_dump), every blob checked against its sha256, and a manifest naming the server and
    /// schema versions
    Backup {
        /// An empty or new folder for the backup
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Restore a backup into an empty data directory, database and object store (run with the
    /// settings of the installation to restore into)
    Restore {
        /// The folder `backup` wrote
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
    },
    /// The blob store: collect blobs no row names any more
    #[command(subcommand)]
    Blobs(BlobsCommand),
    /// Manage the payment provider's staff accounts from the server host
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// The keys the server signs its answers to terminals with
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Simulated fleets for tests and benchmarks
    #[command(subcommand)]
    Fleet(FleetCommand),
}

#[derive(Subcommand, Debug)]
enum FleetCommand {
    /// Create merchants, locations, registered terminals and activated devices; write
    /// `device_id,token,model,merchant_id,location_id,hardware_id` per device to --tokens
    Seed {
        #[arg(long, default_value_t = 10)]
        merchants: u32,
        #[arg(long, default_value_t = 10)]
        locations_per_merchant: u32,
        #[arg(long)]
        terminals: u64,
        /// Terminal models, comma-separated, assigned in turn
        #[arg(long, default_value = "A920,A80")]
        models: String,
        /// Device tokens derive from this seed (tms_d_ + sha256(seed, n))
        #[arg(long, default_value = "fleet")]
        token_seed: String,
        /// Where the device tokens go (CSV)
        #[arg(long)]
        tokens: std::path::PathBuf,
        /// Each terminal has reported running this app, as APP_ID@VERSION:CODE (e.g.
        /// eu.ccv.payment@1.0.0:100), on firmware 9.0.0, 9.1.0 or 10.0.0 in turn; without it,
        /// the terminals never called
        #[arg(long, value_parser = parse_reported_app)]
        reported_app: Option<(String, String, u64)>,
        /// Seed Linux devices on the DDI API (kind linux, controller ids ddi-<run>-<n>) instead of
        /// Android terminals
        #[arg(long)]
        linux: bool,
    },
}

fn parse_reported_app(text: &str) -> Result<(String, String, u64), String> {
    let (app, rest) = text.split_once('@').ok_or("APP_ID@VERSION:CODE")?;
    let (version, code) = rest.split_once(':').ok_or("APP_ID@VERSION:CODE")?;
    let code = code.parse().map_err(|e| format!("the version code: {e}"))?;
    Ok((app.to_owned(), version.to_owned(), code))
}

#[derive(Subcommand, Debug)]
enum BlobsCommand {
    /// Mark blobs no row names, and delete those that stayed so for blob_gc_grace_days (the
    /// server also does this every blob_gc_interval_secs)
    Gc {
        /// List what would be marked and deleted, and change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Retire the current answer-signing key and make a new one (retired keys stay published)
    Rotate,
    /// Make a new master key, seal every secret at rest again under it, and drop the old key
    /// from the key file; running servers pick the new file up without a restart
    RotateMaster,
    /// List the published keys
    List,
}

#[derive(Subcommand, Debug)]
enum OperatorCommand {
    /// Create an operator user with a password (the first operator_admin, typically)
    Create {
        /// E-mail address, the login name
        #[arg(long)]
        email: String,
        /// operator_admin, release_engineer or support
        #[arg(long, value_parser = parse_role)]
        role: OperatorRole,
        /// Read the password from standard input (first line) instead of asking on the terminal
        #[arg(long)]
        password_stdin: bool,
    },
}

fn parse_role(s: &str) -> Result<OperatorRole, String> {
    s.parse().map_err(|e: tms_packages::accounts::UnknownName| e.to_string())
}

/// The first line of standard input, or asked on the terminal without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        rpassword::prompt_password("Password: ")
            .context("reading the password (without a terminal, pass --password-stdin and pipe it)")
    }
}

/// A bad value that came from a `TMS_*` variable, named as such: clap
/// would blame the flag, which the user never typed.
fn blame_environment(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) =
        (e.get(ContextKind::InvalidArg), e.get(ContextKind::InvalidValue))
    else {
        return None;
    };
    let flag = arg.split_whitespace().next()?;
    let field = flag.strip_prefix("--")?.replace('-', "_");
    let (_, env) = Config::ENV_VARS.iter().find(|(name, _)| *name == field)?;
    let typed = std::env::args_os()
        .any(|a| a.to_str().is_some_and(|a| a == flag || a.starts_with(&format!("{flag}="))));
    if typed || std::env::var(env).ok().as_deref() != Some(value.as_str()) {
        return None;
    }
    let reason = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
    Some(format!("invalid value {value:?} in the environment variable {env}{reason}"))
}

/// The settings, listed once under `tms-server --help` (clap would list
/// every global one again under each command).
fn settings_help() -> String {
    let mut out = String::from("Settings:\n");
    for (name, env, doc) in Config::SETTINGS_HELP {
        let flag = name.replace('_', "-");
        out.push_str(&format!("      --{flag} <{}>\n", name.to_uppercase()));
        let mut line = String::from("         ");
        for word in doc.split_whitespace().chain([format!("[env: {env}]").as_str()]) {
            if line.len() + word.len() + 1 > 100 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("         ");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn command() -> clap::Command {
    Cli::command().after_help(settings_help())
}

fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => match blame_environment(&e) {
            Some(message) => {
                eprintln!("tms-server: {message}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tms-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let config = Config::load(cli.settings, matches, cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config => {
            let rows = config.describe();
            let width = rows.iter().map(|(name, _, _)| name.len()).max().unwrap_or(0);
            for (name, value, source) in rows {
                println!("{name:<width$} = {value}  ({source})");
            }
            Ok(())
        }
        Command::Migrate { check: true } => {
            let db = open_existing_db_unmigrated(&config)?;
            let status = db.schema_status()?;
            let at = database_named(&config);
            println!("database  {at}");
            println!("schema    {}", status.version().unwrap_or("empty"));
            println!(
                "server    tms-server {} (knows up to {})",
                env!("CARGO_PKG_VERSION"),
                Db::latest_migration()
            );
            status.ensure_known()?;
            if status.pending.is_empty() {
                println!("up to date: nothing to apply");
            } else {
                println!("would apply {} migrations:", status.pending.len());
                for name in &status.pending {
                    println!("  {name}");
                }
            }
            Ok(())
        }
        Command::Migrate { check: false } => {
            init_logging(&config);
            let db = open_db(&config)?;
            let applied = db.migrate()?;
            tracing::info!(applied = applied.len(), versions = ?applied, "migrations applied");
            println!("{} migrations applied to {}", applied.len(), database_named(&config));
            Ok(())
        }
        Command::Blobs(BlobsCommand::Gc { dry_run }) => {
            let db = open_existing_db(&config)?;
            let grace = chrono::Duration::days(config.blob_gc_grace_days as i64);
            actix_web::rt::System::new().block_on(async move {
                let blobs = BlobStore::from_config(&config).context("opening the object store")?;
                let collection = tms_server::blob_gc::collect(&db, &blobs, grace, dry_run).await?;
                for orphan in &collection.orphans {
                    let fate = if orphan.due {
                        "delete now".to_owned()
                    } else {
                        format!("delete after {}", tms_server::time::rfc3339(orphan.since + grace))
                    };
                    println!(
                        "{}  {:>12} bytes  unreferenced since {}  {fate}",
                        orphan.sha256,
                        orphan.size,
                        tms_server::time::rfc3339(orphan.since)
                    );
                }
                let waiting = collection.orphans.iter().filter(|o| !o.due).count();
                if dry_run {
                    let due: Vec<_> = collection.orphans.iter().filter(|o| o.due).collect();
                    println!(
                        "dry run: {} blobs, {} would be deleted ({} bytes), {} waiting for their grace period; nothing changed",
                        collection.blobs,
                        due.len(),
                        due.iter().map(|o| o.size).sum::<u64>(),
                        waiting
                    );
                } else {
                    println!(
                        "{} blobs: {} deleted ({} bytes), {} waiting for their grace period",
                        collection.blobs, collection.deleted, collection.deleted_bytes, waiting
                    );
                }
                Ok(())
            })
        }
        Command::Backup { out } => {
            let db = open_existing_db_unmigrated(&config)?;
            let blobs = BlobStore::from_config(&config)?;
            let (backend, url) = config.database()?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let manifest = runtime.block_on(tms_server::backup::backup(&db, backend, &url, &blobs, &out))?;
            println!(
                "backup of {} (schema {}) in {}: {} blobs, {} bytes",
                database_named(&config),
                manifest.schema_version,
                out.display(),
                manifest.blobs,
                manifest.blob_bytes
            );
            Ok(())
        }
        Command::Restore { from } => {
            let (backend, url) = config.database()?;
            let sqlite_path = match backend {
                tms_server::config::DatabaseBackend::Sqlite => Some(PathBuf::from(&url)),
                tms_server::config::DatabaseBackend::Postgres => None,
            };
            let target = tms_server::backup::RestoreTarget {
                backend,
                database_url: &url,
                sqlite_path: sqlite_path.as_deref(),
                data_dir: &config.data_dir,
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let manifest = runtime.block_on(tms_server::backup::restore(&from, &target, || {
                Ok((
                    open_db(&config)
                        .map_err(|e| tms_server::backup::BackupError::Refused(format!("{e:#}")))?,
                    BlobStore::from_config(&config)
                        .map_err(|e| tms_server::backup::BackupError::Refused(e.to_string()))?,
                ))
            }))?;
            println!(
                "restored the backup of {} (tms-server {}, schema {}) into {}: {} blobs",
                manifest.created_at,
                manifest.server_version,
                manifest.schema_version,
                database_named(&config),
                manifest.blobs
            );
            Ok(())
        }
        Command::Operator(OperatorCommand::Create { email, role, password_stdin }) => {
            let password = read_password(password_stdin)?;
            let db = open_existing_db(&config)?;
            let mut conn = db.get()?;
            let id = tms_server::accounts::users::create_operator(&mut conn, &email, role, &password)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created operator {id} ({email}, {role}) in {}", database_named(&config));
            Ok(())
        }
        Command::Keys(KeysCommand::RotateMaster) => {
            let db = open_existing_db(&config)?;
            let keys = Arc::new(open_master_keys(&config, &db)?);
            actix_web::rt::System::new().block_on(async move {
                let blobs = BlobStore::from_config(&config)
                    .context("opening the object store")?
                    .sealing_with(keys.clone());
                let old = keys.current_id();
                let settle = 2 * tms_server::secrets::RELOAD_CHECK;
                let rotation = tms_server::secrets::reseal::rotate_master(&db, &blobs, &keys, settle).await?;
                println!(
                    "new master key {} (was {old}); sealed again: {} values, {} parameter sets",
                    rotation.new_key, rotation.resealed.values, rotation.resealed.blobs
                );
                if rotation.remaining > 0 {
                    anyhow::bail!(
                        "{} secrets are still sealed under an old key (written meanwhile by a server that had                          not read the new key file yet?): the old key stays in {}; run this again",
                        rotation.remaining,
                        keys.path().display()
                    );
                }
                println!(
                    "dropped {} from {}; back the file up now",
                    rotation.dropped.join(", "),
                    keys.path().display()
                );
                Ok(())
            })
        }
        Command::Keys(command) => {
            let db = open_existing_db(&config)?;
            let mut conn = db.get()?;
            if let KeysCommand::Rotate = command {
                let keys = open_master_keys(&config, &db)?;
                let id = tms_server::server_keys::rotate(&mut conn, &keys)?;
                println!("new answer-signing key {id}");
            }
            let keys = tms_server::server_keys::published(&mut conn)?;
            for k in keys.keys {
                let state = match &k.retired_at {
                    Some(at) => format!("retired {at}"),
                    None if k.key_id == keys.current => "current".to_owned(),
                    None => "active".to_owned(),
                };
                println!("{}  {}  created {}  {state}", k.key_id, k.public_key, k.created_at);
            }
            Ok(())
        }
        Command::Fleet(FleetCommand::Seed {
            merchants,
            locations_per_merchant,
            terminals,
            models,
            token_seed,
            tokens,
            reported_app,
            linux,
        }) => {
            let db = open_existing_db(&config)?;
            let mut conn = db.get()?;
            let file =
                std::fs::File::create(&tokens).with_context(|| format!("creating {}", tokens.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let spec = tms_server::fleet::FleetSpec {
                merchants,
                locations_per_merchant,
                terminals,
                models: models.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect(),
                token_seed,
                reported: reported_app,
                linux,
            };
            let started = std::time::Instant::now();
            let n = tms_server::fleet::seed(&mut conn, &spec, &mut out)?;
            std::io::Write::flush(&mut out)?;
            println!(
                "seeded {n} devices in {:.1} s; tokens in {}",
                started.elapsed().as_secs_f64(),
                tokens.display()
            );
            Ok(())
        }
        Command::Serve => {
            init_logging(&config);
            serve(config)
        }
    }
}

fn open_db(config: &Config) -> anyhow::Result<Db> {
    let (backend, url) = config.database()?;
    Ok(Db::open(backend, &url, config.db_pool_size)?)
}

/// The database of a running installation, for an admin command,
/// migrated.
fn open_existing_db(config: &Config) -> anyhow::Result<Db> {
    let db = open_existing_db_unmigrated(config)?;
    db.migrate().context("migrating the database")?;
    Ok(db)
}

/// The database of a running installation, as it is. A SQLite file that
/// does not exist is refused rather than created: run from the wrong
/// directory, the command would otherwise fill a new, empty database that
/// no server reads.
fn open_existing_db_unmigrated(config: &Config) -> anyhow::Result<Db> {
    if let (tms_server::config::DatabaseBackend::Sqlite, path) = config.database()?
        && !std::path::Path::new(&path).exists()
    {
        anyhow::bail!(
            "there is no database at {path} (from the data_dir setting: --data-dir or TMS_DATA_DIR, \
             or database_url): run this where the server keeps its data, or point the setting at it"
        );
    }
    open_db(config)
}

/// The master keys, from their file, made on first use: never for a
/// database whose secrets some other key sealed (a restore without its key
/// file), which a new key would leave unreadable.
fn open_master_keys(config: &Config, db: &Db) -> anyhow::Result<tms_server::secrets::MasterKeys> {
    let path = config.master_key_path();
    if !path.exists() {
        let in_use = tms_server::secrets::reseal::keys_in_use(&mut *db.get()?)?;
        if !in_use.is_empty() {
            anyhow::bail!(
                "there is no master key file at {} (the master_key_file setting), but the database holds \
                 secrets sealed under master key {}: put the key file back from where it was backed up",
                path.display(),
                in_use.join(", ")
            );
        }
    }
    tms_server::secrets::MasterKeys::open_or_create(&path)
        .with_context(|| format!("opening the master key file (master_key_file: {})", path.display()))
}

/// The database a command worked on, for its last line (no password).
fn database_named(config: &Config) -> String {
    tms_server::config::mask_url_password(&config.database_url())
}

fn serve(config: Config) -> anyhow::Result<()> {
    let clock = if config.adjustable_clock {
        tracing::warn!("the clock is adjustable (adjustable_clock): for tests only, never in production");
        tms_server::time::Clock::adjustable()
    } else {
        tms_server::time::Clock::system()
    };
    if tms_server::time::install(clock.clone()).is_err() {
        anyhow::bail!("the clock was read before the server installed its own");
    }
    if config.listen.ip().is_unspecified() && config.public_url.is_none() {
        tracing::warn!(
            public_url = %config.public_url(),
            "public_url is not set and the server listens on every address: links in e-mails \
             (activation, password reset) would point at this address, which nobody can open; set \
             TMS_PUBLIC_URL (or --public-url) to the address people reach the server at"
        );
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            tms_server::http::tls::ReloadingCert::load(cert, key)
                .context("loading the TLS certificate (tls_cert, tls_key)")?,
        )),
        _ => None,
    };
    if tls.is_none() && !config.listen.ip().is_loopback() && config.trusted_proxies.is_none() {
        tracing::warn!(
            listen = %config.listen,
            "serving plain HTTP on an address others can reach: give the server a certificate (TMS_TLS_CERT, \
             TMS_TLS_KEY), or put a TLS-terminating proxy in front of it (and name it in TMS_TRUSTED_PROXIES)"
        );
    }
    // The port first: a taken one is reported before anything is migrated.
    let listener = std::net::TcpListener::bind(config.listen).with_context(|| {
        format!("cannot listen on {} (the listen setting: --listen or TMS_LISTEN)", config.listen)
    })?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let db = open_db(&config)?;
    let applied = db.migrate().context("migrating the database")?;
    if !applied.is_empty() {
        tracing::info!(versions = ?applied, "database migrated");
    }
    let master_keys = Arc::new(open_master_keys(&config, &db)?);
    let key_id = tms_server::server_keys::ensure_current(&mut *db.get()?, &master_keys)
        .context("preparing the answer-signing key")?;
    tracing::info!(key_id, master_key = master_keys.current_id(), "answer-signing key");
    actix_web::rt::System::new().block_on(async move {
        // The S3 client needs a runtime to be built in.
        let blobs = BlobStore::from_config(&config)
            .context("opening the object store")?
            .sealing_with(master_keys.clone());
        // Secrets written in clear by an older server, or under a key a
        // rotation left behind, are sealed under the current key.
        let resealed = tms_server::secrets::reseal::reseal_all(&db, &blobs, &master_keys)
            .await
            .context("sealing secrets under the master key")?;
        if resealed != Default::default() {
            tracing::info!(
                values = resealed.values,
                parameter_sets = resealed.blobs,
                "sealed secrets at rest"
            );
        }
        // Uploads a crash interrupted are staged under uploads/; a day later they go.
        let sweeper = blobs.clone();
        tokio::spawn(async move {
            loop {
                match sweeper.sweep_stale_uploads(std::time::Duration::from_secs(24 * 3600)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "removed stale staged uploads"),
                    Err(e) => tracing::warn!(error = %e, "could not sweep staged uploads"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        });
        let metrics = Metrics::default();
        {
            let (db, blobs, metrics) = (db.clone(), blobs.clone(), metrics.clone());
            let grace = chrono::Duration::days(config.blob_gc_grace_days as i64);
            let every = std::time::Duration::from_secs(config.blob_gc_interval_secs);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match tms_server::blob_gc::collect(&db, &blobs, grace, false).await {
                        Ok(collection) => {
                            if collection.deleted > 0 {
                                tracing::info!(
                                    deleted = collection.deleted,
                                    bytes = collection.deleted_bytes,
                                    "collected orphan blobs"
                                );
                            }
                            metrics.record_blob_collection(&collection);
                        }
                        Err(e) => tracing::warn!(error = %e, "could not collect orphan blobs"),
                    }
                }
            });
        }
        if config.delta_from_releases > 0 {
            let (db, blobs) = (db.clone(), blobs.clone());
            let settings = tms_server::releases::deltas::DeltaSettings {
                from_releases: config.delta_from_releases,
                max_base_bytes: config.delta_max_base_mib << 20,
                min_saving_percent: 30,
                level: config.delta_level,
            };
            let every = std::time::Duration::from_secs(config.delta_check_secs);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = tms_server::releases::deltas::build_pending(&db, &blobs, settings).await {
                        tracing::warn!(error = %e, "could not build release deltas");
                    }
                }
            });
        }
        {
            // Group commands fanned out a second's share at a time.
            let fan_db = db.clone();
            let per_pass = config.command_fanout_per_sec.min(i64::MAX as u64) as i64;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if let Err(e) =
                        fan_db.run(move |conn| tms_server::commands::fan_out(conn, per_pass)).await
                    {
                        tracing::warn!(error = %e, "could not fan out group commands");
                    }
                }
            });
            // Expired commands and logs past their retention (deleted from
            // the object store).
            let (db, blobs) = (db.clone(), blobs.clone());
            let every = std::time::Duration::from_secs(config.command_sweep_secs);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let now = tms_server::time::now();
                    let swept = db
                        .run(move |conn| {
                            tms_server::commands::expire(conn, now)?;
                            tms_server::commands::logs::expire(conn, now)
                        })
                        .await;
                    match swept {
                        Ok(gone) => {
                            for sha256 in gone {
                                let Ok(digest) = sha256.parse::<tms_signing::Sha256Digest>() else {
                                    continue;
                                };
                                if let Err(e) = blobs.delete_blob(&digest).await {
                                    tracing::warn!(error = %e, sha256, "could not delete an expired log");
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "could not expire commands and logs"),
                    }
                }
            });
        }
        {
            // Missing terminals: those crossing a threshold since the last pass.
            let (db, metrics) = (db.clone(), metrics.clone());
            let default_hours = config.missing_after_hours as i64;
            let every = std::time::Duration::from_secs(config.missing_check_secs);
            tokio::spawn(async move {
                let mut since: Option<chrono::NaiveDateTime> = None;
                loop {
                    tokio::time::sleep(every).await;
                    let now = tms_server::time::now();
                    let found = db
                        .run(move |conn| tms_server::devices::missing::pass(conn, default_hours, now, since))
                        .await;
                    match found {
                        Ok(pass) => {
                            since = Some(now);
                            if !pass.now_missing.is_empty() || !pass.back.is_empty() {
                                tracing::info!(
                                    missing = pass.missing,
                                    went_missing = pass.now_missing.len(),
                                    back = pass.back.len(),
                                    examined = pass.examined,
                                    "missing terminals"
                                );
                            }
                            metrics.record_missing_pass(&pass);
                        }
                        Err(e) => tracing::warn!(error = %e, "could not look for missing terminals"),
                    }
                }
            });
        }
        {
            // Webhook deliveries from the outbox, whatever process raised them.
            let (db, keys) = (db.clone(), master_keys.clone());
            let every = std::time::Duration::from_millis(config.webhook_poll_ms);
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(config.webhook_timeout_secs))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("preparing the webhook client")?;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match tms_server::webhooks::deliver_due(&db, &http, &keys, 100).await {
                        // A full round: more may be due at once.
                        Ok(100) => continue,
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "could not deliver webhooks"),
                    }
                }
            });
        }
        let mailer = Mailer::from_config(&config).context("setting up e-mail")?;
        let accounts = AccountSettings::from_config(&config, master_keys.clone());
        let contact = Arc::new(
            ContactService::open(
                db.clone(),
                blobs.clone(),
                master_keys.clone(),
                ContactSettings::from_config(&config),
            )
            .context("preparing the contact service")?,
        );
        contact.spawn_tasks();
        let ddi = Arc::new(tms_server::ddi::DdiService::new(
            tms_server::ddi::DdiSettings::from_config(&config),
            db.clone(),
            blobs.clone(),
            contact.clone(),
        ));
        db.spawn_checkpoints(std::time::Duration::from_secs(1));
        let trusted_proxies = config.trusted_proxies()?;
        // The console's fleet counts: a full scan, taken in the background.
        let fleet_summary = Arc::new(tms_server::devices::overview::SummaryCache::default());
        {
            let (db, summary) = (db.clone(), fleet_summary.clone());
            let every = std::time::Duration::from_secs(config.console_summary_secs);
            tokio::spawn(async move {
                loop {
                    if let Err(e) = summary.refresh(&db).await {
                        tracing::warn!(error = %e, "could not count the fleet");
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
        let state = AppState {
            fleet_summary,
            trusted_proxies,
            master_keys,
            tls,
            config: Arc::new(config),
            db,
            blobs,
            metrics,
            mailer,
            accounts,
            contact,
            ddi,
            clock,
        };
        http::serve(state, listener).await.context("serving HTTP")
    })
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_setting_is_described_once_in_the_help() {
        let help = command().render_help().to_string();
        for (name, env, doc) in Config::SETTINGS_HELP {
            assert!(!doc.trim().is_empty(), "{name} has no description");
            assert_eq!(help.matches(&format!("--{} <", name.replace('_', "-"))).count(), 1, "{name}");
            assert!(help.contains(env), "{env}");
        }
        let mut cli = command();
        let create = cli.find_subcommand_mut("operator").unwrap().find_subcommand_mut("create").unwrap();
        let help = create.render_help().to_string();
        assert!(!help.contains("--db-pool-size"), "{help}");
    }
}
