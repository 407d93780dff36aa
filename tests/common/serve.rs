//! A `zclab serve` to test against, and a control connection to it spoken by hand.

use serde_json::Value;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `zclab serve` with its log, killed on drop.
pub struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
    pub addr: String,
}

impl Server {
    /// Starts `c` (a `zclab serve`, maybe wrapped) and waits until it says where it listens.
    pub fn start(mut c: Command) -> Server {
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zclab serve");
        let mut err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let l2 = log.clone();
        // Bytes, not lines: a line reader would drop the carriage returns the log must not hold.
        std::thread::spawn(move || {
            let (mut all, mut chunk) = (Vec::new(), [0u8; 4096]);
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&chunk[..n]);
                *l2.lock().unwrap() = String::from_utf8_lossy(&all).into_owned();
            }
        });
        let mut s = Server {
            child,
            log,
            addr: String::new(),
        };
        let t0 = Instant::now();
        s.addr = loop {
            if let Some(a) = listening_on(&s.log()) {
                break a;
            }
            let late = t0.elapsed() > Duration::from_secs(20);
            assert!(
                !late && s.alive(),
                "zclab serve did not start listening: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        s
    }

    /// On loopback, on a free port (no root needed), with `args`.
    pub fn loopback(args: &[&str]) -> Server {
        let mut c = Command::new(env!("CARGO_BIN_EXE_zclab"));
        c.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
        Server::start(c)
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds every needle (the server logs just after it answers).
    pub fn wait_log(&self, needles: &[&str]) {
        let t0 = Instant::now();
        while !needles.iter().all(|n| self.log().contains(n)) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "server log lacks one of {needles:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new client is greeted within 20 s (the previous session may still be closing): the
    /// only slot was given back.
    pub fn assert_serves_again(&self) {
        let greeted = Ctl::greeted_within(&self.addr, Duration::from_secs(20));
        assert!(greeted.is_some(), "{}", self.log());
    }

    /// The server's resident memory.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// SIGKILL, as a crash or an operator would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address after "listening on ", once the whole of it is in `log`.
fn listening_on(log: &str) -> Option<String> {
    let rest = log.split("listening on ").nth(1)?;
    let (addr, _) = rest.split_once(char::is_whitespace)?;
    Some(addr.to_string())
}

/// How long a read waits for the server before the test fails.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// A control connection spoken by hand.
pub struct Ctl {
    s: TcpStream,
    r: BufReader<TcpStream>,
}

impl Ctl {
    /// Connects without reading anything.
    pub fn connect_once(addr: &str) -> Ctl {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(READ_LIMIT)).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        Ctl { s, r }
    }

    /// Connects and reads the server's hello, retrying while the server is still closing the
    /// previous client's session (it refuses as busy until then); None when still busy after
    /// `limit`.
    pub fn greeted_within(addr: &str, limit: Duration) -> Option<Ctl> {
        let t0 = Instant::now();
        loop {
            let mut c = Ctl::connect_once(addr);
            let h = c.line().expect("the server's first message");
            if h["type"] == "hello" {
                return Some(c);
            }
            assert_eq!(h["code"], "busy", "{h}");
            if t0.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Ctl::greeted_within`] 5 s.
    pub fn connect(addr: &str) -> Ctl {
        Ctl::greeted_within(addr, Duration::from_secs(5)).expect("busy for 5 s")
    }

    /// A client's hello of control protocol `protocol` from `host`, as sent.
    pub fn hello(protocol: u32, host: &str) -> Vec<u8> {
        let mut v = serde_json::to_vec(&serde_json::json!({
            "type": "hello", "lab": "zclab", "protocol": protocol, "version": "0.0.1-test",
            "git_revision": "test", "role": "client", "host": host,
            "kernel": "test", "probe": {},
        }))
        .unwrap();
        v.push(b'\n');
        v
    }

    /// Connects and completes the handshake as client `host`.
    pub fn session_as(addr: &str, host: &str) -> Ctl {
        let mut c = Ctl::connect(addr);
        c.send(&Ctl::hello(zclab::net::remote::PROTOCOL, host));
        let w = c.line().expect("welcome");
        assert_eq!(w["type"], "welcome", "{w}");
        c
    }

    /// Connects and completes the handshake as `test-client`.
    pub fn session(addr: &str) -> Ctl {
        Ctl::session_as(addr, "test-client")
    }

    /// The next message; None once the server has closed the connection.
    pub fn line(&mut self) -> Option<Value> {
        self.read()
            .unwrap_or_else(|e| panic!("reading the server: {e}"))
    }

    /// The next message if one comes within `wait`; None otherwise, or once closed.
    pub fn line_within(&mut self, wait: Duration) -> Option<Value> {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let got = match self.read() {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            r => r.unwrap_or_else(|e| panic!("reading the server: {e}")),
        };
        self.s.set_read_timeout(Some(READ_LIMIT)).unwrap();
        got
    }

    fn read(&mut self) -> std::io::Result<Option<Value>> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")),
            )),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed: a failed write is part of some cases.
        let _ = self.s.write_all(bytes);
    }

    pub fn send_json(&mut self, v: &Value) {
        self.send(format!("{v}\n").as_bytes());
    }

    /// Expects an error message with `code` whose text contains `needle`, then the end.
    pub fn expect_error(&mut self, code: &str, needle: &str) {
        let e = self.line().expect("an error message");
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["code"], code, "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(needle), "{m} lacks {needle}");
        assert!(self.line().is_none(), "the server closed the connection");
    }

    /// Expects a failed transfer's report whose error contains `needle`.
    pub fn expect_failed_report(&mut self, needle: &str) {
        let r = self.line().expect("a report");
        assert_eq!(
            (r["type"].as_str(), r["ok"].as_bool()),
            (Some("report"), Some(false)),
            "{r}"
        );
        let e = r["error"].as_str().unwrap();
        assert!(e.contains(needle), "{e} lacks {needle}");
    }

    /// Sends the setup `json` and returns the data port of the server's ready.
    pub fn setup(&mut self, json: &str) -> u16 {
        self.send(format!("{json}\n").as_bytes());
        let r = self.line().expect("ready");
        assert_eq!(r["type"], "ready", "{r}");
        r["port"].as_u64().unwrap() as u16
    }
}
