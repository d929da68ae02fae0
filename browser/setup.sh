#!/usr/bin/env bash
# Installs the pinned packages of the browser test (npm ci: WatermelonDB, esbuild,
# puppeteer-core) unless node_modules already matches package-lock.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../scripts/npm-ci.sh" "$here"
