//! Small pieces the TCP loops share: a read that survives signals, the pattern stream a local
//! sender sends, kept across trials.

use crate::net::peers::PatternStream;
use std::io::{self, Read};
use std::net::TcpStream;

/// read(2) that retries when a signal interrupts it.
pub fn read_some(mut s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// The pattern stream of `len` bytes in `slot`, made (and the old one dropped first, so that
/// two are never held at once) when the slot holds none of that length.
pub fn pattern(slot: &mut Option<PatternStream>, len: u64) -> &PatternStream {
    if slot.as_ref().is_some_and(|s| s.data.len() as u64 != len) {
        *slot = None;
    }
    slot.get_or_insert_with(|| PatternStream::new(len as usize))
}
