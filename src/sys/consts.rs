//! Kernel constants that the libc and io-uring crates do not export, each once, with the uapi
//! header it comes from.

/// `IORING_SEND_ZC_REPORT_USAGE` (include/uapi/linux/io_uring.h): SEND_ZC / SENDMSG_ZC flag
/// asking the notification to say whether the data was copied (Linux 6.2).
pub const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;

/// `IORING_NOTIF_USAGE_ZC_COPIED` (include/uapi/linux/io_uring.h): set in a notification CQE's
/// `res` when the kernel copied the data after all.
pub const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// `SPLICE_F_FD_IN_FIXED` (include/uapi/linux/io_uring.h): the splice input names a registered
/// file.
pub const SPLICE_F_FD_IN_FIXED: u32 = 1 << 31;

/// `SO_EE_ORIGIN_ZEROCOPY` (include/uapi/linux/errqueue.h): `ee_origin` of a MSG_ZEROCOPY
/// completion.
pub const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;

/// `SO_EE_CODE_ZEROCOPY_COPIED` (include/uapi/linux/errqueue.h): set in `ee_code` when the
/// kernel fell back to copying for the completed range.
pub const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

// BPF (include/uapi/linux/bpf.h): commands, types and helpers the lab's own XDP programs use.
// The libc crate has SYS_bpf but none of these.

/// bpf(2) commands.
pub const BPF_MAP_CREATE: u32 = 0;
pub const BPF_MAP_LOOKUP_ELEM: u32 = 1;
pub const BPF_MAP_UPDATE_ELEM: u32 = 2;
pub const BPF_PROG_LOAD: u32 = 5;
pub const BPF_PROG_TEST_RUN: u32 = 10;
pub const BPF_PROG_GET_NEXT_ID: u32 = 11;
pub const BPF_MAP_GET_NEXT_ID: u32 = 12;
pub const BPF_PROG_GET_FD_BY_ID: u32 = 13;
pub const BPF_MAP_GET_FD_BY_ID: u32 = 14;
pub const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
pub const BPF_LINK_CREATE: u32 = 28;
pub const BPF_LINK_GET_FD_BY_ID: u32 = 30;
pub const BPF_LINK_GET_NEXT_ID: u32 = 31;
/// `BPF_PROG_TYPE_XDP`.
pub const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_MAP_TYPE_ARRAY`.
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_XSKMAP`: AF_XDP sockets by receive queue.
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_XDP`: the attach type of an XDP link.
pub const BPF_XDP: u32 = 37;
/// `BPF_OBJ_NAME_LEN`.
pub const BPF_OBJ_NAME_LEN: usize = 16;
/// `BPF_PSEUDO_MAP_FD`: src register of an ld_imm64 that names a map by fd.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: PROG_TEST_RUN sends the frames for real (Linux 5.18).
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// Helper numbers (`enum bpf_func_id`).
pub const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
pub const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// XDP actions (`enum xdp_action`).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
/// BPF_PROG_LOAD prog_flags: the XDP program handles multi-buffer frames (uapi bpf.h).
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
pub const XDP_TX: u32 = 3;
/// XDP attach flags (include/uapi/linux/if_link.h).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `ETHTOOL_SGRO` (include/uapi/linux/ethtool.h): turn GRO on or off. A veth peer receiving
/// XDP_TX frames needs GRO (its NAPI) when no native XDP program runs on it.
pub const ETHTOOL_SGRO: u32 = 0x0000_002c;

/// `TP_STATUS_*` (include/uapi/linux/if_packet.h): AF_PACKET ring slot states.
pub const TP_STATUS_KERNEL: u32 = 0;
pub const TP_STATUS_USER: u32 = 1;
pub const TP_STATUS_SEND_REQUEST: u32 = 1;
pub const TP_STATUS_SENDING: u32 = 2;
pub const TP_STATUS_WRONG_FORMAT: u32 = 4;
