//! Sampling one thread with perf_event_open(2): where its CPU time goes.
//!
//! The event is the software `cpu-clock` (`PERF_TYPE_SOFTWARE` /
//! `PERF_COUNT_SW_CPU_CLOCK`), so no hardware PMU is needed (virtual machines
//! rarely have one). It fires every [`SAMPLE_PERIOD_NS`] nanoseconds of the
//! thread's CPU time, in user and kernel mode alike (nothing excluded), and
//! each sample carries the instruction pointer, the thread id and the
//! kernel call chain (`PERF_SAMPLE_IP | PERF_SAMPLE_TID |
//! PERF_SAMPLE_CALLCHAIN`). User call chains are not requested
//! (`exclude_callchain_user`): the lab's own code is reported as one "user"
//! bucket, and release builds have no frame pointers to walk anyway.
//!
//! A fixed period rather than a frequency: every sample then stands for the
//! same CPU time, so samples times the period is time, with no rescaling.
//!
//! Samples land in a ring buffer mapped from the event fd. The kernel writes
//! records and advances `data_head`; the reader consumes up to it and stores
//! `data_tail` (see perf_event_open(2), "MMAP layout"). Records may wrap
//! around the end of the buffer; they are copied out piecewise.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use super::perf::{
    PERF_ATTR_SIZE_VER5, PERF_EVENT_IOC_DISABLE, PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_RESET,
    PERF_TYPE_SOFTWARE, PerfEventAttr, perf_event_open, perf_ioctl,
};

/// CPU time between two samples: 200 111 ns, about 4997 samples per second of
/// CPU. Not a round number, so that sampling does not fall in step with the
/// kernel's 1, 4 or 10 ms timer ticks.
pub const SAMPLE_PERIOD_NS: u64 = 200_111;

/// The period of a peer thread's own sampler ([`Sampler::open_peer`]): a peer lives one pass,
/// and its event counts from zero, so a pass shorter than a period would give it no sample
/// at all; at 50 us a peer busy for 150 us gets 3 (it loses under one period per pass).
pub const PEER_SAMPLE_PERIOD_NS: u64 = 50_111;

/// `PERF_COUNT_SW_CPU_CLOCK`.
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
/// `PERF_SAMPLE_*` bits.
const PERF_SAMPLE_IP: u64 = 1 << 0;
const PERF_SAMPLE_TID: u64 = 1 << 1;
const PERF_SAMPLE_CALLCHAIN: u64 = 1 << 5;
/// Bits of `perf_event_attr`'s flag word: `disabled` and `exclude_callchain_user`.
const ATTR_DISABLED: u64 = 1 << 0;
/// `inherit`: threads the sampled thread creates afterwards are sampled too; their samples go
/// to this event's ring buffer, and enable/disable apply to them as well.
const ATTR_INHERIT: u64 = 1 << 1;
const ATTR_EXCLUDE_CALLCHAIN_USER: u64 = 1 << 22;
/// Record types (`enum perf_event_type`).
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
/// `PERF_RECORD_MISC_CPUMODE_MASK` and the user-mode values under it.
const MISC_CPUMODE_MASK: u16 = 7;
const MISC_USER: u16 = 2;
const MISC_GUEST_USER: u16 = 5;
/// Call-chain entries at or above this (`(u64)PERF_CONTEXT_MAX`, -4095) are
/// context markers such as `PERF_CONTEXT_KERNEL`, not addresses.
const PERF_CONTEXT_MAX: u64 = (-4095i64) as u64;
/// Offsets in `struct perf_event_mmap_page`.
const OFF_DATA_HEAD: usize = 1024;
const OFF_DATA_TAIL: usize = 1032;
const OFF_DATA_OFFSET: usize = 1040;
const OFF_DATA_SIZE: usize = 1048;
/// Deepest kernel chain kept per sample (the kernel's default limit is 127).
const MAX_STACK: u16 = 64;

/// One sample of the thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub tid: u32,
    /// The instruction pointer when the timer fired.
    pub ip: u64,
    /// The thread was in user mode (the leaf is the lab's own code or a library).
    pub user: bool,
    /// Kernel return addresses, leaf first (empty for user-mode samples).
    pub kernel_chain: Vec<u64>,
}

/// A cpu-clock sampler of one thread (and, opened with
/// [`Sampler::open_with_new_threads`], of the threads it creates afterwards).
#[derive(Debug)]
pub struct Sampler {
    rings: Vec<Ring>,
    period_ns: u64,
}

