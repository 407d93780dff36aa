"""Tests of scripts/plot.py on real runs of the file_to_socket binary, made at test time.

    PY=$(scripts/pyenv.sh) && "$PY" -m pytest scripts/tests

The binary is built with cargo when target/release/file_to_socket is missing.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLOT = REPO / "scripts" / "plot.py"
PYENV = REPO / "scripts" / "pyenv.sh"
BIN = REPO / "target" / "release" / "file_to_socket"
EXP = "file_to_socket"
POINTS = ["path=tcp-loopback,size=64KiB,chunk=4KiB", "path=tcp-loopback,size=1MiB,chunk=4KiB"]
ZC = "uring-send-zc-fixed"
# Every zero-copy variant of file_to_socket: each has release-latency and copied figures.
ZCS = ["uring-send-zc-fixed", "uring-send-zc-mmap"]


def plot(*args, timeout=300):
    return subprocess.run([sys.executable, str(PLOT), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def make_run(results):
    r = subprocess.run([str(BIN), "--paths", "tcp-loopback", "--sizes", "64KiB,1MiB", "--chunks", "4KiB", "--repeat", "2",
                        "--warmup", "0", "--quiet", "--results", str(results)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"file_to_socket failed ({r.returncode}): {r.stderr}"
    runs = sorted(p for p in results.iterdir() if p.is_dir())
    assert runs, "file_to_socket made no run directory"
    return runs[-1]


@pytest.fixture(scope="session")
def binary():
    if not BIN.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", EXP], cwd=REPO, check=True,
                       timeout=1800)
    assert BIN.exists()
    return BIN


@pytest.fixture(scope="session")
def runs(binary, tmp_path_factory):
    """Two real run directories (pristine: tests copy them before changing anything)."""
    base = tmp_path_factory.mktemp("results")
    a = make_run(base / "a")
    b = make_run(base / "b")
    return a, b


@pytest.fixture(scope="session")
def ran(runs):
    """Variants that ran in run A, from its meta.json, and the rows of its summary."""
    d = runs[0] / EXP
    meta = json.loads((d / "meta.json").read_text())
    names = [v["name"] for v in meta["variants"] if v["status"] == "ran"]
    rows = [json.loads(l) for l in (d / "summary.jsonl").read_text().splitlines() if l.strip()]
    assert names, "no variant ran"
    # Every variant that ran has an ok row at every point: the figures must show all of them.
    for v in names:
        for p in POINTS:
            assert any(r["variant"] == v and r["point"] == p and r["status"] == "ok"
                       for r in rows), f"{v} has no ok row at {p}"
    if os.environ.get("CI") and ZC not in names:
        pytest.fail(f"{ZC} did not run on this kernel in CI: {meta['variants']}")
    return names, meta


@pytest.fixture(scope="session")
def single(runs, tmp_path_factory):
    """Run A copied and plotted into its default place."""
    run = tmp_path_factory.mktemp("single") / runs[0].name
    shutil.copytree(runs[0], run)
    r = plot(run, "--svg")
    return run, r


def check_png(path):
    data = path.read_bytes()
    assert len(data) > 1000, f"{path} is tiny ({len(data)} bytes)"
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        chunks.append(kind)
        pos += 12 + n
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks, chunks
    w, h = struct.unpack(">II", data[16:24])
    assert 600 <= w <= 4000 and 300 <= h <= 4000, f"{path}: odd size {w}x{h}"


def load_index(d):
    idx = json.loads((d / "index.json").read_text())
    return idx, {f["file"]: f for f in idx["figures"]}


def test_single_run_figures(single, ran):
    run, r = single
    names, meta = ran
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    out = run / EXP / "plots"
    idx, figs = load_index(out)
    expected = [f"latency@{p}.png" for p in POINTS] + \
        ["throughput.png", "cpu_per_mib.png", "syscalls_per_mib.png"]
    if ZC in names:
        expected += [f"latency.release@{p}.png" for p in POINTS] + ["zc_copied.png"]
    assert sorted(figs) == sorted(expected)
    for name, f in figs.items():
        check_png(out / name)
        svg = (out / f["svg"]).read_text()
        assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>"), f["svg"]
        # Titles name the experiment, host and kernel.
        for word in (EXP, meta["kernel"], meta["host"]):
            assert word in f["title"], (word, f["title"])
        assert f"<!-- {EXP}: " in svg, name  # the title is drawn, not only listed
        # Every curve is a real artist of the axes, labelled and tagged with its variant.
        for c in f["curves"]:
            assert c["run"] == 0 and c["label"].startswith(c["variant"]), c
    for p in POINTS:
        f = figs[f"latency@{p}.png"]
        # Every variant's curve is in every latency figure, taken from the axes after drawing.
        assert sorted(c["variant"] for c in f["curves"]) == sorted(names), (p, f["curves"])
        assert f["point"] == p and f["histogram"] == "step"
        assert f["unit"] in ("ns", "µs", "ms")
    for k in ("throughput.png", "cpu_per_mib.png", "syscalls_per_mib.png"):
        assert sorted(figs[k]["variants"]) == sorted(names), (k, figs[k]["variants"])
    if ZC in names:
        zcs = sorted(v for v in ZCS if v in names)
        assert sorted(figs["zc_copied.png"]["variants"]) == zcs
        for p in POINTS:
            assert sorted(figs[f"latency.release@{p}.png"]["variants"]) == zcs
    else:
        assert ZC in json.dumps(idx["variants_not_run"])
    assert figs["throughput.png"]["x"] == "size"
    assert idx["problems"] == [] and idx["runs"][0]["kernel"] == meta["kernel"]


def test_rerun_is_deterministic_and_replaces(single, tmp_path):
    run, _ = single
    out = run / EXP / "plots"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / f"latency@{POINTS[0]}.png").write_bytes(b"stale")
    r = plot(run, "--quiet", "--svg")
    assert r.returncode == 0 and r.stdout == "", r.stderr + r.stdout
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before)
    for name in before:
        assert after[name] == before[name], f"{name} differs between two identical runs"


def test_overlay_two_runs(runs, ran, tmp_path):
    names, _ = ran
    out = tmp_path / "cmp"
    r = plot(runs[0], runs[1], "--out", out)
    assert r.returncode == 0, r.stderr
    d = out / EXP
    idx, figs = load_index(d)
    labels = [x["label"] for x in idx["runs"]]
    assert len(labels) == 2 and labels[0] != labels[1], labels
    for p in POINTS:
        f = figs[f"latency@{p}.png"]
        check_png(d / f["file"])
        for ri, lab in enumerate(labels):
            got = sorted(c["variant"] for c in f["curves"] if c["run"] == ri)
            assert got == sorted(names), (p, ri, got)
            # Each curve's label names its run.
            assert all(lab in c["label"] for c in f["curves"] if c["run"] == ri)
    for k in ("throughput.png", "cpu_per_mib.png", "syscalls_per_mib.png"):
        assert figs[k]["runs"] == [0, 1], (k, figs[k]["runs"])
    assert not (runs[0] / EXP / "plots").exists(), "overlay wrote into the input run"


def test_overlay_needs_out(runs):
    r = plot(runs[0], runs[1])
    assert r.returncode == 2 and "--out" in r.stderr and "Traceback" not in r.stderr


def test_unknown_syscalls_are_not_zero(runs, ran, tmp_path):
    names, _ = ran
    run = tmp_path / "unk"
    shutil.copytree(runs[0], run)
    s = run / EXP / "summary.jsonl"
    rows = [json.loads(l) for l in s.read_text().splitlines() if l.strip()]
    victim = names[0]
    for row in rows:
        if row["variant"] == victim and row["metrics"]:
            row["metrics"]["syscalls"] = "unknown"
            row["metrics"]["syscalls_per_mib"] = None
    s.write_text("".join(json.dumps(x) + "\n" for x in rows))
    r = plot(run, "--out", tmp_path / "o", "--quiet", "--figures", "syscalls", "--svg")
    assert r.returncode == 0, r.stderr
    _, figs = load_index(tmp_path / "o" / EXP)
    assert list(figs) == ["syscalls_per_mib.png"]
    f = figs["syscalls_per_mib.png"]
    assert sorted({(u["variant"], u["point"]) for u in f["unknown"]}) == \
        sorted((victim, p) for p in POINTS)
    assert victim in f["variants"]  # drawn (as unknown), not dropped
    svg = (tmp_path / "o" / EXP / f["svg"]).read_text()
    assert svg.count("<!-- unknown -->") == len(POINTS), "each unknown bar says so"


def bad_copy(runs, tmp_path, name):
    run = tmp_path / name
    shutil.copytree(runs[0], run)
    return run, run / EXP


def corrupt_missing_hgrm(d):
    victim = sorted(d.glob("classic-sendfile@path=tcp-loopback,size=1MiB*.hgrm"))[0]
    victim.unlink()
    return victim.name, "missing"


def rewritten(name, text, where, what):
    """A corruption that replaces file `name` with `text`; plot.py must name `where` and say `what`."""
    def corrupt(d):
        (d / name).write_text(text)
        return where, what
    return corrupt


corrupt_empty_summary = rewritten("summary.jsonl", "", "summary.jsonl", "empty")


def corrupt_garbage_line(d):
    s = d / "summary.jsonl"
    lines = s.read_text().splitlines(keepends=True)
    lines[2] = "this is not json {\n"
    s.write_text("".join(lines))
    return "summary.jsonl:3", "not a JSON row"


def corrupt_truncated_summary(d):
    s = d / "summary.jsonl"
    t = s.read_text()
    s.write_text(t[:len(t) - 200])
    return "summary.jsonl:", "truncated last line"


def corrupt_truncated_hgrm(d):
    h = sorted(d.glob("uring-splice@path=tcp-loopback,size=64KiB*.hgrm"))[0]
    t = h.read_text()
    h.write_text(t[:len(t) // 2])
    return h.name, "truncated"


corrupt_meta = rewritten("meta.json", '{"experiment": ', "meta.json", "not valid JSON")


def corrupt_wrong_type(d):
    s = d / "summary.jsonl"
    rows = [json.loads(l) for l in s.read_text().splitlines() if l.strip()]
    rows[1]["metrics"]["gbps"] = "fast"
    s.write_text("".join(json.dumps(x) + "\n" for x in rows))
    return "summary.jsonl:2", "'gbps' has the wrong type"


@pytest.mark.parametrize("corrupt", [
    corrupt_missing_hgrm, corrupt_empty_summary, corrupt_garbage_line,
    corrupt_truncated_summary, corrupt_truncated_hgrm, corrupt_meta, corrupt_wrong_type,
])
def test_bad_input_is_one_clear_line(runs, ran, tmp_path, corrupt):
    run, d = bad_copy(runs, tmp_path, corrupt.__name__)
    fname, words = corrupt(d)
    r = plot(run, "--quiet", "--figures", "latency")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("plot.py: error: ") and fname in lines[0] and words in lines[0], \
        lines[0]
    if corrupt is corrupt_missing_hgrm:
        # Only the figure that needs the file is skipped, never drawn with a curve missing.
        idx, figs = load_index(d / "plots")
        expected = {f"latency@{POINTS[0]}.png"}
        if ZC in ran[0]:
            expected |= {f"latency.release@{p}.png" for p in POINTS}
        assert set(figs) == expected, sorted(figs)
        assert not (d / "plots" / f"latency@{POINTS[1]}.png").exists()
        assert len(idx["problems"]) == 1 and "missing" in idx["problems"][0]


@pytest.mark.parametrize("what", ["not-a-run", "missing", "file", "unknown-experiment"])
def test_not_a_run(runs, tmp_path, what):
    if what == "not-a-run":
        p = tmp_path / "notrun"
        (p / "sub").mkdir(parents=True)
        (p / "sub" / "x.txt").write_text("hello")
        args, words = [p], "not a run directory"
    elif what == "missing":
        args, words = [tmp_path / "nope"], "does not exist"
    elif what == "file":
        p = tmp_path / "f.txt"
        p.write_text("x")
        args, words = [p], "not a directory"
    else:
        run, _ = bad_copy(runs, tmp_path, "x")
        args, words = [run, "--experiments", "no_such"], "no experiment 'no_such'"
    r = plot(*args)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert words in r.stderr and str(args[0]) in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_pyenv_fast_path():
    t = time.monotonic()
    r = subprocess.run(["bash", str(PYENV)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    py = r.stdout.strip()
    assert os.path.samefile(py, REPO / ".venv" / "bin" / "python") or os.environ.get(
        "ZCLAB_VENV"), py
    t = time.monotonic()
    r2 = subprocess.run(["bash", str(PYENV)], capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0 and r2.stdout == r.stdout and r2.stderr == ""
    assert time.monotonic() - t < 5, "pyenv.sh is slow when the venv is ready"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run pyenv.sh as an unprivileged user")
def test_pyenv_without_venv_module_as_user():
    """A python lacking venv/ensurepip, an unprivileged user: the exact command, exit 1."""
    d = Path(tempfile.mkdtemp(prefix="zclab-pyenv-"))
    try:
        os.chmod(d, 0o755)
        (d / "scripts").mkdir()
        shutil.copy(PYENV, d / "scripts" / "pyenv.sh")
        shutil.copy(REPO / "scripts" / "requirements.txt", d / "scripts" / "requirements.txt")
        fake = d / "python3"
        fake.write_text("#!/bin/sh\ncase \"$*\" in *ensurepip*) exit 1;; esac\n"
                        "exec /usr/bin/python3 \"$@\"\n")
        for p in (fake, d / "scripts" / "pyenv.sh"):
            os.chmod(p, 0o755)
        os.chmod(d / "scripts", 0o755)
        env = {"PATH": "/usr/bin:/bin", "ZCLAB_PYTHON": str(fake), "HOME": "/nonexistent",
               "TMPDIR": str(d)}
        os.chmod(d, 0o777)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "bash", str(d / "scripts" / "pyenv.sh")], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert r.stdout == ""
        assert "apt-get update && apt-get install -y python3-venv" in r.stderr, r.stderr
        assert not (d / ".venv").exists()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def synth_experiment(root, name, points, variants, bytes_moved, hgrm_text):
    """An experiment directory in the lab's format, for shapes file_to_socket does not have.
    points: [(label, params)]."""
    d = root / name
    d.mkdir(parents=True)
    rows = []
    for v in variants:
        for label, params in points:
            h = f"{v}@{label}.hgrm"
            (d / h).write_text(hgrm_text)
            for rep in range(2):
                m = {"bytes": bytes_moved, "ops": 1000, "wall_ns": 1_000_000 + rep,
                     "gbps": bytes_moved / 1e6, "ops_per_s": 1e6 - 1000 * rep,
                     "user_ns": 1000, "sys_ns": 4000 + rep, "sqpoll_ns": None,
                     "peer_user_ns": None, "peer_sys_ns": None,
                     "cpu_ns_per_mib": 0.0, "sys_ns_per_mib": 0.0, "syscalls": 1000,
                     "syscalls_per_mib": None, "vcsw": 0, "ivcsw": 0, "minflt": 0,
                     "majflt": 0, "latency": {"step": "one thing", "count": 10},
                     "extra_latency": {}, "zc": None, "extra": {}}
                rows.append({"experiment": name, "variant": v, "point": label,
                             "params": params, "repeat": rep, "status": "ok", "error": None,
                             "metrics": m, "integrity": {"ok": True}, "histograms":
                             {"step": h}})
    (d / "summary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = {"experiment": name, "host": "synth", "kernel": "9.9.9", "status": "complete",
            "started_utc": "2000-01-01T00:00:00Z", "points": [p for p, _ in points],
            "variants": [{"name": v, "status": "ran", "reason": None} for v in variants]}
    (d / "meta.json").write_text(json.dumps(meta))
    return d


def test_other_shapes_of_experiment(runs, tmp_path):
    """Nothing is specific to file_to_socket: an int sweep with a text parameter, and an
    experiment that moves no bytes with only a text parameter (bars, per operation)."""
    hgrm = next((runs[0] / EXP).glob("*.hgrm")).read_text()
    run = tmp_path / "synth-run"
    pts = [(f"depth={n},mode={m}", {"depth": n, "mode": m}) for m in ("poll", "irq")
           for n in (1, 2, 4, 8, 16)]
    synth_experiment(run, "queue_depth", pts, ["a", "b"], 4096, hgrm)
    synth_experiment(run, "syscall_floor", [("call=getppid", {"call": "getppid"}),
                                            ("call=nop", {"call": "nop"})], ["x", "y"], 0,
                     hgrm)
    r = plot(run, "--figures", "throughput,cpu,syscalls", "--quiet")
    assert r.returncode == 0, r.stderr
    _, figs = load_index(run / "queue_depth" / "plots")
    f = figs["throughput.png"]
    assert f["x"] == "depth" and f["panels"] == ["mode=poll", "mode=irq"], f
    assert f["variants"] == ["a", "b"] and "cpu_per_mib.png" in figs
    # syscalls_per_mib is null in these rows: unknown, not zero.
    assert len(figs["syscalls_per_mib.png"]["unknown"]) == 2 * len(pts)
    _, figs = load_index(run / "syscall_floor" / "plots")
    assert sorted(figs) == ["cpu_per_op.png", "syscalls_per_op.png", "throughput.png"]
    assert figs["throughput.png"]["metric"] == "ops_per_s" and figs["throughput.png"]["x"] is None
    assert figs["syscalls_per_op.png"]["unknown"] == []
    for name in figs:
        check_png(run / "syscall_floor" / "plots" / name)


def test_flows_fairness_and_loss_causes(runs, tmp_path):
    """A flow sweep is drawn against flows, with a fairness figure; packet_io-like rows with
    loss counters get the stacked loss figure, whose unexplained part is hatched apart."""
    hgrm = next((runs[0] / EXP).glob("*.hgrm")).read_text()
    run = tmp_path / "synth-run"
    pts = [(f"size={s},flows={f},threads=1", {"size": s, "flows": f, "threads": 1})
           for s in (4096, 65536) for f in (1, 2, 4)]
    d = synth_experiment(run, "net_send", pts, ["a", "b"], 1 << 20, hgrm)
    pio = synth_experiment(run, "packet_io", [("frame=64,batch=64", {"frame": 64, "batch": 64})],
                           ["rx"], 1 << 20, hgrm)

    def extras(path, f):
        rows = [json.loads(l) for l in (path / "summary.jsonl").read_text().splitlines()]
        for r in rows:
            r["metrics"]["extra"] = f(r)
        (path / "summary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    extras(d, lambda r: {"flows": r["params"]["flows"], "jain_fairness": 0.9})
    extras(pio, lambda r: {"offered": 1000, "lost": 100, "xdp_rx_ring_full": 60})
    r = plot(run, "--figures", "throughput,fairness,loss", "--quiet")
    assert r.returncode == 0, r.stderr
    _, figs = load_index(run / "net_send" / "plots")
    assert figs["throughput.png"]["x"] == "flows", figs["throughput.png"]
    assert "fairness.png" in figs and "loss.png" not in figs
    _, figs = load_index(run / "packet_io" / "plots")
    assert figs["loss.png"]["variants"] == ["rx"], figs
    check_png(run / "packet_io" / "plots" / "loss.png")
    assert "fairness.png" not in figs, figs


def test_png_by_default_svg_on_request(runs, tmp_path):
    r = plot(runs[0], "--out", tmp_path / "png", "--quiet", "--figures", "throughput,cpu")
    assert r.returncode == 0, r.stderr
    d = tmp_path / "png" / EXP
    assert sorted(p.name for p in d.iterdir()) == ["cpu_per_mib.png", "index.json",
                                                   "throughput.png"]
    _, figs = load_index(d)
    assert all("svg" not in f for f in figs.values()), figs
    # --svg adds them; a later run without it removes them again (the index lists them).
    r = plot(runs[0], "--out", tmp_path / "png", "--quiet", "--figures", "throughput,cpu",
             "--svg")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in d.glob("*.svg")) == ["cpu_per_mib.svg", "throughput.svg"]
    _, figs = load_index(d)
    assert all(f["svg"] == f["file"][:-4] + ".svg" for f in figs.values()), figs
    for f in figs.values():
        assert (d / f["svg"]).read_text().rstrip().endswith("</svg>")
    r = plot(runs[0], "--out", tmp_path / "png", "--quiet", "--figures", "throughput,cpu")
    assert r.returncode == 0 and not list(d.glob("*.svg")), r.stderr


def test_same_files_whatever_the_number_of_processes(runs, tmp_path):
    outs = []
    for jobs in ("1", "3"):
        out = tmp_path / f"j{jobs}"
        r = plot(runs[0], "--out", out, "--quiet", "--jobs", jobs)
        assert r.returncode == 0, r.stderr
        outs.append({p.name: p.read_bytes() for p in (out / EXP).iterdir()})
    assert sorted(outs[0]) == sorted(outs[1])
    for name in outs[0]:
        assert outs[0][name] == outs[1][name], f"{name} differs between --jobs 1 and 3"


def rewrite_rows(d, change):
    """Applies change(rows) to summary.jsonl (json.dumps writes NaN/Infinity as Python does)."""
    s = d / "summary.jsonl"
    rows = [json.loads(l) for l in s.read_text().splitlines() if l.strip()]
    change(rows)
    s.write_text("".join(json.dumps(x) + "\n" for x in rows))


def set_metric(key, value):
    def change(rows):
        rows[1]["metrics"][key] = value
    return change


def drop_param(rows):
    k = sorted(rows[3]["params"])[0]
    del rows[3]["params"][k]


# (name, how to break summary.jsonl, words of the message)
BAD_ROWS = [
    ("nan", set_metric("gbps", float("nan")), "summary.jsonl:2: metrics.gbps is nan"),
    ("inf", set_metric("cpu_ns_per_mib", float("inf")),
     "summary.jsonl:2: metrics.cpu_ns_per_mib is inf"),
    ("neg-gbps", set_metric("gbps", -1.5), "summary.jsonl:2: metrics.gbps is -1.5, expected"),
    ("neg-cpu", set_metric("sys_ns_per_mib", -3.0), "metrics.sys_ns_per_mib is -3.0"),
    ("neg-count", set_metric("bytes", -1), "summary.jsonl:2: metrics.bytes is -1"),
    ("neg-syscalls", set_metric("syscalls_per_mib", -2.0), "metrics.syscalls_per_mib is -2.0"),
    ("missing-param", drop_param, "summary.jsonl:4: params lack '"),
]


@pytest.mark.parametrize("name,change,words", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_numbers_are_refused(runs, tmp_path, name, change, words):
    run, d = bad_copy(runs, tmp_path, name)
    rewrite_rows(d, change)
    r = plot(run, "--quiet", "--figures", "throughput")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("plot.py: error: "), lines
    assert words in lines[0], lines[0]
    assert not (d / "plots" / "throughput.png").exists()


def test_huge_number_literal_is_refused(runs, tmp_path):
    """1e999 parses as infinity in Python; the lab's readers refuse it."""
    run, d = bad_copy(runs, tmp_path, "e999")
    s = d / "summary.jsonl"
    lines = s.read_text().splitlines(keepends=True)
    row = json.loads(lines[0])
    row["metrics"]["gbps"] = 12345.5
    lines[0] = json.dumps(row).replace("12345.5", "1e999") + "\n"
    s.write_text("".join(lines))
    r = plot(run, "--quiet", "--figures", "throughput")
    assert r.returncode == 1 and "summary.jsonl:1: metrics.gbps is inf" in r.stderr, r.stderr


