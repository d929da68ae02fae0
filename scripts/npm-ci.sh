#!/usr/bin/env bash
# Usage: scripts/npm-ci.sh DIR — installs DIR's pinned npm packages (npm ci) unless
# DIR/node_modules already matches DIR/package-lock.json. Idempotent and quiet; fast
# when done; one install at a time per DIR (several test runs may start together).
set -euo pipefail
dir=${1:?usage: scripts/npm-ci.sh DIR}
cd "$dir"
name=$(basename "$PWD")

stamp=node_modules/.melonsync-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
installed() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d node_modules/@nozbe/watermelondb ]
}
installed && exit 0

command -v npm >/dev/null 2>&1 || { echo "$name/setup.sh: npm not found (Node 20 with npm is needed)" >&2; exit 1; }

install() {
  # Checked again under the lock: another run may have just finished.
  installed && return 0
  if ! out=$(npm ci --no-audit --no-fund --loglevel=error 2>&1); then
    echo "$out" >&2
    echo "$name/setup.sh: npm ci failed" >&2
    return 1
  fi
  echo "$want" >"$stamp"
}

if command -v flock >/dev/null 2>&1; then
  exec 9>.setup.lock
  flock 9
fi
install
