"""Write one JSON Schema file per topic model into ``schemas/jsonschema/``.

Why: producers in other languages validate against these files; a test fails when a
model changes and the committed files were not regenerated (``make schemas``).

    python -m schemas.generate          # write the files
    python -m schemas.generate --check  # exit 1 if any file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schemas.events import TOPIC_MODELS

OUT_DIR = Path(__file__).resolve().parent / "jsonschema"


def render() -> dict[str, str]:
    """File name -> file content for every topic model."""
    files = {}
    for topic, model in sorted(TOPIC_MODELS.items()):
        schema = model.model_json_schema(mode="validation")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://graphrag-streams.dev/schemas/{topic}.v1.json",
            "x-topic": f"<prefix>{topic}",
            **schema,
        }
        files[f"{topic}.v1.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def stale_files(out_dir: Path = OUT_DIR) -> list[str]:
    expected = render()
    stale = [name for name, text in expected.items()
             if not (out_dir / name).exists() or (out_dir / name).read_text() != text]
    extra = [p.name for p in out_dir.glob("*.json") if p.name not in expected] if out_dir.exists() else []
    return sorted(stale + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: schemas/jsonschema/{name}", file=sys.stderr)
        return 1 if stale else 0
    OUT_DIR.mkdir(exist_ok=True)
    for old in OUT_DIR.glob("*.json"):
        old.unlink()
    for name, text in render().items():
        (OUT_DIR / name).write_text(text)
        print(f"wrote schemas/jsonschema/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
