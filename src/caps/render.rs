//! The human-readable report of `zclab probe`.

use super::Caps;
use super::tables::{OPCODE_NAMES, SETUP_FLAGS, opcode_min_kernel, setup_flag_min_kernel};

impl Caps {
    /// Human-readable report for `zclab probe`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let yn = |b: bool| if b { "yes" } else { "no" };

        line("kernel".to_string());
        let parsed = self
            .kernel
            .parsed
            .map_or_else(|| "unparsed".to_string(), |(a, b)| format!("{a}.{b}"));
        line(format!(
            "  release      {} ({parsed}), {}",
            self.kernel.release, self.kernel.machine
        ));
        line(format!("  build        {}", self.kernel.version));
        line(format!("  hostname     {}", self.hostname));
        line(format!("  clocksource  {}", self.clocksource));
        line(format!("  cpu          {}", self.cpu.model));
        line(format!(
            "  cpus         {} online, allowed {}, invariant TSC {}",
            self.cpu.count,
            cpu_list(&self.cpu.allowed),
            yn(self.cpu.invariant_tsc)
        ));

        line(String::new());
        let u = &self.io_uring;
        let sysctl = u
            .io_uring_disabled_sysctl
            .map_or_else(|| "absent".to_string(), |v| v.to_string());
        if u.available {
            line(format!(
                "io_uring: available (kernel.io_uring_disabled={sysctl})"
            ));
        } else {
            let why = u.unavailable_reason.as_deref().unwrap_or("unknown reason");
            let words: Vec<String> =
                format!("io_uring: UNAVAILABLE: {why} (kernel.io_uring_disabled={sysctl})")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
            wrap_lines(&mut line, "", "    ", &words);
        }
        if u.available {
            let known_supported = u
                .opcodes
                .iter()
                .filter(|o| OPCODE_NAMES.contains(&o.as_str()))
                .count();
            let extra = u.opcodes.len() - known_supported;
            let extra = if extra > 0 {
                format!(", plus {extra} newer than this build knows")
            } else {
                String::new()
            };
            line(format!(
                "  opcodes: {known_supported} of {} known opcodes supported{extra}",
                OPCODE_NAMES.len()
            ));
            wrap_into(&mut line, "    ", &u.opcodes);
            if u.opcodes_unsupported.is_empty() {
                line("  opcodes missing: none".to_string());
            } else {
                line(format!(
                    "  opcodes missing ({}), with the release that added them:",
                    u.opcodes_unsupported.len()
                ));
                let missing: Vec<String> = u
                    .opcodes_unsupported
                    .iter()
                    .map(|o| match opcode_min_kernel(o) {
                        Some(v) => format!("{o}({v})"),
                        None => o.clone(),
                    })
                    .collect();
                wrap_into(&mut line, "    ", &missing);
            }
            line(format!(
                "  setup flags accepted ({} of {}):",
                u.setup_flags.len(),
                SETUP_FLAGS.len()
            ));
            wrap_into(&mut line, "    ", &u.setup_flags);
            if u.setup_flags_refused.is_empty() {
                line("  setup flags refused: none".to_string());
            } else {
                line(format!(
                    "  setup flags refused ({}):",
                    u.setup_flags_refused.len()
                ));
                for (flag, why) in &u.setup_flags_refused {
                    // The release matters only when the kernel itself refused.
                    let since = match setup_flag_min_kernel(flag) {
                        Some(v) if !why.starts_with("hidden") => format!(" [since {v}]"),
                        _ => String::new(),
                    };
                    line(format!("    {flag}: {why}{since}"));
                }
            }
            line(format!("  features ({}):", u.features.len()));
            wrap_into(&mut line, "    ", &u.features);
            line(format!("  register ring fd: {}", yn(u.register_ring_fd)));
            line(format!(
                "  SEND_ZC usage reporting: {}",
                match u.send_zc_report_usage {
                    Some(b) => yn(b),
                    None => "not tested",
                }
            ));
        } else {
            line(format!(
                "  none of the {} known opcodes can be used",
                OPCODE_NAMES.len()
            ));
        }
        for n in &u.notes {
            note_into(&mut line, n);
        }

