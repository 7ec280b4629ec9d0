#!/usr/bin/env bash
# Make sure Debian's Chromium and ChromeDriver are present for the explorer's browser tests.
# Installs them with apt-get when missing (as root, or through sudo when it needs no password).
# Exits 0 when both are there afterwards, 1 with a message saying what to install otherwise.
set -euo pipefail
have() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }
have && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
  echo "error: the browser tests need Debian's chromium and chromium-driver; install them with" \
       "'sudo apt-get install chromium chromium-driver'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "error: no apt-get here; install Chromium and a matching ChromeDriver at /usr/bin/chromium" \
       "and /usr/bin/chromedriver" >&2
  exit 1
fi
echo "installing chromium and chromium-driver with apt-get (once per machine)" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >/dev/null
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
have || { echo "error: apt-get ran but /usr/bin/chromium or /usr/bin/chromedriver is still missing" >&2; exit 1; }
