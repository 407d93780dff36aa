//! Where the CPU goes: samples of one thread ([`crate::sys::perf_sample`]) named from
//! /proc/kallsyms, bucketed by their leaf function, and folded into stacks.
//!
//! The buckets answer the seeds' questions (how much of the time is copying, checksumming,
//! pinning pages, ...). A sample belongs to the first bucket of [`BUCKETS`] one of whose
//! patterns matches its leaf function; samples taken in user mode are `user` (the lab's own
//! code and its libraries, hashing included: user call chains are not taken, so hashing is
//! not told apart); kernel leaves that match nothing, or that have no symbol, are `other`.
//! Every sample lands in exactly one bucket, so the buckets sum to the sampled total.
//!
//! "CPU copies per byte" divides the copy bucket's time per MiB moved by the copy time per MiB
//! of a reference measured once per run ([`reference_copy`]): read(2) of a cached file into a
//! 64 KiB buffer, itself sampled and bucketed the same way.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys::perf_sample::{Sample, Sampler};

/// One bucket: its key (used in result fields as `prof_<key>_pct`), what it is, and the leaf
/// function patterns that select it. A pattern is a name with `*` wildcards (any run of
/// characters, at either end or inside).
#[derive(Debug)]
pub struct Bucket {
    pub key: &'static str,
    pub about: &'static str,
    pub patterns: &'static [&'static str],
}

/// Bucket of user-mode samples.
pub const USER: &str = "user";
/// Bucket of kernel samples that no pattern matches.
pub const OTHER: &str = "other";
/// Bucket of CPU copies (the numerator of copies per byte).
pub const COPY: &str = "copy";

/// The buckets, first match wins (so the copy-and-checksum functions count as copies, and
/// `skb_copy_datagram*` is a copy before `skb_*` is the network stack). To extend, add patterns
/// here; the order is part of the definition.
pub const BUCKETS: &[Bucket] = &[
    Bucket {
        key: COPY,
        about: "CPU copy: copy_to/from_user and iov_iter copies, kernel memcpy/memmove, skb datagram copies, copy-and-checksum",
        patterns: &[
            "copy_user*",
            "_copy_to_user*",
            "_copy_from_user*",
            "__copy_user*",
            "rep_movs*",
            "*memcpy*",
            "*memmove*",
            "_copy_to_iter*",
            "_copy_from_iter*",
            "copy_to_iter*",
            "copy_from_iter*",
            "copy_page_to_iter*",
            "copy_page_from_iter*",
            "copyin*",
            "copyout*",
            "skb_copy_datagram*",
            "skb_copy_bits*",
            "csum_partial_copy*",
            "csum_and_copy*",
            "copy_page*",
            "copy_mc_*",
        ],
    },
    Bucket {
        key: "checksum",
        about: "checksum without copy",
        patterns: &["csum_partial*", "do_csum*", "csum_block*", "skb_checksum*"],
    },
    Bucket {
        key: "pin",
        about: "page pinning and unpinning (GUP, iov_iter page extraction)",
        patterns: &[
            "pin_user_pages*",
            "unpin_user_page*",
            "get_user_pages*",
            "__get_user_pages*",
            "gup_*",
            "try_grab_*",
            "iov_iter_get_pages*",
            "iov_iter_extract_pages*",
            "__iov_iter_get_pages*",
        ],
    },
    Bucket {
        key: "pagecache",
        about: "page-cache lookup",
        patterns: &[
            "filemap_*",
            "__filemap_*",
            "find_get_*",
            "pagecache*",
            "page_cache_*",
            "xas_*",
        ],
    },
    Bucket {
        key: "fault",
        about: "page faults",
        // Not "*fault*": copy_from_kernel_nofault (a probe read) is no page fault.
        patterns: &["*_fault", "*_fault_*", "fault_*", "*page_fault*"],
    },
    Bucket {
        key: "syscall",
        about: "system call entry and exit",
        patterns: &[
            "entry_SYSCALL*",
            "syscall_*",
            "do_syscall*",
            "__x64_sys_*",
            "x64_sys_call*",
            "exit_to_user_mode*",
        ],
    },
    Bucket {
        key: "io_uring",
        about: "io_uring core",
        patterns: &["io_*", "__io_*"],
    },
    Bucket {
        key: "net",
        about: "TCP/UDP/IP stack and devices",
        patterns: &[
            "tcp_*",
            "__tcp_*",
            "udp_*",
            "__udp*",
            "ip_*",
            "__ip_*",
            "__dev_*",
            "dev_*",
            "skb_*",
            "__skb_*",
            "veth_*",
            "net_*",
            "__netif_*",
            "netif_*",
            "sock_*",
            "__sock_*",
        ],
    },
    Bucket {
        key: "sched",
        about: "scheduler and idle",
        patterns: &[
            "schedule*",
            "__schedule*",
            "finish_task_switch*",
            "*idle*",
            "pick_next_*",
            "__switch_to*",
        ],
    },
];