impl Sampler {
    /// Opens the cpu-clock sampler on thread `tid` (0: the calling thread), disabled until
    /// [`Sampler::enable`]. A refusal by the kernel (`EACCES`/`EPERM` without root or
    /// `CAP_PERFMON` at `perf_event_paranoid` >= 2) is returned as is.
    pub fn open(tid: i32) -> io::Result<Sampler> {
        // 8 MiB of records (about six seconds of samples) so that one pass needs no reader
        // thread; smaller if the locked-memory limit refuses.
        Ok(Sampler {
            rings: vec![Ring::open(
                tid,
                -1,
                false,
                SAMPLE_PERIOD_NS,
                &[2048, 256, 32],
            )?],
            period_ns: SAMPLE_PERIOD_NS,
        })
    }

    /// As [`Sampler::open`], and threads that `tid` creates from now on (a peer thread, io-wq
    /// workers) are sampled too; [`Sample::tid`] tells them apart. The kernel maps no buffer
    /// for an inherited event on every CPU (`EINVAL`), so this opens one event per CPU.
    pub fn open_with_new_threads(tid: i32) -> io::Result<Sampler> {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as i32;
        let rings = (0..cpus)
            .map(|c| Ring::open(tid, c, true, SAMPLE_PERIOD_NS, &[1024, 256, 32]))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Sampler {
            rings,
            period_ns: SAMPLE_PERIOD_NS,
        })
    }

    /// A sampler of the calling thread for a peer of the measured thread, enabled at once:
    /// [`Sampler::open`] every [`PEER_SAMPLE_PERIOD_NS`], with smaller buffers (2 MiB at most,
    /// about 250 ms of the peer's CPU time: a trial may start several peers, each with its own).
    pub fn open_peer() -> io::Result<Sampler> {
        let s = Sampler {
            rings: vec![Ring::open(
                0,
                -1,
                false,
                PEER_SAMPLE_PERIOD_NS,
                &[512, 128, 32],
            )?],
            period_ns: PEER_SAMPLE_PERIOD_NS,
        };
        s.enable()?;
        Ok(s)
    }

    /// CPU time one sample stands for.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// Starts sampling.
    pub fn enable(&self) -> io::Result<()> {
        self.rings.iter().try_for_each(Ring::enable)
    }

    /// Stops sampling; what is in the buffers stays there for [`Sampler::drain`].
    pub fn disable(&self) -> io::Result<()> {
        self.rings.iter().try_for_each(Ring::disable)
    }

    /// Resets the events' counts (the buffers are not touched).
    pub fn reset(&self) -> io::Result<()> {
        self.rings.iter().try_for_each(Ring::reset)
    }

    /// Moves every record written so far out of the rings: samples are appended to `out`;
    /// the number of samples the kernel reported lost (buffer full) is returned.
    pub fn drain(&self, out: &mut Vec<Sample>) -> u64 {
        self.rings.iter().map(|r| r.drain(out)).sum()
    }
}

/// One sampling event (one thread, one CPU or all) with its ring buffer mapped.
#[derive(Debug)]
struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    data_off: usize,
    data_len: usize,
}

// SAFETY: the mapping belongs to the ring alone (unmapped when it drops), and every access
// to it goes through `&self` methods that only read the kernel's records and advance the
// tail; a ring moved to another thread (a peer's sampler, read by the harness after the peer
// ended) is used from one thread at a time.
unsafe impl Send for Ring {}

