#!/usr/bin/env bash
# Print the path of actionlint (the GitHub Actions workflow linter), building it with Go from
# the module proxy on first use; cached under the user's cache directory.
set -euo pipefail
VERSION=v1.7.12
dir="${XDG_CACHE_HOME:-$HOME/.cache}/graphrag-streams/tools/actionlint-$VERSION"
if [ ! -x "$dir/actionlint" ]; then
    command -v go >/dev/null || { echo "error: actionlint needs Go 1.24+ to build (go not found)" >&2; exit 2; }
    mkdir -p "$dir"
    GOBIN="$dir" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$VERSION" >&2
fi
echo "$dir/actionlint"
