//! `ZCLAB_HIDE`: report features as missing, so that the fallbacks an older or locked-down
//! kernel would take can be exercised here. Hiding is applied after measuring, so the report
//! of what is left stays the real one.

use super::tables::{FLAG_PREREQ, OPCODE_NAMES, SETUP_FLAGS, canonical, flag_bit, opcode_index};
use super::{Caps, IoUring, read_trimmed, read_u32};

/// Environment variable read by [`super::probe`]: comma-separated hide tokens.
pub const HIDE_ENV: &str = "ZCLAB_HIDE";

/// Hide tokens in `spec` (same syntax as `ZCLAB_HIDE`) that are not
/// recognised, as given, so that a caller can reject them before probing.
pub fn invalid_hide_tokens(spec: &str) -> Vec<String> {
    Hide::parse(spec).invalid
}

/// Parsed hide tokens.
#[derive(Debug, Default)]
pub(super) struct Hide {
    pub(super) io_uring: bool,
    ops: Vec<String>,
    flags: Vec<String>,
    so_zerocopy: bool,
    send_zc_report_usage: bool,
    odirect: bool,
    root: bool,
    /// Sampling profiles (perf_event_open sampling, /proc/kallsyms) reported as refused.
    pub(super) perf: bool,
    /// Canonical spelling of recognised tokens, then unrecognised ones.
    pub(super) applied: Vec<String>,
    invalid: Vec<String>,
}

enum Token {
    IoUring,
    Op(String),
    Flag(String),
    SoZerocopy,
    SendZcReportUsage,
    ODirect,
    Root,
    Perf,
}

fn parse_token(t: &str) -> Option<Token> {
    let t = t.trim();
    if let Some(op) = t.strip_prefix("op:") {
        let op = canonical(op, "IORING_OP_");
        return OPCODE_NAMES.contains(&op.as_str()).then_some(Token::Op(op));
    }
    if let Some(flag) = t.strip_prefix("flag:") {
        let flag = canonical(flag, "IORING_SETUP_");
        return SETUP_FLAGS
            .iter()
            .any(|(n, _, _)| *n == flag)
            .then_some(Token::Flag(flag));
    }
    match t.to_ascii_lowercase().as_str() {
        "io_uring" => Some(Token::IoUring),
        "so_zerocopy" => Some(Token::SoZerocopy),
        "send_zc_report_usage" => Some(Token::SendZcReportUsage),
        "odirect" => Some(Token::ODirect),
        "root" => Some(Token::Root),
        "perf" => Some(Token::Perf),
        _ => None,
    }
}

/// Whether `token` (one entry of [`Caps::hidden`]) is a recognised hide token.
pub(super) fn is_valid_token(token: &str) -> bool {
    parse_token(token).is_some()
}

impl Hide {
    pub(super) fn parse(spec: &str) -> Hide {
        let mut h = Hide::default();
        for raw in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let canon = match parse_token(raw) {
                None => {
                    h.invalid.push(raw.to_string());
                    continue;
                }
                Some(Token::IoUring) => h.hide(|h| &mut h.io_uring, "io_uring"),
                Some(Token::Op(op)) => {
                    let c = format!("op:{op}");
                    h.ops.push(op);
                    c
                }
                Some(Token::Flag(f)) => {
                    let c = format!("flag:{f}");
                    h.flags.push(f);
                    c
                }
                Some(Token::SoZerocopy) => h.hide(|h| &mut h.so_zerocopy, "so_zerocopy"),
                Some(Token::SendZcReportUsage) => {
                    h.hide(|h| &mut h.send_zc_report_usage, "send_zc_report_usage")
                }
                Some(Token::ODirect) => h.hide(|h| &mut h.odirect, "odirect"),
                Some(Token::Root) => h.hide(|h| &mut h.root, "root"),
                Some(Token::Perf) => h.hide(|h| &mut h.perf, "perf"),
            };
            if !h.applied.contains(&canon) {
                h.applied.push(canon);
            }
        }
        h.applied.extend(h.invalid.iter().cloned());
        h
    }

    /// Sets the switch `field` picks and returns its canonical name, `name`.
    fn hide(&mut self, field: impl FnOnce(&mut Hide) -> &mut bool, name: &str) -> String {
        *field(self) = true;
        name.to_string()
    }

    /// Makes `c`, as measured, report what is hidden as missing.
    pub(super) fn apply(&self, c: &mut Caps) {
        apply_op_hides(&mut c.io_uring, &self.ops);
        apply_flag_hides(&mut c.io_uring, &self.flags);
        if self.send_zc_report_usage && c.io_uring.send_zc_report_usage.is_some() {
            c.io_uring.send_zc_report_usage = Some(false);
        }
        if self.so_zerocopy {
            c.net.so_zerocopy = false;
        }
        if self.odirect {
            let d = &mut c.odirect;
            d.open_ok = false;
            d.real = false;
            d.mem_align = None;
            d.offset_align = None;
            d.note = Some("O_DIRECT hidden by ZCLAB_HIDE".to_string());
        }
        if self.root {
            c.privileges.root = false;
            c.privileges.cap_net_admin = false;
            c.privileges.cap_sys_admin = false;
            c.memlock.cap_ipc_lock = false;
            c.net.netns = false;
            // What an unprivileged process would get: tracefs is root-only, and
            // kernel-side counting needs perf_event_paranoid <= 1.
            let paranoid = read_trimmed("/proc/sys/kernel/perf_event_paranoid")
                .and_then(|s| s.parse::<i32>().ok());
            c.counters.syscall_tracepoint = false;
            c.counters.perf_software &= paranoid.is_some_and(|p| p <= 1);
            c.counters.note = Some("privileges hidden by ZCLAB_HIDE=root".to_string());
        }
        c.hidden = self.applied.clone();
    }
}

