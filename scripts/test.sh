#!/usr/bin/env bash
# Runs the whole test suite: every package, SQLite always, PostgreSQL too.
# PostgreSQL: uses $MELONSYNC_TEST_POSTGRES, or a local server on 127.0.0.1:5432
# (started if it is installed but stopped; database melonsync_test created if missing).
# Then the concurrent packages under the race detector (MELONSYNC_RACE=0 skips) and
# every fuzz target for MELONSYNC_FUZZ_SECONDS (default 5; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${MELONSYNC_TEST_POSTGRES:-}" ]; then
  if command -v pg_isready >/dev/null 2>&1; then
    if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && command -v pg_ctlcluster >/dev/null 2>&1; then
      for v in $(ls /etc/postgresql 2>/dev/null); do
        pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
      done
      for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && break; sleep 1; done
    fi
    if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
      psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'melonsync_test'" | grep -q 1 ||
        psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE melonsync_test"
      export MELONSYNC_TEST_POSTGRES="postgres://postgres@127.0.0.1:5432/melonsync_test?sslmode=disable"
    fi
  fi
fi
if [ -n "${MELONSYNC_TEST_POSTGRES:-}" ]; then
  echo "PostgreSQL tests: on"
else
  echo "PostgreSQL tests: off (no server found; set MELONSYNC_TEST_POSTGRES)"
fi

# Chromium for the browser tests (apt-get when missing; they skip only when it
# cannot be had).
bash scripts/setup-browser.sh || echo "chromium could not be installed: the browser tests will skip" >&2

go vet ./...
go test -count=1 -timeout 25m "$@" ./...

# The concurrent code again under the race detector (the long system tests skip in
# -short mode; they ran above).
if [ "${MELONSYNC_RACE:-1}" != 0 ]; then
  go test -race -short -count=1 -timeout 15m ./server/... ./sqlite ./postgres ./http ./transport ./client ./cmd/...
fi

# A short fuzzing pass over every fuzz target (longer: bash scripts/fuzz.sh 300).
fuzz_secs="${MELONSYNC_FUZZ_SECONDS:-5}"
if [ "$fuzz_secs" != 0 ]; then
  bash scripts/fuzz.sh "$fuzz_secs"
fi
