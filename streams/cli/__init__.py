"""The command line: `graphrag-streams`. Imports the core; nothing imports it."""

from streams.cli.main import cli, main

__all__ = ["cli", "main"]