# Special files must never hang plot.py: every call below has a timeout, so a regression
# fails the test instead of blocking the suite.
SPECIAL_TIMEOUT = 60


def special(d, kind):
    """Replaces an input of experiment dir d by something that is not a readable regular
    file; returns (file name in the message, words)."""
    if kind == "fifo-summary":
        (d / "summary.jsonl").unlink()
        os.mkfifo(d / "summary.jsonl")
        return "summary.jsonl", "not a regular file (a FIFO"
    if kind == "fifo-meta":
        (d / "meta.json").unlink()
        os.mkfifo(d / "meta.json")
        return "meta.json", "not a regular file (a FIFO"
    if kind == "fifo-hgrm":
        h = sorted(d.glob("uring-splice@path=tcp-loopback,size=64KiB*.hgrm"))[0]
        h.unlink()
        os.mkfifo(h)
        return h.name, "not a regular file (a FIFO"
    if kind == "symlink-loop":
        (d / "meta.json").unlink()
        os.symlink("meta.json", d / "meta.json")
        return "meta.json", "symbolic link to another symbolic link"
    if kind == "symlink-chain":
        (d / "summary.jsonl").rename(d / "real.jsonl")
        os.symlink("real.jsonl", d / "middle.jsonl")
        os.symlink("middle.jsonl", d / "summary.jsonl")
        return "summary.jsonl", "symbolic link to another symbolic link"
    if kind == "dev-zero":
        (d / "summary.jsonl").unlink()
        os.symlink("/dev/zero", d / "summary.jsonl")
        return "summary.jsonl", "not a regular file (a character device)"
    if kind == "oversized":
        # Sparse: 257 MiB that take no disk space, refused by size before any read.
        with open(d / "summary.jsonl", "r+b") as f:
            f.truncate(257 << 20)
        return "summary.jsonl", "too large (269484032 bytes; the limit is 256 MiB)"
    if kind == "directory":
        (d / "meta.json").unlink()
        (d / "meta.json").mkdir()
        return "meta.json", "not a regular file (a directory)"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["fifo-summary", "fifo-meta", "fifo-hgrm", "symlink-loop",
                                  "symlink-chain", "dev-zero", "oversized", "directory"])
