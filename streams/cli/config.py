"""config show and check: the effective configuration, without touching Kafka or MongoDB."""

from __future__ import annotations

import json

import click

from streams.cli.root import CONTEXT, Ctx, cli
from streams.settings import default_config_dir, redacted


@cli.group(context_settings=CONTEXT)
def config() -> None:
    """Inspect the configuration."""


_ENV_HERE = click.option("--env", "env", type=click.Choice(["development", "staging", "production"]), default=None,
                         help="This environment's file instead of the one the root options chose.")


def _with_env(obj: Ctx, env: str | None) -> Ctx:
    """`config show --env E` reads E's file even when $GRAPHRAG_CONFIG names another."""
    return obj if env is None else Ctx(str(default_config_dir() / f"{env}.yaml"), env, obj.overrides, obj.reindex)


@config.command("show", context_settings=CONTEXT)
@_ENV_HERE
@click.pass_obj
def config_show(obj: Ctx, env: str | None) -> None:
    """Print the effective configuration (after interpolation; secrets masked)."""
    click.echo(json.dumps(redacted(_with_env(obj, env).settings), indent=2))


@config.command("check", context_settings=CONTEXT)
@_ENV_HERE
@click.pass_obj
def config_check(obj: Ctx, env: str | None) -> None:
    """Validate the configuration and exit (non-zero with the problem on error)."""
    s = _with_env(obj, env).settings
    click.echo(f"ok: {s.environment}, extraction={'llm' if s.llm_enabled else 'offline'}, "
               f"kafka={s.kafka.bootstrap_servers}, topics={s.kafka.topic_prefix}*")
