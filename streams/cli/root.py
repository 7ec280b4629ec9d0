"""The root `graphrag-streams` group, its options and what every command module shares."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import click

from streams.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from streams.store import GraphStore

# Every command, --help included, imports this module: pymongo (the store) and
# confluent_kafka (behind re-index names) load inside the functions that need them.

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# Video IDs may start with "-" (-92PkAXJIqQ, -6uLaTEbhbs): commands that take IDs define no
# short options at all (help is --help only), so click passes such words through unchanged
# instead of reading them as clusters of short flags.
ID_ARGS = {"help_option_names": ["--help"], "max_content_width": 100, "ignore_unknown_options": True}


class Ctx:
    """What the root options chose, handed to every command as click's obj; loads the settings once."""

    def __init__(self, config: str | None, env: str | None, overrides: Sequence[str] = (),
                 reindex: str | None = None) -> None:
        self.config = config
        self.env = env
        self.overrides = tuple(overrides)
        self.reindex = reindex
        self._settings: Settings | None = None

    @property
    def live_settings(self) -> Settings:
        """The configuration with --set applied, before --reindex turns it into a re-index's."""
        try:
            return load_settings(self.config, environment=self.env, overrides=self.overrides)
        except ConfigError as exc:
            raise click.ClickException(f"configuration error: {exc}") from None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = self.live_settings
            if self.reindex is not None:
                from streams.jobs.reindex import InvalidReindexName, reindex_settings

                try:
                    settings = reindex_settings(settings, self.reindex)
                except InvalidReindexName as exc:
                    raise click.ClickException(str(exc)) from None
            self._settings = settings
        return self._settings

    def root_args(self) -> list[str]:
        """The root options that make a child process see the same settings."""
        args = [arg for item in self.overrides for arg in ("--set", item)]
        return args + (["--reindex", self.reindex] if self.reindex else [])


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings=CONTEXT)
@click.option("--config", "config", type=click.Path(dir_okay=False), envvar="GRAPHRAG_CONFIG",
              help="Configuration file (default: config/$GRAPHRAG_ENV.yaml).")
@click.option("--env", "env", type=click.Choice(["development", "staging", "production"]),
              help="Environment whose config/<env>.yaml to load (default: $GRAPHRAG_ENV or development).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. --set graphrag.extraction.extractor=offline (repeatable).")
@click.option("--reindex", "reindex", default=None, metavar="NAME",
              help="Act on re-index NAME (its topics, groups and database), e.g. --reindex v2 lag.")
@click.version_option(package_name="graphrag-streams", prog_name="graphrag-streams",
                      help="Show the installed version and exit.")
@click.pass_context
def cli(ctx: click.Context, config: str | None, env: str | None, overrides: tuple[str, ...],
        reindex: str | None) -> None:
    """graphrag-streams: index YouTube transcripts into a knowledge graph through Kafka."""
    ctx.obj = Ctx(config, env, overrides, reindex)


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=getattr(logging, settings.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("aiokafka", "faust", "mode", "pymongo", "httpx", "openai", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, settings.log_level)))


def open_store(settings: Settings) -> GraphStore:
    """The configured database's graph store; exit 1 when MongoDB does not answer."""
    from streams.store import GraphStore

    store = GraphStore.from_settings(settings, app_name="graphrag-cli")
    if not store.ping():
        fail(f"MongoDB is not reachable (database {settings.mongodb.database})")
    return store


def open_read_store(settings: Settings) -> GraphStore:
    """The graph reads go to: the promoted one, else the configured database."""
    from streams.store import GraphStore

    store = GraphStore.for_reads(settings, app_name="graphrag-cli")
    if not store.ping():
        fail(f"MongoDB is not reachable (database {store.db.name})")
    return store
