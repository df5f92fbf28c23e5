#!/usr/bin/env bash
# scripts/test.sh — the project's test command (`make test`):
#   1. go vet
#   2. start the real services integration tests need (scripts/testenv.sh:
#      PostgreSQL, FerretDB + official mongo tools, RabbitMQ, an S3 server;
#      installs apt packages and builds Go tools into .cache/ on first use)
#   3. go test -race over every package, integration tests included
#   4. stop the services it started.
# Under CI=true a missing service fails its tests; locally they skip.
# PLANRUN_TEST_SERVICES=0 runs without services (unit tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

go vet ./...

started=0
stop_services() { [ "$started" = 1 ] && scripts/testenv.sh stop || true; }
trap stop_services EXIT
if [ "${PLANRUN_TEST_SERVICES:-1}" = 1 ]; then
  if scripts/testenv.sh status >/dev/null 2>&1; then
    echo "test: reusing running test services" >&2
  elif [ "$(id -u)" = 0 ]; then
    echo "test: starting test services (first run installs and builds them; a few minutes)" >&2
    scripts/testenv.sh start >/dev/null
    started=1
  else
    echo "test: not root: cannot install/start the test services; integration tests will skip (CI=true makes them fail)" >&2
  fi
  if scripts/testenv.sh status >/dev/null 2>&1; then
    eval "$(scripts/testenv.sh env)"
  fi
fi

go test -race -count=1 -timeout 20m ./...
