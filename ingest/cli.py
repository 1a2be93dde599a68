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
    """Start the local broker (idempotent) and wait until it answers. The first start
    creates its CA and certificate and the services' SCRAM users (passwords in the state
    directory, mode 0600); then the topics and the services' ACLs."""
    from ingest.kafka.access import ensure_topics
    from ingest.kafka.clients import local_broker

    settings = Settings()
    configure_logging("WARNING")
    if settings.kafka_bootstrap:
        typer.echo(f"PREUVE_KAFKA_BOOTSTRAP is set ({settings.kafka_bootstrap}): "
                   "no local broker needed (`preuve kafka setup` creates its topics and ACLs).")
        return
    with user_errors():
        state = local_broker(settings).up()
        ensure_topics(settings)
    typer.echo(f"Kafka {state.version} up at {state.bootstrap} (pid {state.pid}, "
               f"{settings.kafka.security.protocol})")


@kafka_app.command("setup")
def kafka_setup() -> None:
    """Create Preuve's topics and grant each service its ACLs, as the admin (on an
    existing cluster: PREUVE_KAFKA__SECURITY__USER / __PASSWORD of an admin user)."""
    from ingest.kafka.access import ensure_topics, service_grants
    from ingest.kafka.topics import topic_specs

    settings = Settings()
    configure_logging("WARNING")
    with user_errors():
        ensure_topics(settings)
    for spec in topic_specs(settings):
        typer.echo(f"topic {spec.name}: {spec.partitions} partitions")
    for grant in service_grants(settings):
        kind = "prefixed " if grant.prefixed else ""
        typer.echo(f"User:{grant.principal} {grant.operation} {kind}{grant.resource} "
                   f"{grant.name}")


@kafka_app.command("add-edtech")
def kafka_add_edtech(
    resource: Annotated[str, typer.Argument(help="The resource id (protocol `resource.id`).")],
) -> None:
    """Create (or renew) the SCRAM user of an EdTech that produces directly: it may write
    its own topic preuve.events.RESOURCE and nothing else. Prints the user, the password
    (shown once; renewing makes a new one) and the topic."""
    from ingest.kafka.access import add_edtech

    settings = Settings()
    configure_logging("WARNING")
    with user_errors():
        credentials = add_edtech(settings, resource)
    typer.echo(f"user:     {credentials.user}")
    typer.echo(f"password: {credentials.password}")
    typer.echo(f"topic:    {credentials.topic}")
    typer.echo(f"(also in {credentials.password_file}, mode 0600)")


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the local broker started by `up`."""
    from ingest.kafka.clients import local_broker

    settings = Settings()
    if local_broker(settings).down():
        typer.echo("Kafka stopped.")
    else:
        typer.echo("Kafka was not running.")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs and answers; exit 0 if it does, 3 if not."""
    from ingest.kafka import clients
    from ingest.kafka.broker import broker_answers
    from ingest.kafka.principals import ADMIN, USERS

    settings = Settings()
    configure_logging("ERROR")

    def answers(bootstrap: str) -> bool:
        # As whichever principal this machine holds credentials for (all alike here).
        principal = next((p for p in USERS if clients.has_credentials(settings, p)), ADMIN)
        with user_errors():
            options = clients.security_options(settings, principal)
        return broker_answers(bootstrap, **options)

    if settings.kafka_bootstrap:
        up = answers(settings.kafka_bootstrap)
        typer.echo(f"external cluster {settings.kafka_bootstrap}: "
                   f"{'up' if up else 'not answering'}")
        raise typer.Exit(0 if up else 3)
    state = clients.local_broker(settings).state()
    if state is None:
        typer.echo("Kafka: down")
        raise typer.Exit(3)
    if answers(state.bootstrap):
        typer.echo(f"Kafka {state.version}: up at {state.bootstrap} (pid {state.pid})")
        return
    typer.echo(f"Kafka {state.version}: process {state.pid} runs but does not answer at "
               f"{state.bootstrap}")
    raise typer.Exit(3)


@events_app.command("send")
def events_send(
    path: Path,
    resource: Annotated[
        str | None,
        typer.Option(help="Send to the resource's own topic preuve.events.RESOURCE as its "
                     "EdTech user (see `preuve kafka add-edtech`) [default: preuve.events, "
                     "as the gateway]."),
    ] = None,
) -> None:
    """Produce a JSONL file of events to Kafka (keyed by class_id, acks=all)."""
    from ingest.kafka.access import ensure_topics
    from ingest.kafka.producer import read_jsonl, send_raw_events
    from ingest.kafka.topics import resource_topic

    settings = Settings()
    configure_logging("WARNING")
    if not path.is_file():
        typer.echo(f"error: {path}: no such file", err=True)
        raise typer.Exit(2)
    with user_errors():
        if resource is None:
            ensure_topics(settings)
        topic = settings.topics.events if resource is None else resource_topic(settings, resource)
        report = send_raw_events(settings, read_jsonl(path), resource)
    typer.echo(f"sent {report.sent} events from {path} to {topic}")


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
