"""Long-running services that are not ingest: scheduler, portal, and the demo."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer


def scheduler(
    once: Annotated[
        bool, typer.Option("--once", help="Publish the runs due now (catching up), then exit.")
    ] = False,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="Run an analysis worker instead: consume preuve.analysis.requests, run each "
            "analysis once, record it and write its report (several workers share the load).",
        ),
    ] = False,
    now: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"],
            hidden=True,
            help="Pretend the clock reads this time (tests, replays). With --once only.",
        ),
    ] = None,
) -> None:
    """Run each registered protocol's schedule of analyses and purge the data whose
    retention is over (or, with --worker, run the analyses themselves)."""
    import logging
    import signal
    import threading
    from datetime import UTC

    from experiments.cli.console import start_service, user_errors
    from experiments.settings import Settings

    settings = Settings()
    start_service(settings)
    # A long-running service: Preuve's own loggers speak at settings.log_level (one line
    # per published request and per finished analysis) whatever the CLI's --verbose.
    for name in ("experiments", "analysis"):
        logging.getLogger(name).setLevel(settings.log_level.upper())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with user_errors():
        if worker:
            from experiments.runs.records import run_analysis_worker

            run_analysis_worker(settings, stop=stop, once=once)
            return
        from experiments.runs.scheduler import run_scheduler

        if now is not None and not once:
            raise typer.BadParameter("--now needs --once (a pretend clock does not advance)")
        fixed = None if now is None else (now if now.tzinfo else now.replace(tzinfo=UTC))
        report = run_scheduler(
            settings, once=once, stop=stop, clock=None if fixed is None else (lambda: fixed)
        )
        if once:
            typer.echo(f"{report.due} runs due, {report.claimed} published by this scheduler, "
                       f"{report.republished} published again")


def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Interface to listen on (default: settings portal.host, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on (default: settings portal.port, 8702)."),
    ] = None,
) -> None:
    """Serve the portal of experiments and impact reports (sign in with an API token)."""
    import uvicorn

    from experiments.cli.console import start_service, user_errors
    from experiments.portal.app import create_portal
    from experiments.settings import Settings

    settings = Settings()
    start_service(settings)
    with user_errors():
        app = create_portal(settings)
        uvicorn.run(app, host=host or settings.portal.host, port=port or settings.portal.port,
                    log_level=settings.log_level.lower(), access_log=False,
                    log_config=None,  # keep start_service's handlers
                    **settings.portal.server.uvicorn_options())


def demo() -> None:
    """Run a whole simulated experiment end to end (what `make demo` runs)."""
    import typer

    from experiments.cli.console import configure_logging, user_errors
    from experiments.demo import run_demo
    from experiments.settings import Settings

    configure_logging("WARNING")
    with user_errors():
        run_demo(Settings(), say=typer.echo)
