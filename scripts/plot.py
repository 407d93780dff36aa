#!/usr/bin/env python3
"""Figures of zclab run directories: latency percentiles, throughput, CPU and syscalls per MiB,
zero-copy copied fraction.

    PY=$(scripts/pyenv.sh)
    "$PY" scripts/plot.py results/<run>                     # -> <run>/<experiment>/plots/
    "$PY" scripts/plot.py RUN_A RUN_B --out DIR             # overlay -> DIR/<experiment>/
    "$PY" scripts/plot.py RUN --experiments file_to_socket  # only these experiments
    "$PY" scripts/plot.py RUN --figures throughput,cpu      # only these kinds of figure
    "$PY" scripts/plot.py RUN --svg                         # SVG beside each PNG

A RUN_DIR is `results/<host>-<kernel>-<UTC>/` with one subdirectory per experiment (meta.json,
summary.jsonl, `<variant>@<point>[.<kind>].hgrm`); an experiment directory itself is accepted
too. Nothing is specific to one experiment: the parameter points come from the rows' `params`,
the variants from `variant` and meta.json.

Figures, each as PNG (and SVG with --svg), listed in `index.json` beside them:
  latency@<point>             per-step latency percentile distribution (HdrHistogram style:
                              x = 1/(1-p) on a log scale), one curve per variant
  latency.<kind>@<point>      the same for other histograms (`release`: zero-copy send issued
                              to its buffer's release notification)
  throughput                  median of repeats (bars: min-max) against the swept numeric
                              parameter, one panel per combination of the other parameters
                              (more than 6 panels: one `throughput@<combo>` file each)
  cpu_per_mib                 CPU time per MiB moved, sys and user stacked, per point
  syscalls_per_mib            system calls per MiB moved, per point ("unknown" never drawn as 0)
  zc_copied                   share of zero-copy bytes the kernel reported as copied, 0-100 %
  mapped                      share of received bytes mapped rather than copied (the rows'
                              `extra.mapped_pct`: net_recv's TCP_ZEROCOPY_RECEIVE), 0-100 %
  completions_per_mib         receive completions per MiB (the rows' `extra.completions_per_mib`)
  fairness                    Jain's fairness index of the flows' own rates (the rows'
                              `extra.jain_fairness`, with --flows), 1 = every flow got the same
  loss                        share of offered frames lost, per cause (packet_io's `extra`
                              loss counters against `offered`), stacked
Experiments that move no bytes are plotted per operation instead of per MiB.
With several runs the same figures overlay them: one colour per run (labelled by kernel and
host), variants told apart by line style and marker (single run: colour per variant).
The figures are drawn by a pool of processes, one per usable CPU (--jobs N to choose), each
figure a task; the files and index.json are the same whatever the number of processes.

Bad input. Every problem is printed on stderr as one line `plot.py: error: FILE: PROBLEM`
(`FILE:LINE: PROBLEM` for a summary row). Inputs are read only from regular files: a symbolic
link is followed once (a link to a link, e.g. a loop, is refused), a FIFO, device, socket or
directory is refused without blocking on it, and a file over its size limit (summary.jsonl
256 MiB; meta.json and each .hgrm 16 MiB) is refused without being read. Numbers must be
finite (no NaN or Infinity, which JSON lacks and the lab's readers reject) and in range
(counts, throughput, CPU time and syscall rates >= 0; copied share 0-100 %); meta.json must be
a JSON object with the lab's field types; every summary row must name the same parameters.
A figure whose input is bad (a missing or malformed .hgrm) is not drawn - never drawn with a
curve missing - and the other figures are still written; a bad meta.json or summary.jsonl
(empty, truncated, a malformed line, a bad number, a missing field) skips that experiment of
that run, and the other experiments are plotted. An unexpected error while reading or drawing
is reported the same way (naming the experiment directory) and skips only what it hit.

Exit status: 0 when everything was plotted; 1 when any problem was reported (input or
internal; whatever could be plotted still was) or nothing could be plotted; 2 for bad
command-line usage; 130 when interrupted. Set ZCLAB_PLOT_DEBUG=1 to see a traceback of an
internal error (it then stops at the first one).

Deterministic (same input, same bytes out), no network, non-interactive backend (Agg).
"""

import argparse
import json
import math
import multiprocessing
import os
import re
import stat
import statistics
import sys

PROG = "plot.py"


class Problem(Exception):
    """Bad input: the file (or file:line) and what is wrong with it, in one line."""

    def __init__(self, where, what):
        super().__init__(f"{where}: {what}")
        self.where = str(where)
        self.what = what


class Usage(Exception):
    pass


def internal_error(e, doing):
    return (f"internal error {doing} ({type(e).__name__}: {e}); skipped; rerun with "
            "ZCLAB_PLOT_DEBUG=1 for a traceback")


def say(kind, msg):
    print(f"{PROG}: {kind}: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Reading the run directories
# ---------------------------------------------------------------------------------------------

SIZE_RE = re.compile(r"^\d+(\.\d+)?(TiB|GiB|MiB|KiB|GB|MB|KB|B)$")
SIZE_UNITS = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]


def fmt_size(v):
    """Bytes as the lab writes them (src/units.rs fmt_size, powers of 1024 part)."""
    for name, m in SIZE_UNITS:
        if v >= m and v % m == 0:
            return f"{v // m}{name}"
    return f"{v}B"


def sanitize(s):
    """Same rule as src/results/mod.rs `sanitize`: a safe single path component."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_.=,+@" else "_" for c in s)


class Row:
    """One measured summary row, validated."""

    __slots__ = ("line", "variant", "point", "params", "repeat", "status", "error", "m",
                 "histograms")


def _need(d, key, types, where):
    if not isinstance(d, dict) or key not in d:
        raise Problem(where, f"missing field '{key}'")
    v = d[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, types) or isinstance(v, bool) and bool not in types:
        raise Problem(where, f"field '{key}' has the wrong type ({type(v).__name__})")
    return v


NUM = (int, float)
U64 = (1 << 64) - 1


def _count(d, key, where, name=None):
    """A non-negative integer that fits the lab's u64."""
    v = _need(d, key, int, where)
    if not 0 <= v <= U64:
        raise Problem(where, f"{name or key} is {v}, expected a count from 0 to 2^64-1")
    return v


def _nonneg(d, key, where, name=None, top=None):
    """A finite number >= 0 (and <= top)."""
    v = _need(d, key, NUM, where)
    if isinstance(v, int) and abs(v) > U64 or not math.isfinite(v) or v < 0 or \
            top is not None and v > top:
        rng = f"from 0 to {top}" if top is not None else ">= 0"
        raise Problem(where, f"{name or key} is {v}, expected a number {rng}")
    return v


def parse_row(obj, where):
    if not isinstance(obj, dict):
        raise Problem(where, f"not a JSON object (it is {json_type(obj)})")
    r = Row()
    r.variant = _need(obj, "variant", str, where)
    r.point = _need(obj, "point", str, where)
    r.params = _need(obj, "params", dict, where)
    for k, v in r.params.items():
        if not isinstance(v, (int, float, str)) or isinstance(v, bool):
            raise Problem(where, f"parameter '{k}' is neither a number nor text")
        if isinstance(v, int) and abs(v) > U64:
            raise Problem(where, f"parameter '{k}' is {v}, out of the range of a 64-bit number")
    r.repeat = _count(obj, "repeat", where)
    r.status = _need(obj, "status", str, where)
    r.error = obj.get("error")
    r.histograms = obj.get("histograms") or {}
    if not isinstance(r.histograms, dict) or not all(
        isinstance(v, str) and v and v == os.path.basename(v) for v in r.histograms.values()
    ):
        raise Problem(where, "field 'histograms' is not a map of kind to a file name")
    r.m = None
    if r.status == "ok":
        m = _need(obj, "metrics", dict, where)
        for k in ("bytes", "ops", "wall_ns", "user_ns", "sys_ns"):
            _count(m, k, where, f"metrics.{k}")
        for k in ("gbps", "ops_per_s", "cpu_ns_per_mib", "sys_ns_per_mib"):
            _nonneg(m, k, where, f"metrics.{k}")
        sc = _need(m, "syscalls", (int, str), where)
        if isinstance(sc, str) and sc != "unknown":
            raise Problem(where, f"syscalls is '{sc}', expected a count or \"unknown\"")
        if isinstance(sc, int):
            _count(m, "syscalls", where, "metrics.syscalls")
        if m.get("syscalls_per_mib") is not None:
            if not isinstance(m["syscalls_per_mib"], NUM) or isinstance(
                    m["syscalls_per_mib"], bool):
                raise Problem(where, "syscalls_per_mib is not a number")
            _nonneg(m, "syscalls_per_mib", where, "metrics.syscalls_per_mib")
        lat = _need(m, "latency", dict, where)
        _need(lat, "step", str, where)
        zc = m.get("zc")
        if zc is not None:
            if not isinstance(zc, dict):
                raise Problem(where, f"metrics.zc is {json_type(zc)}, expected an object")
            _nonneg(zc, "copied_pct", where, "metrics.zc.copied_pct", top=100)
            _need(zc, "usage_reported", bool, where)
        el = m.get("extra_latency") or {}
        if not isinstance(el, dict):
            raise Problem(where, "extra_latency is not a map")
        for k, v in el.items():
            if not isinstance(v, dict) or not isinstance(v.get("step", ""), str):
                raise Problem(where, f"metrics.extra_latency.{k} is not an object with a "
                              "'step' text")
        r.m = m
    return r


