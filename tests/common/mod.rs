//! Helpers shared by the integration tests: run a binary, read what it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use zclab::results::{Row, hgrm, row::parse_jsonl};

/// Runs `bin` with `args`, returning its output.
pub fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The single experiment directory created under `results` for `experiment`.
pub fn experiment_dir(results: &Path, experiment: &str) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(results)
        .expect("results dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "expected one run directory in {}: {runs:?}",
        results.display()
    );
    runs[0].join(experiment)
}

/// Reads and parses summary.jsonl, and parses every `.hgrm` the rows name.
pub fn rows_and_histograms(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("summary.jsonl")).expect("summary.jsonl");
    let rows = parse_jsonl(&text).expect("summary parses");
    let csv = std::fs::read_to_string(dir.join("summary.csv")).expect("summary.csv");
    assert_eq!(
        csv.lines().count(),
        rows.len() + 1,
        "csv has a header and one line per row"
    );
    for r in &rows {
        for f in r.histograms.values() {
            let h = hgrm::parse(&std::fs::read_to_string(dir.join(f)).expect("hgrm exists"))
                .expect("hgrm parses");
            assert!(h.total_count > 0, "{f} is empty");
        }
    }
    rows
}

/// True when the tests must not skip root-only checks (CI runs as root with CI set).
pub fn require_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root && std::env::var_os("CI").is_some() {
        panic!("CI is set but the tests are not running as root");
    }
    root
}
