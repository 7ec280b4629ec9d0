#!/usr/bin/env bash
# Regenerate the hashed locks from pyproject.toml with uv (scripts/uv.sh):
#   requirements.lock      runtime closure + the `redis` extra: what the image installs
#                          (Dockerfile: pip install --require-hashes)
#   requirements-dev.lock  that plus the `dev` and `nlp` extras: what `make install` installs
# Both are universal (markers for every platform) for Python 3.11. Existing pins are kept
# unless you pass --upgrade or --upgrade-package NAME, which go to both compiles.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="$(scripts/uv.sh)"
compile() {
    "$uv" pip compile pyproject.toml --quiet --generate-hashes --universal --python-version 3.11 \
        --custom-compile-command "scripts/lock.sh" "$@"
}
compile --extra redis -o requirements.lock "$@"
# The dev lock is constrained by the runtime one: make install tests what the image runs.
compile --extra redis --extra dev --extra nlp -c requirements.lock -o requirements-dev.lock "$@"
echo "wrote requirements.lock ($(grep -c '^[A-Za-z0-9]' requirements.lock) pins) and requirements-dev.lock ($(grep -c '^[A-Za-z0-9]' requirements-dev.lock) pins)"
