"""lag and lag-exporter: consumer lag, once on the terminal or continuously to Prometheus."""

from __future__ import annotations

import contextlib
import json
import time

import click

from streams.cli.root import CONTEXT, Ctx, cli, fail, setup_logging

# confluent_kafka (the lag monitor) and prometheus_client (the exporter) load inside the
# commands: every command, --help included, imports this module.


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--samples", type=int, default=1, show_default=True,
              help="Measure this many times (one interval apart) so lag seconds can be estimated.")
@click.pass_obj
def lag(obj: Ctx, as_json: bool, samples: int) -> None:
    """Consumer lag per stage, topic and partition, and the replicas KEDA would run."""
    from streams.monitoring.lag import LagMonitor

    settings = obj.settings
    monitor = LagMonitor(settings)
    try:
        report = monitor.measure()
        for _ in range(max(0, samples - 1)):
            time.sleep(settings.monitoring.lag_interval_seconds)
            report = monitor.measure()
    except Exception as exc:
        fail(f"could not measure lag on {settings.kafka.bootstrap_servers}: {exc}")
    if as_json:
        click.echo(json.dumps({
            "partitions": [{"group": r.group, "topic": r.topic, "partition": r.partition, "committed": r.committed,
                            "log_end": r.log_end, "lag": r.lag, "lag_seconds": round(sec, 1)}
                           for r, sec in report.partitions],
            "stages": [{"stage": s.stage.value, "group": s.group, "topic": s.topic, "partitions": s.partitions,
                        "lag": s.lag, "lag_seconds": round(s.lag_seconds, 1), "desired_replicas": s.desired_replicas}
                       for s in report.stages],
        }, indent=2))
        return
    click.echo(f"{'stage':<8} {'group':<24} {'topic':<36} {'lag':>7} {'lag s':>7} {'replicas':>8}")
    for s in report.stages:
        click.echo(f"{s.stage.value:<8} {s.group:<24} {s.topic:<36} {s.lag:>7} {s.lag_seconds:>7.0f} "
                   f"{s.desired_replicas:>8}")
    click.echo(f"\n{'group':<24} {'topic':<36} {'part':>4} {'committed':>10} {'log end':>10} {'lag':>7}")
    for r, _ in report.partitions:
        committed = "-" if r.committed is None else str(r.committed)
        click.echo(f"{r.group:<24} {r.topic:<36} {r.partition:>4} {committed:>10} {r.log_end:>10} {r.lag:>7}")


@cli.command("lag-exporter", context_settings=CONTEXT)
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port of /metrics, /livez, /readyz (default: monitoring.lag_exporter_port).")
@click.pass_obj
def lag_exporter(obj: Ctx, port: int | None) -> None:
    """Export consumer lag, lag seconds and desired replicas to Prometheus until interrupted."""
    from streams.monitoring.exporter import run_exporter

    settings = obj.settings
    if port is not None:
        settings = settings.model_copy(
            update={"monitoring": settings.monitoring.model_copy(update={"lag_exporter_port": port})})
    setup_logging(settings)
    click.echo(f"lag exporter on {settings.monitoring.metrics_host}:{settings.monitoring.lag_exporter_port} "
               f"every {settings.monitoring.lag_interval_seconds:g}s", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        run_exporter(settings)
