//! Flame graphs of the profiling trial's folded stacks (`<variant>@<point>.folded`,
//! docs/method.md, "Where the CPU goes"), drawn as SVG by the inferno crate: one per profiled
//! variant and point, and the differential graph of two profiles (`zclab flame`, `zclab compare --flames`).

use std::io;

/// Frames are coloured by a hash of their name, so a function has the same colour in every
/// graph of a run and across runs.
fn options(title: &str, subtitle: Option<String>) -> inferno::flamegraph::Options<'static> {
    let mut opt = inferno::flamegraph::Options::default();
    opt.title = title.to_string();
    opt.subtitle = subtitle;
    opt.count_name = "samples".into();
    opt.hash = true;
    opt
}

/// An SVG flame graph of folded-stack text ("frame;frame;... count" per line); None when the
/// text holds no stack.
pub fn svg(title: &str, folded: &str) -> io::Result<Option<Vec<u8>>> {
    draw(options(title, None), folded)
}

/// Draws folded-stack lines (one count, or two for a differential graph); None without any.
fn draw(mut opt: inferno::flamegraph::Options<'_>, folded: &str) -> io::Result<Option<Vec<u8>>> {
    if folded.lines().all(|l| l.trim().is_empty()) {
        return Ok(None);
    }
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opt, folded.lines(), &mut out)?;
    Ok(Some(out))
}

/// The differential flame graph from `before` to `after` (both folded-stack text): the frames
/// of `after`, red where they took a larger share of the samples than in `before`, blue where
/// a smaller one. `before` is scaled to `after`'s sample count, so a longer profile on one side
/// does not colour everything.
pub fn diff_svg(title: &str, before: &str, after: &str) -> io::Result<Option<Vec<u8>>> {
    let mut folded = Vec::new();
    let opt = inferno::differential::Options {
        normalize: true,
        strip_hex: false,
    };
    inferno::differential::from_readers(opt, before.as_bytes(), after.as_bytes(), &mut folded)?;
    let folded = String::from_utf8(folded).map_err(io::Error::other)?;
    let sub = Some("red: a larger share of the samples than before; blue: a smaller one".into());
    draw(options(title, sub), &folded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_names_every_frame_and_nothing_draws_nothing() {
        let folded = "main;copy_user_generic 30\nmain;tcp_sendmsg;skb_copy 10\n";
        let s = String::from_utf8(svg("file_to_socket", folded).unwrap().unwrap()).unwrap();
        assert!(
            s.starts_with("<?xml") && s.contains("<svg"),
            "{}",
            &s[..100]
        );
        for f in [
            "file_to_socket",
            "copy_user_generic",
            "tcp_sendmsg",
            "skb_copy",
        ] {
            assert!(s.contains(f), "{f} missing");
        }
        assert!(svg("x", "").unwrap().is_none());
        assert!(svg("x", "\n\n").unwrap().is_none());
    }

    #[test]
    fn a_differential_graph_draws_the_after_side() {
        let before = "main;read;copy 50\nmain;write;copy 50\n";
        let after = "main;sendfile;splice 80\nmain;read;copy 20\n";
        let s = String::from_utf8(diff_svg("a vs b", before, after).unwrap().unwrap()).unwrap();
        assert!(s.contains("sendfile") && s.contains("red: a larger share"));
        assert!(diff_svg("x", "", "").unwrap().is_none());
    }
}
