"""query: answers from the graph, with citations."""

from __future__ import annotations

import json
from typing import Any

import click

from streams.cli.root import CONTEXT, Ctx, cli, open_read_store

# asyncio, pymongo (the answers) and openai (the LLM client) load inside the command:
# every command, --help included, imports this module.


@cli.command(context_settings=CONTEXT)
@click.argument("question")
@click.option("--mode", type=click.Choice(["local", "global"]), default="local", show_default=True,
              help="local: the entities the question names and their neighbourhood; "
                   "global: community summaries, combined.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output with every citation.")
@click.pass_obj
def query(obj: Ctx, question: str, mode: str, as_json: bool) -> None:
    """Answer a question from the graph; every claim cites video_id@mm:ss with a YouTube link."""
    import asyncio

    from streams.query.answers import answer_global, answer_local, answer_with_llm
    from streams.query.snapshot import load_snapshot

    settings = obj.settings
    graph = load_snapshot(open_read_store(settings))  # a few bulk reads; then no round trip per step
    answer = answer_local(graph, question) if mode == "local" else answer_global(graph, question)
    if settings.llm_enabled and answer.citations:
        from streams.llm.client import LLMClient

        async def write() -> Any:
            client = LLMClient(settings)
            try:
                return await answer_with_llm(answer, client)
            finally:
                await client.aclose()

        answer = asyncio.run(write())
    if as_json:
        click.echo(json.dumps(answer.as_dict(), indent=2, default=str))
    else:
        click.echo(answer.text)
