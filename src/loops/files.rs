//! What the file experiments share: pattern files kept by size in a work directory, the page
//! cache state a trial starts from, the work directory's room, and the loops that move or hash
//! a file step by step.
//!
//! Used by file_copy, mmap_read and storage_read; [`PatternFiles`] and [`Cache`] are shaped so
//! that file_to_socket can adopt them (it keeps several sizes: `keep_bytes`).

use crate::hash::Xxh3;
use crate::measure::Recorder;
use crate::sys::file::{PatternFile, free_bytes};
use crate::sys::filemap::resident_fraction;
use anyhow::{Context, bail};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Page cache state of a file when a trial starts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    /// Every page cached (read in first when any is not).
    Warm,
    /// No page cached (posix_fadvise(2) DONTNEED first).
    Cold,
}

impl Cache {
    /// The name in parameter points and in meta.json: `warm`, `cold`.
    pub fn name(self) -> &'static str {
        match self {
            Cache::Warm => "warm",
            Cache::Cold => "cold",
        }
    }

    /// The state a point's `cache` parameter names (`cold`; anything else is warm).
    pub fn named(s: &str) -> Cache {
        if s == "cold" {
            Cache::Cold
        } else {
            Cache::Warm
        }
    }
}

/// Puts `pf` in the page cache state `cache`: `Cold` drops its pages (posix_fadvise(2)
/// POSIX_FADV_DONTNEED), `Warm` reads it once unless every page is already resident
/// (mincore(2)), so a warm trial does not pay for reading what is cached.
pub fn set_cache(pf: &PatternFile, cache: Cache) -> io::Result<()> {
    match cache {
        Cache::Cold => pf.drop_cache(),
        Cache::Warm => {
            if resident_fraction(&File::open(&pf.path)?)? < 1.0 {
                pf.warm()?;
            }
            Ok(())
        }
    }
}

/// The bytes free on the work directory's filesystem (statvfs(3)), or why `dir` cannot hold
/// the experiment's files: a refusal of the user's `--workdir`.
pub fn workdir_free(dir: &Path) -> Result<u64, String> {
    workdir_exists(dir)?;
    free_bytes(dir).map_err(|e| format!("cannot read the free space of {}: {e}", dir.display()))
}

/// Refuses a `--workdir` whose filesystem has less than `need` bytes free for `what`.
pub fn workdir_room(dir: &Path, need: u64, what: &str) -> Result<(), String> {
    let free = workdir_free(dir)?;
    if need > free {
        return Err(format!(
            "{what} needs {need} B in {}, but its filesystem has {free} B free (use smaller --sizes or another --workdir)",
            dir.display()
        ));
    }
    Ok(())
}

/// Refuses a `--workdir` that is not a directory.
pub fn workdir_exists(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("work directory {} does not exist", dir.display()));
    }
    Ok(())
}

/// Every (size, step, cache state) combination, in the order the file experiments sweep them.
pub fn sweep<'a>(
    sizes: &'a [u64],
    steps: &'a [u64],
    caches: &'a [Cache],
) -> impl Iterator<Item = (u64, u64, Cache)> + 'a {
    sizes.iter().flat_map(move |&size| {
        steps
            .iter()
            .flat_map(move |&step| caches.iter().map(move |&c| (size, step, c)))
    })
}

/// Pattern files in a work directory, by size: created on first use
/// (`<dir>/zclab-<name>-<pid>-<size>.<ext>`), removed when dropped (after a failure or an
/// interruption too) or cleared.
pub struct PatternFiles {
    dir: PathBuf,
    name: String,
    ext: String,
    what: String,
    keep_bytes: u64,
    files: Vec<PatternFile>,
    /// [`PatternFiles::with_key`]'s key (0: the plain pattern).
    key: u64,
}

