//! Messages made of parts (gather_write): the parts' places in one pattern-filled pool, which
//! parts each message takes, the hash of the whole stream, and a gathered send that finishes
//! short writes.

use crate::hash::Xxh3;
use crate::sys::file::fill_pattern;
use anyhow::bail;
use std::io::IoSlice;

/// Distinct slices in the pool beyond the parts of one message.
pub const EXTRA_SLICES: usize = 7;
/// Gap between slices in the pool, so no two are adjacent.
pub const GAP: usize = 64;
/// Fewest messages per trial.
pub const MIN_MESSAGES: u64 = 256;

/// The parts: slices of one pattern-filled pool, and which of them each message takes.
/// Message k takes slices `(k*parts + i) mod (parts + EXTRA_SLICES)`, so consecutive messages
/// differ and no two parts of a message are adjacent in the pool.
pub struct Messages {
    pub pool: Vec<u8>,
    pub parts: usize,
    pub part_size: usize,
    slices: usize,
    /// Messages per trial: `size` rounded up to whole messages, at least [`MIN_MESSAGES`].
    pub messages: u64,
    pub msg_bytes: usize,
    /// xxh3-64 of the concatenation of every message.
    pub hash: u64,
}

impl Messages {
    /// Messages of `parts` parts of `part_size` bytes, enough to carry `size` bytes.
    pub fn new(parts: usize, part_size: usize, size: u64) -> Messages {
        let slices = parts + EXTRA_SLICES;
        let mut pool = vec![0u8; slices * (part_size + GAP)];
        fill_pattern(&mut pool, 0);
        let msg_bytes = parts * part_size;
        let messages = size.div_ceil(msg_bytes as u64).max(MIN_MESSAGES);
        let mut p = Messages {
            pool,
            parts,
            part_size,
            slices,
            messages,
            msg_bytes,
            hash: 0,
        };
        let mut h = Xxh3::new();
        for k in 0..messages {
            for i in 0..parts {
                h.update(p.part(k, i));
            }
        }
        p.hash = h.digest();
        p
    }

    /// Where part `i` of message `k` starts in the pool.
    #[inline]
    pub fn start(&self, k: u64, i: usize) -> usize {
        let r = ((k as usize % self.slices) * self.parts + i) % self.slices;
        r * (self.part_size + GAP)
    }

    /// Part `i` of message `k`.
    #[inline]
    pub fn part(&self, k: u64, i: usize) -> &[u8] {
        let s = self.start(k, i);
        &self.pool[s..s + self.part_size]
    }

    /// Bytes of every message together.
    pub fn total(&self) -> u64 {
        self.messages * self.msg_bytes as u64
    }
}

/// Sends the parts of message `k` with `call` (writev(2), sendmsg(2): one iovec per part)
/// until all are written, advancing over short writes. `iov` is reused across messages.
pub fn gathered<'a>(
    iov: &mut Vec<IoSlice<'a>>,
    p: &'a Messages,
    k: u64,
    mut call: impl FnMut(&[IoSlice<'_>]) -> anyhow::Result<usize>,
) -> anyhow::Result<()> {
    iov.clear();
    for i in 0..p.parts {
        iov.push(IoSlice::new(p.part(k, i)));
    }
    let mut rest: &mut [IoSlice<'a>] = &mut iov[..];
    while !rest.is_empty() {
        match call(rest)? {
            0 => bail!("the receiver closed the connection"),
            n => IoSlice::advance_slices(&mut rest, n),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_differ_and_short_writes_finish() {
        let m = Messages::new(3, 100, 1000);
        assert_eq!(m.messages, MIN_MESSAGES);
        assert_eq!(m.total(), MIN_MESSAGES * 300);
        let starts: Vec<usize> = (0..3).map(|i| m.start(0, i)).collect();
        assert!(starts.windows(2).all(|w| w[0].abs_diff(w[1]) > 100));
        assert_ne!(m.start(0, 0), m.start(1, 0));
        let mut iov = Vec::new();
        let mut out = Vec::new();
        gathered(&mut iov, &m, 5, |v| {
            // At most 150 bytes per call: every message takes more than one.
            let mut n = 0;
            for s in v {
                let take = s.len().min(150 - n);
                out.extend_from_slice(&s[..take]);
                n += take;
                if n == 150 {
                    break;
                }
            }
            Ok(n)
        })
        .unwrap();
        let want: Vec<u8> = (0..3).flat_map(|i| m.part(5, i).to_vec()).collect();
        assert_eq!(out, want);
        assert!(gathered(&mut iov, &m, 0, |_| Ok(0)).is_err());
    }
}
