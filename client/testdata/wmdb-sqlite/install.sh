#!/bin/sh
# Installs the pinned WatermelonDB and better-sqlite3 for the round-trip test. better-sqlite3
# is compiled from source against the installed Node's headers (about a minute).
set -eu
cd "$(dirname "$0")"
npm ci --build-from-source --no-audit --no-fund --loglevel=error
test -f node_modules/better-sqlite3/build/Release/better_sqlite3.node
