//! Publisher keys, signing, publishing and downloading releases.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use reqwest::Method;
use tms_packages::releases::{ReleaseManifest, SignedManifest};
use tms_packages::wire::releases::*;
use tms_packages::wire::store::UpdateAppRequest;
use tms_signing::{PrivateKey, PublicKey, Sha256Reader};

use crate::client::Client;
use crate::output::{Output, table};

const CHUNK: usize = 256 * 1024;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Folder for publisher.key (private, mode 0600) and publisher.pub
    #[arg(long)]
    out: PathBuf,
}

pub fn keygen(args: KeygenArgs, out: Output) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let private_path = args.out.join("publisher.key");
    let public_path = args.out.join("publisher.pub");
    if private_path.exists() || public_path.exists() {
        bail!("{} already holds a key; refusing to overwrite it", args.out.display());
    }
    let key = PrivateKey::generate();
    key.save_new(&private_path).with_context(|| format!("writing {}", private_path.display()))?;
    let public = key.public_key();
    let pem = public.to_pem()?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&public_path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .with_context(|| format!("writing {}", public_path.display()))?;
    let info = serde_json::json!({
        "key_id": public.key_id(),
        "public_key": public.to_hex(),
        "private_key_file": private_path,
        "public_key_file": public_path,
    });
    out.show(&info, |_| {
        println!("key id      {}", public.key_id());
        println!("public key  {}", public.to_hex());
        println!("private key {} (keep it secret)", private_path.display());
        println!("public key  {}", public_path.display());
    });
    Ok(())
}

/// A public key from a private key file, a public key file or hex.
fn read_public(text_or_path: &str) -> anyhow::Result<PublicKey> {
    let text = if Path::new(text_or_path).is_file() {
        std::fs::read_to_string(text_or_path).with_context(|| format!("reading {text_or_path}"))?
    } else {
        text_or_path.to_owned()
    };
    if text.contains("PRIVATE KEY") {
        return Ok(PrivateKey::from_pem(&text)?.public_key());
    }
    Ok(PublicKey::parse(&text)?)
}