impl PatternFiles {
    /// Files of experiment `name` in `dir` with extension `ext`; `what` names one in errors
    /// ("source file"). Files of other sizes are kept while they total at most `keep_bytes`
    /// with the new one (0: one file at a time); otherwise all are removed first, since they
    /// may be large.
    /// Files that killed runs left in `dir` ([`remove_stale_files`]) are removed first, each
    /// named on stderr after `name`.
    pub fn new(dir: &Path, name: &str, ext: &str, what: &str, keep_bytes: u64) -> PatternFiles {
        for (p, pid) in remove_stale_files(dir) {
            eprintln!(
                "{name}: removed {} left by process {pid}, which no longer exists",
                p.display()
            );
        }
        PatternFiles {
            dir: dir.to_path_buf(),
            name: name.into(),
            ext: ext.into(),
            what: what.into(),
            keep_bytes,
            files: Vec::new(),
            key: 0,
        }
    }

    /// Writes the files with the pattern XOR-ed with `key` ([`PatternFile::create_keyed`]),
    /// so their blocks cannot pass for another file's.
    pub fn with_key(mut self, key: u64) -> PatternFiles {
        self.key = key;
        self
    }

    /// The file of `size` bytes, written (and fsynced) if there is none yet.
    pub fn get(&mut self, size: u64) -> anyhow::Result<&PatternFile> {
        if let Some(i) = self.files.iter().position(|f| f.size == size) {
            return Ok(&self.files[i]);
        }
        let kept: u64 = self.files.iter().map(|f| f.size).sum();
        if kept.saturating_add(size) > self.keep_bytes {
            self.files.clear();
        }
        let path = self.dir.join(format!(
            "zclab-{}-{}-{size}.{}",
            self.name,
            std::process::id(),
            self.ext
        ));
        let f = PatternFile::create_keyed(&path, size, self.key)
            .with_context(|| format!("cannot create the {size}-byte {}", self.what))?;
        self.files.push(f);
        Ok(self.files.last().expect("just pushed"))
    }

    /// Removes every file (dropping the set does too).
    pub fn clear(&mut self) {
        self.files.clear();
    }
}

/// The owner's pid in a temporary file name of the lab: `zclab-<experiment>-<pid>` followed by
/// `-` or `.` (`zclab-file_to_socket-4242-67108864.dat`, `zclab-file_copy-4242.copy`).
pub fn temp_file_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("zclab-")?;
    let (exp, rest) = rest.split_once('-')?;
    if exp.is_empty() || !exp.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return None;
    }
    let end = rest.find(['-', '.'])?;
    let pid = &rest[..end];
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the lab's temporary files in `dir` ([`temp_file_owner`]) whose owner process no
/// longer exists: what a run killed with SIGKILL could not remove. Returns each file removed
/// with its owner's pid. Files of live processes, other names, and anything that is not a
/// regular file are left alone (as [`crate::net::netns::remove_stale`] does for namespaces).
pub fn remove_stale_files(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_owner) else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok() {
            removed.push((e.path(), pid));
        }
    }
    removed
}

/// Runs `step(offset, len) -> bytes moved` over `size` bytes, `len` at most `step_len`, one
/// latency sample per step; returns the steps. A step that moves nothing is an error.
pub fn by_steps(
    size: u64,
    step_len: usize,
    rec: &mut Recorder,
    mut step: impl FnMut(u64, usize) -> anyhow::Result<usize>,
) -> anyhow::Result<u64> {
    let (mut off, mut n) = (0u64, 0u64);
    let mut s = rec.now();
    while off < size {
        let len = (size - off).min(step_len as u64) as usize;
        let moved = step(off, len)?;
        if moved == 0 {
            bail!("the copy stopped at {off} of {size} bytes");
        }
        off += moved as u64;
        n += 1;
        s = rec.record_since(s);
    }
    Ok(n)
}