impl Ring {
    fn open(
        tid: i32,
        cpu: i32,
        inherit: bool,
        period_ns: u64,
        pages: &[usize],
    ) -> io::Result<Ring> {
        let attr = PerfEventAttr {
            type_: PERF_TYPE_SOFTWARE,
            size: PERF_ATTR_SIZE_VER5,
            config: PERF_COUNT_SW_CPU_CLOCK,
            sample_period: period_ns,
            sample_type: PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_CALLCHAIN,
            flags: ATTR_DISABLED
                | ATTR_EXCLUDE_CALLCHAIN_USER
                | if inherit { ATTR_INHERIT } else { 0 },
            sample_max_stack: MAX_STACK,
            ..PerfEventAttr::default()
        };
        let fd = perf_event_open(&attr, tid, cpu)?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // 8 MiB of records (about six seconds of samples) so that one pass
        // needs no reader thread; smaller if the locked-memory limit refuses.
        let mut last = io::Error::from_raw_os_error(libc::ENOMEM);
        for &pages in pages {
            let map_len = page * (pages + 1);
            // SAFETY: a fresh shared mapping of the event fd; the kernel
            // checks the length (1 + 2^n pages). Nothing aliases it yet.
            let map = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if map == libc::MAP_FAILED {
                last = io::Error::last_os_error();
                continue;
            }
            let map = map.cast::<u8>();
            // SAFETY: the header page is mapped and these fields are aligned u64s.
            let (off, len) = unsafe {
                (
                    std::ptr::read_volatile(map.add(OFF_DATA_OFFSET).cast::<u64>()) as usize,
                    std::ptr::read_volatile(map.add(OFF_DATA_SIZE).cast::<u64>()) as usize,
                )
            };
            // Kernels before 4.1 leave these zero: data follows the header page.
            let (data_off, data_len) = if len == 0 {
                (page, map_len - page)
            } else {
                (off, len)
            };
            return Ok(Ring {
                fd,
                map,
                map_len,
                data_off,
                data_len,
            });
        }
        Err(last)
    }

    /// Starts sampling.
    fn enable(&self) -> io::Result<()> {
        perf_ioctl(self.fd.as_fd(), PERF_EVENT_IOC_ENABLE)
    }

    /// Stops sampling; what is in the buffer stays there for [`Sampler::drain`].
    fn disable(&self) -> io::Result<()> {
        perf_ioctl(self.fd.as_fd(), PERF_EVENT_IOC_DISABLE)
    }

    /// Resets the event's count (the buffer is not touched).
    fn reset(&self) -> io::Result<()> {
        perf_ioctl(self.fd.as_fd(), PERF_EVENT_IOC_RESET)
    }

    fn head(&self) -> &AtomicU64 {
        // SAFETY: the header page stays mapped while `self` lives; data_head
        // is an aligned u64 the kernel updates concurrently, hence atomic.
        unsafe { &*self.map.add(OFF_DATA_HEAD).cast::<AtomicU64>() }
    }

    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as in `head`; data_tail is written by this reader only.
        unsafe { &*self.map.add(OFF_DATA_TAIL).cast::<AtomicU64>() }
    }

    /// Copies `out.len()` bytes starting at ring position `pos` (wrapping).
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        let start = (pos % self.data_len as u64) as usize;
        let first = out.len().min(self.data_len - start);
        // SAFETY: both ranges lie inside the mapped data area (start < data_len,
        // first <= data_len - start, the rest < data_len because a record is
        // smaller than the buffer) and the kernel does not write below data_head.
        unsafe {
            let base = self.map.add(self.data_off);
            std::ptr::copy_nonoverlapping(base.add(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(base, out.as_mut_ptr().add(first), out.len() - first);
        }
    }

    /// Moves every record written so far out of the ring: samples are appended
    /// to `out`; the number of samples the kernel reported lost (buffer full)
    /// is returned.
    fn drain(&self, out: &mut Vec<Sample>) -> u64 {
        // Acquire pairs with the kernel's barrier before it publishes data_head:
        // the records below head are complete when read.
        let head = self.head().load(Ordering::Acquire);
        let mut tail = self.tail().load(Ordering::Relaxed);
        let mut lost = 0;
        let mut rec = Vec::new();
        while tail < head {
            let mut hdr = [0u8; 8];
            self.copy_out(tail, &mut hdr);
            let kind = u32::from_ne_bytes(hdr[0..4].try_into().expect("4 bytes"));
            let misc = u16::from_ne_bytes(hdr[4..6].try_into().expect("2 bytes"));
            let size = u16::from_ne_bytes(hdr[6..8].try_into().expect("2 bytes")) as u64;
            if size < 8 || tail + size > head {
                break; // torn or corrupt: stop here, never read past head
            }
            rec.resize(size as usize - 8, 0);
            self.copy_out(tail + 8, &mut rec);
            match kind {
                PERF_RECORD_SAMPLE => {
                    if let Some(s) = parse_sample(misc, &rec) {
                        out.push(s);
                    }
                }
                PERF_RECORD_LOST if rec.len() >= 16 => {
                    lost += u64::from_ne_bytes(rec[8..16].try_into().expect("8 bytes"));
                }
                _ => {}
            }
            tail += size;
        }
        // Release: the reads above complete before the kernel may reuse the space.
        self.tail().store(tail, Ordering::Release);
        lost
    }
}

