#!/usr/bin/env bash
# Installs the pinned packages of the browser test (npm ci: WatermelonDB, esbuild, puppeteer-core), unless
# node_modules already matches package-lock.json. Idempotent and quiet; fast when done.
set -euo pipefail
cd "$(dirname "$0")"

stamp=node_modules/.melonsync-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d node_modules/@nozbe/watermelondb ]; then
  exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "browser/setup.sh: npm not found (Node 20 with npm is needed)" >&2; exit 1; }

install() {
  # Checked again under the lock: another run may have just finished.
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d node_modules/@nozbe/watermelondb ]; then
    return 0
  fi
  if ! out=$(npm ci --no-audit --no-fund --loglevel=error 2>&1); then
    echo "$out" >&2
    echo "browser/setup.sh: npm ci failed" >&2
    return 1
  fi
  echo "$want" >"$stamp"
}

if command -v flock >/dev/null 2>&1; then
  exec 9>.setup.lock
  flock 9
  install
else
  install
fi
