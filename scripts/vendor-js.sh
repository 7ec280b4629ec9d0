#!/usr/bin/env bash
# Refresh the explorer's vendored JavaScript from the npm registry (the page uses no CDN):
# cytoscape.js, its minified build and its licence, into streams/api/static/vendor/.
# Usage: scripts/vendor-js.sh [version]   (default: the version vendored now)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${1:-3.35.0}"
DEST=streams/api/static/vendor
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "cytoscape@$VERSION" >/dev/null && tar xzf "cytoscape-$VERSION.tgz")
cp "$WORK/package/dist/cytoscape.min.js" "$DEST/cytoscape.min.js"
cp "$WORK/package/LICENSE" "$DEST/cytoscape.LICENSE"
printf 'cytoscape %s (npm), sha256 %s\n' "$VERSION" "$(sha256sum "$DEST/cytoscape.min.js" | cut -d' ' -f1)" \
  > "$DEST/VERSION"
cat "$DEST/VERSION"