def test_special_files_are_refused(runs, tmp_path, kind):
    run, d = bad_copy(runs, tmp_path, kind)
    fname, words = special(d, kind)
    r = plot(run, "--quiet", "--figures", "latency", timeout=SPECIAL_TIMEOUT)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("plot.py: error: "), lines
    assert fname in lines[0] and words in lines[0], lines[0]


def test_one_symlink_is_followed(runs, tmp_path):
    run, d = bad_copy(runs, tmp_path, "link")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (d / "summary.jsonl").rename(elsewhere / "summary.jsonl")
    os.symlink(elsewhere / "summary.jsonl", d / "summary.jsonl")
    h = sorted(d.glob("*.hgrm"))[0]
    h.rename(elsewhere / h.name)
    os.symlink(os.path.relpath(elsewhere / h.name, d), h)
    r = plot(run, "--quiet", "--figures", "latency,throughput", timeout=SPECIAL_TIMEOUT)
    assert r.returncode == 0 and r.stderr == "", r.stderr


@pytest.mark.parametrize("text,words", [("null", "not a JSON object (it is null)"),
                                        ("[1, 2, 3]", "not a JSON object (it is an array)"),
                                        ('"x"', "not a JSON object (it is text)"),
                                        ('{"variants": 7}', "'variants' is a number"),
                                        ('{"variants": [{"name": 1}]}', "variants[0].name"),
                                        ('{"host": NaN}', "host is nan")])