def point_layout(point, params):
    """(keys in the point's order, {key: text as the label shows it}, {key: is a size})."""
    order, text = [], {}
    for piece in point.split(","):
        k, sep, v = piece.partition("=")
        if sep and k in params and k not in text:
            order.append(k)
            text[k] = v
    for k in sorted(params):  # keys the label did not show (should not happen)
        if k not in text:
            order.append(k)
            v = params[k]
            text[k] = v if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)
    sizes = {k: isinstance(params[k], int) and bool(SIZE_RE.match(text[k])) for k in order}
    return order, text, sizes


class Experiment:
    """One experiment of one run: meta.json and the summary rows."""

    def __init__(self, run, name, path):
        self.run = run
        self.name = name
        self.dir = path
        self.meta = {}
        self.rows = []
        self.by_point = {}  # point -> its first row

    def load(self):
        mp = os.path.join(self.dir, "meta.json")
        meta = read_json(mp)
        check_meta(meta, mp)
        self.meta = meta
        if isinstance(self.meta.get("experiment"), str) and self.meta["experiment"]:
            self.name = self.meta["experiment"]
        sp = os.path.join(self.dir, "summary.jsonl")
        data = read_input(sp, SUMMARY_LIMIT)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Problem(sp, f"not UTF-8 text (byte {e.start})") from None
        lines = text.split("\n")
        last = max((i for i, l in enumerate(lines) if l.strip()), default=-1)
        for i, l in enumerate(lines):
            if not l.strip():
                continue
            where = f"{sp}:{i + 1}"
            try:
                obj = parse_json(l, where)
            except json.JSONDecodeError as e:
                if i == last and not text.endswith("\n"):
                    raise Problem(where, f"truncated last line ({e.msg}, column {e.colno})") \
                        from None
                raise Problem(where, f"not a JSON row ({e.msg}, column {e.colno})") from None
            row = parse_row(obj, where)
            row.line = i + 1
            self.check_params(row, where)
            self.rows.append(row)
        if not self.rows:
            ran = [v.get("name") for v in self.variants_meta() if v.get("status") in
                   ("ran", "failed")]
            if ran or not self.variants_meta():
                raise Problem(sp, "empty: no summary rows" + (
                    f" although meta.json says {len(ran)} variants ran" if ran else ""))
            raise Problem(sp, "no summary rows: every variant was skipped on this machine")

    def check_params(self, row, where):
        """Every row names the same parameters, and the rows of one point the same values:
        the figures group and sweep by them."""
        if not self.rows:
            self.by_point[row.point] = row
            return
        first = self.rows[0]
        lack = [k for k in first.params if k not in row.params]
        if lack:
            raise Problem(where, f"params lack {', '.join(map(repr, lack))}, which line "
                          f"{first.line} has")
        more = [k for k in row.params if k not in first.params]
        if more:
            raise Problem(where, f"params have {', '.join(map(repr, more))}, which line "
                          f"{first.line} lacks")
        same = self.by_point.setdefault(row.point, row)
        if same.params != row.params:
            raise Problem(where, f"params differ from line {same.line}, which has the same "
                          f"point '{row.point}'")

    def variants_meta(self):
        v = self.meta.get("variants")
        return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []

    def variant_order(self):
        names = [v.get("name") for v in self.variants_meta() if isinstance(v.get("name"), str)]
        for r in self.rows:
            if r.variant not in names:
                names.append(r.variant)
        return names

    def why_absent(self, variant, point=None):
        """Why `variant` has no ok row (at `point`), in a few words."""
        for v in self.variants_meta():
            if v.get("name") != variant:
                continue
            st = v.get("status")
            if st == "not-requested":
                return "not requested"
            if st in ("skipped", "unavailable"):
                return f"skipped: {v.get('reason') or 'no reason recorded'}"
            for ps in v.get("points_skipped") or []:
                if isinstance(ps, list) and len(ps) == 2 and ps[0] == point:
                    return f"skipped here: {ps[1]}"
        errs = [r for r in self.rows if r.variant == variant and (point is None or
                r.point == point) and r.status != "ok"]
        if errs:
            e = errs[0]
            return f"{e.status}: {e.error or 'no message'}"
        return "no rows"


class Run:
    def __init__(self, path):
        self.path = path
        self.experiments = {}
        self.host = "unknown host"
        self.kernel = "unknown kernel"
        self.started = ""
        self.status = ""
        self.label = ""


# Size limits of the files read: far above what the lab writes, low enough that a wrong file
# (a disk image, /dev/zero behind a link) is refused before it is read into memory.
MiB = 1 << 20
SUMMARY_LIMIT = 256 * MiB
META_LIMIT = 16 * MiB
HGRM_LIMIT = 16 * MiB
INDEX_LIMIT = 16 * MiB


def fmt_bytes(n):
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n} bytes"


def file_kind(mode):
    """What a non-regular file is, in words; None for a regular file."""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def read_input(path, limit):
    """The bytes of the regular file `path`, at most `limit` of them. A symbolic link is
    followed once (a link to a link - a loop or a chain - is refused); a FIFO, device, socket
    or directory is refused without being opened for reading in a way that could block
    (O_NONBLOCK), and a file over the limit without being read. Raises Problem."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise Problem(path, "missing") from None
    except OSError as e:
        raise Problem(path, f"cannot read: {e.strerror or e}") from None
    target = path
    if stat.S_ISLNK(st.st_mode):
        try:
            link = os.readlink(path)
        except OSError as e:
            raise Problem(path, f"cannot read the symbolic link: {e.strerror or e}") from None
        target = os.path.join(os.path.dirname(path), link)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise Problem(path, f"missing (a dangling symbolic link to {link})") from None
        except OSError as e:
            raise Problem(path, f"symbolic link to {link}: {e.strerror or e}") from None
        if stat.S_ISLNK(st.st_mode):
            raise Problem(path, f"symbolic link to another symbolic link ({link}): a loop or "
                          "a chain; only one link is followed")
    kind = file_kind(st.st_mode)
    if kind:
        raise Problem(path, f"not a regular file ({kind}); refused")
    if st.st_size > limit:
        raise Problem(path, f"too large ({st.st_size} bytes; the limit is {fmt_bytes(limit)})")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise Problem(path, f"cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        kind = file_kind(st.st_mode)
        if kind:  # replaced between the look and the open
            raise Problem(path, f"not a regular file ({kind}); refused")
        chunks, n = [], 0
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            n += len(b)
            if n > limit:
                raise Problem(path, f"too large (grew past the limit of {fmt_bytes(limit)} "
                              "while being read)")
            chunks.append(b)
        return b"".join(chunks)
    except OSError as e:
        raise Problem(path, f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def first_nonfinite(obj):
    """(dotted path, value) of the first NaN or infinite number in parsed JSON, or None.
    Python's json module accepts NaN, Infinity and 1e999; JSON and the lab's readers do not."""
    stack = [("", obj)]
    while stack:
        where, o = stack.pop()
        if isinstance(o, float) and not math.isfinite(o):
            return where or "the value", o
        if isinstance(o, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v)
                         for k, v in reversed(list(o.items())))
        elif isinstance(o, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(o))))
    return None


def parse_json(text, where):
    """JSON text that must hold only finite numbers. Raises json.JSONDecodeError for bad
    syntax and Problem for the rest."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise Problem(where, "JSON nested too deeply") from None
    bad = first_nonfinite(obj)
    if bad:
        raise Problem(where, f"{bad[0]} is {bad[1]}: not a finite number (JSON has no NaN or "
                      "Infinity, and the lab never writes them)")
    return obj


def read_json(path, limit=META_LIMIT):
    data = read_input(path, limit)
    if not data.strip():
        raise Problem(path, "empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Problem(path, f"not UTF-8 text (byte {e.start})") from None
    try:
        return parse_json(text, path)
    except json.JSONDecodeError as e:
        raise Problem(path, f"not valid JSON ({e})") from None


def json_type(v):
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number",
            str: "text", list: "an array", dict: "an object"}.get(type(v), type(v).__name__)


def check_meta(meta, path):
    """meta.json's fields that plot.py uses must have the lab's shape (others are ignored)."""
    if not isinstance(meta, dict):
        raise Problem(path, f"not a JSON object (it is {json_type(meta)})")
    for k in ("experiment", "host", "kernel", "started_utc", "status"):
        if meta.get(k) is not None and not isinstance(meta[k], str):
            raise Problem(path, f"'{k}' is {json_type(meta[k])}, expected text")
    pts = meta.get("points")
    if pts is not None and (not isinstance(pts, list) or
                            not all(isinstance(p, str) for p in pts)):
        raise Problem(path, "'points' is not an array of point labels")
    vs = meta.get("variants")
    if vs is None:
        return
    if not isinstance(vs, list):
        raise Problem(path, f"'variants' is {json_type(vs)}, expected an array")
    for i, v in enumerate(vs):
        w = f"variants[{i}]"
        if not isinstance(v, dict):
            raise Problem(path, f"{w} is {json_type(v)}, expected an object")
        if not isinstance(v.get("name"), str):
            raise Problem(path, f"{w}.name is {json_type(v.get('name'))}, expected text")
        for k in ("status", "reason"):
            if v.get(k) is not None and not isinstance(v[k], str):
                raise Problem(path, f"{w}.{k} is {json_type(v[k])}, expected text")
        ps = v.get("points_skipped")
        if ps is not None and (not isinstance(ps, list) or not all(
                isinstance(x, list) and len(x) == 2 and all(isinstance(y, str) for y in x)
                for x in ps)):
            raise Problem(path, f"{w}.points_skipped is not an array of [point, reason]")