/// All bucket keys in report order: the table's, then `user` and `other`.
/// Whether a profiling trial is running: peer threads started meanwhile sample themselves
/// ([`sample_this_peer`]). The peer thread is not a child of the sampled measured thread's
/// event (an inherited event on every CPU gave short passes far too few samples of the
/// measured thread), so each peer opens its own.
static PEER_SAMPLING: AtomicBool = AtomicBool::new(false);
/// The samplers peer threads opened on themselves during the profiling trial.
static PEER_SAMPLERS: Mutex<Vec<Sampler>> = Mutex::new(Vec::new());

/// Arms (or disarms) peer sampling around a profiling trial. Disarming leaves the samplers
/// opened meanwhile for [`take_peer_samplers`].
pub fn arm_peer_sampling(on: bool) {
    PEER_SAMPLING.store(on, Ordering::SeqCst);
}

/// Called by a peer thread of the measured one when it starts: during a profiling trial it
/// samples itself, from now until it ends (its set-up included, which is short beside its
/// transfer). A sampler the kernel refuses leaves the peer unsampled.
pub fn sample_this_peer() {
    if !PEER_SAMPLING.load(Ordering::SeqCst) {
        return;
    }
    if let Ok(s) = Sampler::open_peer() {
        PEER_SAMPLERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }
}

/// The samplers the peers opened since the last call, stopped.
pub fn take_peer_samplers() -> Vec<Sampler> {
    let v = std::mem::take(&mut *PEER_SAMPLERS.lock().unwrap_or_else(|e| e.into_inner()));
    for s in &v {
        let _ = s.disable();
    }
    v
}

pub fn bucket_keys() -> Vec<&'static str> {
    BUCKETS.iter().map(|b| b.key).chain([USER, OTHER]).collect()
}

/// Whether `name` matches `pattern` (`*` matches any run of characters).
pub fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The bucket of a kernel leaf function.
pub fn bucket_of(leaf: &str) -> &'static str {
    BUCKETS
        .iter()
        .find(|b| b.patterns.iter().any(|p| glob(p, leaf)))
        .map_or(OTHER, |b| b.key)
}

/// Kernel text symbols by address, from /proc/kallsyms.
#[derive(Debug, Default)]
pub struct Kallsyms {
    addrs: Vec<u64>,
    names: Vec<String>,
}

impl Kallsyms {
    /// Reads /proc/kallsyms. Without privilege the kernel shows every address as zero; that is
    /// refused (`EACCES`), never turned into a table that names everything wrongly.
    pub fn load() -> io::Result<Kallsyms> {
        let text = std::fs::read_to_string("/proc/kallsyms")?;
        let k = Kallsyms::parse(&text);
        if k.addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "/proc/kallsyms shows no addresses (needs root or kptr_restrict=0)",
            ));
        }
        Ok(k)
    }

    /// Parses kallsyms text ("address type name [module]"), keeping text symbols with a
    /// non-zero address.
    pub fn parse(text: &str) -> Kallsyms {
        let mut v: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(kind, "t" | "T" | "w" | "W")).then_some((addr, name))
            })
            .collect();
        v.sort_unstable_by_key(|e| e.0);
        Kallsyms {
            addrs: v.iter().map(|e| e.0).collect(),
            names: v.iter().map(|e| e.1.to_string()).collect(),
        }
    }

    /// The function containing `addr` (the last symbol at or below it).
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self.addrs.partition_point(|&a| a <= addr);
        (i > 0).then(|| self.names[i - 1].as_str())
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

