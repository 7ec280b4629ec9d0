#!/usr/bin/env bash
# Make the binaries of a Debian package available and print the directory that holds
# them. Quiet and quick when they are already installed.
#
#   scripts/ensure-debian-package.sh PACKAGE BINARY [BINARY...]
#   REDIS_BIN=$(scripts/ensure-debian-package.sh redis-server redis-server) && "$REDIS_BIN/redis-server" -v
#
# When they are missing and this runs as root: `apt-get update` once, then install the
# package without recommends. The package's own service is not started: a temporary
# policy-rc.d forbids it when the machine has none.
# Not root and not installed: a clear error naming the package, exit 1.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 PACKAGE BINARY [BINARY...]" >&2
  exit 2
fi
PACKAGE=$1
shift
BINARIES=("$@")

find_dir() {
  local first="" b p
  for b in "${BINARIES[@]}"; do
    p=$(command -v "$b" 2>/dev/null) || return 1
    if [ -z "$first" ]; then first=$(dirname "$p"); fi
    [ "$(dirname "$p")" = "$first" ] || return 1
  done
  echo "$first"
}

# The package installs into /usr/bin; look there too when PATH is unusual.
PATH="$PATH:/usr/bin:/usr/sbin:/bin"

if dir=$(find_dir); then
  echo "$dir"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "error: ${BINARIES[*]} not installed; install the Debian package" \
       "'$PACKAGE' (as root: apt-get install --no-install-recommends $PACKAGE)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: ${BINARIES[*]} not installed and apt-get is missing;" \
       "install the Debian package '$PACKAGE' or put the binaries on PATH" >&2
  exit 1
fi

log=$(mktemp)
policy_made=0
cleanup() {
  rm -f "$log"
  if [ "$policy_made" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  policy_made=1
fi

echo "installing the Debian package '$PACKAGE' (${BINARIES[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update >"$log" 2>&1; then
  cat "$log" >&2
  echo "error: apt-get update failed; cannot install the Debian package '$PACKAGE'" >&2
  exit 1
fi
if ! apt-get install -y -q --no-install-recommends "$PACKAGE" >"$log" 2>&1; then
  cat "$log" >&2
  echo "error: apt-get install $PACKAGE failed" >&2
  exit 1
fi

if ! dir=$(find_dir); then
  echo "error: the Debian package '$PACKAGE' is installed but ${BINARIES[*]} not on PATH" >&2
  exit 1
fi
echo "$dir"
