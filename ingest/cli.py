"""Ingest commands: the local broker, sending events, the stream worker, the gateway."""

from __future__ import annotations

from pathlib import Path

import typer

from experiments.not_built import not_built

kafka_app = typer.Typer(help="The local single-node Kafka broker.", no_args_is_help=True)
events_app = typer.Typer(help="Usage events.", no_args_is_help=True)


@kafka_app.command("up")
def kafka_up() -> None:
    """Start the local broker (idempotent) and wait until it answers."""
    not_built("kafka up", 2)


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the local broker started by `up`."""
    not_built("kafka down", 2)


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs and answers."""
    not_built("kafka status", 2)


@events_app.command("send")
def events_send(path: Path) -> None:
    """Produce a JSONL file of events to Kafka."""
    not_built("events send", 2)


def worker() -> None:
    """Run the stream worker (faust) that routes events into experiment stores."""
    not_built("worker", 2)


def gateway() -> None:
    """Run the HTTP event gateway."""
    not_built("gateway", 5)
