"""The command line: `graphrag-streams`. Imports the core; nothing imports it.

`root` holds the root group, its options and the helpers the commands share; every other
module holds one command group and registers it on the root group when imported here.
"""

from collections.abc import Iterable

# Imported for their side effect: each registers its commands on `cli`.
from streams.cli import (  # noqa: F401
    communities,
    config,
    dlq,
    graph,
    lag,
    query,
    reindex,
    resolve,
    services,
    topics,
    videos,
)
from streams.cli.root import cli


def main(argv: Iterable[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="graphrag-streams")


__all__ = ["cli", "main"]
