//! Malformed input never panics: the argument parsers and the readers of run directories are
//! property-tested with arbitrary and with truncated or corrupted real input.

mod common;

use common::*;
use proptest::prelude::*;
use zclab::results::{hgrm, row::parse_jsonl};
use zclab::units::{fmt_size, parse_duration, parse_size, parse_size_list};

const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn size_and_duration_parsers_never_panic(s in ".{0,24}") {
        let _ = parse_size(&s);
        let _ = parse_size_list(&s);
        let _ = parse_duration(&s);
    }

    #[test]
    fn sizes_round_trip(v in 1u64..(1u64 << 50)) {
        prop_assert_eq!(parse_size(&fmt_size(v)).unwrap(), v);
    }

    #[test]
    fn size_like_strings_parse_or_fail_cleanly(n in 0u64..100000, unit in "(|b|B|k|K|KiB|kb|KB|m|M|MiB|MB|g|G|GiB|GB|t|T|TiB|x|XB|kk)") {
        let s = format!("{n}{unit}");
        match parse_size(&s) {
            Ok(v) => prop_assert!(v >= n),
            Err(e) => prop_assert!(e.to_string().contains(&s)),
        }
    }

    #[test]
    fn hgrm_parser_never_panics(s in "(?s).{0,400}") {
        let _ = hgrm::parse(&s);
    }

    #[test]
    fn jsonl_parser_never_panics(s in "(?s).{0,400}") {
        let _ = parse_jsonl(&s);
    }

    #[test]
    fn claims_parser_never_panics(s in "(?s).{0,300}") {
        let _ = zclab::analysis::claims::load(&s);
    }
}

/// Truncating or corrupting a real run's files at every position gives an error or a clean
/// parse, never a panic; and the command-line readers say which file is wrong.
#[test]
fn truncated_and_corrupted_real_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = Lab::new(env!("CARGO_BIN_EXE_file_to_socket"))
        .argv("--sizes 64KiB --chunks 4KiB --variants classic-sendfile,uring-send-zc-fixed")
        .argv("--repeat 2 --warmup 0")
        .results(&t.path().join("r"))
        .run()
        .ok()
        .exp("file_to_socket")
        .dir;
    let summary = std::fs::read_to_string(dir.join("summary.jsonl")).unwrap();
    let hg = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "hgrm"))
        .unwrap();
    let hgrm_text = std::fs::read_to_string(&hg).unwrap();
    for cut in (0..summary.len()).step_by(7) {
        let _ = parse_jsonl(&summary[..cut]);
    }
    for cut in (0..hgrm_text.len()).step_by(5) {
        let _ = hgrm::parse(&hgrm_text[..cut]);
    }
    // The command-line readers name the broken file.
    let run_dir = dir.parent().unwrap().to_path_buf();
    std::fs::write(dir.join("summary.jsonl"), &summary[..summary.len() / 2]).unwrap();
    for args in [&["claims"][..], &["compare", run_dir.to_str().unwrap()]] {
        let r = Lab::new(ZCLAB).args(args).arg(&run_dir).run();
        r.exits(1);
        assert!(r.stderr.contains("summary.jsonl"), "{args:?}: {}", r.stderr);
    }
    std::fs::write(dir.join("meta.json"), "{\"experiment\": ").unwrap();
    let r = Lab::new(ZCLAB).arg("claims").arg(&run_dir).run();
    let e = &r.stderr;
    assert!(e.contains("meta.json") && !e.contains("panicked"), "{e}");
}