def is_experiment_dir(p):
    # lexists: a meta.json that is a FIFO or a dangling link is reported, not passed over.
    return os.path.lexists(os.path.join(p, "meta.json")) or os.path.lexists(
        os.path.join(p, "summary.jsonl"))


def open_run(path, wanted, problems):
    """Reads a run directory; returns a Run (possibly with no experiments)."""
    if not os.path.exists(path):
        raise Problem(path, "does not exist")
    if not os.path.isdir(path):
        raise Problem(path, "not a directory (expected a run directory "
                      "results/<host>-<kernel>-<UTC>/)")
    run = Run(path)
    if is_experiment_dir(path):
        dirs = [(os.path.basename(os.path.normpath(path)), path)]
    else:
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            raise Problem(path, f"cannot list: {e.strerror}") from None
        dirs = [(n, os.path.join(path, n)) for n in names
                if os.path.isdir(os.path.join(path, n)) and is_experiment_dir(
                    os.path.join(path, n))]
        if not dirs:
            raise Problem(path, "not a run directory: no <experiment>/summary.jsonl or "
                          "meta.json inside (expected results/<host>-<kernel>-<UTC>/)")
    for name, d in dirs:
        if wanted and name not in wanted:
            continue
        e = Experiment(run, name, d)
        try:
            e.load()
        except Problem as p:
            problems.append(p)
            continue
        except Exception as x:  # a bug here must not stop the other experiments
            if os.environ.get("ZCLAB_PLOT_DEBUG"):
                raise
            problems.append(Problem(d, internal_error(x, "reading")))
            continue
        if wanted and e.name not in wanted:
            continue
        run.experiments[e.name] = e
        if run.status == "" or e.meta.get("status") not in (None, "complete"):
            run.status = str(e.meta.get("status") or "")
        for attr, key, unset in (("host", "host", "unknown host"),
                                 ("kernel", "kernel", "unknown kernel"),
                                 ("started", "started_utc", "")):
            v = e.meta.get(key)
            if isinstance(v, str) and v and getattr(run, attr) == unset:
                setattr(run, attr, v)
    return run


def label_runs(runs):
    """'<kernel> on <host>', made unique with the start time, then the directory name."""
    base = [f"{r.kernel} on {r.host}" for r in runs]
    for i, r in enumerate(runs):
        r.label = base[i]
    for i, r in enumerate(runs):
        if base.count(base[i]) > 1:
            r.label = f"{base[i]} ({r.started or os.path.basename(os.path.normpath(r.path))})"
    labels = [r.label for r in runs]
    for i, r in enumerate(runs):
        if labels.count(labels[i]) > 1:
            r.label = f"{labels[i]} [{os.path.basename(os.path.normpath(r.path))}]"
    labels = [r.label for r in runs]
    for i, r in enumerate(runs):
        if labels.count(labels[i]) > 1:
            r.label = f"{labels[i]} #{i + 1}"


def parse_hgrm(path):
    """The percentile lines of an .hgrm file (src/results/hgrm.rs): [(value_us, p, count)]
    and the footer's total count."""
    data = read_input(path, HGRM_LIMIT)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Problem(path, f"not UTF-8 text (byte {e.start})") from None
    lines, total, header = [], None, False
    for i, raw in enumerate(text.split("\n")):
        l = raw.strip()
        if not l:
            continue
        if l.startswith("Value"):
            header = True
            continue
        if l.startswith("#["):
            for part in l[2:].rstrip("]").split(","):
                k, sep, v = part.partition("=")
                if not sep:
                    raise Problem(f"{path}:{i + 1}", f"malformed footer '{l}'")
                if k.strip() == "Total count":
                    try:
                        total = int(v.strip())
                        if total < 0:
                            raise ValueError
                    except ValueError:
                        raise Problem(f"{path}:{i + 1}", f"bad total count '{v.strip()}'") \
                            from None
            continue
        cols = l.split()
        if len(cols) not in (3, 4):
            raise Problem(f"{path}:{i + 1}", f"expected 3 or 4 columns, got '{l}'")
        try:
            v, p, c = float(cols[0]), float(cols[1]), int(cols[2])
        except ValueError:
            raise Problem(f"{path}:{i + 1}", f"not numbers: '{l}'") from None
        if not (0.0 <= p <= 1.0) or v < 0 or not math.isfinite(v) or c < 0:
            raise Problem(f"{path}:{i + 1}", f"value or percentile out of range: '{l}'")
        lines.append((v, p, c))
    if not header:
        raise Problem(path, "not an .hgrm file (no 'Value Percentile TotalCount' header)")
    if total is None:
        raise Problem(path, "truncated (no '#[... Total count' footer)")
    if lines and lines[-1][2] != total:
        raise Problem(path, f"inconsistent: last line counts {lines[-1][2]} samples, "
                      f"footer {total}")
    return lines, total


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

FIGURE_KINDS = ("latency", "throughput", "cpu", "syscalls", "zc_copied", "mapped",
                "completions_per_mib", "fairness", "loss")
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
# Colour-blind friendly (Okabe-Ito, then tab10 for more).
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#882255", "#999933", "#7f7f7f", "#44AA99", "#8c564b"]
HATCHES = ["", "//", "..", "\\\\", "--", "++", "oo", "**"]
DPI = 110
PAD_INCHES = 0.15
RUN_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def setup_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise Usage("matplotlib is not installed for this python; run it with the project's "
                    "environment: PY=$(scripts/pyenv.sh) && \"$PY\" scripts/plot.py ...") \
            from None
    matplotlib.use("Agg")
    matplotlib.rcParams.update({
        "font.family": "DejaVu Sans",
        "font.size": 10,
        "axes.titlesize": 10,
        "figure.titlesize": 12,
        "legend.fontsize": 8.5,
        "svg.hashsalt": "zclab",
        "svg.fonttype": "path",
        "axes.grid": True,
        "grid.alpha": 0.35,
        "figure.dpi": 100,
    })
    import matplotlib.pyplot as plt  # noqa: F401