pub fn key_show(file: &str, out: Output) -> anyhow::Result<()> {
    let public = read_public(file)?;
    let info = serde_json::json!({"key_id": public.key_id(), "public_key": public.to_hex(), "weak": public.is_weak()});
    out.show(&info, |_| {
        println!("key id      {}", public.key_id());
        println!("public key  {}", public.to_hex());
    });
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct SignArgs {
    /// The publisher's private key (PKCS#8 PEM)
    #[arg(long)]
    key: PathBuf,
    /// App id (Android package name)
    #[arg(long)]
    app: String,
    #[arg(long)]
    version: String,
    #[arg(long)]
    version_code: u64,
    /// Compatible terminal models, comma-separated (A920,A80)
    #[arg(long)]
    models: String,
    #[arg(long)]
    min_firmware: Option<String>,
    #[arg(long, default_value = "")]
    notes: String,
    /// app or firmware
    #[arg(long, default_value = "app")]
    kind: String,
}

/// Hashes the artifact (streaming) and signs its manifest.
fn sign_file(file: &Path, args: &SignArgs) -> anyhow::Result<SignedManifest> {
    let key =
        PrivateKey::load(&args.key).with_context(|| format!("reading the key {}", args.key.display()))?;
    let reader = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut hashing = Sha256Reader::new(std::io::BufReader::with_capacity(CHUNK, reader));
    std::io::copy(&mut hashing, &mut std::io::sink())
        .with_context(|| format!("reading {}", file.display()))?;
    let (digest, size) = hashing.finish();
    let manifest = ReleaseManifest {
        app_id: args.app.clone(),
        kind: args.kind.clone(),
        version: args.version.clone(),
        version_code: args.version_code,
        artifact_sha256: digest.to_hex(),
        artifact_size: size,
        models: args.models.split(',').map(|m| m.trim().to_uppercase()).filter(|m| !m.is_empty()).collect(),
        min_firmware: args.min_firmware.clone(),
        release_notes: args.notes.clone(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    manifest.validate().map_err(|e| anyhow::anyhow!("the manifest is not valid: {e}"))?;
    Ok(SignedManifest::sign(manifest, &key))
}

fn manifest_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".manifest.json");
    file.with_file_name(name)
}

pub fn sign(file: PathBuf, args: SignArgs, out: Output) -> anyhow::Result<()> {
    let signed = sign_file(&file, &args)?;
    let path = manifest_path(&file);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let mut f =
        options.open(&path).with_context(|| format!("writing {} (it must not exist yet)", path.display()))?;
    f.write_all(serde_json::to_string_pretty(&signed)?.as_bytes())?;
    out.show(&signed, |s| {
        println!(
            "signed {} {} ({} bytes, sha256 {})",
            s.manifest.app_id, s.manifest.version, s.manifest.artifact_size, s.manifest.artifact_sha256
        );
        println!("manifest    {}", path.display());
    });
    Ok(())
}

pub fn human(bytes: f64) -> String {
    indicatif::HumanBytes(bytes.max(0.0) as u64).to_string()
}

/// Progress on stderr: a live line on a terminal (nothing otherwise), then
/// one line with the size, time and speed.
struct Progress {
    bar: indicatif::ProgressBar,
    already: u64,
}

impl Progress {
    fn start(verb: &'static str, total: u64, already: u64) -> Progress {
        let bar =
            indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bytes} / {total_bytes}  {binary_bytes_per_sec}  ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar.set_message(verb);
        bar.set_position(already);
        bar.reset_elapsed();
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress { bar, already }
    }

    /// A handle that counts bytes as they go.
    fn counter(&self) -> indicatif::ProgressBar {
        self.bar.clone()
    }

    fn finish(self, verb: &str) {
        let done = self.bar.position().saturating_sub(self.already);
        let secs = self.bar.elapsed().as_secs_f64().max(0.001);
        self.bar.finish_and_clear();
        eprintln!("{verb} {} in {secs:.1}s ({}/s)", human(done as f64), human(done as f64 / secs));
    }

    fn abandon(self) {
        self.bar.abandon();
    }
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The artifact (APK or firmware image)
    file: PathBuf,
    /// The signed manifest [default: FILE.manifest.json, or sign now with --key …]
    #[arg(long, conflicts_with = "key")]
    manifest: Option<PathBuf>,
    /// Sign now instead of reading a manifest (same flags as `tms sign`)
    #[arg(long, requires_all = ["app", "version", "version_code", "models"])]
    key: Option<PathBuf>,
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    version: Option<String>,
    #[arg(long)]
    version_code: Option<u64>,
    #[arg(long)]
    models: Option<String>,
    #[arg(long)]
    min_firmware: Option<String>,
    #[arg(long, default_value = "")]
    notes: String,
    #[arg(long, default_value = "app")]
    kind: String,
}

pub async fn publish(client: &Client, args: PublishArgs, out: Output) -> anyhow::Result<()> {
    let signed: SignedManifest = match (&args.key, &args.manifest) {
        (Some(key), _) => sign_file(
            &args.file,
            &SignArgs {
                key: key.clone(),
                app: args.app.clone().unwrap_or_default(),
                version: args.version.clone().unwrap_or_default(),
                version_code: args.version_code.unwrap_or_default(),
                models: args.models.clone().unwrap_or_default(),
                min_firmware: args.min_firmware.clone(),
                notes: args.notes.clone(),
                kind: args.kind.clone(),
            },
        )?,
        (None, manifest) => {
            let path = manifest.clone().unwrap_or_else(|| manifest_path(&args.file));
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("reading the manifest {} (sign first, or pass --key …)", path.display())
            })?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a signed manifest", path.display()))?
        }
    };
    let size =
        std::fs::metadata(&args.file).with_context(|| format!("reading {}", args.file.display()))?.len();
    if size != signed.manifest.artifact_size {
        bail!(
            "{} has {size} bytes but its manifest says {}: sign it again",
            args.file.display(),
            signed.manifest.artifact_size
        );
    }
    // A refusal arrives before the upload, not after gigabytes of it.
    let _: serde_json::Value = client
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/apps/{}/releases/check", signed.manifest.app_id),
            Some(&signed),
        )
        .await?;
    let header = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&signed)?);
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("opening {}", args.file.display()))?;
    let progress = Progress::start("uploading", size, 0);
    let counter = progress.counter();
    let stream = futures_util::stream::unfold(file, move |mut file| {
        let counter = counter.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    counter.inc(n as u64);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        }
    });
    let path = format!("/api/v1/apps/{}/releases", signed.manifest.app_id);
    let result: Result<ReleaseView, _> =
        client.upload(&path, &[(MANIFEST_HEADER, header)], size, reqwest::Body::wrap_stream(stream)).await;
    match result {
        Ok(release) => {
            progress.finish("uploaded");
            out.show(&release, |r| println!("published {} {} as release {}", r.app_id, r.version, r.id));
            Ok(())
        }
        Err(e) => {
            progress.abandon();
            Err(e.into())
        }
    }
}

