//! Messages round-trip; malformed ones, other versions and setups of the wrong shape are
//! refused with a reason.

use super::*;

fn caps_json() -> Value {
    json!({"kernel": {"release": "6.18"}})
}

fn hello_line(protocol: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "hello", "lab": "zclab", "protocol": protocol, "version": "9.9.9",
        "git_revision": "x", "role": "client", "host": "h", "kernel": "k",
        "probe": caps_json(), "new_field_of_v9": 1,
    }))
    .unwrap()
}

#[test]
fn messages_round_trip() {
    let h = Hello {
        lab: LAB.into(),
        protocol: PROTOCOL,
        version: "0.1.0".into(),
        git_revision: "abc".into(),
        role: "server".into(),
        host: "b".into(),
        kernel: "6.18".into(),
        probe: caps_json(),
    };
    let msgs = [
        Msg::Hello(h),
        Msg::Welcome { session: 3 },
        Msg::Setup(Setup {
            id: 1,
            role: Some(Role::TcpSink),
            recv_buf: Some(65536),
            hash: Some(true),
            cpu: Some(1),
            ..Default::default()
        }),
        Msg::Ready { id: 1, port: 4000 },
        Msg::Finish {
            id: 1,
            datagrams: 7,
        },
        Msg::Abort { id: 1 },
        Msg::Report(Report {
            id: 1,
            ok: true,
            bytes: 10,
            hash: Some(hex64(5)),
            ..Default::default()
        }),
        Msg::error("busy", "one client at a time"),
        Msg::Bye {},
    ];
    for m in msgs {
        let line = m.to_line().unwrap();
        assert_eq!(*line.last().unwrap(), b'\n');
        assert_eq!(Msg::parse(&line[..line.len() - 1]).unwrap(), m);
    }
}

#[test]
fn bad_messages_are_named() {
    let bad: &[(&[u8], &str)] = &[
        (b"not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b"{\"x\":1}", "no string \"type\""),
        (b"{\"type\":\"launch\"}", "bad launch message"),
        (b"{\"type\":\"ready\",\"id\":1}", "bad ready message"),
        (b"{\"type\":\"ready\",\"id\":1,\"port\":0}", "port 0"),
        (b"{\"type\":\"bye\",\"extra\":1}", "bad bye message"),
        (b"{\"type\":\"hello\",\"lab\":\"iperf\"}", "not zclab"),
        (
            b"{\"type\":\"hello\",\"lab\":\"zclab\"}",
            "numeric protocol",
        ),
        (b"\xff\xfe", "not UTF-8"),
    ];
    for (line, want) in bad {
        match Msg::parse(line) {
            Err(BadMsg::Invalid(e)) => assert!(e.contains(want), "{e} lacks {want}"),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
        }
    }
}

#[test]
fn other_protocol_versions_are_a_mismatch_not_a_parse_error() {
    match Msg::parse(&hello_line(9)) {
        Err(BadMsg::Mismatch {
            protocol, version, ..
        }) => {
            assert_eq!((protocol, version.as_str()), (9, "9.9.9"));
        }
        other => panic!("{other:?}"),
    }
    let t = mismatch_text("zclab serve at x:1", 9, "9.9.9", "this client");
    assert!(t.contains("protocol 9") && t.contains(&format!("protocol {PROTOCOL}")));
}

#[test]
fn setups_are_checked_per_role() {
    let ok = Setup {
        id: 1,
        role: Some(Role::TcpSource),
        bytes: Some(1 << 20),
        write_size: Some(4096),
        ..Default::default()
    };
    assert_eq!(ok.validate(1 << 30), Ok(Role::TcpSource));
    let big = Setup {
        bytes: Some(1 << 40),
        ..ok.clone()
    };
    assert!(big.validate(1 << 30).is_err());
    let foreign = Setup {
        hash: Some(true),
        ..ok.clone()
    };
    assert!(foreign.validate(1 << 30).is_err());
    let missing = Setup {
        id: 2,
        role: Some(Role::Echo),
        ..Default::default()
    };
    assert!(missing.validate(1 << 30).is_err());
    assert!(Setup::default().validate(1).is_err());
}

/// rr-server: a known rr variant and both sizes within 16 B..1 MiB, nothing else.
#[test]
fn rr_server_setups_name_a_known_server_and_sizes() {
    let ok = Setup {
        id: 3,
        role: Some(Role::RrServer),
        server: Some("uring-multishot".into()),
        req: Some(64),
        resp: Some(4096),
        ..Default::default()
    };
    assert_eq!(ok.validate(1), Ok(Role::RrServer));
    for v in RR_SERVERS {
        let s = Setup {
            server: Some(v.to_string()),
            ..ok.clone()
        };
        assert_eq!(s.validate(1), Ok(Role::RrServer), "{v}");
    }
    let bad = |s: Setup, needle: &str| {
        let e = s.validate(1).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    };
    bad(
        Setup {
            server: Some("rm -rf".into()),
            ..ok.clone()
        },
        "is not one of",
    );
    bad(
        Setup {
            server: None,
            ..ok.clone()
        },
        "server is missing",
    );
    bad(
        Setup {
            req: Some(8),
            ..ok.clone()
        },
        "req = 8 is out of range",
    );
    bad(
        Setup {
            resp: Some(2 << 20),
            ..ok.clone()
        },
        "resp = 2097152 is out of range",
    );
    bad(
        Setup {
            msg: Some(64),
            ..ok.clone()
        },
        "field msg does not apply",
    );
}
