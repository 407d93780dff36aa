//! The catalogue: every experiment's name, question, variant names and parameter names, in one place
//! the library exports, so that the experiment binaries' variant tables, the tests, the claims
//! (claims/claims.json) and `zclab versus` name the same things. A variant table whose names
//! differ from its entry here fails at start-up ([`crate::harness::run`] checks it), and a test
//! fails when claims.json names anything that is not here.

/// One experiment's names.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub experiment: &'static str,
    /// The question the experiment answers, in one line (its `--help` and `zclab list`).
    pub about: &'static str,
    pub variants: &'static [&'static str],
    /// The parameters of its points (`Point` keys, the `params` of every row).
    pub params: &'static [&'static str],
}

/// Declares, from one list, each experiment's module (`NAME`, one constant per variant name,
/// `VARIANTS` in table order, `PARAMS`) and [`ALL`]: the names cannot drift apart.
macro_rules! catalog {
    ($($exp:ident $about:literal { $($variant:ident = $name:literal,)+ } params [$($param:literal),+];)+) => {
        $(
            #[doc = concat!("`", stringify!($exp), "`: ", $about)]
            pub mod $exp {
                pub const NAME: &str = stringify!($exp);
                $(pub const $variant: &str = $name;)+
                pub const VARIANTS: &[&str] = &[$($variant),+];
                pub const PARAMS: &[&str] = &[$($param),+];
                /// This experiment's whole entry.
                pub const ENTRY: super::Entry = super::Entry {
                    experiment: NAME,
                    about: $about,
                    variants: VARIANTS,
                    params: PARAMS,
                };
            }
        )+

        /// Every experiment of the lab.
        pub const ALL: &[Entry] = &[$($exp::ENTRY),+];
    };
}