/// What the probe reports for io_uring when `ZCLAB_HIDE=io_uring`.
pub(super) fn hidden_io_uring() -> IoUring {
    IoUring {
        available: false,
        unavailable_reason: Some("hidden by ZCLAB_HIDE".to_string()),
        io_uring_disabled_sysctl: read_u32("/proc/sys/kernel/io_uring_disabled"),
        opcodes_unsupported: OPCODE_NAMES.iter().map(|s| s.to_string()).collect(),
        ..IoUring::default()
    }
}

fn apply_op_hides(u: &mut IoUring, ops: &[String]) {
    for op in ops {
        let Some(pos) = u.opcodes.iter().position(|o| o == op) else {
            continue;
        };
        u.opcodes.remove(pos);
        // Keep the unsupported list in opcode order.
        u.opcodes_unsupported.push(op.clone());
        u.opcodes_unsupported
            .sort_by_key(|o| opcode_index(o).unwrap_or(usize::MAX));
        if op == "SEND_ZC" {
            u.send_zc_report_usage = None;
        }
    }
}

fn apply_flag_hides(u: &mut IoUring, flags: &[String]) {
    let mut hidden: Vec<(String, String)> = Vec::new();
    for f in flags {
        hidden.push((f.clone(), "hidden by ZCLAB_HIDE".to_string()));
    }
    for (dep, pre) in FLAG_PREREQ {
        if flags.iter().any(|f| f == pre) && !flags.iter().any(|f| f == dep) {
            hidden.push((
                dep.to_string(),
                format!("hidden by ZCLAB_HIDE (needs {pre})"),
            ));
        }
    }
    for (flag, why) in hidden {
        if let Some(pos) = u.setup_flags.iter().position(|f| *f == flag) {
            u.setup_flags.remove(pos);
            u.setup_flags_refused.push((flag, why));
        }
    }
    u.setup_flags_refused
        .sort_by_key(|(f, _)| flag_bit(f).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hide_parsing() {
        let h = Hide::parse(" io_uring, op:send_zc ,flag:IORING_SETUP_SQPOLL,bogus,op:NOPE,,root");
        assert!(h.io_uring && h.root);
        assert_eq!(h.ops, vec!["SEND_ZC"]);
        assert_eq!(h.flags, vec!["SQPOLL"]);
        assert_eq!(h.invalid, vec!["bogus", "op:NOPE"]);
        assert_eq!(
            h.applied,
            vec![
                "io_uring",
                "op:SEND_ZC",
                "flag:SQPOLL",
                "root",
                "bogus",
                "op:NOPE"
            ]
        );
        assert!(Hide::parse("").applied.is_empty());
        assert!(is_valid_token("flag:sqpoll") && !is_valid_token("flag:NOPE"));
    }

    #[test]
    fn hiding_a_flag_hides_what_needs_it() {
        let mut u = IoUring {
            available: true,
            setup_flags: vec!["SQPOLL".into(), "SQ_AFF".into(), "CQSIZE".into()],
            setup_flags_refused: vec![("SQE_MIXED".into(), "EINVAL".into())],
            ..IoUring::default()
        };
        apply_flag_hides(&mut u, &["SQPOLL".to_string()]);
        assert_eq!(u.setup_flags, vec!["CQSIZE"]);
        let refused: Vec<&str> = u
            .setup_flags_refused
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(refused, vec!["SQPOLL", "SQ_AFF", "SQE_MIXED"]);
        assert_eq!(
            u.setup_flags_refused[1].1,
            "hidden by ZCLAB_HIDE (needs SQPOLL)"
        );
    }
}