/// Samples bucketed and folded.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    /// Samples taken.
    pub samples: u64,
    /// Samples the kernel dropped (ring full); not in any bucket.
    pub lost: u64,
    /// Samples inside the sampler's own enable/disable ioctl (`perf_ioctl`): the profiler's
    /// cost, not the variant's; not in any bucket.
    pub own: u64,
    /// CPU time per sample.
    pub period_ns: u64,
    /// Samples per bucket key; sums to `samples`.
    pub buckets: BTreeMap<&'static str, u64>,
    /// Folded stacks ("root;...;leaf") and their sample counts.
    pub folded: BTreeMap<String, u64>,
    /// Copy-bucket samples by copy site: the first caller above the leaf that is not itself a
    /// copy function (e.g. `copy_page_to_iter` under `filemap_read` is the site `filemap_read`).
    pub copy_sites: BTreeMap<String, u64>,
}

impl Profile {
    pub fn new(period_ns: u64) -> Profile {
        Profile {
            period_ns,
            ..Profile::default()
        }
    }

    /// Adds one sample, naming its kernel frames with `syms`.
    pub fn add(&mut self, s: &Sample, syms: &Kallsyms) {
        if !s.user
            && s.kernel_chain
                .iter()
                .any(|&a| matches!(syms.name(a), Some("perf_ioctl" | "_perf_ioctl")))
        {
            self.own += 1;
            return;
        }
        self.samples += 1;
        let (bucket, stack) = if s.user {
            (USER, "[user]".to_string())
        } else {
            let names: Vec<&str> = s
                .kernel_chain
                .iter()
                .map(|&a| syms.name(a).unwrap_or("[unknown]"))
                .collect();
            let leaf = names.first().copied().unwrap_or("[unknown]");
            let mut stack = String::from("[user]");
            for n in names.iter().rev() {
                stack.push(';');
                stack.push_str(n);
            }
            let bucket = bucket_of(leaf);
            if bucket == COPY {
                let site = names[1..]
                    .iter()
                    .find(|n| bucket_of(n) != COPY)
                    .copied()
                    .unwrap_or(leaf);
                *self.copy_sites.entry(site.to_string()).or_default() += 1;
            }
            (bucket, stack)
        };
        *self.buckets.entry(bucket).or_default() += 1;
        *self.folded.entry(stack).or_default() += 1;
    }

    /// Drains `sampler` into the profile.
    pub fn drain(&mut self, sampler: &Sampler, syms: &Kallsyms) {
        let mut out = Vec::new();
        self.lost += sampler.drain(&mut out);
        for s in &out {
            self.add(s, syms);
        }
    }

    /// Drains `sampler`: samples of thread `tid` into this profile, those of other threads
    /// (threads it created while sampled) into `others`.
    pub fn drain_split(
        &mut self,
        others: &mut Profile,
        tid: u32,
        sampler: &Sampler,
        syms: &Kallsyms,
    ) {
        let mut out = Vec::new();
        self.lost += sampler.drain(&mut out);
        for s in &out {
            if s.tid == tid {
                self.add(s, syms);
            } else {
                others.add(s, syms);
            }
        }
    }

    /// Share of the samples in bucket `key`, in percent (None without samples).
    pub fn pct(&self, key: &str) -> Option<f64> {
        (self.samples > 0)
            .then(|| *self.buckets.get(key).unwrap_or(&0) as f64 * 100.0 / self.samples as f64)
    }

    /// CPU time in bucket `key`, nanoseconds.
    pub fn bucket_ns(&self, key: &str) -> u64 {
        self.buckets.get(key).unwrap_or(&0) * self.period_ns
    }

    /// Copy sites that each copy at least `min_share` of a payload: their CPU time per MiB of
    /// `mib` moved is at least `min_share` times `ref_ns_per_mib` (one reference copy).
    pub fn copy_sites_over(&self, mib: f64, ref_ns_per_mib: f64, min_share: f64) -> Vec<&str> {
        self.copy_sites
            .iter()
            .filter(|&(_, &n)| (n * self.period_ns) as f64 / mib >= min_share * ref_ns_per_mib)
            .map(|(s, _)| s.as_str())
            .collect()
    }

    /// Folded-stack text, one "frames count" line per stack (the input of flame graph tools).
    pub fn folded_text(&self) -> String {
        let mut s = String::new();
        for (stack, n) in &self.folded {
            s.push_str(&format!("{stack} {n}\n"));
        }
        s
    }
}

