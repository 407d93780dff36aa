//! Whether O_DIRECT (open(2)) really bypasses the page cache in a directory.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::{ODirect, errno_text};
use crate::sys::fsinfo::{dio_align, fs_magic, open_direct_scratch};

/// Probes O_DIRECT in `dir` (or its nearest existing ancestor): creates and
/// at once unlinks a scratch file opened with O_DIRECT (open(2)), asks
/// statx(2) for `STATX_DIOALIGN`, and classifies the filesystem with
/// statfs(2).
pub fn probe_odirect(dir: &Path) -> ODirect {
    let mut notes: Vec<String> = Vec::new();
    let mut target = dir.to_path_buf();
    while !target.is_dir() {
        match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => target = p.to_path_buf(),
            _ => {
                target = PathBuf::from(".");
                break;
            }
        }
    }
    if target != dir {
        notes.push(format!(
            "{} does not exist yet; probed {}",
            dir.display(),
            target.display()
        ));
    }
    let mut d = ODirect {
        path: target.display().to_string(),
        ..ODirect::default()
    };
    let magic = match fs_magic(&target) {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!("statfs: {}", errno_text(&e)));
            None
        }
    };
    d.fs_type = magic.map_or_else(|| "unknown".to_string(), fs_name);

    match open_direct_scratch(&target) {
        Ok(fd) => {
            d.open_ok = true;
            match dio_align(fd.as_fd()) {
                Ok(Some((mem, off))) => {
                    d.mem_align = Some(mem);
                    d.offset_align = Some(off);
                }
                Ok(None) => {}
                Err(e) => notes.push(format!("statx: {}", errno_text(&e))),
            }
        }
        Err(e) => {
            let what = if e.raw_os_error() == Some(libc::EINVAL) {
                "filesystem refuses O_DIRECT".to_string()
            } else {
                format!("cannot create a scratch file: {}", errno_text(&e))
            };
            notes.push(what);
        }
    }

    let memory_backed = matches!(magic, Some(TMPFS_MAGIC | RAMFS_MAGIC));
    d.real = d.open_ok && !memory_backed && d.mem_align.is_some();
    if d.open_ok && !d.real {
        if memory_backed {
            notes.push(format!(
                "{} accepts O_DIRECT but it is memory: nothing bypasses a cache",
                d.fs_type
            ));
        } else if BLOCK_FS.contains(&magic.unwrap_or(0)) {
            // Kernels before 6.1 have no STATX_DIOALIGN; these filesystems
            // implement O_DIRECT on the block device.
            d.real = true;
            notes.push("alignment not reported (statx DIOALIGN needs 6.1)".to_string());
        } else {
            notes.push(
                "O_DIRECT accepted but no DIO alignment reported: likely not reaching a block device"
                    .to_string(),
            );
        }
    }
    d.note = (!notes.is_empty()).then(|| notes.join("; "));
    d
}

const TMPFS_MAGIC: u32 = 0x0102_1994;
const RAMFS_MAGIC: u32 = 0x8584_58f6;
const EXT4_MAGIC: u32 = 0xef53;
const XFS_MAGIC: u32 = 0x5846_5342;
const BTRFS_MAGIC: u32 = 0x9123_683e;
const F2FS_MAGIC: u32 = 0xf2f5_2010;
/// Filesystems whose O_DIRECT goes to the block device.
const BLOCK_FS: [u32; 4] = [EXT4_MAGIC, XFS_MAGIC, BTRFS_MAGIC, F2FS_MAGIC];

/// Name of a statfs(2) magic number (`<linux/magic.h>`), else the number in hex.
fn fs_name(magic: u32) -> String {
    match magic {
        EXT4_MAGIC => "ext4/ext3/ext2".to_string(),
        TMPFS_MAGIC => "tmpfs".to_string(),
        RAMFS_MAGIC => "ramfs".to_string(),
        XFS_MAGIC => "xfs".to_string(),
        BTRFS_MAGIC => "btrfs".to_string(),
        F2FS_MAGIC => "f2fs".to_string(),
        0x794c_7630 => "overlayfs".to_string(),
        0x6969 => "nfs".to_string(),
        0x2fc1_2fc1 => "zfs".to_string(),
        0x6573_5546 => "fuse".to_string(),
        0x0102_1997 => "9p".to_string(),
        0x9fa0 => "proc".to_string(),
        other => format!("{other:#x}"),
    }
}

/// Probes `dir` (honouring `ZCLAB_HIDE=odirect`) and returns the alignment direct I/O there
/// needs, or a one-line reason why the filesystem has no real direct I/O.
pub fn direct_io(dir: &Path) -> Result<crate::sys::direct::DirectIo, String> {
    let c = super::probe(dir);
    let d = c.odirect;
    if !d.real {
        return Err(format!(
            "{} is on {}, which has no real O_DIRECT ({}); use a directory on a block filesystem (e.g. --workdir /var/tmp)",
            dir.display(),
            d.fs_type,
            d.note.as_deref().unwrap_or("not direct I/O")
        ));
    }
    let (mem, off, source) = match (d.mem_align, d.offset_align) {
        (Some(m), Some(o)) if m > 0 && o > 0 => (m, o, "statx"),
        _ => (
            crate::sys::direct::FALLBACK_ALIGN,
            crate::sys::direct::FALLBACK_ALIGN,
            "assumed 4096 (no STATX_DIOALIGN)",
        ),
    };
    Ok(crate::sys::direct::DirectIo {
        dir: dir.display().to_string(),
        fs_type: d.fs_type,
        mem_align: mem,
        offset_align: off,
        source,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fs_names() {
        assert_eq!(super::fs_name(0xef53), "ext4/ext3/ext2");
        assert_eq!(super::fs_name(0x0102_1994), "tmpfs");
        assert_eq!(super::fs_name(0x1234), "0x1234");
    }
}
