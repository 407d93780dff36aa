//! `--peer HOST[:PORT]`: parsing and resolving the address of a `zclab serve`.

use super::protocol::DEFAULT_PORT;
use std::net::{SocketAddr, ToSocketAddrs};

/// A peer address as the user gave it (`HOST[:PORT]`) and as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub text: String,
    pub addr: SocketAddr,
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits `HOST[:PORT]` (`[v6]:PORT` for IPv6 with a port) into host and port.
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let s = s.trim();
    let bad_port = |p: &str| format!("'{s}': '{p}' is not a port number (1-65535)");
    let port = |p: &str| -> Result<u16, String> { p.parse::<u16>().map_err(|_| bad_port(p)) };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{s}': missing ']' after an IPv6 address"))?;
        match after {
            "" => (h.to_string(), default_port),
            a => match a.strip_prefix(':') {
                Some(p) => (h.to_string(), port(p)?),
                None => return Err(format!("'{s}': expected [ADDR]:PORT")),
            },
        }
    } else if s.matches(':').count() == 1 {
        let (h, p) = s.split_once(':').expect("one colon");
        (h.to_string(), port(p)?)
    } else {
        (s.to_string(), default_port)
    };
    if host.is_empty() {
        return Err(format!("'{s}': no host"));
    }
    Ok((host, port))
}

/// Parses and resolves `HOST[:PORT]` (default port [`DEFAULT_PORT`]) for `--peer`.
pub fn parse_peer(s: &str) -> Result<PeerAddr, String> {
    let (host, port) = split_host_port(s, DEFAULT_PORT)?;
    if port == 0 {
        return Err(format!("'{s}': port 0 is not a port a server listens on"));
    }
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("'{s}': cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("'{s}': {host} has no address"))?;
    let text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(PeerAddr { text, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses() {
        assert_eq!(
            split_host_port("10.0.0.2", 7878).unwrap(),
            ("10.0.0.2".into(), 7878)
        );
        assert_eq!(split_host_port("h:99", 7878).unwrap(), ("h".into(), 99));
        assert_eq!(split_host_port("[::1]:5", 7878).unwrap(), ("::1".into(), 5));
        assert_eq!(split_host_port("::1", 7878).unwrap(), ("::1".into(), 7878));
        assert!(split_host_port("h:x", 1).is_err());
        assert!(split_host_port(":5", 1).is_err());
        assert!(parse_peer("127.0.0.1:0").is_err());
        assert_eq!(
            parse_peer("127.0.0.1").unwrap().addr,
            "127.0.0.1:7878".parse().unwrap()
        );
    }
}