catalog! {
    file_copy "copying a file (the seeds' benchmark): read/write at 1 B to 1 MiB, mmap, sendfile, splice, copy_file_range, io_uring" {
        CLASSIC_READ_WRITE = "classic-read-write",
        CLASSIC_MMAP_WRITE = "classic-mmap-write",
        CLASSIC_MMAP_MMAP = "classic-mmap-mmap",
        CLASSIC_SENDFILE = "classic-sendfile",
        CLASSIC_SPLICE = "classic-splice",
        CLASSIC_COPY_FILE_RANGE = "classic-copy-file-range",
        URING_READ_WRITE = "uring-read-write",
        URING_READ_WRITE_FIXED = "uring-read-write-fixed",
        URING_SPLICE = "uring-splice",
    } params ["buf", "cache", "fsync", "size"];
    file_to_socket "file -> TCP socket: read+write, mmap, sendfile, splice, io_uring (Kafka serving consumers)" {
        CLASSIC_READ_WRITE = "classic-read-write",
        CLASSIC_MMAP_WRITE = "classic-mmap-write",
        CLASSIC_SENDFILE = "classic-sendfile",
        CLASSIC_SPLICE = "classic-splice",
        URING_READ_SEND = "uring-read-send",
        URING_READ_FIXED_SEND = "uring-read-fixed-send",
        URING_SPLICE = "uring-splice",
        URING_SEND_ZC_FIXED = "uring-send-zc-fixed",
        URING_SEND_ZC_MMAP = "uring-send-zc-mmap",
    } params ["chunk", "path", "size"];
    gather_write "a message of many parts (Netty's composite buffers): concatenate, writev, sendmsg, io_uring writev, sendmsg_zc" {
        CLASSIC_CONCAT_WRITE = "classic-concat-write",
        CLASSIC_WRITEV = "classic-writev",
        CLASSIC_SENDMSG_IOV = "classic-sendmsg-iov",
        URING_WRITEV = "uring-writev",
        URING_SENDMSG_ZC = "uring-sendmsg-zc",
    } params ["part_size", "parts"];
    mmap_read "scanning a file as RocketMQ reads its commit log: read() against mmap (plain, MAP_POPULATE, MADV_SEQUENTIAL) and io_uring" {
        CLASSIC_READ = "classic-read",
        CLASSIC_MMAP = "classic-mmap",
        CLASSIC_MMAP_POPULATE = "classic-mmap-populate",
        CLASSIC_MMAP_SEQUENTIAL = "classic-mmap-sequential",
        URING_READ = "uring-read",
    } params ["buf", "size"];
    net_send "did zero copy happen? send, MSG_ZEROCOPY, io_uring send/send_zc/fixed/sendmsg_zc on loopback, veth and a real zero-copy sink" {
        CLASSIC_SEND = "classic-send",
        CLASSIC_SEND_MSG_ZEROCOPY = "classic-send-msg-zerocopy",
        URING_SEND = "uring-send",
        URING_SEND_ZC = "uring-send-zc",
        URING_SEND_ZC_FIXED = "uring-send-zc-fixed",
        URING_SENDMSG_ZC = "uring-sendmsg-zc",
    } params ["path", "reap", "size"];
    net_recv "the receive side: read against TCP_ZEROCOPY_RECEIVE, io_uring RECV, multishot and bundles, zcrx; mapped share and receiver CPU per MiB" {
        CLASSIC_RECV = "classic-recv",
        CLASSIC_RECV_ZEROCOPY = "classic-recv-zerocopy",
        URING_RECV = "uring-recv",
        URING_RECV_MULTISHOT = "uring-recv-multishot",
        URING_RECV_BUNDLE = "uring-recv-bundle",
        URING_RECV_ZC = "uring-recv-zc",
        CLASSIC_RECV_BUSY_POLL = "classic-recv-busy-poll",
        URING_RECV_MULTISHOT_NAPI = "uring-recv-multishot-napi",
    } params ["copybuf", "path", "size"];
    packet_io "kernel bypass: frames/s through AF_XDP against AF_PACKET, UDP sockets and io_uring on a veth pair, with loss and its causes" {
        CLASSIC_UDP_RECVMMSG = "classic-udp-recvmmsg",
        URING_RECV_MULTISHOT = "uring-recv-multishot",
        CLASSIC_AF_PACKET_RX_RING = "classic-af-packet-rx-ring",
        XDP_RX_NATIVE_POLL = "xdp-rx-native-poll",
        XDP_RX_NATIVE_BUSY_POLL = "xdp-rx-native-busy-poll",
        XDP_RX_GENERIC_POLL = "xdp-rx-generic-poll",
        XDP_RX_GENERIC_BUSY_POLL = "xdp-rx-generic-busy-poll",
        XDP_RX_ZEROCOPY = "xdp-rx-zerocopy",
        CLASSIC_UDP_SENDMMSG = "classic-udp-sendmmsg",
        URING_SEND_UDP = "uring-send-udp",
        CLASSIC_AF_PACKET_SENDMMSG = "classic-af-packet-sendmmsg",
        CLASSIC_AF_PACKET_TX_RING = "classic-af-packet-tx-ring",
        CLASSIC_AF_PACKET_TX_RING_BYPASS = "classic-af-packet-tx-ring-bypass",
        XDP_TX_COPY = "xdp-tx-copy",
        XDP_TX_COPY_WAKEUP = "xdp-tx-copy-wakeup",
        XDP_TX_ZEROCOPY = "xdp-tx-zerocopy",
        XDP_LIVE_FRAMES = "xdp-live-frames",
    } params ["batch", "frame"];
    proxy "a TCP relay: read/write against splice, streaming throughput and echo latency, and where splice pays off" {
        CLASSIC_READ_WRITE = "classic-read-write",
        CLASSIC_SPLICE = "classic-splice",
        URING_RECV_SEND = "uring-recv-send",
        URING_SPLICE = "uring-splice",
    } params ["mode", "msg"];
    rr "request/response transactions: blocking, epoll and io_uring servers (multishot, fixed, SQPOLL, DEFER_TASKRUN), ping-pong and open loop, connect per transaction" {
        CLASSIC_BLOCKING = "classic-blocking",
        CLASSIC_EPOLL = "classic-epoll",
        CLASSIC_BUSY_POLL = "classic-busy-poll",
        URING_ONESHOT = "uring-oneshot",
        URING_MULTISHOT = "uring-multishot",
        URING_FIXED = "uring-fixed",
        URING_SQPOLL = "uring-sqpoll",
        URING_DEFER_TASKRUN = "uring-defer-taskrun",
    } params ["load", "mode", "path", "req", "resp"];
    socket_to_file "TCP stream -> file: recv+write, splice, recv into a mapping, io_uring (Kafka persisting what producers send)" {
        CLASSIC_RECV_WRITE = "classic-recv-write",
        CLASSIC_SPLICE = "classic-splice",
        CLASSIC_RECV_MMAP = "classic-recv-mmap",
        URING_RECV_WRITE = "uring-recv-write",
        URING_RECV_WRITE_FIXED = "uring-recv-write-fixed",
        URING_SPLICE = "uring-splice",
    } params ["chunk", "fsync", "size"];
    storage_read "reading a file: pread against io_uring, registered buffers and files, SQPOLL, buffered and O_DIRECT" {
        CLASSIC_PREAD = "classic-pread",
        URING_READ = "uring-read",
        URING_READ_FIXED = "uring-read-fixed",
        URING_READ_FIXED_FILES = "uring-read-fixed-files",
        URING_SQPOLL = "uring-sqpoll",
    } params ["bs", "io", "pattern", "qd"];
    syscall_floor "the floor under every number: one system call, and an io_uring NOP per batch size, with and without SQPOLL" {
        GETPPID = "getppid",
        CLOCK_GETTIME = "clock-gettime",
        URING_NOP = "uring-nop",
        URING_NOP_REGRING = "uring-nop-regring",
        URING_NOP_SQPOLL = "uring-nop-sqpoll",
        URING_NOP_SQPOLL_REGRING = "uring-nop-sqpoll-regring",
    } params ["batch"];
}

/// The entry of an experiment, by name.
pub fn find(experiment: &str) -> Option<&'static Entry> {
    ALL.iter().find(|e| e.experiment == experiment)
}
