//! Run directories and the files in them; the schema is documented in `results/README.md`.
//! The lowest layer of the lab's analysis: writing (atomically) and reading back, typed
//! ([`load_run`], [`Meta`]); nothing here computes or renders.
//!
//! A run directory is `results/<host>-<kernel>-<UTC time>/` and is never overwritten; each
//! experiment writes `<run>/<experiment>/` with `meta.json`, `summary.jsonl`, `summary.csv` and
//! one `.hgrm` per variant x point. Every file is written atomically (temp file, fsync, rename),
//! so a crash or a full disk leaves the previous version intact and no partial file behind.

pub mod hgrm;
pub mod meta;
pub mod row;
pub mod run;

pub use meta::{Meta, Outcome, Skipped, SuiteMeta, VariantMeta};
pub use row::{Count, Integrity, Latency, Metrics, Row, Status, ZcCounts};
pub use run::{
    Experiment, Figure, Run, load_experiment, load_meta, load_rows, load_run, load_suite,
};

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Largest `meta.json`, `suite.json` or plot index a reader accepts.
pub const META_LIMIT: u64 = 64 << 20;
/// Largest `summary.jsonl` a reader accepts.
pub const SUMMARY_LIMIT: u64 = 1 << 30;

/// Reads an input file of a run directory as text: only a regular file (a symbolic link is
/// followed once, to a regular file; FIFOs, devices, directories and link chains are refused),
/// of at most `limit` bytes, in UTF-8. Every error names the file.
pub fn read_input(path: &Path, limit: u64) -> anyhow::Result<String> {
    use anyhow::{Context, bail};
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let shown = path.display();
    let lst = fs::symlink_metadata(path).with_context(|| format!("cannot read {shown}"))?;
    let target = if lst.file_type().is_symlink() {
        let to = fs::read_link(path).with_context(|| format!("cannot read {shown}"))?;
        let to = path.parent().unwrap_or(Path::new(".")).join(to);
        let t = fs::symlink_metadata(&to)
            .with_context(|| format!("cannot read {shown} (a link to {})", to.display()))?;
        if t.file_type().is_symlink() {
            bail!(
                "{shown} is a link to a link ({}); links are followed once only",
                to.display()
            );
        }
        to
    } else {
        path.to_path_buf()
    };
    let kind = |t: fs::FileType| {
        if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        }
    };
    // O_NONBLOCK: opening a FIFO that replaced the file meanwhile must not wait for a writer.
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&target)
        .with_context(|| format!("cannot read {shown}"))?;
    let md = f
        .metadata()
        .with_context(|| format!("cannot read {shown}"))?;
    if !md.file_type().is_file() {
        bail!(
            "{shown} is {}, not a regular file: refused",
            kind(md.file_type())
        );
    }
    if md.len() > limit {
        bail!(
            "{shown} is {} bytes, over the {} a reader accepts: refused",
            md.len(),
            crate::units::fmt_size(limit)
        );
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {shown}"))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{shown} grew over the {} a reader accepts: refused",
            crate::units::fmt_size(limit)
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{shown} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename. On failure
/// the temporary file is removed and `path` keeps its old content.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Rewrites `path` in place with `bytes` followed by spaces up to its old length (JSON allows
/// trailing white space): overwriting blocks the file already has needs no free space, where
/// [`atomic_write`] needs a new file. Refused when `bytes` is longer than the file. Not atomic:
/// only for when the atomic way has failed for lack of space.
pub fn rewrite_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    let old = f.metadata()?.len() as usize;
    if bytes.len() > old {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "the new content ({} bytes) is longer than the file ({old} bytes)",
                bytes.len()
            ),
        ));
    }
    let mut b = bytes.to_vec();
    b.resize(old, b' ');
    f.write_all(&b)?;
    f.sync_data()
}

/// Appends `bytes` to `path` in one write and fsyncs; if the write fails or is short (a full
/// disk), the file is cut back to its previous length so no partial line remains.
pub fn append_line(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().append(true).open(path)?;
    let before = f.metadata()?.len();
    let r = f.write_all(bytes).and_then(|_| f.sync_data());
    if r.is_err() {
        let _ = f.set_len(before);
        let _ = f.sync_data();
    }
    r
}

/// UTC time as `YYYYMMDDTHHMMSSZ` (for directory names) and RFC 3339 (for metadata).
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d, h, mi, s) = civil(secs);
    (
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    )
}

/// Seconds since the epoch to (year, month, day, hour, minute, second), proleptic Gregorian.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days-to-civil conversion (era-based, valid for all dates after 1970).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Keeps a name safe as one path component.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=,+@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Creates a new run directory `<root>/<host>-<kernel>-<UTC time>` (with `-2`, `-3`, ... if that
/// name is taken: a run directory is never reused). The error names the directory.
pub fn create_run_dir(root: &Path, host: &str, kernel: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(root).map_err(|e| named(e, "cannot create results directory", root))?;
    let (stamp, _) = utc_now();
    let base = sanitize(&format!("{host}-{kernel}-{stamp}"));
    for n in 1..1000 {
        let p = if n == 1 {
            root.join(&base)
        } else {
            root.join(format!("{base}-{n}"))
        };
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(named(e, "cannot create run directory in", root)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free run directory name under {}", root.display()),
    ))
}

/// Adds what was being done and the path to an I/O error, keeping its kind.
pub fn named(e: io::Error, what: &str, path: &Path) -> io::Error {
    crate::sys::named(e, what, path)
}

/// The directory name for a variant x point histogram: `<variant>@<point>[.<kind>].hgrm`.
pub fn hgrm_name(variant: &str, point: &str, kind: &str) -> String {
    let k = if kind == "step" {
        String::new()
    } else {
        format!(".{kind}")
    };
    sanitize(&format!("{variant}@{point}{k}.hgrm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_795_000_000), (2026, 11, 18, 11, 6, 40));
    }

    #[test]
    fn run_dirs_are_never_reused() {
        let t = tempfile::tempdir().unwrap();
        let a = create_run_dir(t.path(), "h", "6.18").unwrap();
        let b = create_run_dir(t.path(), "h", "6.18").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn atomic_write_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