/// The reference copy: copy-bucket CPU time per MiB of a plain read(2) of a cached file.
#[derive(Debug, Clone)]
pub struct ReferenceCopy {
    pub copy_ns_per_mib: f64,
    pub mib: f64,
    pub profile: Profile,
}

/// Size of the reference file and of each read into the user buffer.
const REF_FILE: usize = 16 << 20;
const REF_BUF: usize = 64 << 10;
/// Least CPU time sampled for the reference (about 2000 samples).
const REF_MIN_NS: u64 = 400_000_000;

/// Measures the reference copy in the calling thread: writes a 16 MiB file under `dir`, reads
/// it once to cache it, then samples reads of it in 64 KiB steps until 400 ms of CPU time have
/// been sampled. The file is removed afterwards.
pub fn reference_copy(dir: &Path, syms: &Kallsyms) -> io::Result<ReferenceCopy> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let path = dir.join(format!(".zclab-copyref-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let block: Vec<u8> = (0..REF_BUF).map(|i| (i * 7 + 3) as u8).collect();
        for _ in 0..REF_FILE / REF_BUF {
            f.write_all(&block)?;
        }
        let mut buf = vec![0u8; REF_BUF];
        let mut read_all = |f: &mut std::fs::File| -> io::Result<u64> {
            f.seek(SeekFrom::Start(0))?;
            let mut n = 0u64;
            loop {
                let k = f.read(&mut buf)?;
                if k == 0 {
                    return Ok(n);
                }
                n += k as u64;
            }
        };
        read_all(&mut f)?;
        let sampler = Sampler::open(0)?;
        let mut prof = Profile::new(sampler.period_ns());
        let mut bytes = 0u64;
        while prof.samples * prof.period_ns < REF_MIN_NS {
            sampler.enable()?;
            for _ in 0..8 {
                bytes += read_all(&mut f)?;
            }
            sampler.disable()?;
            prof.drain(&sampler, syms);
            if bytes > (64u64 << 30) {
                break; // samples are not arriving; do not loop forever
            }
        }
        let mib = bytes as f64 / (1u64 << 20) as f64;
        let copy = prof.bucket_ns(COPY) as f64;
        if copy <= 0.0 {
            return Err(io::Error::other(format!(
                "the reference read had no samples in the copy bucket ({} samples)",
                prof.samples
            )));
        }
        Ok(ReferenceCopy {
            copy_ns_per_mib: copy / mib,
            mib,
            profile: prof,
        })
    })();
    let _ = std::fs::remove_file(&path);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("copy_user*", "copy_user_generic"));
        assert!(glob("*fault*", "handle_mm_fault"));
        assert!(glob("*idle*", "do_idle"));
        assert!(glob("csum_partial", "csum_partial"));
        assert!(!glob("csum_partial", "csum_partial_copy"));
        assert!(!glob("tcp_*", "__tcp_push"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn buckets_in_order() {
        assert_eq!(bucket_of("rep_movs_alternative"), COPY);
        assert_eq!(bucket_of("csum_partial_copy_generic"), COPY);
        assert_eq!(bucket_of("csum_partial"), "checksum");
        assert_eq!(bucket_of("skb_copy_datagram_iter"), COPY);
        assert_eq!(bucket_of("skb_release_data"), "net");
        assert_eq!(bucket_of("filemap_get_read_batch"), "pagecache");
        assert_eq!(bucket_of("entry_SYSCALL_64"), "syscall");
        assert_eq!(bucket_of("io_submit_sqes"), "io_uring");
        assert_eq!(bucket_of("__schedule"), "sched");
        assert_eq!(bucket_of("kmem_cache_alloc"), OTHER);
        assert_eq!(bucket_of("__pi_memcpy"), COPY);
        assert_eq!(bucket_of("handle_mm_fault"), "fault");
        assert_eq!(bucket_of("exc_page_fault"), "fault");
        assert_eq!(bucket_of("copy_from_kernel_nofault"), OTHER);
    }

    #[test]
    fn kallsyms_lookup() {
        let k = Kallsyms::parse(
            "ffffffff81000200 T b\nffffffff81000100 t a\nffffffff81000300 D data\n0000000000000000 T z\n",
        );
        assert_eq!(k.len(), 2);
        assert_eq!(k.name(0xffffffff810000ff), None);
        assert_eq!(k.name(0xffffffff81000100), Some("a"));
        assert_eq!(k.name(0xffffffff81000250), Some("b"));
    }
}
