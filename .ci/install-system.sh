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