class Plotter:
    """Figures of one experiment over one or more runs."""

    def __init__(self, name, exps, out_dir, svg=False):
        self.name = name
        self.svg = svg
        self.exps = exps  # one Experiment per run, in run order (runs lacking it omitted)
        self.out = out_dir
        self.overlay = len(exps) > 1
        self.figures = []
        self.footnote = None  # "not shown: ..." under the figure being drawn
        self.hatch_order = None  # variants of the bar figure being drawn (simple hatches first)
        self.problems = []
        self.notes = []
        order = []
        for e in exps:
            for v in e.variant_order():
                if v not in order:
                    order.append(v)
        self.variants = order
        self.vindex = {v: i for i, v in enumerate(order)}
        self.ok = {}  # (run index, variant, point) -> [Row]
        self.points = []  # point labels in first-seen order
        self.layout = {}  # point -> (order, text, sizes)
        self.params = {}  # point -> params
        self.run_points = [{r.point for r in e.rows} for e in exps]
        for ri, e in enumerate(exps):
            for r in e.rows:
                if r.point not in self.layout:
                    self.points.append(r.point)
                    self.layout[r.point] = point_layout(r.point, r.params)
                    self.params[r.point] = r.params
                if r.status == "ok":
                    self.ok.setdefault((ri, r.variant, r.point), []).append(r)
        # Points in the order the experiments declared them, when meta.json lists them.
        declared = []
        for e in exps:
            for p in e.meta.get("points") or []:
                if isinstance(p, str) and p in self.layout and p not in declared:
                    declared.append(p)
        self.points = declared + [p for p in self.points if p not in declared]
        self.per_mib = any(r.m["bytes"] > 0 for rows in self.ok.values() for r in rows)

    # -- styling ------------------------------------------------------------------------------

    def style(self, ri, variant):
        vi = self.vindex.get(variant, 0)
        colour = RUN_COLOURS[ri % len(RUN_COLOURS)] if self.overlay else \
            COLOURS[vi % len(COLOURS)]
        return dict(color=colour, linestyle=LINESTYLES[vi % len(LINESTYLES)],
                    marker=MARKERS[vi % len(MARKERS)])

    def hatch(self, variant):
        """Bar hatch telling variants apart in overlays (colour is the run there)."""
        if not self.overlay:
            return None
        order = self.hatch_order or self.variants
        i = order.index(variant) if variant in order else self.vindex.get(variant, 0)
        return HATCHES[i % len(HATCHES)]

    def series_label(self, ri, variant):
        return f"{variant} [{self.exps[ri].run.label}]" if self.overlay else variant

    def gid(self, ri, variant):
        return json.dumps([ri, variant])

    def runs_line(self):
        if not self.overlay:
            r = self.exps[0].run
            s = f"host {r.host}, kernel {r.kernel}"
            if r.started:
                s += f", run started {r.started}"
            if r.status and r.status != "complete":
                s += f" (run {r.status}: incomplete)"
            return s
        kernels = sorted({e.run.kernel for e in self.exps})
        hosts = sorted({e.run.host for e in self.exps})
        return (f"{len(self.exps)} runs overlaid (colour = run): kernel {', '.join(kernels)}; "
                f"host {', '.join(hosts)}")

    def title(self, fig, what):
        """Sets the figure's title (experiment, what, point; host and kernel) and returns it."""
        t = f"{self.name}: {what}\n{self.runs_line()}"
        fig.suptitle(t, fontsize=11)
        return t

    def absent_note(self, fig, shown, point=None, only=None):
        """A footnote naming variants (per run) not in the figure and why."""
        lines = []
        for ri, e in enumerate(self.exps):
            for v in self.variants:
                if only is not None and v not in only:
                    continue
                if (ri, v) in shown:
                    continue
                why = e.why_absent(v, point)
                if why == "not requested":
                    continue
                if len(why) > 90:
                    why = why[:87] + "..."
                who = f"{v} [{e.run.label}]" if self.overlay else v
                lines.append(f"{who}: {why}")
        if lines:
            if len(lines) > 6:
                lines = lines[:5] + [f"... and {len(lines) - 5} more (see index.json)"]
            self.footnote = "not shown:\n" + "\n".join("    " + l for l in lines)
        return lines

    # -- saving -------------------------------------------------------------------------------

    def save(self, fig, stem, kind, title, axes, extra=None):
        """Writes <stem>.png (and <stem>.svg with --svg) atomically and records the figure with
        the curves and bars actually present on its axes.

        The layout is computed once: one constrained-layout pass, then frozen, and the tight
        box is measured once and given to savefig explicitly, so saving renders each format
        exactly once (savefig would otherwise lay the figure out and measure it again for
        every format)."""
        import matplotlib.pyplot as plt
        from matplotlib.container import Container
        from matplotlib.transforms import Bbox

        stem = sanitize(stem)
        fig.set_dpi(DPI)
        engine = fig.get_layout_engine()
        if engine is not None:
            engine.execute(fig)
        fig.set_layout_engine("none")  # freeze that layout: savefig must not redo it
        for leg in fig.legends:
            # Figure legends follow the figure's edge, which the crop to the tight box moves:
            # pin them where the layout put them.
            bb = leg.get_window_extent().transformed(fig.transFigure.inverted())
            leg.set_bbox_to_anchor(bb, transform=fig.transFigure)
            leg.set_loc("center")
        box = fig.get_tightbbox()
        if self.footnote:
            # Below everything else, outside the laid-out extent; the saved box grows to hold it.
            w, h = fig.get_size_inches()
            t = fig.text(box.x0 / w, (box.y0 - 0.08) / h, self.footnote, fontsize=7.5,
                         va="top", ha="left", color="#444444")
            tb = t.get_window_extent().transformed(fig.dpi_scale_trans.inverted())
            box = Bbox.union([box, tb])
            self.footnote = None
        box = box.padded(PAD_INCHES)
        curves, variants, runs = [], [], []
        seen = set()
        for ax in axes:
            for a in list(ax.containers) + list(ax.get_lines()):
                gid = container_gid(a) if isinstance(a, Container) else a.get_gid()
                label = a.get_label() or ""
                if not gid or label.startswith("_") or (gid, label) in seen:
                    continue
                seen.add((gid, label))
                ri, v = json.loads(gid)
                curves.append({"label": label, "variant": v, "run": ri})
                if v not in variants:
                    variants.append(v)
                if ri not in runs:
                    runs.append(ri)
        formats = [("png", {"Software": None})]
        if self.svg:
            formats.append(("svg", {"Date": None}))
        for ext, meta in formats:
            final = os.path.join(self.out, f"{stem}.{ext}")
            tmp = os.path.join(self.out, f".{stem}.{ext}.tmp-{os.getpid()}")
            try:
                fig.savefig(tmp, format=ext, dpi=DPI, metadata=meta, bbox_inches=box)
                os.replace(tmp, final)
            except OSError as e:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                plt.close(fig)
                raise Problem(final, f"cannot write: {e.strerror or e}") from None
        plt.close(fig)
        entry = {"file": f"{stem}.png"}
        if self.svg:
            entry["svg"] = f"{stem}.svg"
        entry.update({"kind": kind, "title": title,
                      "variants": sorted(variants, key=lambda v: self.vindex.get(v, 0)),
                      "runs": sorted(runs), "curves": curves})
        if extra:
            entry.update(extra)
        self.figures.append(entry)

    def attempt(self, fn, *args):
        """Draws one figure; a Problem skips just that figure."""
        import matplotlib.pyplot as plt

        try:
            fn(*args)
        except Problem as p:
            plt.close("all")
            self.footnote = None
            self.problems.append(p)

    def tasks(self, kinds=FIGURE_KINDS):
        """The drawing tasks, in the order of index.json: (method, args), each independent of
        the others (one figure; throughput may write one file per panel group)."""
        out = []
        if "latency" in kinds:
            for kind in self.hist_kinds():
                for point in self.points:
                    out.append(("latency", (point, kind)))
        for k in ("throughput", "cpu", "syscalls", "zc_copied", "mapped", "completions_per_mib",
                  "fairness", "loss"):
            if k in kinds:
                out.append((k, ()))
        return out

    def cost(self, task):
        """A rough relative drawing cost, to start the long tasks first."""
        per = len(self.variants) * len(self.exps)
        return per if task[0] == "latency" else per * max(1, len(self.points))

    def draw(self, task):
        """Draws one task; returns (figures, problems as (where, what), notes). An unexpected
        error is reported as this experiment's problem, never stopping the others."""
        import matplotlib.pyplot as plt

        self.figures, self.problems, self.notes = [], [], []
        self.footnote = self.hatch_order = None
        name, args = task
        try:
            self.attempt(getattr(self, name), *args)
        except Exception as e:
            plt.close("all")
            if os.environ.get("ZCLAB_PLOT_DEBUG"):
                raise
            what = name + (f" at {args[0]}" if args else "")
            self.problems.append(Problem(self.exps[0].dir, internal_error(e, f"drawing {what}")))
        return self.figures, [(p.where, p.what) for p in self.problems], self.notes

    def plot_all(self, kinds=FIGURE_KINDS):
        """Draws every task in this process (the driver spreads them over processes)."""
        figures, problems, notes = [], [], []
        for t in self.tasks(kinds):
            f, p, n = self.draw(t)
            figures += f
            problems += [Problem(w, x) for w, x in p]
            notes += n
        self.figures, self.problems, self.notes = figures, problems, notes

    # -- latency ------------------------------------------------------------------------------

    def hist_kinds(self):
        kinds = []
        for rows in self.ok.values():
            for r in rows:
                for k in r.histograms:
                    if k not in kinds:
                        kinds.append(k)
        return sorted(kinds, key=lambda k: (k != "step", k))

    def latency(self, point, kind):
        stem = f"latency@{point}" if kind == "step" else f"latency.{kind}@{point}"
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FixedFormatter, NullLocator, FuncFormatter
        from matplotlib.ticker import LogLocator

        curves = []  # (ri, variant, xs, ys_us, n, step)
        expected = []
        empty = []
        for ri, e in enumerate(self.exps):
            for v in self.variants:
                rows = self.ok.get((ri, v, point))
                if not rows or kind not in rows[-1].histograms:
                    continue
                expected.append((ri, v))
                path = os.path.join(e.dir, rows[-1].histograms[kind])
                try:
                    lines, total = parse_hgrm(path)
                except Problem as p:
                    why = p.what
                    if why.startswith("missing"):
                        why += f" (summary.jsonl line {rows[-1].line} refers to it)"
                    raise Problem(p.where, f"{why}; figure {sanitize(stem)} not drawn") \
                        from None
                pts = [(1.0 / (1.0 - p), val) for val, p, _ in lines if p < 1.0]
                if total == 0 or not pts:
                    empty.append((ri, v))
                    self.notes.append(f"{path}: no samples; not in the {kind} latency figure "
                                      f"at {point}")
                    continue
                m = rows[-1].m
                step = m["latency"]["step"] if kind == "step" else \
                    (m.get("extra_latency") or {}).get(kind, {}).get("step", kind)
                curves.append((ri, v, [x for x, _ in pts], [y for _, y in pts], total, step))
        if not expected:
            return
        if not curves:
            raise Problem(self.exps[0].dir, f"every {kind} histogram at {point} is empty; "
                          "figure skipped")

        # µs, unless every value is below 1 µs (ns) or at least 1 ms (ms).
        lo_us = min(min(c[3]) for c in curves)
        hi_us = max(max(c[3]) for c in curves)
        unit, div = ("ns", 0.001) if hi_us < 1 else ("ms", 1000.0) if lo_us >= 1000 else \
            ("µs", 1.0)

        fig, ax = plt.subplots(figsize=(11, 6.2), layout="constrained")
        xmax = 10.0
        for ri, v, xs, ys, n, step in curves:
            st = self.style(ri, v)
            line, = ax.plot(xs, [y / div for y in ys], label=self.series_label(ri, v),
                            color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                            markevery=0.08, markersize=5, linewidth=1.6)
            line.set_gid(self.gid(ri, v))
            xmax = max(xmax, max(xs))
        ax.set_xscale("log")
        ax.set_yscale("log")
        decades = max(1, math.ceil(math.log10(xmax) - 1e-9))
        ticks = [1.0, 2.0] + [10.0 ** k for k in range(1, decades + 1)]
        names = ["0%", "50%"] + [percent_name(1 - 10.0 ** -k) for k in range(1, decades + 1)]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter(names))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(1, 10.0 ** decades)
        lo = min(min(c[3]) for c in curves) / div
        hi = max(max(c[3]) for c in curves) / div
        # Few decades: label 1-2-5 steps too, so the axis has more than two numbers.
        subs = (1.0, 2.0, 5.0) if hi / max(lo, 1e-12) < 300 else (1.0,)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_xlabel("percentile (x = 1/(1-p), log scale)")
        what = "one step" if kind == "step" else f"{kind}"
        ax.set_ylabel(f"latency of {what} ({unit}, log scale)")
        ax.grid(True, which="major")
        ax.grid(True, which="minor", axis="y", alpha=0.15)

        # Legend: per variant what one sample is (and, for one run, how many there are).
        texts = {}
        for ri, v, xs, ys, n, step in curves:
            texts.setdefault(v, f"{v}: {step}" + ("" if self.overlay else f" (n={n})"))
        add_legends(fig, [ax], self, "line", texts, title="variant: one sample is", ncol=2)

        if kind == "step":
            what_t = f"latency distribution per step at {point}"
        else:
            what_t = f"{kind} latency distribution at {point}"
            if kind == "release":
                what_t = f"zero-copy buffer release latency (send issued to notification) at " \
                    f"{point}"
        full = self.title(fig, what_t)
        shown = {(c[0], c[1]) for c in curves}
        only = None if kind == "step" else {v for _, v in expected}
        notes = self.absent_note(fig, shown, point, only)
        drawn = {tuple(json.loads(l.get_gid())) for l in ax.get_lines() if l.get_gid()}
        missing = [e for e in expected if e not in drawn and e not in empty]
        if missing:  # self-check: never write a figure lacking a curve it should have
            raise Problem(self.exps[0].dir, f"internal: curves {missing} not drawn at {point}")
        self.save(fig, stem, "latency", full, [ax],
                  {"histogram": kind, "point": point, "params": self.params[point],
                   "unit": unit, "not_shown": notes})

    # -- throughput ---------------------------------------------------------------------------

    def sweep(self):
        """(x param or None, other params in point order)."""
        keys = []
        for p in self.points:
            for k in self.layout[p][0]:
                if k not in keys:
                    keys.append(k)
        best, nbest = None, 1
        # A flow sweep is drawn against the number of flows, whatever else varies.
        if all("flows" in self.params[p] for p in self.points) and \
                len({self.params[p]["flows"] for p in self.points}) > 1:
            return "flows", [k for k in keys if k != "flows"]
        for k in keys:
            if not all(k in self.params[p] for p in self.points):
                continue  # runs of an overlay that name different parameters
            vals = {self.params[p][k] for p in self.points}
            if all(isinstance(v, (int, float)) for v in vals) and len(vals) > nbest:
                best, nbest = k, len(vals)
        return best, [k for k in keys if k != best]

    def metric(self):
        """(row metric, axis label, divisor): GB/s, or operations per second in a readable
        multiple when the experiment moves no bytes."""
        if self.name == "packet_io":
            # Its question is frames per second (an operation is one frame received or sent).
            return "ops_per_s", "million frames per second", 1e6
        if self.per_mib:
            return "gbps", "throughput (GB/s = 10^9 bytes/s)", 1.0
        top = max((r.m["ops_per_s"] for rows in self.ok.values() for r in rows), default=0)
        for div, name in ((1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
            if top >= div:
                return "ops_per_s", f"{name} operations per second", div
        return "ops_per_s", "operations per second", 1.0

    def throughput(self):
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FixedFormatter, NullLocator

        if not self.ok:
            return
        key, ylabel, div = self.metric()
        xk, others = self.sweep()
        if xk is None:
            return self.throughput_bars(key, ylabel, div)
        combos = []  # (combo label, [points])
        for p in self.points:
            _, text, _ = self.layout[p]
            c = ",".join(f"{k}={text[k]}" for k in others if k in text)
            for cl, pts in combos:
                if cl == c:
                    pts.append(p)
                    break
            else:
                combos.append((c, [p]))
        groups = [combos] if len(combos) <= 6 else [[c] for c in combos]
        is_size = any(self.layout[p][2].get(xk) for p in self.points)
        for group in groups:
            n = len(group)
            ncols = min(3, n)
            nrows = math.ceil(n / ncols)
            fig, axs = plt.subplots(nrows, ncols, figsize=(max(8.0, 4.6 * ncols + 1.0),
                                                           3.9 * nrows + 0.9),
                                    sharey=True, squeeze=False, layout="constrained")
            flat = [a for row in axs for a in row]
            for a in flat[n:]:
                a.set_visible(False)
            used = []
            for ax, (combo, pts) in zip(flat, group):
                xs = sorted({self.params[p][xk] for p in pts})
                for ri in range(len(self.exps)):
                    for v in self.variants:
                        xv, med, lo, hi = [], [], [], []
                        for p in sorted(pts, key=lambda p: self.params[p][xk]):
                            rows = self.ok.get((ri, v, p))
                            if not rows:
                                if p in self.run_points[ri]:
                                    # Measured for others, failed for this one: a gap, not a
                                    # straight line across it.
                                    xv.append(self.params[p][xk])
                                    med.append(math.nan)
                                    lo.append(0.0)
                                    hi.append(0.0)
                                continue
                            vals = [r.m[key] / div for r in rows]
                            md = statistics.median(vals)
                            xv.append(self.params[p][xk])
                            med.append(md)
                            lo.append(md - min(vals))
                            hi.append(max(vals) - md)
                        if all(math.isnan(m) for m in med):
                            continue
                        st = self.style(ri, v)
                        c = ax.errorbar(xv, med, yerr=[lo, hi], capsize=3, markersize=5,
                                        linewidth=1.5, elinewidth=1, label=self.series_label(
                                            ri, v), **st)
                        tag(c, self.gid(ri, v))
                        used.append((ri, v))
                # Flows are counted: ticks at the values measured, doubling along the axis.
                log2 = is_size or xk == "flows" or (min(xs) > 0 and max(xs) / min(xs) >= 8)
                if log2:
                    ax.set_xscale("log", base=2)
                    ax.xaxis.set_major_locator(FixedLocator(xs))
                    ax.xaxis.set_minor_locator(NullLocator())
                    text = {self.params[p][xk]: self.layout[p][1][xk] for p in pts}
                    ax.xaxis.set_major_formatter(FixedFormatter([text[x] for x in xs]))
                    if len(xs) == 1:
                        ax.set_xlim(xs[0] / 2, xs[0] * 2)
                ax.set_title(combo if combo else "all points")
                ax.set_xlabel(f"{xk}" + (" (bytes, log2 scale)" if is_size else
                                         " (log2 scale)" if log2 else ""))
            top = max((max(r.m[key] / div for r in rows) for (ri, v, p), rows in self.ok.items()
                       if any(p in pts for _, pts in group)), default=1.0)
            flat[0].set_ylim(0, top * 1.06 if top > 0 else 1.0)
            for row in axs:
                row[0].set_ylabel(ylabel)
            add_legends(fig, flat[:n], self, "line")
            what = f"throughput against {xk} (median of repeats, bars: min-max)"
            full = self.title(fig, what)
            shown = set(used)
            notes = self.absent_note(fig, shown)
            stem = "throughput" if len(groups) == 1 else f"throughput@{group[0][0]}"
            self.save(fig, stem, "throughput", full, flat[:n],
                      {"x": xk, "metric": key, "unit": ylabel, "panels": [c for c, _ in group],
                       "not_shown": notes})

    def throughput_bars(self, key, ylabel, div):
        """No numeric parameter is swept: bars per point."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(self.points) + 4), 5),
                               layout="constrained")
        vals = {}
        for (ri, v, p), rows in self.ok.items():
            vals[(ri, v, p)] = [r.m[key] / div for r in rows]
        used = vertical_bars(ax, self, self.points, vals, lambda x: f"{x:.3g}")
        ax.set_ylabel(ylabel)
        ax.set_xlabel("parameter point")
        ax.set_ylim(bottom=0)
        add_legends(fig, [ax], self, "bar")
        what = "throughput per point (median of repeats, bars: min-max)"
        full = self.title(fig, what)
        notes = self.absent_note(fig, used)
        self.save(fig, "throughput", "throughput", full, [ax],
                  {"x": None, "metric": key, "unit": ylabel, "not_shown": notes})

    # -- CPU and syscalls ---------------------------------------------------------------------

    def per_unit(self, r, what):
        """CPU ns (total, sys) or syscalls per MiB, or per operation when nothing moves bytes;
        None for an unknown count."""
        m = r.m
        if self.per_mib:
            if what == "cpu":
                return (m["cpu_ns_per_mib"], m["sys_ns_per_mib"])
            if m["syscalls"] == "unknown" or m.get("syscalls_per_mib") is None:
                return None
            return m["syscalls_per_mib"]
        ops = max(1, m["ops"])
        if what == "cpu":
            return ((m["user_ns"] + m["sys_ns"]) / ops, m["sys_ns"] / ops)
        if m["syscalls"] == "unknown":
            return None
        return m["syscalls"] / ops

    def point_panels(self, nvar):
        import matplotlib.pyplot as plt

        n = len(self.points)
        ncols = min(3, n)
        nrows = math.ceil(n / ncols)
        per = max(nvar * (len(self.exps) if self.overlay else 1), 1)
        h = max(2.4, 0.28 * per + 1.0)
        fig, axs = plt.subplots(nrows, ncols, figsize=(4.4 * ncols + 1.0, h * nrows + 1.0),
                                squeeze=False, sharey=True, layout="constrained")
        flat = [a for row in axs for a in row]
        for a in flat[n:]:
            a.set_visible(False)
        return fig, axs, flat[:n]

    def cpu(self):
        if not self.ok:
            return
        vs = [v for v in self.variants if any(k[1] == v for k in self.ok)]
        vals = {k: [self.per_unit(r, "cpu") for r in rows] for k, rows in self.ok.items()}
        top = max(t for l in vals.values() for t, _ in l)
        unit, div = pick_unit(top)
        base = "MiB moved" if self.per_mib else "operation"
        fig, axs, panels = self.point_panels(len(vs))
        used = set()
        for ax, p in zip(panels, self.points):
            series = {}
            for (ri, v, pp), l in vals.items():
                if pp != p:
                    continue
                tot = [t / div for t, _ in l]
                sys_ = [s / div for _, s in l]
                med = statistics.median(tot)
                series[(ri, v)] = (med, min(med, statistics.median(sys_)), min(tot), max(tot))
            used |= set(series)
            horizontal_bars(ax, self, vs, series, stacked=True)
            ax.set_title(p)
            ax.set_xlabel(f"CPU time per {base} ({unit})")
        add_legends(fig, panels, self, None, extra=stack_legend(), ncol=2)
        what = f"CPU time per {base} (median of repeats; sys solid, user hatched; bars: " \
            f"min-max of the total)"
        full = self.title(fig, what)
        notes = self.absent_note(fig, used)
        stem = "cpu_per_mib" if self.per_mib else "cpu_per_op"
        self.save(fig, stem, "cpu", full, panels,
                  {"unit": f"{unit} per {base}", "points": self.points, "not_shown": notes})

    def syscalls(self):
        if not self.ok:
            return
        vs = [v for v in self.variants if any(k[1] == v for k in self.ok)]
        base = "MiB moved" if self.per_mib else "operation"
        fig, axs, panels = self.point_panels(len(vs))
        used = set()
        unknown = []
        for ax, p in zip(panels, self.points):
            series = {}
            for (ri, v, pp), rows in self.ok.items():
                if pp != p:
                    continue
                l = [self.per_unit(r, "sys") for r in rows]
                if any(x is None for x in l):
                    series[(ri, v)] = None  # unknown: never drawn as 0
                    unknown.append({"variant": v, "run": ri, "point": p})
                else:
                    med = statistics.median(l)
                    series[(ri, v)] = (med, None, min(l), max(l))
            used |= set(series)
            horizontal_bars(ax, self, vs, series, stacked=False)
            ax.set_title(p)
            ax.set_xlabel(f"system calls per {base}")
        add_legends(fig, panels, self, None)
        what = f"system calls per {base} (median of repeats, bars: min-max)"
        full = self.title(fig, what)
        notes = self.absent_note(fig, used)
        stem = "syscalls_per_mib" if self.per_mib else "syscalls_per_op"
        self.save(fig, stem, "syscalls", full, panels,
                  {"points": self.points, "unknown": unknown, "not_shown": notes})

    # -- zero copy ----------------------------------------------------------------------------

    def zc_copied(self):
        import matplotlib.pyplot as plt

        zc = {k: rows for k, rows in self.ok.items() if any(r.m.get("zc") for r in rows)}
        if not zc:
            return
        vals = {}
        unknown = []
        for k, rows in zc.items():
            zs = [r.m["zc"] for r in rows if r.m.get("zc")]
            if not all(z["usage_reported"] for z in zs):
                vals[k] = None
                unknown.append({"run": k[0], "variant": k[1], "point": k[2]})
            else:
                vals[k] = [z["copied_pct"] for z in zs]
        pts = [p for p in self.points if any(k[2] == p for k in zc)]
        zvs = [v for v in self.variants if any(k[1] == v for k in zc)]
        fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(pts) * max(1, len(zvs)) + 2), 5),
                               layout="constrained")
        used = vertical_bars(ax, self, pts, vals, lambda x: f"{x:.0f}%")
        ax.set_ylim(0, 112)
        ax.set_yticks([0, 25, 50, 75, 100])
        ax.set_ylabel("bytes reported copied (%, 0 = true zero copy)")
        ax.set_xlabel("parameter point")
        add_legends(fig, [ax], self, "bar")
        what = "share of zero-copy bytes the kernel reported copied (median of repeats)"
        full = self.title(fig, what)
        notes = self.absent_note(fig, used, only=set(zvs))
        self.save(fig, "zc_copied", "zc_copied", full, [ax],
                  {"points": pts, "unknown": unknown, "not_shown": notes})


    def mapped(self):
        self.extra_bars("mapped_pct", "mapped", "bytes mapped (%, 100 = no copy)",
                        "share of received bytes mapped rather than copied (median of repeats)",
                        top=100)

    def completions_per_mib(self):
        self.extra_bars("completions_per_mib", "completions_per_mib", "completions per MiB",
                        "receive completions per MiB (median of repeats)")

    def fairness(self):
        self.extra_bars("jain_fairness", "fairness", "Jain's fairness index",
                        "fairness of the flows' own rates (Jain's index: 1 = all equal, "
                        "1/n = one flow took everything; median of repeats)")

    # The loss counters a packet_io row may carry, each a cause of lost frames.
    LOSS_CAUSES = (("xdp_rx_ring_full", "AF_XDP RX ring full"),
                   ("xdp_rx_fill_ring_empty_descs", "AF_XDP fill ring empty"),
                   ("xdp_rx_dropped", "AF_XDP dropped"),
                   ("tp_drops", "AF_PACKET ring drops"),
                   ("udp_rcvbuf_errors", "UDP receive buffer full"),
                   ("dev_rx_dropped", "device rx_dropped"))

    def loss(self):
        """Stacked bars per point and variant: the median share of offered frames each loss
        counter accounts for, and what no counter explains; only for rows with `offered`."""
        import matplotlib.pyplot as plt

        groups = []  # (point, variant, {cause: pct})
        for p in self.points:
            for v in self.variants:
                rows = [r for r in self.ok.get((0, v, p), [])
                        if (r.m.get("extra") or {}).get("offered", 0) > 0]
                if not rows:
                    continue
                shares = {}
                for key, _ in self.LOSS_CAUSES + (("lost", ""),):
                    xs = [r.m["extra"].get(key) for r in rows]
                    xs = [100.0 * x / r.m["extra"]["offered"] for x, r in zip(xs, rows)
                          if isinstance(x, NUM) and math.isfinite(x) and x >= 0]
                    if xs:
                        shares[key] = statistics.median(xs)
                groups.append((p, v, shares))
        if not groups or not any(g[2].get("lost", 0) > 0 for g in groups):
            return
        fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(groups) + 3), 5), layout="constrained")
        xs = range(len(groups))
        bottom = [0.0] * len(groups)
        for i, (key, label) in enumerate(self.LOSS_CAUSES):
            ys = [g[2].get(key, 0.0) for g in groups]
            if any(ys):
                ax.bar(xs, ys, bottom=bottom, label=label, color=COLOURS[i % len(COLOURS)],
                       edgecolor="#333333")
                bottom = [b + y for b, y in zip(bottom, ys)]
        rest = [max(0.0, g[2].get("lost", 0.0) - b) for g, b in zip(groups, bottom)]
        if any(rest):
            ax.bar(xs, rest, bottom=bottom, label="lost, no counter names why",
                   color="#dddddd", hatch="///", edgecolor="#333333")
        ax.set_xticks(list(xs), [f"{v}\n{p}" for p, v, _ in groups], rotation=60, ha="right",
                      fontsize=7)
        ax.set_ylabel("% of offered frames")
        ax.legend(fontsize=8)
        full = self.title(fig, "frames lost and their causes (counters may overlap; median of "
                               "repeats)")
        vs = [v for v in self.variants if any(g[1] == v for g in groups)]
        self.save(fig, "loss", "loss", full, [ax],
                  {"points": sorted({p for p, _, _ in groups}, key=self.points.index),
                   "variants": vs})

    def extra_bars(self, key, stem, ylabel, what, top=None):
        """Bars of one of the rows' `extra` figures per point and variant, when any row has
        it; a value that is not a finite number in range is a problem of that row's run."""
        import matplotlib.pyplot as plt

        vals = {}
        for k, rows in self.ok.items():
            xs = [r.m.get("extra", {}).get(key) for r in rows]
            xs = [x for x in xs if x is not None]
            if not xs:
                continue
            for x in xs:
                bad = not isinstance(x, NUM) or isinstance(x, bool) or not math.isfinite(x)
                if bad or x < 0 or (top is not None and x > top):
                    raise Problem(self.exps[k[0]].dir, f"metrics.extra.{key} is {x!r}, "
                                  "not a number in range")
            vals[k] = xs
        if not vals:
            return
        pts = [p for p in self.points if any(k[2] == p for k in vals)]
        vs = [v for v in self.variants if any(k[1] == v for k in vals)]
        fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(pts) * max(1, len(vs)) + 2), 5),
                               layout="constrained")
        used = vertical_bars(ax, self, pts, vals, lambda x: f"{x:.0f}%" if top else f"{x:.3g}")
        if top is not None:
            ax.set_ylim(0, top * 1.12)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("parameter point")
        add_legends(fig, [ax], self, "bar")
        full = self.title(fig, what)
        notes = self.absent_note(fig, used, only=set(vs))
        self.save(fig, stem, stem, full, [ax], {"points": pts, "not_shown": notes})


