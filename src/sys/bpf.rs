//! The lab's own BPF side, without clang, libbpf or ELF: a few XDP programs assembled here
//! instruction by instruction (each one commented), loaded with bpf(BPF_PROG_LOAD), attached with
//! BPF_LINK_CREATE, and the XSKMAP they redirect into.
//!
//! Attachment is by bpf_link only: a link lives as long as its file descriptor, so when the
//! process ends — normally, on Ctrl-C or killed outright — the kernel detaches the program and
//! frees it with its maps. Nothing is pinned. Every program and map carries a name that starts
//! with [`LAB_PREFIX`], which is how [`lab_objects`] finds leftovers (tests use it).
//!
//! `bpf_attr` is a union whose layout per command is fixed by include/uapi/linux/bpf.h; it is
//! built here as a zeroed 128-byte buffer with each field written at its documented offset.

use super::consts::*;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Prefix of the name of every program and map the lab loads.
pub const LAB_PREFIX: &str = "zclab_";

/// A bpf_attr: 128 bytes is more than any command used here reads.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, off: usize, name: &str) -> &mut Attr {
        let b = name.as_bytes();
        let n = b.len().min(BPF_OBJ_NAME_LEN - 1);
        self.0[off..off + n].copy_from_slice(&b[..n]);
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
}

