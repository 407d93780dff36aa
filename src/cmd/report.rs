//! `zclab report`: a run's tables as Markdown or CSV, and Markdown files whose tables are
//! regenerated from runs instead of typed by hand.
//!
//! In a Markdown file, a block
//!
//! ```text
//! <!-- report: --markdown results/reference/RUN --experiment syscall_floor -->
//! ...
//! <!-- /report -->
//! ```
//!
//! is rewritten by `zclab report --update-docs FILE` with what `zclab report ARGS` prints
//! (ARGS split on white space; paths relative to the current directory). The marker lines stay.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::path::{Path, PathBuf};
use zclab::results::{Experiment, Run, load_run};

/// Options of `zclab report`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["markdown", "csv", "update_docs", "capabilities"])))]
pub struct ReportArgs {
    /// Print the tables of the run directory RUN as Markdown (medians with their 95% interval
    /// where there are repeats): one section per experiment, or only the table of --experiment.
    #[arg(long, value_name = "RUN")]
    pub markdown: Option<PathBuf>,
    /// Print the rows of the run directory RUN as CSV (the columns of summary.csv).
    #[arg(long, value_name = "RUN")]
    pub csv: Option<PathBuf>,
    /// Only this experiment of the run.
    #[arg(long, value_name = "NAME", conflicts_with = "update_docs")]
    pub experiment: Option<String>,
    /// With --markdown: the verdict of every published claim on the run (what `zclab claims
    /// RUN` prints), judged now by the shipped claims.
    #[arg(long, requires = "markdown", conflicts_with = "experiment")]
    pub claims: bool,
    /// What `zclab compare RUN...` says of the kernels' io_uring opcodes, setup flags and
    /// features (the first run is the base; its results tables left out).
    #[arg(long, value_name = "RUN", num_args = 2..)]
    pub capabilities: Vec<PathBuf>,
    /// Rewrite, in each Markdown FILE, every block between a line `<!-- report: ARGS -->` and
    /// the next line `<!-- /report -->` with the output of `zclab report ARGS`.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub update_docs: Vec<PathBuf>,
}

/// Runs `zclab report`.
pub fn run(args: &ReportArgs) -> Result<i32> {
    if !args.update_docs.is_empty() {
        for f in &args.update_docs {
            let n = update_doc(f)?;
            eprintln!("report: {}: {n} block(s) regenerated", f.display());
        }
        return Ok(0);
    }
    print!("{}", render(args)?);
    Ok(0)
}

/// What `zclab report --markdown|--csv ...` prints.
pub fn render(args: &ReportArgs) -> Result<String> {
    if !args.capabilities.is_empty() {
        let text = super::compare::run(&args.capabilities)?;
        return Ok(match text.find("\n## Results") {
            Some(i) => format!("{}\n", text[..i].trim_end()),
            None => text,
        });
    }
    let (dir, markdown) = match (&args.markdown, &args.csv) {
        (Some(d), _) => (d, true),
        (None, Some(d)) => (d, false),
        (None, None) => bail!("give --markdown RUN or --csv RUN"),
    };
    // A `zclab versus` directory holds no experiment directories: its table is the one that
    // command wrote beside its figures (versus.json).
    let versus = dir.join("versus.md");
    if markdown
        && args.experiment.is_none()
        && dir.join("versus.json").is_file()
        && versus.is_file()
    {
        return zclab::results::read_input(&versus, zclab::results::META_LIMIT);
    }
    if args.claims {
        let v = super::claims::verdicts(std::slice::from_ref(dir))?;
        return Ok(zclab::report::claims_table(&v));
    }
    let run = load_run(dir)?;
    let chosen: Vec<&Experiment> = match &args.experiment {
        Some(name) => vec![pick(&run, name)?],
        None => run.experiments.values().collect(),
    };
    if !markdown {
        let rows: Vec<_> = chosen.iter().flat_map(|e| e.rows.iter().cloned()).collect();
        return Ok(zclab::report::csv(&rows));
    }
    if args.experiment.is_some() {
        return Ok(zclab::report::experiment_markdown(chosen[0]));
    }
    Ok(chosen
        .iter()
        .map(|e| format!("## {}\n\n{}", e.name, zclab::report::experiment_markdown(e)))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn pick<'a>(run: &'a Run, name: &str) -> Result<&'a Experiment> {
    run.experiments.get(name).with_context(|| {
        format!(
            "{} has no experiment {name} (it has: {})",
            run.dir.display(),
            run.experiments
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

const OPEN: &str = "<!-- report:";
const CLOSE: &str = "<!-- /report -->";

/// `zclab report` with the arguments of a marker line.
#[derive(Parser)]
#[command(name = "zclab report")]
struct Marker {
    #[command(flatten)]
    args: ReportArgs,
}

/// Regenerates the blocks of one Markdown file; returns how many there were. The file is
/// rewritten only when something changed, atomically.
pub fn update_doc(path: &Path) -> Result<usize> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (new, n) = regenerate(&text, &|words| {
        let m = Marker::try_parse_from(std::iter::once("report").chain(words.iter().copied()))
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
        if !m.args.update_docs.is_empty() {
            bail!("a marker cannot ask for --update-docs");
        }
        render(&m.args)
    })
    .with_context(|| path.display().to_string())?;
    if new != text {
        zclab::results::atomic_write(path, new.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(n)
}

/// Replaces every marked block of `text` with `render(ARGS)`; returns the text and the number
/// of blocks. The error names the line of a bad block.
pub fn regenerate(
    text: &str,
    render: &dyn Fn(&[&str]) -> Result<String>,
) -> Result<(String, usize)> {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split_inclusive('\n').enumerate();
    let mut n = 0;
    while let Some((i, line)) = lines.next() {
        out.push_str(line);
        let t = line.trim();
        let Some(args) = t.strip_prefix(OPEN).and_then(|r| r.strip_suffix("-->")) else {
            continue;
        };
        let words: Vec<&str> = args.split_whitespace().collect();
        let body =
            render(&words).with_context(|| format!("line {}: report {}", i + 1, args.trim()))?;
        let close = loop {
            match lines.next() {
                Some((_, l)) if l.trim() == CLOSE => break l,
                Some((_, l)) if l.trim().starts_with(OPEN) => {
                    bail!(
                        "line {}: a report block opens before the previous one closes",
                        i + 1
                    )
                }
                Some(_) => continue,
                None => bail!("line {}: no `{CLOSE}` after this block", i + 1),
            }
        };
        if !line.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&body);
        if !body.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(close);
        n += 1;
    }
    Ok((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_replaced_and_the_rest_is_kept() {
        let doc = "# T\n\n<!-- report: --markdown R -->\nold\ntable\n<!-- /report -->\ntext\n<!-- report: --csv R -->\n<!-- /report -->";
        let r = |w: &[&str]| -> Result<String> { Ok(format!("{}\n", w.join("+"))) };
        let (new, n) = regenerate(doc, &r).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            new,
            "# T\n\n<!-- report: --markdown R -->\n--markdown+R\n<!-- /report -->\ntext\n<!-- report: --csv R -->\n--csv+R\n<!-- /report -->"
        );
        assert_eq!(regenerate(&new, &r).unwrap().0, new, "idempotent");
        let e = regenerate("a\n<!-- report: x -->\nb\n", &r).unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }
}
