//! The result tables in README.md and docs/ are what `zclab report` makes of the committed runs
//! under results/reference/, never typed by hand: regenerating them changes nothing.

use std::path::Path;
use std::process::Command;

#[test]
fn doc_tables_are_generated() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let zclab = root.join("target/release/zclab");
    assert!(zclab.exists(), "build with cargo build --release first");
    let tmp = tempfile::tempdir().unwrap();
    let mut files = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            files.push(e.path());
        }
    }
    let mut checked = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if !text.contains("<!-- report:") {
            continue;
        }
        let copy = tmp.path().join(f.file_name().unwrap());
        std::fs::write(&copy, &text).unwrap();
        // The markers name runs relative to the repository root.
        let out = Command::new(&zclab)
            .current_dir(root)
            .args(["report", "--update-docs"])
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let again = std::fs::read_to_string(&copy).unwrap();
        assert!(
            again == text,
            "{} has result tables that differ from `zclab report`: run `zclab report --update-docs {}`",
            f.display(),
            f.display()
        );
        checked += 1;
    }
    assert!(checked > 0, "no generated tables found");
}