def tag(container, gid):
    """Marks every artist of a bar or errorbar container as the series `gid` ([run, variant]),
    so that index.json can be made from what the axes really hold."""
    for a in container.get_children():
        a.set_gid(gid)


def spread(container):
    """A white halo around min-max bars drawn over bars, so they show on dark colours too."""
    from matplotlib.patheffects import withStroke

    for a in container.get_children():
        a.set_path_effects([withStroke(linewidth=2.6, foreground="white")])


def container_gid(c):
    for a in c.get_children():
        if a.get_gid():
            return a.get_gid()
    return None


def percent_name(p):
    s = f"{p * 100:.10f}".rstrip("0").rstrip(".")
    return s + "%"


def pick_unit(top_ns):
    if top_ns >= 1e6:
        return "ms", 1e6
    if top_ns >= 1e3:
        return "µs", 1e3
    return "ns", 1.0


def stack_legend():
    from matplotlib.patches import Patch

    return [Patch(facecolor="#777777", edgecolor="#333333", label="sys (kernel) time"),
            Patch(facecolor="#dddddd", edgecolor="#333333", hatch="///",
                  label="user time")]


def add_legends(fig, axes, pl, kind, texts=None, title="variant", ncol=4, extra=()):
    """One figure legend below the plot. One run: the series on the axes (colour per variant).
    Overlay: the runs by colour, then the variants by line style/marker (kind "line") or hatch
    (kind "bar"). kind None: the variants are on an axis already, so only the runs (overlay)
    and `extra` entries are listed."""
    from matplotlib.container import Container
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    texts = texts or {}
    handles, labels = [], []
    if pl.overlay:
        for ri, e in enumerate(pl.exps):
            handles.append(Patch(color=RUN_COLOURS[ri % len(RUN_COLOURS)]))
            labels.append(f"run: {e.run.label}")
        present = []
        for ax in axes:
            for a in list(ax.containers) + list(ax.get_lines()):
                gid = container_gid(a) if isinstance(a, Container) else a.get_gid()
                if gid and not a.get_label().startswith("_"):
                    v = json.loads(gid)[1]
                    if v not in present:
                        present.append(v)
        present.sort(key=lambda v: pl.vindex.get(v, 0))
        for v in present if kind else []:
            st = pl.style(0, v)
            if kind == "line":
                handles.append(Line2D([], [], color="#333333", linestyle=st["linestyle"],
                                      marker=st["marker"]))
            else:
                handles.append(Patch(facecolor="white", edgecolor="#333333",
                                     hatch=pl.hatch(v)))
            labels.append(texts.get(v, v))
        title = "colour = run (kernel on host); " + (
            "line style" if kind == "line" else "hatch") + f" = {title}" if kind else \
            "colour = run (kernel on host)"
    elif kind:
        for ax in axes:
            h, l = ax.get_legend_handles_labels()
            for hh, ll in zip(h, l):
                if texts.get(ll, ll) not in labels:
                    handles.append(hh)
                    labels.append(texts.get(ll, ll))
    for h in extra:
        handles.append(h)
        labels.append(h.get_label())
    if handles:
        fig.legend(handles, labels, title=title if (kind or pl.overlay) else None,
                   loc="outside lower center", ncol=min(ncol, len(handles)), frameon=False)


