//! Block reads from a file (storage_read): the offsets of one trial, the synchronous pread(2)
//! loop with its inline check, and the SQPOLL thread's exact share of the process's CPU time.

use crate::measure::{Clock, Recorder, Stamp};
use crate::ring::Ring;
use crate::sys::blocksum::BlockSums;
use crate::sys::direct::DirectIo;
use crate::sys::signal::Cancel;
use crate::uring::file::{Buffers, ReadLoop, read_pipeline};
use anyhow::bail;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Where a trial's reads go.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Uniformly random blocks of the file.
    Rand,
    /// The blocks in order, wrapping at the end.
    Seq,
}

impl Pattern {
    /// The name in parameter points: `rand`, `seq`.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Rand => "rand",
            Pattern::Seq => "seq",
        }
    }
}

/// The I/O modes a run measures: `buffered` and/or `direct` (O_DIRECT).
#[derive(Debug, Clone)]
pub struct IoModes {
    pub modes: Vec<&'static str>,
    /// What O_DIRECT needs here, when direct points run.
    pub direct: Option<DirectIo>,
    /// Why O_DIRECT points do not run, when the work directory has no real O_DIRECT.
    pub note: Option<String>,
}

/// The modes asked for: `direct` only O_DIRECT, `buffered` only buffered, neither (or both)
/// buffered and, where `probe` (of the work directory) found real O_DIRECT, direct too. `Err`
/// says why the request is refused: O_DIRECT asked for where there is none, or a block size in
/// `bs` that breaks its alignment.
pub fn io_modes(
    probe: Result<DirectIo, String>,
    direct: bool,
    buffered: bool,
    bs: &[u64],
) -> Result<IoModes, String> {
    let mut modes = Vec::new();
    if !direct || buffered {
        modes.push("buffered");
    }
    let mut note = None;
    match (&probe, direct) {
        (Ok(d), _) if direct || !buffered => {
            if let Some(why) = bs.iter().find_map(|&b| d.misaligned(b)) {
                return Err(format!("O_DIRECT refused: {why}"));
            }
            modes.push("direct");
        }
        (Err(why), true) => return Err(format!("--direct refused: {why}")),
        (Err(why), false) => note = Some(format!("O_DIRECT points not run: {why}")),
        _ => {}
    }
    let direct = probe.ok().filter(|_| modes.contains(&"direct"));
    Ok(IoModes {
        modes,
        direct,
        note,
    })
}

/// Offsets for one trial: random blocks (xorshift64*, no allocation) or the next blocks in
/// order, until the count or the time limit, or until `cancel` is (checked every 64 reads).
pub struct Offsets {
    pub rand: bool,
    /// Block size: every offset is a multiple of it.
    pub bs: u64,
    /// Blocks in the file.
    pub blocks: u64,
    /// The next block of the sequential pattern (where the last trial stopped).
    pub next_block: u64,
    /// The random generator's state: [`Offsets::seed`] of the trial.
    pub rng: u64,
    /// Offsets given so far.
    pub issued: u64,
    /// Most offsets (0: no count limit).
    pub max: u64,
    pub clock: Clock,
    /// When the time limit started counting (reset just before the measured loop).
    pub start: Stamp,
    /// Time limit in ns (0: none).
    pub limit_ns: u64,
    pub cancel: Cancel,
}

impl Offsets {
    /// A random generator state for trial number `trial` (a new seed every trial, never 0).
    pub fn seed(trial: u64) -> u64 {
        0x9E37_79B9_7F4A_7C15 ^ trial.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1
    }

    /// The next offset, or None when the trial is over.
    #[inline]
    #[allow(clippy::should_implement_trait)] // not an Iterator: stateful limits, inlined hot path
    pub fn next(&mut self) -> Option<u64> {
        if self.max > 0 && self.issued >= self.max {
            return None;
        }
        if self.limit_ns > 0
            && self.issued % 16 == 0
            && self.clock.ns_between(self.start, self.clock.now()) >= self.limit_ns
        {
            return None;
        }
        if self.issued % 64 == 0 && self.cancel.is_cancelled() {
            return None;
        }
        self.issued += 1;
        let block = if self.rand {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((r as u128 * self.blocks as u128) >> 64) as u64
        } else {
            let b = self.next_block;
            self.next_block = (b + 1) % self.blocks;
            b
        };
        Some(block * self.bs)
    }
}

