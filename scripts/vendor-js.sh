#!/usr/bin/env bash
# Refresh the vendored JavaScript of the explorer and of /docs from the npm registry (the
# pages use no CDN): cytoscape.js and swagger-ui-dist, their builds and licences, into
# streams/api/static/vendor/, and record versions and sha256 sums in VERSION.
# Usage: scripts/vendor-js.sh [cytoscape-version] [swagger-ui-dist-version]
set -euo pipefail
cd "$(dirname "$0")/.."
CYTOSCAPE="${1:-3.35.0}"
SWAGGER="${2:-5.35.0}"
DEST=streams/api/static/vendor
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fetch() {  # fetch PACKAGE VERSION -> $WORK/PACKAGE/
  mkdir -p "$WORK/$1"
  (cd "$WORK/$1" && npm pack --silent "$1@$2" >/dev/null && tar xzf "$1-$2.tgz")
}
fetch cytoscape "$CYTOSCAPE"
cp "$WORK/cytoscape/package/dist/cytoscape.min.js" "$DEST/cytoscape.min.js"
cp "$WORK/cytoscape/package/LICENSE" "$DEST/cytoscape.LICENSE"
fetch swagger-ui-dist "$SWAGGER"
cp "$WORK/swagger-ui-dist/package/swagger-ui-bundle.js" "$WORK/swagger-ui-dist/package/swagger-ui.css" "$DEST/"
cp "$WORK/swagger-ui-dist/package/LICENSE" "$DEST/swagger-ui.LICENSE"
sum() { sha256sum "$DEST/$1" | cut -d' ' -f1; }
{
  printf 'cytoscape %s (npm): cytoscape.min.js sha256 %s\n' "$CYTOSCAPE" "$(sum cytoscape.min.js)"
  printf 'swagger-ui-dist %s (npm): swagger-ui-bundle.js sha256 %s\n' "$SWAGGER" "$(sum swagger-ui-bundle.js)"
  printf 'swagger-ui-dist %s (npm): swagger-ui.css sha256 %s\n' "$SWAGGER" "$(sum swagger-ui.css)"
} > "$DEST/VERSION"
cat "$DEST/VERSION"
