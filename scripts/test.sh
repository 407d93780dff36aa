#!/usr/bin/env bash
# Every test: set up, build, run the Rust tests (unit and integration, which run each
# experiment's variants on tiny inputs) and the plotting tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
cargo test --release
if [[ -d scripts/tests ]]; then
  py=$(bash scripts/pyenv.sh)
  "$py" -m pytest -q scripts/tests
fi
