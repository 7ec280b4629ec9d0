"""worker and serve: the long-running processes, the pipeline stages and the HTTP API."""

from __future__ import annotations

import sys

import click

from streams.cli.root import CONTEXT, Ctx, cli, fail, setup_logging

# faust (the stages) and fastapi/uvicorn (the API) load inside the commands: they take
# most of a second, and every command, --help included, imports this module.


@cli.command(context_settings=CONTEXT)
@click.option("--stages", default="all", show_default=True,
              help="'all' or a comma-separated list of: fetch, chunk, extract, route, resolve, assemble, sink, "
                   "communities.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Port of /metrics, /livez, /readyz (default: monitoring.metrics_port; with several "
                   "stages, stage i gets port+i; 0 turns the endpoint off).")
@click.pass_obj
def worker(obj: Ctx, stages: str, metrics_port: int | None) -> None:
    """Run pipeline stages (one Faust app and consumer group per stage) until interrupted.

    One stage runs in this process; several (or 'all', for development) run one child
    process each under a supervisor that restarts a child that dies (with backoff). The
    topics must exist (`topics create`); a missing one stops start-up with exit 2.
    """
    from agents.worker import parse_stages, run_stage, supervise

    settings = obj.settings
    if metrics_port is not None:
        settings = settings.model_copy(
            update={"monitoring": settings.monitoring.model_copy(update={"metrics_port": metrics_port})})
    setup_logging(settings)
    try:
        chosen = parse_stages(stages)
    except ValueError as exc:
        fail(str(exc), 2)
    if len(chosen) == 1:
        sys.exit(run_stage(chosen[0], settings))
    from streams.kafka.clients import TopicsNotReady, check_topics

    try:  # one clear message before any child starts (each child checks again)
        check_topics(settings, *chosen)
    except TopicsNotReady as exc:
        fail(str(exc), 2)
    except Exception as exc:
        fail(f"could not reach Kafka at {settings.kafka.bootstrap_servers}: {exc}", 2)
    click.echo(f"starting stages: {', '.join(s.value for s in chosen)} ({settings.environment}, "
               f"topics {settings.kafka.topic_prefix}*)", err=True)
    sys.exit(supervise(chosen, settings))


@cli.command(context_settings=CONTEXT)
@click.option("--host", default=None, help="Address to listen on (default: api.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: api.port).")
@click.pass_obj
def serve(obj: Ctx, host: str | None, port: int | None) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) and the graph explorer page at /.

    Reads the graph from MongoDB; POST /api/videos produces onto the ingest topic and needs
    the bearer token api.token. Runs until interrupted.
    """
    import uvicorn

    from streams.api import create_app

    settings = obj.settings
    setup_logging(settings)
    host = host or settings.api.host
    port = port or settings.api.port
    click.echo(f"graph explorer: http://{host}:{port}/  API docs: http://{host}:{port}/docs", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                access_log=settings.log_level == "DEBUG")