def horizontal_bars(ax, pl, vs, series, stacked):
    """One row per variant (one bar per run in overlays). series[(ri, v)] = (total, sys or
    None, min, max), or None for an unknown value, drawn as a hatched strip saying so."""
    from matplotlib.transforms import blended_transform_factory

    nr = len(pl.exps)
    h = 0.8 / nr
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    yt = []
    tops = [s[3] for s in series.values() if s]
    top = max(tops) if tops else 1.0
    for vi, v in enumerate(vs):
        yt.append(vi)
        for ri in range(nr):
            if (ri, v) not in series:
                continue
            y = vi - 0.4 + h * (ri + 0.5)
            st = pl.style(ri, v)
            s = series[(ri, v)]
            lab = pl.series_label(ri, v)
            if s is None:
                # Unknown: a faint hatched strip across the panel, saying so; no value.
                r = ax.barh([y], [0.99], height=h * 0.9, left=0.005, facecolor="none",
                            edgecolor=st["color"], alpha=0.45, hatch="xx", linewidth=0.6,
                            label=lab)
                tag(r, pl.gid(ri, v))
                for patch in r.patches:
                    patch.set_transform(trans)
                ax.text(0.5, y, "unknown", transform=trans, ha="center", va="center",
                        fontsize=8.5, color="#333333",
                        bbox=dict(facecolor="white", edgecolor="none", pad=1.0))
                continue
            total, sys_, lo, hi = s
            if stacked:
                r = ax.barh([y], [sys_], height=h * 0.9, color=st["color"], edgecolor="#333333",
                            linewidth=0.5, label=lab)
                tag(r, pl.gid(ri, v))
                ax.barh([y], [max(0.0, total - sys_)], left=[sys_], height=h * 0.9,
                             color=st["color"], alpha=0.35, hatch="///", edgecolor="#333333",
                             linewidth=0.5, label="_user")
            else:
                r = ax.barh([y], [total], height=h * 0.9, color=st["color"], edgecolor="#333333",
                            linewidth=0.5, label=lab)
                tag(r, pl.gid(ri, v))
            if hi > lo:
                spread(ax.errorbar([total], [y], xerr=[[total - lo], [hi - total]], fmt="none",
                                   ecolor="#222222", elinewidth=0.9, capsize=2))
            ax.text(hi + top * 0.02, y, f"{total:.3g}", va="center", ha="left", fontsize=7.5)
    ax.set_yticks(yt)
    ax.set_yticklabels(vs)
    ax.set_ylim(len(vs) - 0.5, -0.5)
    ax.set_xlim(0, top * 1.22 if top > 0 else 1.0)
    ax.grid(True, axis="x")
    ax.grid(False, axis="y")