#[derive(Args, Debug)]
pub struct DownloadArgs {
    app: String,
    version: String,
    /// Where to write it; a partial file there is resumed
    #[arg(long)]
    out: PathBuf,
}

/// Downloads an artifact, resuming a partial file, and checks its sha256.
/// A file that cannot be the start of this artifact is downloaded anew.
pub async fn download(client: &Client, args: DownloadArgs, out: Output) -> anyhow::Result<()> {
    let release: ReleaseView =
        client.get(&format!("/api/v1/apps/{}/releases/{}", args.app, args.version)).await?;
    let total = release.artifact_size;
    let etag = format!("\"{}\"", release.artifact_sha256);
    let mut written = 0;
    // Two rounds at most: resume, and if what was there turns out wrong, start over.
    for round in 0..2 {
        let mut have = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
        if have > total {
            have = 0;
        }
        if have < total {
            let headers = if have > 0 {
                vec![("range", format!("bytes={have}-")), ("if-range", etag.clone())]
            } else {
                vec![]
            };
            let mut response = client.get_stream(&release.download_path, &headers).await?;
            let status = response.status();
            // Resume only when the server answered the range asked for, of this artifact.
            let expected_range = format!("bytes {have}-{}/{total}", total - 1);
            let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT
                && response.headers().get("content-range").and_then(|v| v.to_str().ok())
                    == Some(expected_range.as_str())
                && response.headers().get("etag").and_then(|v| v.to_str().ok()) == Some(etag.as_str());
            if !resumed && status != reqwest::StatusCode::OK {
                // A 416 or an unexpected range: fetch the whole artifact.
                drop(response);
                std::fs::remove_file(&args.out).ok();
                response = client.get_stream(&release.download_path, &[]).await?;
                if response.status() != reqwest::StatusCode::OK {
                    bail!("the server answered {} to a plain download", response.status());
                }
            }
            let start = if resumed { have } else { 0 };
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(resumed)
                .truncate(!resumed)
                .open(&args.out)
                .with_context(|| format!("writing {}", args.out.display()))?;
            if resumed {
                eprintln!("resuming at {}", human(start as f64));
            }
            let progress = Progress::start("downloading", total, start);
            while let Some(chunk) =
                response.chunk().await.context("the download stopped; run the command again to resume")?
            {
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
                progress.bar.inc(chunk.len() as u64);
            }
            file.sync_all()?;
            progress.finish("downloaded");
        }
        let (digest, size) = tms_signing::sha256_reader(std::io::BufReader::with_capacity(
            CHUNK,
            std::fs::File::open(&args.out)?,
        ))?;
        if size == total && digest.to_hex() == release.artifact_sha256 {
            let info = serde_json::json!({"file": args.out, "sha256": digest.to_hex(), "size": size, "downloaded": written});
            out.show(&info, |_| println!("{} verified (sha256 {digest})", args.out.display()));
            return Ok(());
        }
        if round == 0 {
            eprintln!("{} is not this artifact (sha256 {digest}); downloading it anew", args.out.display());
            std::fs::remove_file(&args.out).with_context(|| format!("removing {}", args.out.display()))?;
        }
    }
    bail!("the download does not match the release's sha256 {}", release.artifact_sha256)
}

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Register an app
    Create {
        /// Android package name
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// app or firmware
        #[arg(long, default_value = "app")]
        kind: String,
        /// system, store or private
        #[arg(long, default_value = "system")]
        visibility: String,
    },
    List,
    Show {
        id: String,
    },
    /// Publisher keys allowed to sign the app's releases
    #[command(subcommand)]
    Key(AppKeyCommand),
    /// Change an app's name, visibility or store listing
    Update {
        /// The app's id
        app: String,
        #[command(flatten)]
        changes: AppChanges,
    },
    /// Set the app's store icon (a PNG, JPEG or WebP file)
    Icon {
        /// The app's id
        app: String,
        /// The image file
        file: PathBuf,
    },
    /// The app's store screenshots
    #[command(subcommand)]
    Screenshot(AppScreenshotCommand),
    /// Offer a private app to a merchant
    Grant {
        /// The app's id
        app: String,
        merchant_id: i64,
    },
    /// Stop offering a private app to a merchant
    Ungrant {
        /// The app's id
        app: String,
        merchant_id: i64,
    },
}