        line(String::new());
        line("network".to_string());
        line(format!(
            "  SO_ZEROCOPY          {}",
            yn(self.net.so_zerocopy)
        ));
        line(format!(
            "  net.core.optmem_max  {}",
            self.net
                .optmem_max
                .map_or_else(|| "unknown".to_string(), |v| v.to_string())
        ));
        line(format!(
            "  network namespaces   {} (ip binary: {})",
            yn(self.net.netns),
            self.net.ip_binary.as_deref().unwrap_or("not found")
        ));

        line(String::new());
        let d = &self.odirect;
        line(format!("O_DIRECT in {}", d.path));
        line(format!("  filesystem  {}", d.fs_type));
        line(format!(
            "  open {}, real {}, alignment: memory {}, offset {}",
            yn(d.open_ok),
            yn(d.real),
            opt_num(d.mem_align),
            opt_num(d.offset_align)
        ));
        if let Some(n) = &d.note {
            note_into(&mut line, n);
        }

        line(String::new());
        line("limits and privileges".to_string());
        line(format!(
            "  memlock     soft {}, hard {}, CAP_IPC_LOCK {}",
            limit_text(self.memlock.soft),
            limit_text(self.memlock.hard),
            yn(self.memlock.cap_ipc_lock)
        ));
        let p = &self.privileges;
        line(format!(
            "  euid        {}{}, CAP_NET_ADMIN {}, CAP_SYS_ADMIN {}",
            p.euid,
            if p.root { " (root)" } else { "" },
            yn(p.cap_net_admin),
            yn(p.cap_sys_admin)
        ));
        line(format!(
            "  counters    perf software {}, syscall tracepoint {}",
            yn(self.counters.perf_software),
            yn(self.counters.syscall_tracepoint)
        ));
        if let Some(n) = &self.counters.note {
            note_into(&mut line, n);
        }

        line(String::new());
        if self.hidden.is_empty() {
            line("hidden by ZCLAB_HIDE: nothing".to_string());
        } else {
            line(format!("hidden by ZCLAB_HIDE: {}", self.hidden.join(",")));
            let bad = self.hide_tokens_invalid();
            if !bad.is_empty() {
                line(format!("  UNRECOGNISED tokens: {}", bad.join(",")));
            }
        }
        out
    }
}

/// Word-wraps `words` at 78 columns, every line indented by `indent`.
fn wrap_into(line: &mut impl FnMut(String), indent: &str, words: &[String]) {
    if words.is_empty() {
        line(format!("{indent}(none)"));
        return;
    }
    wrap_lines(line, indent, indent, words);
}

/// A free-text remark, wrapped under a "note:" label.
fn note_into(line: &mut impl FnMut(String), note: &str) {
    let words: Vec<String> = std::iter::once("note:")
        .chain(note.split_whitespace())
        .map(str::to_string)
        .collect();
    wrap_lines(line, "  ", "        ", &words);
}

fn wrap_lines(line: &mut impl FnMut(String), first: &str, rest: &str, words: &[String]) {
    const WIDTH: usize = 78;
    let mut cur = String::from(first);
    let mut indent_len = first.len();
    for w in words {
        if cur.len() > indent_len && cur.len() + 1 + w.len() > WIDTH {
            line(std::mem::replace(&mut cur, String::from(rest)));
            indent_len = rest.len();
        }
        if cur.len() > indent_len {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    line(cur);
}

fn cpu_list(cpus: &[usize]) -> String {
    if cpus.is_empty() {
        return "unknown".to_string();
    }
    // Collapse runs: [0,1,2,5] -> "0-2,5".
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

fn opt_num(v: Option<u32>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

fn limit_text(v: Option<u64>) -> String {
    match v {
        None => "unlimited".to_string(),
        Some(b) if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        Some(b) if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        Some(b) => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_list_collapses_runs() {
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(cpu_list(&[3]), "3");
    }

    #[test]
    fn limits_and_wrapping() {
        assert_eq!(limit_text(None), "unlimited");
        assert_eq!(limit_text(Some(8 << 20)), "8 MiB");
        assert_eq!(limit_text(Some(64 << 10)), "64 KiB");
        assert_eq!(limit_text(Some(1000)), "1000 B");
        let mut lines = Vec::new();
        let words: Vec<String> = (0..30).map(|i| format!("WORD{i}")).collect();
        wrap_into(&mut |l| lines.push(l), "    ", &words);
        assert!(lines.len() > 1 && lines.iter().all(|l| l.len() <= 78 && l.starts_with("    ")));
    }
}
