//! How control messages travel (`docs/serve-protocol.md`, "The control protocol" /
//! "Transport"): one JSON object per line, at most [`MAX_MESSAGE`] bytes with its newline; and
//! the socket options and timeouts that bound every wait ("When the peer goes away").

use super::protocol::{MAX_MESSAGE, Msg};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Connecting to the control port or to an announced data port.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer a hello or a setup (a pattern source of up to
/// 1 GiB is generated before the answer).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to report once the client has ended its part of a transfer.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(90);
/// Data and control sockets give up when sent bytes stay unacknowledged this long.
pub const DATA_USER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to tear down a transfer the client gave up.
pub const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes one message (write_all of its line).
pub fn send_msg(w: &mut impl Write, m: &Msg) -> io::Result<()> {
    w.write_all(&m.to_line()?)
}

/// Splits a byte stream into lines of at most [`MAX_MESSAGE`] bytes (newline included),
/// keeping a partial line across read timeouts.
#[derive(Debug, Default)]
pub struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    pub fn new() -> LineReader {
        LineReader::default()
    }

    /// The next line without its newline. Ok(None): the stream ended between lines. Errors:
    /// a line over the limit (InvalidData), the stream ending inside a line (UnexpectedEof),
    /// and the reader's own errors (a read timeout keeps what was read so far).
    pub fn read_line(&mut self, r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                if i + 1 > MAX_MESSAGE {
                    return Err(too_long());
                }
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                return Ok(Some(line));
            }
            if self.pending.len() >= MAX_MESSAGE {
                return Err(too_long());
            }
            let mut chunk = [0u8; 8192];
            match r.read(&mut chunk) {
                Ok(0) if self.pending.is_empty() => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed inside a message ({} bytes without a newline)",
                            self.pending.len()
                        ),
                    ));
                }
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn too_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("control message longer than {MAX_MESSAGE} bytes"),
    )
}

/// TCP_USER_TIMEOUT (tcp(7)): the connection fails when sent data stays unacknowledged this
/// long, instead of retrying for many minutes when the other host vanished.
pub fn set_user_timeout(s: &TcpStream, t: Duration) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(s, sockopt::TcpUserTimeout, &(t.as_millis() as u32)).map_err(io::Error::from)
}

/// Control connections: no Nagle delay on small messages, keepalive probes after 10 s idle
/// (every 5 s, 3 of them) so a vanished host is noticed, and the user timeout above.
pub fn tune_control(s: &TcpStream) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    s.set_nodelay(true)?;
    setsockopt(s, sockopt::KeepAlive, &true).map_err(io::Error::from)?;
    setsockopt(s, sockopt::TcpKeepIdle, &10).map_err(io::Error::from)?;
    setsockopt(s, sockopt::TcpKeepInterval, &5).map_err(io::Error::from)?;
    setsockopt(s, sockopt::TcpKeepCount, &3).map_err(io::Error::from)?;
    set_user_timeout(s, DATA_USER_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_survive_partial_reads() {
        let mut r = LineReader::new();
        let mut src: &[u8] = b"{\"type\":\"bye\"}\n{\"type\":";
        assert_eq!(
            r.read_line(&mut src).unwrap().unwrap(),
            b"{\"type\":\"bye\"}"
        );
        let e = r.read_line(&mut src).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut empty: &[u8] = b"";
        assert!(LineReader::new().read_line(&mut empty).unwrap().is_none());
        let long = vec![b'a'; MAX_MESSAGE + 10];
        let e = LineReader::new().read_line(&mut &long[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut exact = vec![b' '; MAX_MESSAGE - 1];
        exact.push(b'\n');
        assert_eq!(
            LineReader::new()
                .read_line(&mut &exact[..])
                .unwrap()
                .unwrap()
                .len(),
            MAX_MESSAGE - 1
        );
    }
}
