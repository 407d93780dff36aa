//! Persisting a TCP stream to a file, as a broker stores what producers send: the measured
//! loops of the `socket_to_file` experiment. Each loop receives until the sender ends its
//! stream, writes what arrived to the file, applies an [`Fsync`] policy, and records one
//! latency sample per step.

use super::common::move_to_end;
use super::tcp::read_some;
use crate::measure::Recorder;
use crate::ring::Ring;
use crate::sys::filemap::map_shared_writable;
use crate::units;
use crate::uring::Fd;
use crate::uring::sock::{Mover, Put, Take};
use anyhow::{Context, Result, bail};
use nix::fcntl::{SpliceFFlags, splice};
use std::fs::File;
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// When the received bytes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Never: the page cache only.
    None,
    /// Once, after the last byte.
    End,
    /// Every this many bytes (and at the end).
    Every(u64),
}

impl Fsync {
    /// `none`, `end` or `every:N` with N a size (`every:8MiB`): the text [`Fsync::parse`] reads.
    pub fn label(&self) -> String {
        match self {
            Fsync::None => "none".into(),
            Fsync::End => "end".into(),
            Fsync::Every(b) => format!("every:{}", units::fmt_size(*b)),
        }
    }

    /// The interval of an `every:N` policy, in bytes.
    pub fn every(&self) -> Option<u64> {
        match self {
            Fsync::Every(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether the policy syncs after the last byte.
    pub fn at_end(&self) -> bool {
        *self != Fsync::None
    }

    /// Parses `none`, `end` or `every:N` (N a whole number of MiB, optionally written `NMiB`).
    pub fn parse(s: &str) -> Result<Fsync, String> {
        match s.trim() {
            "none" => Ok(Fsync::None),
            "end" => Ok(Fsync::End),
            t => {
                let n = t.strip_prefix("every:").ok_or_else(|| {
                    format!("'{s}': expected none, end or every:N (N MiB, e.g. every:8)")
                })?;
                let mib: u64 = n
                    .trim_end_matches("MiB")
                    .parse()
                    .map_err(|_| format!("'{s}': N in every:N must be a whole number of MiB"))?;
                if mib == 0 {
                    return Err(format!("'{s}': N in every:N must be at least 1 MiB"));
                }
                Ok(Fsync::Every(mib << 20))
            }
        }
    }
}

/// One transfer: the receiving socket, the file it goes to (opened for reading and writing,
/// empty), the announced size, the bytes per step and the fsync policy.
pub struct SockToFile<'a> {
    pub sock: &'a TcpStream,
    pub file: &'a File,
    pub size: u64,
    pub chunk: usize,
    pub fsync: Fsync,
}

/// What a loop did besides moving bytes: steps (samples) taken, syncs issued.
#[derive(Debug, Clone, Copy, Default)]
pub struct Persisted {
    pub steps: u64,
    pub syncs: u64,
}

fn recv(s: &TcpStream, buf: &mut [u8], got: u64) -> Result<usize> {
    read_some(s, buf).with_context(|| format!("recv after {got} bytes"))
}

fn early_end(got: u64, size: u64) -> anyhow::Error {
    anyhow::anyhow!("the sender closed the connection after {got} of {size} bytes")
}

/// The classic loops: `step` moves up to a chunk from the socket to the file, given the bytes
/// moved so far, and returns how many (0 at the end of the stream); fsync(2) as the policy
/// says, one sample per step.
fn classic(
    x: &SockToFile,
    rec: &mut Recorder,
    mut step: impl FnMut(u64) -> Result<usize>,
) -> Result<Persisted> {
    let mut st = Persisted::default();
    let (mut got, mut unsynced) = (0u64, 0u64);
    let mut s = rec.now();
    loop {
        let n = step(got)? as u64;
        if n == 0 {
            break;
        }
        got += n;
        unsynced += n;
        if x.fsync.every().is_some_and(|e| unsynced >= e) {
            x.file.sync_all()?;
            st.syncs += 1;
            unsynced = 0;
        }
        st.steps += 1;
        s = rec.record_since(s);
    }
    if got != x.size {
        return Err(early_end(got, x.size));
    }
    if x.fsync.at_end() && (unsynced > 0 || st.syncs == 0) {
        x.file.sync_all()?;
        st.syncs += 1;
    }
    Ok(st)
}

/// read(2) up to `buf.len()` bytes from the socket, write(2) them to the file, one sample per
/// step.
pub fn recv_write(x: &SockToFile, buf: &mut [u8], rec: &mut Recorder) -> Result<Persisted> {
    classic(x, rec, |got| {
        let n = recv(x.sock, buf, got)?;
        (&*x.file).write_all(&buf[..n])?;
        Ok(n)
    })
}

/// splice(2) up to a chunk (at most the pipe's capacity `cap`) socket -> pipe, then splice(2)
/// pipe -> file at the file offset, one sample per step.
pub fn splice_to_file(
    x: &SockToFile,
    (pr, pw, cap): (&OwnedFd, &OwnedFd, usize),
    rec: &mut Recorder,
) -> Result<Persisted> {
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    let len = x.chunk.min(cap);
    classic(x, rec, |got| {
        let n = splice(x.sock.as_fd(), None, pw, None, len, flags)
            .with_context(|| format!("splice from the socket after {got} bytes"))?;
        let mut out = 0;
        while out < n {
            let mut off = (got + out as u64) as i64;
            match splice(pr, None, x.file.as_fd(), Some(&mut off), n - out, flags)? {
                0 => bail!("splice to the file moved 0 bytes"),
                m => out += m,
            }
        }
        Ok(n)
    })
}

/// ftruncate(2)+mmap(2) MAP_SHARED the file (inside the clock, in the first sample, as a broker
/// maps a new segment), then read(2) up to a chunk at a time straight into the mapping;
/// msync(2) MS_SYNC of the range written since the last one as the policy says.
pub fn recv_mmap(x: &SockToFile, rec: &mut Recorder) -> Result<Persisted> {
    let mut st = Persisted::default();
    let size = x.size as usize;
    let mut s = rec.now();
    let mut map = map_shared_writable(x.file, x.size)?;
    let (mut got, mut synced) = (0usize, 0usize);
    while got < size {
        let end = (got + x.chunk).min(size);
        let n = recv(x.sock, &mut map[got..end], got as u64)?;
        if n == 0 {
            return Err(early_end(got as u64, x.size));
        }
        got += n;
        if x.fsync.every().is_some_and(|e| (got - synced) as u64 >= e) {
            map.flush_range(synced, got - synced)?;
            st.syncs += 1;
            synced = got;
        }
        st.steps += 1;
        s = rec.record_since(s);
    }
    let mut probe = [0u8; 1];
    if recv(x.sock, &mut probe, got as u64)? != 0 {
        bail!("the sender sent more than the announced {} bytes", x.size);
    }
    if x.fsync.at_end() && (got > synced || st.syncs == 0) {
        map.flush_range(synced, got - synced)?;
        st.syncs += 1;
    }
    Ok(st)
}

/// An io_uring [`Mover`] from the socket to the file with input mode `take`: one
/// io_uring_enter per step (the previous chunk's write, with a linked IORING_OP_FSYNC when due,
/// and the next receive), one sample per step.
pub fn uring_to_file(
    x: &SockToFile,
    ring: &mut Ring,
    take: Take,
    rec: &mut Recorder,
) -> Result<Persisted> {
    let mut m = Mover::new(
        ring,
        Fd::Raw(x.sock.as_raw_fd()),
        Put::File(Fd::Raw(x.file.as_raw_fd())),
        take,
        x.chunk,
        x.fsync.every(),
    )?;
    move_to_end(&mut m, ring, rec, rec.now(), "after")?;
    m.finish(ring, x.fsync.at_end())?;
    if m.bytes_out != x.size {
        return Err(early_end(m.bytes_out, x.size));
    }
    Ok(Persisted {
        steps: m.enters,
        syncs: m.syncs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Clock;
    use crate::net::peers::tcp_pair;
    use std::fs::OpenOptions;

    #[test]
    fn fsync_policies_parse_and_label_round_trip() {
        for (text, want) in [
            ("none", Fsync::None),
            ("end", Fsync::End),
            ("every:8", Fsync::Every(8 << 20)),
            ("every:8MiB", Fsync::Every(8 << 20)),
        ] {
            let f = Fsync::parse(text).unwrap();
            assert_eq!(f, want, "{text}");
            assert_eq!(Fsync::parse(&f.label()), Ok(f));
        }
        for bad in ["sometimes", "every:0", "every:x", "every:"] {
            assert!(Fsync::parse(bad).is_err(), "{bad}");
        }
    }

    /// Each classic loop stores what the socket delivered, syncs as the policy says, and
    /// reports a sender that ends early.
    #[test]
    fn classic_loops_persist_the_stream() {
        let data: Vec<u8> = (0..(3u32 << 20) / 2).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        for (case, short) in [(0, false), (1, false), (2, false), (0, true)] {
            let (tx, rx) = tcp_pair().unwrap();
            let sent = if short { &data[..1000] } else { &data[..] };
            let sender = {
                let sent = sent.to_vec();
                std::thread::spawn(move || (&tx).write_all(&sent))
            };
            let path = dir.path().join(format!("{case}-{short}.dat"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .unwrap();
            let x = SockToFile {
                sock: &rx,
                file: &file,
                size: data.len() as u64,
                chunk: 16 << 10,
                fsync: Fsync::Every(1 << 20),
            };
            let mut rec = Recorder::new(Clock::new());
            let (pr, pw, cap) = crate::sys::pipe::pipe_with_size(64 << 10).unwrap();
            let r = match case {
                0 => recv_write(&x, &mut vec![0u8; 16 << 10], &mut rec),
                1 => splice_to_file(&x, (&pr, &pw, cap), &mut rec),
                _ => recv_mmap(&x, &mut rec),
            };
            sender.join().unwrap().unwrap();
            if short {
                let e = r.unwrap_err().to_string();
                assert!(e.contains("after 1000 of"), "{e}");
                continue;
            }
            let p = r.unwrap();
            assert_eq!(p.syncs, 2, "case {case}: one on the way, one at the end");
            assert_eq!(p.steps, rec.histogram().len(), "case {case}");
            assert_eq!(std::fs::read(&path).unwrap(), data, "case {case}");
        }
    }
}