/// Hashes `map` `step_len` bytes per step into `h`, one latency sample per step (the page
/// faults of a mapping happen inside them); returns the steps.
pub fn hash_mapping(map: &[u8], step_len: usize, h: &mut Xxh3, rec: &mut Recorder) -> u64 {
    let mut n = 0;
    let mut s = rec.now();
    for chunk in map.chunks(step_len) {
        h.update(chunk);
        n += 1;
        s = rec.record_since(s);
    }
    n
}

/// Reads `f` to its end with read(2) into `buf`, hashing each read into `h`, one latency
/// sample per read and its hash; returns the reads. Fewer than `size` bytes is an error.
pub fn hash_reads(
    mut f: &File,
    size: u64,
    buf: &mut [u8],
    h: &mut Xxh3,
    rec: &mut Recorder,
) -> anyhow::Result<u64> {
    let (mut got, mut n) = (0u64, 0u64);
    let mut s = rec.now();
    loop {
        let r = f.read(buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        got += r as u64;
        n += 1;
        s = rec.record_since(s);
    }
    if got != size {
        bail!("read {got} of {size} bytes");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Clock;

    #[test]
    fn temp_file_owners() {
        assert_eq!(
            temp_file_owner("zclab-file_to_socket-42-67108864.dat"),
            Some(42)
        );
        assert_eq!(temp_file_owner("zclab-file_copy-7.copy"), Some(7));
        assert_eq!(
            temp_file_owner("zclab-socket_to_file-9-uring-recv.dat"),
            Some(9)
        );
        for other in [
            "zclab-x-12a.dat",
            "zclab--1.dat",
            "notes-1.txt",
            "zclab-a-.dat",
        ] {
            assert_eq!(temp_file_owner(other), None, "{other}");
        }
    }

    #[test]
    fn pattern_files_keep_one_or_several() {
        let d = tempfile::tempdir().unwrap();
        let mut one = PatternFiles::new(d.path(), "t", "dat", "file", 0);
        let p1 = one.get(1000).unwrap().path.clone();
        let p2 = one.get(2000).unwrap().path.clone();
        assert!(!p1.exists() && p2.exists(), "one file at a time");
        let mut many = PatternFiles::new(d.path(), "u", "dat", "file", 10_000);
        let q1 = many.get(1000).unwrap().path.clone();
        many.get(2000).unwrap();
        assert!(q1.exists(), "kept under keep_bytes");
        many.clear();
        assert!(!q1.exists());
    }

    #[test]
    fn steps_and_hashes_cover_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut files = PatternFiles::new(d.path(), "t", "dat", "file", 0);
        let pf = files.get(10_001).unwrap();
        set_cache(pf, Cache::Warm).unwrap();
        let mut rec = Recorder::new(Clock::new());
        let mut moved = 0;
        let n = by_steps(pf.size, 4096, &mut rec, |_, len| {
            moved += len;
            Ok(len)
        })
        .unwrap();
        assert_eq!((n, moved), (3, 10_001));
        assert!(by_steps(10, 4, &mut rec, |_, _| Ok(0)).is_err());
        let f = File::open(&pf.path).unwrap();
        let (mut h, mut buf) = (Xxh3::new(), vec![0u8; 4096]);
        assert_eq!(
            hash_reads(&f, pf.size, &mut buf, &mut h, &mut rec).unwrap(),
            3
        );
        assert_eq!(h.digest(), pf.hash);
        let map = crate::sys::file::map_readonly(&f).unwrap();
        let mut h = Xxh3::new();
        assert_eq!(hash_mapping(&map, 4096, &mut h, &mut rec), 3);
        assert_eq!(h.digest(), pf.hash);
        assert_eq!(Cache::named(Cache::Cold.name()), Cache::Cold);
        let all: Vec<_> = sweep(&[1, 2], &[3], &[Cache::Warm, Cache::Cold]).collect();
        assert_eq!(
            all,
            [
                (1, 3, Cache::Warm),
                (1, 3, Cache::Cold),
                (2, 3, Cache::Warm),
                (2, 3, Cache::Cold)
            ]
        );
    }
}
