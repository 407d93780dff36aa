//! `zclab flame BEFORE AFTER -o OUT.svg`: the differential flame graph of two profiles'
//! folded stacks (`<variant>@<point>.folded`, written with `--profile`): two variants of one
//! point, or one variant in two runs. `zclab compare --flames DIR` draws one for every profile
//! two runs share.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use zclab::report::flame;

#[derive(clap::Args, Debug)]
pub struct FlameArgs {
    /// The base profile (`.folded`).
    pub before: PathBuf,
    /// The profile drawn, coloured by how its share of the samples changed from BEFORE.
    pub after: PathBuf,
    /// The SVG to write.
    #[arg(short, long)]
    pub out: PathBuf,
}

fn read_folded(p: &Path) -> Result<String> {
    if p.extension().is_none_or(|e| e != "folded") {
        bail!(
            "{} is not a folded-stack file (<variant>@<point>.folded, written with --profile)",
            p.display()
        );
    }
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

/// The name a profile file shows in a title: its run directory's name (or experiment's) and
/// the variant and point.
fn label(p: &Path) -> String {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
    let exp = p
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|s| s.to_str());
    let run = p
        .parent()
        .and_then(Path::parent)
        .and_then(|d| d.file_name())
        .and_then(|s| s.to_str());
    match (run, exp) {
        (Some(r), Some(e)) => format!("{r}/{e} {stem}"),
        (None, Some(e)) => format!("{e} {stem}"),
        _ => stem.to_string(),
    }
    .replace('@', " ")
}

/// Writes the differential graph of `before` -> `after` to `out`; false when neither has a
/// stack.
pub fn draw(before: &Path, after: &Path, title: &str, out: &Path) -> Result<bool> {
    let (b, a) = (read_folded(before)?, read_folded(after)?);
    let Some(svg) = flame::diff_svg(title, &b, &a).context("cannot draw the flame graph")? else {
        return Ok(false);
    };
    zclab::results::atomic_write(out, &svg)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(true)
}

pub fn run(args: &FlameArgs) -> Result<i32> {
    let title = format!("{} -> {}", label(&args.before), label(&args.after));
    if !draw(&args.before, &args.after, &title, &args.out)? {
        bail!(
            "no stacks in {} or {}: nothing to draw",
            args.before.display(),
            args.after.display()
        );
    }
    println!("{}", args.out.display());
    Ok(0)
}

/// For every experiment of `base` and `other` and every profile both have (the measured
/// thread's, `<variant>@<point>.folded`), the differential graph base -> other, written to
/// `out/<experiment>/<variant>@<point>.svg`. Returns how many were drawn.
pub fn compare_runs(
    base: &zclab::results::Run,
    other: &zclab::results::Run,
    out: &Path,
) -> Result<usize> {
    let mut n = 0;
    for (name, a) in &base.experiments {
        let Some(b) = other.experiments.get(name) else {
            continue;
        };
        for f in a.profiles() {
            let (pa, pb) = (a.dir.join(&f), b.dir.join(&f));
            if !pb.is_file() {
                continue;
            }
            let dir = out.join(name);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let svg = dir.join(format!("{}.svg", f.trim_end_matches(".folded")));
            let title = format!(
                "{name} {}: {} -> {}",
                f.trim_end_matches(".folded").replace('@', " "),
                dir_name(&base.dir),
                dir_name(&other.dir)
            );
            if draw(&pa, &pb, &title, &svg)? {
                n += 1;
            }
        }
    }
    Ok(n)
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("?")
        .to_string()
}
