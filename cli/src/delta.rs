//! `tms delta apply`: turn a base artifact and a delta into the target, by
//! hand, to check a delta the server built.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use tms_signing::Sha256Digest;

use crate::output::Output;

#[derive(Subcommand, Debug)]
pub enum DeltaCommand {
    /// Apply DELTA to BASE and write the result to --out (offline); with --expect-sha256, refuse
    /// a result that is not that artifact (as terminals do)
    Apply {
        /// The artifact the delta was built from (the version installed)
        base: PathBuf,
        /// The delta (`tms release show` lists a release's deltas)
        delta: PathBuf,
        /// Where to write the result
        #[arg(long)]
        out: PathBuf,
        /// The sha256 the result must have: the release's artifact_sha256
        #[arg(long)]
        expect_sha256: Option<String>,
    },
}

#[derive(Serialize)]
struct Applied {
    out: String,
    size: u64,
    sha256: String,
}

pub fn delta(command: DeltaCommand, out: Output) -> anyhow::Result<()> {
    let DeltaCommand::Apply { base, delta, out: target, expect_sha256 } = command;
    let base_bytes = std::fs::read(&base).with_context(|| format!("reading the base {}", base.display()))?;
    let mut delta_file =
        std::fs::File::open(&delta).with_context(|| format!("reading the delta {}", delta.display()))?;
    // Written beside the result, renamed over it only once it is right.
    let partial = target.with_extension("partial");
    let mut written = Vec::new();
    let applied = tms_delta::apply(&base_bytes, &mut delta_file, &mut written);
    let size = applied.with_context(|| {
        format!("{} does not apply to {}: another base, or a damaged delta", delta.display(), base.display())
    })?;
    let sha256 = Sha256Digest::of(&written).to_hex();
    if let Some(expected) = expect_sha256
        && !expected.trim().eq_ignore_ascii_case(&sha256)
    {
        anyhow::bail!("the result's sha256 is {sha256}, not {expected}: nothing written");
    }
    std::fs::write(&partial, &written).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &target).with_context(|| format!("writing {}", target.display()))?;
    let applied = Applied { out: target.display().to_string(), size, sha256 };
    out.show(&applied, |a| println!("wrote {} ({} bytes, sha256 {})", a.out, a.size, a.sha256));
    Ok(())
}
