#!/usr/bin/env bash
# Installs the pinned WatermelonDB client for the interop tests (npm ci) unless
# node_modules already matches package-lock.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../scripts/npm-ci.sh" "$here"
