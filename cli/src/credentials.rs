//! Where `tms login` keeps session tokens: one per server, in a file only the
//! user can read (`$XDG_CONFIG_HOME/tms/credentials.json`, else
//! `~/.config/tms/credentials.json`; `TMS_CREDENTIALS_FILE` overrides).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(file) = std::env::var_os("TMS_CREDENTIALS_FILE") {
        return Ok(PathBuf::from(file));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; set TMS_CREDENTIALS_FILE")?)
            .join(".config"),
    };
    Ok(config.join("tms").join("credentials.json"))
}

fn load_all() -> anyhow::Result<BTreeMap<String, String>> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save_all(all: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let path = path()?;
    let dir = path.parent().context("credentials path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written to a private temporary file, then renamed: never readable by
    // others, never half-written.
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(serde_json::to_string_pretty(all)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn key(server: &url::Url) -> String {
    server.as_str().trim_end_matches('/').to_owned()
}

pub fn token_for(server: &url::Url) -> anyhow::Result<Option<String>> {
    Ok(load_all()?.remove(&key(server)))
}

pub fn store(server: &url::Url, token: &str) -> anyhow::Result<()> {
    let mut all = load_all()?;
    all.insert(key(server), token.to_owned());
    save_all(&all)
}

pub fn forget(server: &url::Url) -> anyhow::Result<()> {
    let mut all = load_all()?;
    if all.remove(&key(server)).is_some() {
        save_all(&all)?;
    }
    Ok(())
}
