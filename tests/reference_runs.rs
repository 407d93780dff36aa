//! Every run directory under results/reference/ still loads typed (meta.json as `Meta`, the
//! probe as `Caps`, suite.json as `SuiteMeta`), the claims judge it and the renderers draw it;
//! and `zclab report` prints its tables and regenerates Markdown blocks from it.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use zclab::analysis::claims::{CLAIMS_JSON, load, verdicts};
use zclab::results::load_run;

const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference")
}

/// The reference directories that hold experiment results (versus-* hold only tool tables).
fn reference_runs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(reference())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            p.join("meta.json").is_file()
                || std::fs::read_dir(p)
                    .unwrap()
                    .flatten()
                    .any(|e| e.path().join("meta.json").is_file())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_reference_run_loads() {
    let runs = reference_runs();
    assert!(runs.len() >= 3, "{runs:?}");
    let claims = load(CLAIMS_JSON).unwrap();
    for dir in runs {
        let run = load_run(&dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        assert!(!run.experiments.is_empty());
        for (name, e) in &run.experiments {
            assert_eq!(&e.meta.experiment, name);
            assert_ne!(e.meta.probe.hostname, "?", "{name}: the probe was read");
            assert!(
                !e.meta.probe.io_uring.opcodes.is_empty(),
                "{name}: the probe's opcodes were read"
            );
            assert!(!e.rows.is_empty(), "{name}: rows");
            assert!(e.meta.repeat >= 1 && !e.meta.points.is_empty(), "{name}");
            let md = zclab::report::experiment_markdown(e);
            assert!(md.contains("| variant | point |"), "{md}");
            assert!(!zclab::report::table(&e.rows).is_empty());
        }
        if dir.join("suite.json").exists() {
            let s = run.suite.as_ref().expect("suite.json loads");
            assert!(!s.outcomes.is_empty() && !s.preset.is_empty());
            assert_eq!(s.probe.hostname, run.probe().hostname);
        }
        let v = verdicts(&claims, std::slice::from_ref(&run));
        assert_eq!(v.len(), claims.len());
    }
}

/// `zclab report MODE RUN --experiment EXP`.
fn report_of(run: &std::path::Path, mode: &str, exp: &str) -> std::process::Output {
    run_cmd(&["report", mode, run.to_str().unwrap(), "--experiment", exp])
}

#[test]
fn report_prints_markdown_and_csv_of_a_run() {
    let run = reference().join("quick-20261121T165605Z");
    let o = report_of(&run, "--markdown", "syscall_floor");
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(md.starts_with("| variant | point |"), "{md}");
    assert!(md.contains("| uring-nop |"), "{md}");
    // Three repeats: the figures carry their interval.
    assert!(md.contains(" ["), "{md}");
    let o = run_cmd(&["report", "--markdown", run.to_str().unwrap()]);
    let all = String::from_utf8_lossy(&o.stdout);
    assert!(
        all.contains("## file_to_socket") && all.contains("## syscall_floor"),
        "{all}"
    );
    let o = report_of(&run, "--csv", "proxy");
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.starts_with("experiment,variant,point,"), "{csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.starts_with("proxy,")),
        "{csv}"
    );
    // Bad input: an unknown experiment, no mode at all.
    let o = report_of(&run, "--markdown", "nope");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has no experiment nope"),
        "{}",
        stderr(&o)
    );
    assert!(!run_cmd(&["report"]).status.success());
}

#[test]
fn update_docs_regenerates_marked_blocks() {
    let t = tempfile::tempdir().unwrap();
    let run = reference().join("quick-20261121T165605Z");
    let args = format!("--markdown {} --experiment syscall_floor", run.display());
    let doc = t.path().join("doc.md");
    let text = format!(
        "# Doc\n\nBefore.\n\n<!-- report: {args} -->\n| typed | by hand |\n<!-- /report -->\n\nAfter.\n"
    );
    std::fs::write(&doc, &text).unwrap();
    let o = run_cmd(&["report", "--update-docs", doc.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let new = std::fs::read_to_string(&doc).unwrap();
    let direct = run_cmd(&[
        "report",
        "--markdown",
        run.to_str().unwrap(),
        "--experiment",
        "syscall_floor",
    ]);
    let expected = format!(
        "# Doc\n\nBefore.\n\n<!-- report: {args} -->\n{}<!-- /report -->\n\nAfter.\n",
        String::from_utf8_lossy(&direct.stdout)
    );
    assert_eq!(new, expected);
    // Again: nothing changes.
    assert!(
        run_cmd(&["report", "--update-docs", doc.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(&doc).unwrap(), expected);
    // A block that does not close is refused, naming the line, and the file is untouched.
    let bad = t.path().join("bad.md");
    std::fs::write(&bad, format!("x\n<!-- report: {args} -->\nold\n")).unwrap();
    let o = run_cmd(&["report", "--update-docs", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&bad).unwrap().ends_with("old\n"));
}

fn run_cmd(args: &[&str]) -> std::process::Output {
    run(ZCLAB, args, &[])
}

/// A reader that stops early (`zclab report --csv RUN | head -1`) ends the printing command
/// quietly, as any Unix tool, instead of a panic about a broken pipe.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // Over 64 KiB of CSV: more than a pipe holds.
    let run = reference().join("quick-20261205T070103Z");
    let mut child = Command::new(ZCLAB)
        .args(["report", "--csv"])
        .arg(&run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is dropped here: the rest of the CSV (over a pipe's 64 KiB) meets EPIPE.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
