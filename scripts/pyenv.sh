#!/usr/bin/env bash
# Creates or updates the project's Python environment and prints the path of its python.
#
#   PY=$(scripts/pyenv.sh) && "$PY" scripts/plot.py results/<run>
#
# The virtual environment lives at <repo>/.venv (git-ignored; ZCLAB_VENV overrides) and holds
# exactly the pinned packages of scripts/requirements.txt. A stamp inside it records the
# requirements' SHA-256: when it matches and the venv's python runs, nothing is done (fast
# path, no network). Otherwise (first use, requirements changed, an interrupted install, a
# base python that moved) the venv is built afresh and the pins are installed with pip,
# under a lock so that concurrent callers do not install over each other.
#
# The base interpreter is `python3` on PATH (ZCLAB_PYTHON overrides), Python >= 3.11. On
# Debian its venv/ensurepip modules come in the python3-venv package: as root this script
# installs it with apt-get; otherwise it prints the command to run and exits 1.
#
# stdout carries only the python path; progress and errors go to stderr.
# Exit: 0 ready, 1 cannot set up (the message says why and what to do).
set -euo pipefail

say() { printf 'pyenv.sh: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
req="$here/requirements.txt"
venv="${ZCLAB_VENV:-$repo/.venv}"
base="${ZCLAB_PYTHON:-python3}"
vpy="$venv/bin/python"
stamp="$venv/.zclab-requirements.sha256"

[ -f "$req" ] || die "$req: missing"
want=$(sha256sum "$req" | cut -d' ' -f1)

ready() {
    [ -x "$vpy" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        "$vpy" -c 'import sys' >/dev/null 2>&1
}

if ready; then
    printf '%s\n' "$vpy"
    exit 0
fi

# Slow path: one installer at a time per venv (the lock lives outside the repo).
if command -v flock >/dev/null 2>&1; then
    lock="${TMPDIR:-/tmp}/zclab-pyenv-$(printf '%s' "$venv" | sha256sum | cut -c1-16).lock"
    exec 9>"$lock"
    flock 9
    # Another caller may have finished the work while this one waited.
    if ready; then
        printf '%s\n' "$vpy"
        exit 0
    fi
fi

command -v "$base" >/dev/null 2>&1 ||
    die "no '$base' on PATH; install Python >= 3.11 (Debian: apt-get install python3 python3-venv)"
"$base" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' ||
    die "$("$base" --version 2>&1) is too old: the pinned packages need Python >= 3.11"

has_venv() { "$base" -c 'import venv, ensurepip' >/dev/null 2>&1; }

if ! has_venv; then
    cmd="apt-get update && apt-get install -y python3-venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "$base lacks the venv/ensurepip modules: installing python3-venv"
        apt-get update >&2 || die "apt-get update failed; run: $cmd"
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2 ||
            die "apt-get install python3-venv failed; run: $cmd"
        has_venv || die "$(command -v "$base") still lacks venv/ensurepip after installing python3-venv (not Debian's python3? set ZCLAB_PYTHON=/usr/bin/python3)"
    else
        die "$base lacks the venv/ensurepip modules; run as root: $cmd"
    fi
fi

# Not ready: start from a clean venv, so that it holds exactly the pins (a changed requirements
# file, an interrupted install or a base interpreter that moved all land here).
if [ -e "$venv" ]; then
    [ -f "$venv/pyvenv.cfg" ] || die "$venv exists but is not a virtual environment; move it away"
    say "rebuilding $venv (requirements changed, install incomplete, or its python does not run)"
    rm -rf "$venv"
fi
say "creating $venv with $("$base" --version 2>&1)"
"$base" -m venv "$venv" >&2 || die "cannot create a virtual environment at $venv"

say "installing the pinned packages of $req"
if ! "$vpy" -m pip install --disable-pip-version-check --no-input --quiet --prefer-binary \
    -r "$req" >&2; then
    die "pip could not install $req into $venv (see pip's message above); rerun when fixed"
fi
printf '%s\n' "$want" >"$stamp"
say "ready: $vpy"
printf '%s\n' "$vpy"