def test_meta_of_the_wrong_shape(runs, tmp_path, text, words):
    run, d = bad_copy(runs, tmp_path, "meta")
    (d / "meta.json").write_text(text)
    r = plot(run, "--quiet", "--figures", "throughput")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0], lines
    assert f"{d / 'meta.json'}: " in lines[0] and words in lines[0], lines[0]


def test_one_bad_experiment_does_not_stop_the_others(runs, tmp_path):
    """A NaN in one experiment: its figures are skipped, the others are all drawn."""
    hgrm = next((runs[0] / EXP).glob("*.hgrm")).read_text()
    run = tmp_path / "mixed"
    shutil.copytree(runs[0], run)
    pts = [(f"depth={n}", {"depth": n}) for n in (1, 2, 4)]
    synth_experiment(run, "aaa_first", pts, ["a", "b"], 4096, hgrm)
    bad = synth_experiment(run, "mmm_bad", pts, ["a", "b"], 4096, hgrm)
    synth_experiment(run, "zzz_last", pts, ["a", "b"], 4096, hgrm)
    rewrite_rows(bad, set_metric("ops_per_s", float("nan")))
    r = plot(run, "--quiet")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "mmm_bad/summary.jsonl:2: metrics.ops_per_s is nan" in lines[0], \
        lines
    assert not (bad / "plots").exists()
    for name in ("aaa_first", EXP, "zzz_last"):
        idx, figs = load_index(run / name / "plots")
        assert "throughput.png" in figs and idx["problems"] == [], (name, sorted(figs))
        for f in figs:
            check_png(run / name / "plots" / f)


def test_figures_without_an_index_are_removed(runs, tmp_path):
    """index.json cannot be written (here: a directory is in its way, as a full disk would
    refuse it): the figures drawn for that experiment are removed, not left unlisted."""
    run = tmp_path / "noindex"
    shutil.copytree(runs[0], run)
    out = run / EXP / "plots"
    (out / "index.json").mkdir(parents=True)
    r = plot(run, "--quiet")
    assert r.returncode == 1, r.stderr
    assert f"{out / 'index.json'}: cannot write" in r.stderr, r.stderr
    left = sorted(p.name for p in out.iterdir())
    assert left == ["index.json"], left
