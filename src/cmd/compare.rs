//! `zclab compare RUN_A RUN_B [...]`: results and kernel capabilities side by side.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use zclab::results::{Run, load_run};

/// Loads the runs, renders the comparison, writes it to `out` (Markdown) and returns it.
pub fn run(dirs: &[PathBuf], out: Option<&Path>) -> Result<String> {
    if dirs.len() < 2 {
        bail!("compare needs at least two run directories");
    }
    let runs: Vec<Run> = dirs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    let md = zclab::report::compare::compare(&runs);
    if let Some(o) = out {
        zclab::results::atomic_write(o, md.as_bytes())
            .with_context(|| format!("cannot write {}", o.display()))?;
    }
    Ok(md)
}
