"""Ingest commands: the local broker, sending events, the stream worker, the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from experiments.cli.console import configure_logging, start_service, user_errors
from experiments.settings import Settings

kafka_app = typer.Typer(help="The local single-node Kafka broker.", no_args_is_help=True)
events_app = typer.Typer(help="Usage events.", no_args_is_help=True)


@kafka_app.command("up")
def kafka_up() -> None:
    """Start the local broker (idempotent) and wait until it answers."""
    from ingest.kafka.producer import ensure_topics, local_broker

    settings = Settings()
    configure_logging("WARNING")
    if settings.kafka_bootstrap:
        typer.echo(f"PREUVE_KAFKA_BOOTSTRAP is set ({settings.kafka_bootstrap}): "
                   "no local broker needed.")
        return
    with user_errors():
        state = local_broker(settings).up()
        ensure_topics(settings)
    typer.echo(f"Kafka {state.version} up at {state.bootstrap} (pid {state.pid})")


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the local broker started by `up`."""
    from ingest.kafka.producer import local_broker

    settings = Settings()
    if local_broker(settings).down():
        typer.echo("Kafka stopped.")
    else:
        typer.echo("Kafka was not running.")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs and answers; exit 0 if it does, 3 if not."""
    from ingest.kafka.broker import broker_answers
    from ingest.kafka.producer import local_broker

    settings = Settings()
    configure_logging("ERROR")
    if settings.kafka_bootstrap:
        answers = broker_answers(settings.kafka_bootstrap)
        typer.echo(f"external cluster {settings.kafka_bootstrap}: "
                   f"{'up' if answers else 'not answering'}")
        raise typer.Exit(0 if answers else 3)
    state = local_broker(settings).state()
    if state is None:
        typer.echo("Kafka: down")
        raise typer.Exit(3)
    if broker_answers(state.bootstrap):
        typer.echo(f"Kafka {state.version}: up at {state.bootstrap} (pid {state.pid})")
        return
    typer.echo(f"Kafka {state.version}: process {state.pid} runs but does not answer at "
               f"{state.bootstrap}")
    raise typer.Exit(3)


@events_app.command("send")
def events_send(path: Path) -> None:
    """Produce a JSONL file of events to Kafka (keyed by class_id, acks=all)."""
    from ingest.kafka.producer import ensure_topics, read_jsonl, send_raw_events

    settings = Settings()
    configure_logging("WARNING")
    if not path.is_file():
        typer.echo(f"error: {path}: no such file", err=True)
        raise typer.Exit(2)
    with user_errors():
        ensure_topics(settings)
        report = send_raw_events(settings, read_jsonl(path))
    typer.echo(f"sent {report.sent} events from {path} to {settings.topics.events}")


def worker() -> None:
    """Run a stream worker that routes events into the experiments' stores."""
    from ingest.stream.worker import run_worker

    settings = Settings()
    with user_errors():
        run_worker(settings)


def gateway(
    host: Annotated[
        str | None,
        typer.Option(help="Interface to listen on [default: settings gateway.host, 127.0.0.1]."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on [default: settings gateway.port, 8700]."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Gateway processes sharing the port (they share the receipts index too).",
        ),
    ] = 1,
) -> None:
    """Run the HTTP gateway (events: POST /v1/events, /v1/xapi/statements; enrollment:
    /v1/experiments/ID/enrollments, /withdrawals; OpenAPI at /openapi.json) with uvicorn
    until interrupted."""
    import uvicorn

    from ingest.gateway import create_app

    settings = Settings()
    start_service(settings)
    with user_errors():
        # Built here even with several workers: migrates the registry once and reports a
        # bad configuration as a message, before any worker starts.
        app = create_app(settings)
    uvicorn.run(
        app if workers == 1 else "ingest.gateway:app_from_environment",
        factory=workers > 1,
        workers=workers,
        host=host or settings.gateway.host,
        port=port if port is not None else settings.gateway.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep start_service's handlers
        **settings.gateway.server.uvicorn_options(),
    )
