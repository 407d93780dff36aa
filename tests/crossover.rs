//! The experiments' crossovers and the claims engine decide with one rule: on the committed
//! reference runs, the crossover net_send writes (computed from its rows, as at the end of a
//! run) agrees with the verdict of the `zc-10k` claim, and proxy's with `splice-4k`: the same
//! size, the same ratio at every size, and an answer the claims call decided only where the
//! document calls it conclusive.

use serde_json::Value;
use std::path::Path;
use zclab::analysis::claims::{CLAIMS_JSON, Kind, Verdict, load, verdicts};
use zclab::loops::{netsend_crossover, proxy_crossover};
use zclab::net::netns::NetPath;
use zclab::results::{Run, load_run};
use zclab::units::fmt_size;

/// The run directories under results/reference/ that hold `experiment`, measured on real
/// hardware or KVM (the kernel matrix's emulated runs hold one point each: no sweep).
fn runs_with(experiment: &str) -> Vec<Run> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference");
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(experiment).join("meta.json").is_file())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|d| load_run(d).unwrap())
        .filter(|r| r.accelerator() != "tcg")
        .collect()
}

fn verdict(run: &Run, id: &str) -> Verdict {
    let claims: Vec<_> = load(CLAIMS_JSON)
        .unwrap()
        .into_iter()
        .filter(|c| c.id == id)
        .collect();
    assert_eq!(claims.len(), 1, "claim {id}");
    verdicts(&claims, std::slice::from_ref(run)).remove(0)
}

/// The claim's verdict says what the document `doc` (one comparison: `at`, `conclusive`,
/// per-size `ratio_key` in `points`) says: A beats B from the same size (or never), with the
/// same ratio at every size, and it is decided only where the document is conclusive.
#[allow(clippy::too_many_arguments)]
fn agree(v: &Verdict, doc: &Value, at: &str, points: &str, ratio_key: &str, a: &str, b: &str) {
    let param = if points == "by_size" { "msg" } else { "size" };
    let expected = match doc[at].as_u64() {
        Some(x) => format!("{a} beats {b} from {param}={} (", fmt_size(x)),
        None => format!("{a} never beats {b} ("),
    };
    assert!(
        v.measured.starts_with(&expected),
        "claim {}: {}\ndocument: {doc}",
        v.id,
        v.measured
    );
    let sweep: Vec<String> = doc[points]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let size = p["size"].as_u64().unwrap();
            format!(
                "{}:{}",
                fmt_size(size),
                zclab::analysis::claims::fmt_num(p[ratio_key].as_f64().unwrap())
            )
        })
        .collect();
    assert!(
        v.measured.ends_with(&format!(": {})", sweep.join(" "))),
        "claim {}: {}\ndocument's sweep: {sweep:?}",
        v.id,
        v.measured
    );
    if !doc["conclusive"].as_bool().unwrap() {
        assert_eq!(v.kind, Kind::Inconclusive, "{}: {}", v.id, v.measured);
    }
    assert_ne!(v.kind, Kind::NotApplicable, "{}: {}", v.id, v.measured);
}

#[test]
fn net_send_crossover_agrees_with_the_zc_10k_claim() {
    let runs = runs_with("net_send");
    assert!(!runs.is_empty(), "a reference run has net_send");
    for run in &runs {
        let rows = run.rows("net_send").unwrap();
        let c = netsend_crossover::crossovers(rows, &[NetPath::UdpSink], 3);
        let doc = c[0].json.as_ref().expect("crossover computed");
        // The claim compares MSG_ZEROCOPY and classic-send at the same point, reap included.
        let reap = rows
            .iter()
            .find(|r| r.variant == "classic-send")
            .and_then(|r| r.params.get("reap").cloned());
        let mz = doc["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| {
                v["variant"] == "classic-send-msg-zerocopy"
                    && Some(&v["reap_every"]) == reap.as_ref()
            })
            .expect("MSG_ZEROCOPY at classic-send's reap");
        agree(
            &verdict(run, "zc-10k"),
            mz,
            "crossover_bytes",
            "points",
            "ratio",
            "classic-send-msg-zerocopy",
            "classic-send",
        );
    }
}

#[test]
fn proxy_crossover_agrees_with_the_splice_4k_claim() {
    let runs = runs_with("proxy");
    assert!(!runs.is_empty(), "a reference run has proxy");
    for run in &runs {
        let (doc, text) = proxy_crossover::crossover(run.rows("proxy").unwrap()).unwrap();
        agree(
            &verdict(run, "splice-4k"),
            &doc["stream"]["classic-splice vs classic-read-write"],
            "crossover_size",
            "by_size",
            "ratio_splice_to_copy",
            "classic-splice",
            "classic-read-write",
        );
        for l in text.lines().skip(1) {
            assert!(
                l.contains("; conclusive") || l.contains("; not conclusive (interval "),
                "{l}"
            );
        }
    }
}