/// What a block-read loop counted: reads completed, blocks that failed the check, and the
/// time spent checking (inside the trial, outside every latency sample).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounts {
    pub ios: u64,
    pub bad: u64,
    pub check_ns: u64,
}

/// Checks blocks and measures what the checks cost without reading the clock around each:
/// two clock reads cost about as much as a sector-word check here. Every full check (the rare,
/// slow ones: [`BlockSums::full_every`]) is timed, and one sector check in [`Self::SAMPLE`]
/// (never one that falls on a full check); the other sector checks are counted at the sampled
/// mean. A timed check's figure leaves out the clock's own reading ([`Clock::read_ns`]).
struct CheckCost {
    clock: Clock,
    full_ns: f64,
    sampled_ns: f64,
    sampled: u64,
    sector_checks: u64,
}

impl CheckCost {
    const SAMPLE: u64 = 16;

    fn new(clock: Clock) -> CheckCost {
        CheckCost {
            clock,
            full_ns: 0.0,
            sampled_ns: 0.0,
            sampled: 0,
            sector_checks: 0,
        }
    }

    /// [`BlockSums::check_nth`] of the `seq`-th block, timed or counted.
    #[inline]
    fn check(&mut self, sums: &BlockSums, buf: &[u8], off: u64, seq: u64) -> bool {
        let full = sums.is_full(seq);
        if !full && seq % Self::SAMPLE != Self::SAMPLE / 2 {
            self.sector_checks += 1;
            return sums.check_full_or_sectors(buf, off, false);
        }
        let at = self.clock.now();
        let ok = sums.check_full_or_sectors(buf, off, full);
        let ns =
            (self.clock.ns_between(at, self.clock.now()) as f64 - self.clock.read_ns()).max(0.0);
        if full {
            self.full_ns += ns;
        } else {
            self.sampled_ns += ns;
            self.sampled += 1;
            self.sector_checks += 1;
        }
        ok
    }

    /// The time all checks took: the full ones as timed, the sector ones at the sampled mean.
    fn total_ns(&self) -> u64 {
        let mean = if self.sampled > 0 {
            self.sampled_ns / self.sampled as f64
        } else {
            0.0
        };
        (self.full_ns + mean * self.sector_checks as f64).round() as u64
    }
}

/// pread(2) of one block of `buf.len()` bytes at each of `offsets`, one at a time: one
/// latency sample per call, then the block's positional checksum against `sums`. A short read
/// is an error.
pub fn pread_blocks(
    file: &File,
    buf: &mut [u8],
    offsets: &mut Offsets,
    sums: &BlockSums,
    rec: &mut Recorder,
) -> anyhow::Result<BlockCounts> {
    let mut cost = CheckCost::new(*rec.clock());
    let bs = buf.len();
    let mut c = BlockCounts::default();
    while let Some(off) = offsets.next() {
        let s = rec.now();
        let n = file.read_at(buf, off)?;
        rec.record_since(s);
        if n != bs {
            bail!("pread of {bs} B at offset {off} returned {n} B");
        }
        if !cost.check(sums, buf, off, c.ios) {
            c.bad += 1;
        }
        c.ios += 1;
    }
    c.check_ns = cost.total_ns();
    Ok(c)
}

/// A block of `lp.len` bytes at each of `offsets` through io_uring ([`read_pipeline`]:
/// `lp.qd` reads in flight, one latency sample per read), each checked against `sums` after
/// its sample, outside every sample.
pub fn uring_blocks(
    ring: &mut Ring,
    bufs: Buffers<'_>,
    lp: &ReadLoop,
    offsets: &mut Offsets,
    sums: &BlockSums,
    rec: &mut Recorder,
) -> io::Result<BlockCounts> {
    let mut cost = CheckCost::new(*rec.clock());
    let bs = lp.len;
    let (mut bad, mut seq) = (0u64, 0u64);
    let ios = read_pipeline(
        ring,
        bufs,
        lp,
        rec,
        || offsets.next().map(|o| (o, bs)),
        |b, off| {
            if !cost.check(sums, b, off, seq) {
                bad += 1;
            }
            seq += 1;
        },
    )?;
    Ok(BlockCounts {
        ios,
        bad,
        check_ns: cost.total_ns(),
    })
}

/// The longest a running thread's getrusage/schedstat time can lag (one tick at HZ=100, the
/// slowest common configuration; 4 ms at HZ=250).
pub const TICK_NS: u64 = 10_000_000;

