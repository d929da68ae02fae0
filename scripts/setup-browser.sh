#!/usr/bin/env bash
# Installs what the browser test needs when it is missing: Debian's chromium
# (apt-get, as root) at /usr/bin/chromium. Idempotent; fast when done. The npm packages
# of the test app are installed by browser/setup.sh.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "scripts/setup-browser.sh: /usr/bin/chromium is missing and apt-get is not available; install Chromium yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "scripts/setup-browser.sh: installing chromium needs root (or sudo)" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
install() {
  [ -x /usr/bin/chromium ] && return 0
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
}
# One install at a time (several test runs may start together).
if command -v flock >/dev/null 2>&1; then
  exec 9>/tmp/melonsync-setup-browser.lock
  flock 9
fi
install
/usr/bin/chromium --version
