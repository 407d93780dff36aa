//! `zclab compare RUN_A RUN_B [...]`: results and kernel capabilities side by side; with
//! `--stability`, how far two runs' figures and claim verdicts agree.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use zclab::analysis::claims::{CLAIMS_JSON, load};
use zclab::report::compare::{Stability, stability, stability_markdown};
use zclab::results::{Run, load_run};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directories (suite runs or single experiment directories); the first is the base.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Write the output here too (Markdown, or JSON with --json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also draw overlaid plots of the runs into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Instead of the side-by-side tables: how far two runs (exactly two, A and B) agree.
    ///
    /// For every experiment, variant and point both ran: the ratio B/A of the headline figure's
    /// median (GB/s, or op/s where no bytes move) with its 95% interval, and whether the two
    /// medians' 95% intervals overlap. Then the median, 90th percentile and share within 5% of
    /// |B/A-1| per experiment and overall, and the claims whose verdicts differ when each run is
    /// judged alone. Ends with a one-line verdict (`stability: median |B/A-1| = ...`). See
    /// docs/method.md, "Run-to-run stability".
    #[arg(long)]
    pub stability: bool,
    /// With --stability: print the check as JSON instead of Markdown.
    #[arg(long, requires = "stability")]
    pub json: bool,
    /// Also draw, into this directory, the differential flame graph from the first run to
    /// each other run of every profile they share (`<experiment>/<variant>@<point>.svg`; the
    /// runs need --profile, which the quick preset gives).
    #[arg(long)]
    pub flames: Option<PathBuf>,
}

/// Runs the command: prints the comparison (or the stability check), draws the plots.
pub fn main(args: &CompareArgs) -> Result<i32> {
    let text = if args.stability {
        let st = check(&args.runs)?;
        if args.json {
            serde_json::to_string_pretty(&st)? + "\n"
        } else {
            stability_markdown(&st)
        }
    } else {
        run(&args.runs)?
    };
    if let Some(o) = &args.out {
        zclab::results::atomic_write(o, text.as_bytes())
            .with_context(|| format!("cannot write {}", o.display()))?;
    }
    print!("{text}");
    if let Some(p) = &args.plots {
        super::run::draw_plots(&args.runs, Some(p.as_path()), false)?;
        println!("overlaid plots: {}", p.display());
    }
    if let Some(dir) = &args.flames {
        let runs = load_all(&args.runs)?;
        for other in &runs[1..] {
            let out = if runs.len() > 2 {
                dir.join(other.dir.file_name().unwrap_or_default())
            } else {
                dir.clone()
            };
            let n = super::flame::compare_runs(&runs[0], other, &out)?;
            if n == 0 {
                bail!(
                    "no profile is in both {} and {}: run them with --profile (the quick preset profiles)",
                    runs[0].dir.display(),
                    other.dir.display()
                );
            }
            println!("differential flame graphs: {n} in {}", out.display());
        }
    }
    Ok(0)
}

fn load_all(dirs: &[PathBuf]) -> Result<Vec<Run>> {
    dirs.iter().map(|d| load_run(d)).collect()
}

/// Loads the runs and renders the side-by-side comparison (Markdown).
pub fn run(dirs: &[PathBuf]) -> Result<String> {
    if dirs.len() < 2 {
        bail!("compare needs at least two run directories");
    }
    Ok(zclab::report::compare::compare(&load_all(dirs)?))
}

/// Loads two runs and checks B's figures and claim verdicts against A's.
pub fn check(dirs: &[PathBuf]) -> Result<Stability> {
    let [a, b] = dirs else {
        bail!(
            "--stability compares exactly two runs (A and B), got {}",
            dirs.len()
        );
    };
    let runs = load_all(&[a.clone(), b.clone()])?;
    let claims = load(CLAIMS_JSON)?;
    Ok(stability(&runs[0], &runs[1], &claims))
}