/// The process's CPU time with an SQPOLL thread's share made exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqpollCpu {
    /// Whether getrusage(RUSAGE_SELF) included the thread; None when its share was too small
    /// (under five ticks) to tell.
    pub in_rusage: Option<bool>,
    /// The process's CPU time, the SQPOLL thread's counted once and exactly.
    pub total_ns: u64,
}

/// getrusage(RUSAGE_SELF) and schedstat see the SQPOLL thread's time only up to its last tick;
/// both hold the same stale figure (`stale_ns`), so the exact total is the process's time
/// (`process_ns`) less the stale figure plus the thread clock's (`sq_ns`). RUSAGE_SELF sums the
/// thread group, which the SQPOLL thread belongs to; that is checked when the share is large
/// enough to tell from tick-granular accounting: the time of the threads other than the
/// measured one (`main_ns`) must cover it.
pub fn sqpoll_cpu(process_ns: u64, stale_ns: u64, main_ns: u64, sq_ns: u64) -> SqpollCpu {
    if stale_ns >= 5 * TICK_NS {
        let others = process_ns.saturating_sub(main_ns);
        let included = others + 2 * TICK_NS + stale_ns / 10 >= stale_ns;
        let total_ns = if included {
            process_ns.saturating_sub(stale_ns) + sq_ns
        } else {
            process_ns + sq_ns
        };
        SqpollCpu {
            in_rusage: Some(included),
            total_ns,
        }
    } else {
        SqpollCpu {
            in_rusage: None,
            total_ns: process_ns.saturating_sub(stale_ns) + sq_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(rand: bool, max: u64, cancel: Cancel) -> Offsets {
        let clock = Clock::new();
        Offsets {
            rand,
            bs: 4096,
            blocks: 8,
            next_block: 6,
            rng: Offsets::seed(1),
            issued: 0,
            max,
            clock,
            start: clock.now(),
            limit_ns: 0,
            cancel,
        }
    }

    #[test]
    fn offsets_are_blocks_of_the_file() {
        let mut seq = offsets(false, 4, Cancel::never());
        let got: Vec<u64> = std::iter::from_fn(|| seq.next()).collect();
        assert_eq!(got, [6, 7, 0, 1].map(|b| b * 4096));
        assert_eq!(seq.next_block, 2, "the next trial continues there");
        let mut rand = offsets(true, 1000, Cancel::never());
        let got: Vec<u64> = std::iter::from_fn(|| rand.next()).collect();
        assert_eq!(got.len(), 1000);
        assert!(got.iter().all(|o| o % 4096 == 0 && *o < 8 * 4096));
        assert_ne!(Offsets::seed(1), Offsets::seed(2));
    }

    #[test]
    fn io_modes_as_asked() {
        let d = DirectIo::ext4_512();
        let m = io_modes(Ok(d.clone()), false, false, &[4096]).unwrap();
        assert_eq!(m.modes, ["buffered", "direct"]);
        assert!(m.direct.is_some() && m.note.is_none());
        let m = io_modes(Ok(d.clone()), false, true, &[4096]).unwrap();
        assert_eq!((m.modes, m.direct.is_none()), (vec!["buffered"], true));
        let m = io_modes(Ok(d.clone()), true, false, &[4096]).unwrap();
        assert_eq!(m.modes, ["direct"]);
        assert!(
            io_modes(Ok(d), true, false, &[1000]).is_err_and(|e| e.contains("block size 1000"))
        );
        let m = io_modes(Err("tmpfs".into()), false, false, &[4096]).unwrap();
        assert_eq!(m.modes, ["buffered"]);
        assert!(m.note.is_some_and(|n| n.contains("tmpfs")));
        assert!(
            io_modes(Err("tmpfs".into()), true, false, &[4096])
                .is_err_and(|e| e.starts_with("--direct refused"))
        );
    }

    #[test]
    fn sqpoll_share_replaced_by_the_exact_one() {
        // Too small to tell: the stale figure is replaced.
        let c = sqpoll_cpu(100, 40, 50, 45);
        assert_eq!((c.in_rusage, c.total_ns), (None, 105));
        // Included: the others' time covers the stale figure.
        let s = 10 * TICK_NS;
        let c = sqpoll_cpu(s + 5, s, 5, s + 1);
        assert_eq!((c.in_rusage, c.total_ns), (Some(true), s + 6));
        // Not included: added.
        let c = sqpoll_cpu(s, s, s, s + 1);
        assert_eq!((c.in_rusage, c.total_ns), (Some(false), 2 * s + 1));
    }
}