/// What `tms app update` changes (at least one); the rest keeps its value.
#[derive(Args, Debug)]
#[group(required = true, multiple = true)]
pub struct AppChanges {
    #[arg(long)]
    name: Option<String>,
    /// system (pushed by the operator, merchants cannot remove it), store (in the
    /// catalogue) or private (offered only to the merchants granted it)
    #[arg(long, value_parser = ["system", "store", "private"])]
    visibility: Option<String>,
    /// The store's one-line summary (up to 200 characters)
    #[arg(long)]
    summary: Option<String>,
    /// The store's description (up to 10,000 characters)
    #[arg(long, conflicts_with = "description_file")]
    description: Option<String>,
    /// Read the description from this file
    #[arg(long, value_name = "FILE")]
    description_file: Option<PathBuf>,
    /// The store category, e.g. tipping, loyalty or parking
    #[arg(long)]
    category: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AppScreenshotCommand {
    /// Add a screenshot (a PNG, JPEG or WebP file) after the others
    Add {
        /// The app's id
        app: String,
        /// The image file
        file: PathBuf,
    },
    /// Remove a screenshot
    Remove {
        /// The app's id
        app: String,
        /// The screenshot's id (`tms app show` lists them)
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppKeyCommand {
    /// Allow a publisher key (a .pub file, a private key file or hex)
    Add {
        app: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        public_key: String,
    },
    /// Revoke a key: it signs nothing new
    Revoke { app: String, key_id: String },
}

/// An image for the store, with its content type told by its first bytes.
fn read_image(file: &Path) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match tms_packages::store::image_type(&bytes) {
        Some(content_type) => Ok((bytes, content_type)),
        None => bail!("{} is not a PNG, JPEG or WebP image", file.display()),
    }
}

fn print_app(a: &AppView) {
    println!("id          {}", a.id);
    println!("name        {}", a.name);
    println!("kind        {}", a.kind);
    println!("visibility  {}", a.visibility);
    if !a.category.is_empty() {
        println!("category    {}", a.category);
    }
    if !a.summary.is_empty() {
        println!("summary     {}", a.summary);
    }
    if !a.description.is_empty() {
        println!("description");
        for line in a.description.lines() {
            println!("  {line}");
        }
    }
    if let Some(icon) = &a.icon_path {
        println!("icon        {icon}");
    }
    for path in &a.screenshot_paths {
        // The id `tms app screenshot remove` takes ends the path.
        let id = path.rsplit('/').next().unwrap_or_default();
        println!("screenshot  {id}  {path}");
    }
    if a.visibility == "private" || !a.merchants.is_empty() {
        let merchants: Vec<String> = a.merchants.iter().map(|m| m.to_string()).collect();
        println!("merchants   {}", if merchants.is_empty() { "none".into() } else { merchants.join(",") });
    }
    for k in &a.keys {
        println!(
            "key         {} {:?}{}",
            k.key_id,
            k.name,
            k.revoked_at.as_ref().map(|r| format!(" (revoked {r})")).unwrap_or_default()
        );
    }
}

pub async fn app(client: &Client, command: AppCommand, out: Output) -> anyhow::Result<()> {
    let app: AppView = match command {
        AppCommand::Create { id, name, kind, visibility } => {
            client
                .call(Method::POST, "/api/v1/apps", Some(&CreateAppRequest { id, name, kind, visibility }))
                .await?
        }
        AppCommand::List => {
            let list: Vec<AppView> = client.get("/api/v1/apps").await?;
            out.show(&list, |l| {
                table(
                    &["ID", "NAME", "KIND", "VISIBILITY", "KEYS"],
                    l.iter().map(|a| {
                        vec![
                            a.id.clone(),
                            a.name.clone(),
                            a.kind.clone(),
                            a.visibility.clone(),
                            a.keys.len().to_string(),
                        ]
                    }),
                )
            });
            return Ok(());
        }
        AppCommand::Show { id } => client.get(&format!("/api/v1/apps/{id}")).await?,
        AppCommand::Key(AppKeyCommand::Add { app, name, public_key }) => {
            let key = read_public(&public_key)?;
            let body = AddPublisherKeyRequest { name, public_key: key.to_hex() };
            client.call(Method::POST, &format!("/api/v1/apps/{app}/keys"), Some(&body)).await?
        }
        AppCommand::Key(AppKeyCommand::Revoke { app, key_id }) => {
            client
                .call(Method::POST, &format!("/api/v1/apps/{app}/keys/{key_id}/revoke"), None::<&()>)
                .await?
        }
        AppCommand::Update { app, changes } => {
            let description = match (changes.description, changes.description_file) {
                (Some(text), _) => Some(text),
                (None, Some(file)) => Some(
                    std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
                ),
                (None, None) => None,
            };
            let body = UpdateAppRequest {
                name: changes.name,
                visibility: changes.visibility,
                summary: changes.summary,
                description,
                category: changes.category,
            };
            client.call(Method::PATCH, &format!("/api/v1/apps/{app}"), Some(&body)).await?
        }
        AppCommand::Icon { app, file } => {
            let (bytes, content_type) = read_image(&file)?;
            client.send_bytes(Method::PUT, &format!("/api/v1/apps/{app}/icon"), content_type, bytes).await?
        }
        AppCommand::Screenshot(AppScreenshotCommand::Add { app, file }) => {
            let (bytes, content_type) = read_image(&file)?;
            client
                .send_bytes(Method::POST, &format!("/api/v1/apps/{app}/screenshots"), content_type, bytes)
                .await?
        }
        AppCommand::Screenshot(AppScreenshotCommand::Remove { app, id }) => {
            client.call(Method::DELETE, &format!("/api/v1/apps/{app}/screenshots/{id}"), None::<&()>).await?
        }
        AppCommand::Grant { app, merchant_id } => {
            client
                .call(Method::PUT, &format!("/api/v1/apps/{app}/merchants/{merchant_id}"), None::<&()>)
                .await?
        }
        AppCommand::Ungrant { app, merchant_id } => {
            client
                .call(Method::DELETE, &format!("/api/v1/apps/{app}/merchants/{merchant_id}"), None::<&()>)
                .await?
        }
    };
    out.show(&app, print_app);
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    List {
        app: String,
    },
    Show {
        app: String,
        version: String,
    },
    /// Withdraw a release: never offered again (terminals that have it keep it)
    Withdraw {
        app: String,
        version: String,
    },
}

fn print_release(r: &ReleaseView) {
    println!("id           {}", r.id);
    println!("app          {} ({})", r.app_id, r.kind);
    println!("version      {} (code {})", r.version, r.version_code);
    println!("artifact     {} bytes, sha256 {}", r.artifact_size, r.artifact_sha256);
    println!("models       {}", r.models.join(","));
    println!("min firmware {}", r.min_firmware.as_deref().unwrap_or("-"));
    println!("signed by    {}", r.key_id);
    println!("published    {}", r.published_at);
    if let Some(w) = &r.withdrawn_at {
        println!("withdrawn    {w}");
    }
    if !r.release_notes.is_empty() {
        println!("notes        {}", r.release_notes);
    }
    for d in &r.deltas {
        println!(
            "delta from   {} ({}): {} bytes, sha256 {}",
            d.base_version, d.base_sha256, d.size, d.sha256
        );
    }
}

pub async fn release(client: &Client, command: ReleaseCommand, out: Output) -> anyhow::Result<()> {
    let release: ReleaseView = match command {
        ReleaseCommand::List { app } => {
            let list: Vec<ReleaseView> = client.get(&format!("/api/v1/apps/{app}/releases")).await?;
            out.show(&list, |l| {
                table(
                    &["ID", "VERSION", "CODE", "SIZE", "MODELS", "PUBLISHED", "WITHDRAWN"],
                    l.iter().map(|r| {
                        vec![
                            r.id.to_string(),
                            r.version.clone(),
                            r.version_code.to_string(),
                            human(r.artifact_size as f64),
                            r.models.join(","),
                            r.published_at.clone(),
                            r.withdrawn_at.clone().unwrap_or_else(|| "-".into()),
                        ]
                    }),
                )
            });
            return Ok(());
        }
        ReleaseCommand::Show { app, version } => {
            client.get(&format!("/api/v1/apps/{app}/releases/{version}")).await?
        }
        ReleaseCommand::Withdraw { app, version } => {
            client
                .call(Method::POST, &format!("/api/v1/apps/{app}/releases/{version}/withdraw"), None::<&()>)
                .await?
        }
    };
    out.show(&release, print_release);
    Ok(())
}