/// Parses a `PERF_RECORD_SAMPLE` body laid out for IP | TID | CALLCHAIN.
fn parse_sample(misc: u16, body: &[u8]) -> Option<Sample> {
    let u64_at = |i: usize| -> Option<u64> {
        Some(u64::from_ne_bytes(body.get(i..i + 8)?.try_into().ok()?))
    };
    let ip = u64_at(0)?;
    let tid = u32::from_ne_bytes(body.get(12..16)?.try_into().ok()?);
    let nr = u64_at(16)? as usize;
    let mode = misc & MISC_CPUMODE_MASK;
    let user = mode == MISC_USER || mode == MISC_GUEST_USER;
    let mut kernel_chain = Vec::new();
    if !user {
        for i in 0..nr.min(MAX_STACK as usize + 8) {
            let a = u64_at(24 + 8 * i)?;
            if a >= PERF_CONTEXT_MAX {
                if !kernel_chain.is_empty() {
                    break; // the next context (user) begins
                }
                continue;
            }
            kernel_chain.push(a);
        }
        if kernel_chain.is_empty() {
            kernel_chain.push(ip);
        }
    }
    Some(Sample {
        tid,
        ip,
        user,
        kernel_chain,
    })
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are the mapping made in `open`, unmapped once here.
        unsafe {
            libc::munmap(self.map.cast::<libc::c_void>(), self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kernel_sample() {
        let mut b = Vec::new();
        b.extend_from_slice(&0xffff_ffff_8100_0010u64.to_ne_bytes());
        b.extend_from_slice(&7u32.to_ne_bytes());
        b.extend_from_slice(&9u32.to_ne_bytes());
        b.extend_from_slice(&4u64.to_ne_bytes());
        b.extend_from_slice(&((-128i64) as u64).to_ne_bytes()); // PERF_CONTEXT_KERNEL
        b.extend_from_slice(&0xffff_ffff_8100_0010u64.to_ne_bytes());
        b.extend_from_slice(&0xffff_ffff_8100_0200u64.to_ne_bytes());
        b.extend_from_slice(&((-512i64) as u64).to_ne_bytes()); // PERF_CONTEXT_USER
        let s = parse_sample(1, &b).unwrap();
        assert_eq!(s.tid, 9);
        assert!(!s.user);
        assert_eq!(
            s.kernel_chain,
            vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_0200]
        );
        let u = parse_sample(MISC_USER, &b).unwrap();
        assert!(u.user && u.kernel_chain.is_empty());
    }

    /// The sampler `open` gives, or None when the kernel refuses (no root or CAP_PERFMON):
    /// the test then has nothing to check.
    fn allowed(open: io::Result<Sampler>) -> Option<Sampler> {
        match open {
            Ok(s) => Some(s),
            Err(e) => {
                let c = e.raw_os_error();
                assert!(c == Some(libc::EACCES) || c == Some(libc::EPERM), "{e}");
                None
            }
        }
    }

    /// 50 ms of CPU in user mode on the calling thread.
    fn busy() {
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
    }

    #[test]
    fn new_threads_are_sampled_apart_when_allowed() {
        let Some(s) = allowed(Sampler::open_with_new_threads(0)) else {
            return;
        };
        // Created while the event is off, as a variant's peer thread is.
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            go_rx.recv().unwrap();
            busy();
        });
        s.enable().unwrap();
        go_tx.send(()).unwrap();
        busy();
        h.join().unwrap();
        s.disable().unwrap();
        let mut out = Vec::new();
        s.drain(&mut out);
        let me = nix::unistd::gettid().as_raw() as u32;
        let mine = out.iter().filter(|x| x.tid == me).count();
        let other = out.len() - mine;
        assert!(mine > 20 && other > 20, "mine {mine}, other {other}");
    }

    #[test]
    fn samples_the_calling_thread_when_allowed() {
        let Some(s) = allowed(Sampler::open(0)) else {
            return;
        };
        s.enable().unwrap();
        busy();
        s.disable().unwrap();
        let mut out = Vec::new();
        s.drain(&mut out);
        assert!(out.len() > 20, "{} samples in 50 ms of CPU", out.len());
        let mut again = Vec::new();
        s.drain(&mut again);
        assert!(again.is_empty(), "a drained ring reads empty");
    }
}
