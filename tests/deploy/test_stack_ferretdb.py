"""The local stack's FerretDB build: the patches apply to the released source exactly once,
and a source they do not fit stops the build instead of building it unpatched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

sys.path.insert(0, str(ROOT / "stack"))
import localstack


def _released_source(tmp_path: Path) -> Path:
    """FerretDB's module source as the Go module proxy serves it (from Go's module cache)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed (the stack needs it to build FerretDB)")
    module = f"github.com/FerretDB/FerretDB@{localstack.FERRETDB_VERSION}"
    listed = subprocess.run([go, "mod", "download", "-json", module],
                            cwd=ROOT / "stack" / "ferretdb", capture_output=True, text=True, check=True)
    src = tmp_path / "FerretDB"
    for rel, _, _ in localstack.FERRETDB_PATCHES:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(json.loads(listed.stdout)["Dir"]) / rel, src / rel)
        (src / rel).chmod(0o644)
    return src


def test_the_patches_fit_the_released_source(tmp_path: Path) -> None:
    src = _released_source(tmp_path)
    localstack.patch_ferretdb_source(src)
    text = (src / "internal/backends/sqlite/metadata/metadata.go").read_text()
    # The _id lookup now spells the expression of the index FerretDB creates on _id.
    assert 'IDColumn = DefaultColumn + `->"_id"`' in text and "'$._id'" not in text
    # Query and explain push one field's equality or $in down to the index (pushdownWhere).
    collection = (src / "internal/backends/sqlite/collection.go").read_text()
    assert collection.count("whereClause, args = pushdownWhere(params.Filter)") == 2
    assert collection.count("func pushdownWhere(") == 1 and "issues/3235" not in collection


def test_a_source_the_patches_do_not_fit_stops_the_build(tmp_path: Path) -> None:
    src = _released_source(tmp_path)
    localstack.patch_ferretdb_source(src)  # patched once: the released text is gone
    with pytest.raises(localstack.StackError, match="cannot patch FerretDB"):
        localstack.patch_ferretdb_source(src)
