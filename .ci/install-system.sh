#!/usr/bin/env bash
# System packages the test suite uses on a fresh machine (root, Debian): a headless browser for the UI test.
# Postgres binaries and helm come from .ci/install-services.sh, which .ci/run calls once the venv exists.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

# --- datatrove reference environment (issue 16; owned by the text rules, separate from the blocks above) ---
# datatrove 0.10.1 + spaCy in benchmarks/.venv-datatrove, and the trafilatura sdist's test pages in
# benchmarks/.cache, for tests/reference/test_datatrove_agreement.py (and benchmarks/text_stage.py).
# Pinned in benchmarks/datatrove_env.py; idempotent; needs no root.
python3 benchmarks/datatrove_env.py