/// bpf(2) with `attr`; returns the kernel's non-negative result.
fn bpf(cmd: u32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a live, writable 128-byte buffer and the size passed is its size; every
    // pointer stored inside it (instructions, log, data, ctx, info) points to memory the caller
    // keeps alive for the duration of this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// One BPF instruction (struct bpf_insn): opcode, dst and src registers (4 bits each), offset,
/// immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcodes (class | size/op | source), from include/uapi/linux/bpf_common.h and bpf.h.
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const LDX_DW: u8 = 0x79; // BPF_LDX | BPF_MEM | BPF_DW: dst = *(u64 *)(src + off)
const STX_DW: u8 = 0x7b; // BPF_STX | BPF_MEM | BPF_DW: *(u64 *)(dst + off) = src
const ST_W: u8 = 0x62; // BPF_ST | BPF_MEM | BPF_W: *(u32 *)(dst + off) = imm
const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW: two slots, 64-bit immediate
const MOV64_IMM: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
const MOV64_REG: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X: dst = src
const ADD64_IMM: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K: dst += imm
const JGT_REG: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X: if dst > src goto +off
const JEQ_IMM: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K: if dst == imm goto +off
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL: helper number in imm
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT: return r0

/// `ld_imm64` with src = BPF_PSEUDO_MAP_FD: the verifier replaces the map's fd by its address.
fn ld_map_fd(dst: u8, fd: RawFd) -> [Insn; 2] {
    [
        insn(LD_IMM64, dst, BPF_PSEUDO_MAP_FD, 0, fd),
        insn(0, 0, 0, 0, 0),
    ]
}

/// `return action;` — the whole program (XDP_PASS for a peer that should hand frames to the
/// stack, XDP_TX for a generator, XDP_DROP).
pub fn return_action(action: u32) -> Vec<Insn> {
    vec![
        insn(MOV64_IMM, 0, 0, 0, action as i32), // r0 = action
        insn(EXIT, 0, 0, 0, 0),                  // return r0
    ]
}

/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`: every frame goes to the
/// AF_XDP socket bound to its receive queue, or to the stack when that queue has none.
// One push per instruction keeps each instruction beside its comment.
#[allow(clippy::vec_init_then_push)]
pub fn redirect_to_xsk(xskmap: RawFd) -> Vec<Insn> {
    let mut p = Vec::new();
    // r2 = ctx->rx_queue_index (struct xdp_md: data 0, data_end 4, data_meta 8,
    // ingress_ifindex 12, rx_queue_index 16)
    p.push(insn(LDX_W, 2, 1, 16, 0));
    // r1 = &xsks (two slots)
    p.extend(ld_map_fd(1, xskmap));
    // r3 = XDP_PASS: the low bits of the flags are the action when the key has no socket
    p.push(insn(MOV64_IMM, 3, 0, 0, XDP_PASS as i32));
    // r0 = bpf_redirect_map(r1, r2, r3)
    p.push(insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP));
    // return r0
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// The generator's program, run by BPF_PROG_TEST_RUN in live-frames mode: stamps the next
/// sequence number (a u64 counter in slot 0 of the one-entry array `counter`) into the frame at
/// byte `seq_off`, then returns XDP_TX, which transmits the frame out of the device it "arrived"
/// on. The counter's final value is the number of frames offered.
// One push per instruction keeps each instruction beside its comment.
#[allow(clippy::vec_init_then_push)]
pub fn stamp_and_tx(counter: RawFd, seq_off: i16) -> Vec<Insn> {
    let mut p = Vec::new();
    // r6 = ctx (r1 is clobbered by the helper call)
    p.push(insn(MOV64_REG, 6, 1, 0, 0));
    // *(u32 *)(r10 - 4) = 0: the map key, on the stack
    p.push(insn(ST_W, 10, 0, -4, 0));
    // r2 = r10 - 4: pointer to the key
    p.push(insn(MOV64_REG, 2, 10, 0, 0));
    p.push(insn(ADD64_IMM, 2, 0, 0, -4));
    // r1 = &counter
    p.extend(ld_map_fd(1, counter));
    // r0 = bpf_map_lookup_elem(r1, r2)
    p.push(insn(CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM));
    // if r0 == NULL goto out (the verifier insists on the check)
    p.push(insn(JEQ_IMM, 0, 0, 10, 0));
    // r7 = *counter; r8 = r7 + 1; *counter = r8 (one generator thread: no atomic needed)
    p.push(insn(LDX_DW, 7, 0, 0, 0));
    p.push(insn(MOV64_REG, 8, 7, 0, 0));
    p.push(insn(ADD64_IMM, 8, 0, 0, 1));
    p.push(insn(STX_DW, 0, 8, 0, 0));
    // r2 = ctx->data; r3 = ctx->data_end
    p.push(insn(LDX_W, 2, 6, 0, 0));
    p.push(insn(LDX_W, 3, 6, 4, 0));
    // r4 = r2 + seq_off + 8: the end of the sequence field
    p.push(insn(MOV64_REG, 4, 2, 0, 0));
    p.push(insn(ADD64_IMM, 4, 0, 0, seq_off as i32 + 8));
    // if r4 > data_end goto out (bounds check the verifier needs before the store)
    p.push(insn(JGT_REG, 4, 3, 1, 0));
    // *(u64 *)(data + seq_off) = r7
    p.push(insn(STX_DW, 2, 7, seq_off, 0));
    // out: return XDP_TX
    p.push(insn(MOV64_IMM, 0, 0, 0, XDP_TX as i32));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// A loaded program (its fd; the kernel frees it when the last reference goes).
#[derive(Debug)]
pub struct Prog {
    pub fd: OwnedFd,
    pub name: String,
}

/// Loads an XDP program. `name` gets [`LAB_PREFIX`] in front. On a verifier refusal the error
/// carries the verifier's log.
pub fn load_xdp(name: &str, insns: &[Insn]) -> io::Result<Prog> {
    load_xdp_flags(name, insns, 0)
}

/// Loads an XDP program that accepts multi-buffer frames (BPF_F_XDP_HAS_FRAGS, Linux 5.18):
/// native XDP on a veth end whose MTU is above a page needs one (the attach fails with ERANGE
/// otherwise). The program must not read past the first buffer.
pub fn load_xdp_frags(name: &str, insns: &[Insn]) -> io::Result<Prog> {
    load_xdp_flags(name, insns, BPF_F_XDP_HAS_FRAGS)
}

fn load_xdp_flags(name: &str, insns: &[Insn], prog_flags: u32) -> io::Result<Prog> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let full = format!("{LAB_PREFIX}{name}");
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_XDP)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(44, prog_flags)
        .name(48, &full);
    match bpf(BPF_PROG_LOAD, &mut a) {
        Ok(fd) => Ok(Prog {
            fd: fd_from(fd),
            name: full,
        }),
        Err(e) => {
            // Again with the verifier's log, to say why.
            a.u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
            let _ = bpf(BPF_PROG_LOAD, &mut a);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            Err(io::Error::new(
                e.kind(),
                format!("BPF_PROG_LOAD {full}: {e}; verifier: {text}"),
            ))
        }
    }
}

/// A map the lab created.
#[derive(Debug)]
pub struct Map {
    pub fd: OwnedFd,
}

fn map_create(kind: u32, key: u32, value: u32, entries: u32, name: &str) -> io::Result<Map> {
    let full = format!("{LAB_PREFIX}{name}");
    let mut a = Attr::new();
    a.u32(0, kind)
        .u32(4, key)
        .u32(8, value)
        .u32(12, entries)
        .name(28, &full);
    let fd = bpf(BPF_MAP_CREATE, &mut a)
        .map_err(|e| io::Error::new(e.kind(), format!("BPF_MAP_CREATE {full}: {e}")))?;
    Ok(Map { fd: fd_from(fd) })
}

impl Map {
    /// An XSKMAP with `entries` slots (one per receive queue).
    pub fn xskmap(entries: u32) -> io::Result<Map> {
        map_create(BPF_MAP_TYPE_XSKMAP, 4, 4, entries, "xsks")
    }

    /// A one-slot array of one u64 (the generator's sequence counter).
    pub fn counter() -> io::Result<Map> {
        map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, "seq")
    }

    /// Puts socket `sock` in slot `key` of an XSKMAP.
    pub fn set_xsk(&self, key: u32, sock: RawFd) -> io::Result<()> {
        let (k, v) = (key, sock as u32);
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &k as *const u32 as u64)
            .u64(16, &v as *const u32 as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a)
            .map_err(|e| io::Error::new(e.kind(), format!("XSKMAP update (queue {key}): {e}")))?;
        Ok(())
    }

    /// Reads slot 0 of a u64 array.
    pub fn read_u64(&self) -> io::Result<u64> {
        let k = 0u32;
        let mut v = 0u64;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &k as *const u32 as u64)
            .u64(16, &mut v as *mut u64 as u64);
        bpf(BPF_MAP_LOOKUP_ELEM, &mut a)?;
        Ok(v)
    }

    /// Sets slot 0 of a u64 array.
    pub fn write_u64(&self, v: u64) -> io::Result<()> {
        let k = 0u32;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &k as *const u32 as u64)
            .u64(16, &v as *const u64 as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a)?;
        Ok(())
    }
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (veth has it): XDP_FLAGS_DRV_MODE.
    Native,
    /// On the generic skb path: XDP_FLAGS_SKB_MODE.
    Generic,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// An attached program: detached when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct Link {
    pub fd: OwnedFd,
}

/// Attaches `prog` to interface `ifindex` of the calling thread's network namespace with
/// BPF_LINK_CREATE (Linux 5.9 for XDP links).
pub fn attach_xdp(prog: &Prog, ifindex: u32, mode: XdpMode) -> io::Result<Link> {
    let flags = match mode {
        XdpMode::Native => XDP_FLAGS_DRV_MODE,
        XdpMode::Generic => XDP_FLAGS_SKB_MODE,
    };
    let mut a = Attr::new();
    a.u32(0, prog.fd.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, BPF_XDP)
        .u32(12, flags);
    let fd = bpf(BPF_LINK_CREATE, &mut a).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "BPF_LINK_CREATE {} on ifindex {ifindex} ({} mode): {e}",
                prog.name,
                mode.name()
            ),
        )
    })?;
    Ok(Link { fd: fd_from(fd) })
}

/// struct xdp_md as BPF_PROG_TEST_RUN takes it for the context.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Runs `prog` `repeat` times on `frame` in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES,
/// Linux 5.18): each run is a real frame handed to the XDP action (XDP_TX sends it out of
/// `ifindex`, which must exist in the calling thread's namespace). `batch` frames per batch
/// (at most 256). Returns the kernel's duration (ns per run).
pub fn run_live(
    prog: &Prog,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    batch: u32,
) -> io::Result<u32> {
    let ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let mut a = Attr::new();
    a.u32(0, prog.fd.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u32(32, repeat)
        .u32(40, std::mem::size_of::<XdpMd>() as u32)
        .u64(48, &ctx as *const XdpMd as u64)
        .u32(64, BPF_F_TEST_XDP_LIVE_FRAMES)
        .u32(72, batch);
    bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(a.get_u32(36))
}

/// What the kernel holds with the lab's name: program, map and XDP link ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LabObjects {
    pub progs: Vec<u32>,
    pub maps: Vec<u32>,
    pub links: Vec<u32>,
}

impl LabObjects {
    pub fn is_empty(&self) -> bool {
        self.progs.is_empty() && self.maps.is_empty() && self.links.is_empty()
    }
}

fn ids(next_cmd: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        let mut a = Attr::new();
        a.u32(0, id);
        if bpf(next_cmd, &mut a).is_err() {
            return out; // ENOENT: no more
        }
        id = a.get_u32(4);
        out.push(id);
    }
}

/// The object's info (BPF_OBJ_GET_INFO_BY_FD) into a 256-byte buffer.
fn info(fd: &OwnedFd) -> io::Result<[u8; 256]> {
    let mut buf = [0u8; 256];
    let mut a = Attr::new();
    a.u32(0, fd.as_raw_fd() as u32)
        .u32(4, buf.len() as u32)
        .u64(8, buf.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
    Ok(buf)
}

fn by_id(cmd: u32, id: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, id);
    Ok(fd_from(bpf(cmd, &mut a)?))
}

fn name_at(buf: &[u8], off: usize) -> String {
    let b = &buf[off..off + BPF_OBJ_NAME_LEN];
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Every program and map in the kernel whose name starts with [`LAB_PREFIX`], and every link
/// whose program is one of them (root needed to enumerate). Objects of any process count, so
/// tests see leftovers of a killed run.
pub fn lab_objects() -> io::Result<LabObjects> {
    let mut out = LabObjects::default();
    for id in ids(BPF_PROG_GET_NEXT_ID) {
        let Ok(fd) = by_id(BPF_PROG_GET_FD_BY_ID, id) else {
            continue; // freed meanwhile
        };
        // struct bpf_prog_info: name at 64
        if info(&fd).is_ok_and(|b| name_at(&b, 64).starts_with(LAB_PREFIX)) {
            out.progs.push(id);
        }
    }
    for id in ids(BPF_MAP_GET_NEXT_ID) {
        let Ok(fd) = by_id(BPF_MAP_GET_FD_BY_ID, id) else {
            continue;
        };
        // struct bpf_map_info: name at 24
        if info(&fd).is_ok_and(|b| name_at(&b, 24).starts_with(LAB_PREFIX)) {
            out.maps.push(id);
        }
    }
    for id in ids(BPF_LINK_GET_NEXT_ID) {
        let Ok(fd) = by_id(BPF_LINK_GET_FD_BY_ID, id) else {
            continue;
        };
        // struct bpf_link_info: type 0, id 4, prog_id 8
        if let Ok(b) = info(&fd) {
            let prog = u32::from_ne_bytes(b[8..12].try_into().expect("4 bytes"));
            if out.progs.contains(&prog) {
                out.links.push(id);
            }
        }
    }
    if out.progs.is_empty() && out.maps.is_empty() {
        // Without root the enumeration itself fails: say so instead of "none".
        let mut a = Attr::new();
        bpf(BPF_PROG_GET_NEXT_ID, a.u32(0, 0))
            .map(|_| ())
            .or_else(|e| {
                if e.raw_os_error() == Some(libc::ENOENT) {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_program_is_six_instructions() {
        // ld_imm64 takes two slots.
        assert_eq!(redirect_to_xsk(3).len(), 6);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        let p = redirect_to_xsk(7);
        assert_eq!(p[1].imm, 7);
        assert_eq!(p[1].regs, (BPF_PSEUDO_MAP_FD << 4) | 1);
    }
}
