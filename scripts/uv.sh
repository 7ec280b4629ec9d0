#!/usr/bin/env bash
# Print the path of the project's pinned uv, installing it first into the user's cache dir
# (one small wheel from PyPI) when it is not there yet. uv installs the hashed lock (`make
# install`) in seconds where pip takes about a minute, and compiles the locks (scripts/lock.sh).
set -euo pipefail
UV_VERSION=0.13.9
tools="${XDG_CACHE_HOME:-$HOME/.cache}/graphrag-streams/tools/uv-$UV_VERSION"
if [ ! -x "$tools/bin/uv" ]; then
    "${PYTHON:-python3}" -m venv "$tools" >&2
    "$tools/bin/pip" install -q "uv==$UV_VERSION" >&2
fi
echo "$tools/bin/uv"