def vertical_bars(ax, pl, groups, vals, fmt):
    """Groups on x (parameter points), one bar per (run, variant) present. vals[(ri, v, g)] =
    list of values (median drawn, min-max bar) or None (unknown: hatched, labelled)."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transData, ax.transAxes)
    series = []
    for ri in range(len(pl.exps)):
        for v in pl.variants:
            if any((ri, v, g) in vals for g in groups):
                series.append((ri, v))
    w = 0.8 / max(1, len(series))
    pl.hatch_order = [v for v in pl.variants if any(s[1] == v for s in series)]
    used = set()
    for si, (ri, v) in enumerate(series):
        st = pl.style(ri, v)
        lab = pl.series_label(ri, v)
        present = [g for g in groups if (ri, v, g) in vals]
        # The legend entry goes with a real bar when the series has one.
        first = next((g for g in present if vals[(ri, v, g)] is not None), present[0])
        for gi, g in enumerate(groups):
            if (ri, v, g) not in vals:
                continue
            used.add((ri, v))
            x = gi - 0.4 + w * (si + 0.5)
            l = vals[(ri, v, g)]
            label = lab if g == first else "_" + lab
            if l is None:
                # Unknown: a faint hatched column over the whole height, saying so; no value.
                r = ax.bar([x], [1.0], width=w * 0.9, bottom=0, facecolor="none",
                           edgecolor=st["color"], alpha=0.45, hatch="xx", linewidth=0.6,
                           label=label)
                for patch in r.patches:
                    patch.set_transform(trans)
                ax.text(x, 0.5, "unknown", transform=trans, rotation=90, ha="center",
                        va="center", fontsize=8.5,
                        bbox=dict(facecolor="white", edgecolor="none", pad=1.0))
            else:
                med = statistics.median(l)
                r = ax.bar([x], [med], width=w * 0.9, color=st["color"], edgecolor="#333333",
                           linewidth=0.5, label=label, hatch=pl.hatch(v))
                if max(l) > min(l):
                    spread(ax.errorbar([x], [med], yerr=[[med - min(l)], [max(l) - med]],
                                       fmt="none", ecolor="#222222", elinewidth=0.9, capsize=2))
                ax.annotate(fmt(med), (x, max(l)), textcoords="offset points", xytext=(0, 2),
                            ha="center", va="bottom", fontsize=7.5)
            tag(r, pl.gid(ri, v))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20 if len(groups) > 3 else 0, ha="right" if
                       len(groups) > 3 else "center")
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(False, axis="x")
    return used


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def clean_previous(out_dir):
    """Removes the figures a previous index.json in out_dir listed (only those)."""
    p = os.path.join(out_dir, "index.json")
    try:
        old = json.loads(read_input(p, INDEX_LIMIT))
    except (Problem, ValueError, RecursionError):
        return  # nothing known to remove; write_index replaces it
    for fig in old.get("figures", []) if isinstance(old, dict) else []:
        for k in ("file", "svg"):
            name = fig.get(k) if isinstance(fig, dict) else None
            if isinstance(name, str) and name == os.path.basename(name) and name:
                try:
                    os.unlink(os.path.join(out_dir, name))
                except OSError:
                    pass


def remove_figures(out_dir, figures):
    """Removes the files of `figures` (and any temporary index) from out_dir."""
    names = [f.get(k) for f in figures for k in ("file", "svg")]
    names.append(f".index.json.tmp-{os.getpid()}")
    for name in names:
        if isinstance(name, str) and name and name == os.path.basename(name):
            try:
                os.unlink(os.path.join(out_dir, name))
            except OSError:
                pass


def write_index(out_dir, pl):
    runs = []
    for e in pl.exps:
        r = e.run
        runs.append({"dir": os.path.abspath(r.path), "experiment_dir": os.path.abspath(e.dir),
                     "label": r.label, "host": r.host, "kernel": r.kernel,
                     "started_utc": r.started, "status": e.meta.get("status")})
    skipped = []
    for ri, e in enumerate(pl.exps):
        for v in e.variants_meta():
            if v.get("status") in ("skipped", "unavailable", "failed"):
                skipped.append({"run": ri, "variant": v.get("name"), "status": v.get("status"),
                                "reason": v.get("reason")})
    idx = {"generator": "scripts/plot.py", "experiment": pl.name, "runs": runs,
           "variants": pl.variants, "points": pl.points, "figures": pl.figures,
           "variants_not_run": skipped,
           "problems": [str(p) for p in pl.problems], "notes": pl.notes}
    text = json.dumps(idx, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    p = os.path.join(out_dir, "index.json")
    tmp = os.path.join(out_dir, f".index.json.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)
    except OSError as e:
        raise Problem(p, f"cannot write: {e.strerror or e}") from None


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, description="Plot zclab run directories (latency percentiles, throughput, "
        "CPU and syscalls per MiB, zero-copy copied share) as PNG (+ SVG with --svg) with an "
        "index.json.",
        epilog="Output: <RUN_DIR>/<experiment>/plots/ for one run, DIR/<experiment>/ with "
        "--out. Exit 0 all plotted, 1 problems (each named on stderr; the rest is still "
        "plotted) or nothing to plot, 2 usage, 130 interrupted.")
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR",
                    help="run directory results/<host>-<kernel>-<UTC>/ (or one experiment "
                    "directory inside it); several are overlaid")
    ap.add_argument("--out", metavar="DIR", help="write DIR/<experiment>/ (required with "
                    "several runs)")
    ap.add_argument("--experiments", metavar="A,B", help="only these experiments")
    ap.add_argument("--figures", metavar="KINDS", help="only these kinds of figure, "
                    f"comma-separated, from: {','.join(FIGURE_KINDS)} (default: all)")
    ap.add_argument("--svg", action="store_true", help="also write each figure as SVG "
                    "(default: PNG only)")
    ap.add_argument("--jobs", metavar="N", type=int, default=None, help="draw with N "
                    "processes (default: one per CPU this process may use)")
    ap.add_argument("--quiet", action="store_true", help="print only problems")
    a = ap.parse_args(argv)
    if len(a.runs) > 1 and not a.out:
        ap.error("--out DIR is required when overlaying several run directories")
    if a.jobs is None:
        a.jobs = cpus()
    elif a.jobs < 1:
        ap.error("--jobs needs a number >= 1")
    a.wanted = [x for x in (a.experiments or "").split(",") if x.strip()]
    if a.experiments is not None and not a.wanted:
        ap.error("--experiments needs at least one name")
    a.kinds = FIGURE_KINDS
    if a.figures is not None:
        a.kinds = tuple(x.strip() for x in a.figures.split(",") if x.strip())
        bad = [k for k in a.kinds if k not in FIGURE_KINDS]
        if bad or not a.kinds:
            ap.error(f"--figures: unknown kind {', '.join(bad) or '(none)'}; "
                     f"known: {', '.join(FIGURE_KINDS)}")
    return a


def cpus():
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# The plotters of this invocation: forked workers inherit them, so a task is two small ints.
_PLOTTERS = []


def _draw_task(pi, task):
    return _PLOTTERS[pi].draw(task)


def draw_tasks(plotters, jobs, workers):
    """Runs every (plotter index, task) of `jobs`; returns {job: draw() result}. With more than
    one worker they are spread over forked processes, the costliest started first; the
    results are keyed, so the output does not depend on which process drew what."""
    results = {}
    if workers <= 1 or len(jobs) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for pi, task in jobs:
            results[(pi, task)] = plotters[pi].draw(task)
        return results
    from concurrent.futures import ProcessPoolExecutor

    global _PLOTTERS
    _PLOTTERS = plotters
    order = sorted(jobs, key=lambda j: -plotters[j[0]].cost(j[1]))  # stable: ties keep order
    ex = ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("fork"))
    try:
        futures = [(j, ex.submit(_draw_task, *j)) for j in order]
        for j, f in futures:
            try:
                results[j] = f.result()
            except Exception as e:  # a worker died (killed, out of memory) or a pickling bug
                if os.environ.get("ZCLAB_PLOT_DEBUG"):
                    raise
                pi, (name, args) = j
                what = name + (f" at {args[0]}" if args else "")
                results[j] = ([], [(plotters[pi].exps[0].dir,
                                    internal_error(e, f"drawing {what}"))], [])
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown()
    _PLOTTERS = []
    return results


def run(argv):
    a = parse_args(argv)
    setup_matplotlib()
    problems = []
    runs = []
    for path in a.runs:
        try:
            runs.append(open_run(path, set(a.wanted), problems))
        except Problem as p:
            problems.append(p)
    label_runs(runs)
    names = []
    for r in runs:
        for n in r.experiments:
            if n not in names:
                names.append(n)
    for w in a.wanted:
        if w not in names and not any(
                os.path.isdir(os.path.join(r.path, w)) for r in runs):
            problems.append(Problem(", ".join(a.runs), f"no experiment '{w}' here"))
    plotters, jobs = [], []
    for name in names:
        exps = [r.experiments[name] for r in runs if name in r.experiments]
        out = os.path.join(a.out, name) if a.out else os.path.join(exps[0].dir, "plots")
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            problems.append(Problem(out, f"cannot create: {e.strerror or e}"))
            continue
        clean_previous(out)
        pl = Plotter(name, exps, out, svg=a.svg)
        pl.task_list = pl.tasks(a.kinds)
        jobs += [(len(plotters), t) for t in pl.task_list]
        plotters.append(pl)
    results = draw_tasks(plotters, jobs, a.jobs)
    total = 0
    for pi, pl in enumerate(plotters):
        pl.figures, pl.problems, pl.notes = [], [], []
        for t in pl.task_list:
            f, p, n = results[(pi, t)]
            pl.figures += f
            pl.problems += [Problem(w, x) for w, x in p]
            pl.notes += n
        try:
            write_index(pl.out, pl)
        except Problem as p:
            # Figures no index lists would be orphans (the report links what index.json lists,
            # the next run removes what it listed): remove them.
            pl.problems.append(p)
            remove_figures(pl.out, pl.figures)
            pl.figures = []
        problems.extend(pl.problems)
        for n in pl.notes:
            say("warning", n)
        total += len(pl.figures)
        if not a.quiet:
            print(f"{pl.name}: {len(pl.figures)} figures in {pl.out}")
    for p in problems:
        say("error", str(p))
    if total == 0 and not problems:
        say("error", "nothing to plot in " + ", ".join(a.runs))
        return 1
    return 1 if problems else 0


def main(argv=None):
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except Usage as u:
        say("error", str(u))
        return 2
    except KeyboardInterrupt:
        say("error", "interrupted")
        return 130
    except Exception as e:  # never a traceback for the user; one line that says what broke
        if os.environ.get("ZCLAB_PLOT_DEBUG"):
            raise
        say("error", f"internal error ({type(e).__name__}: {e}); rerun with "
            "ZCLAB_PLOT_DEBUG=1 for a traceback")
        return 1


if __name__ == "__main__":
    sys.exit(main())
