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
