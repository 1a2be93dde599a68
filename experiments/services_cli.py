"""Long-running services that are not ingest: scheduler, portal, and the demo."""

from __future__ import annotations

from experiments.not_built import not_built


def scheduler() -> None:
    """Run each registered protocol's schedule of analyses."""
    not_built("scheduler", 7)


def serve() -> None:
    """Serve the portal of experiments and impact reports."""
    not_built("serve", 7)


def demo() -> None:
    """Run a whole simulated experiment end to end (what `make demo` runs)."""
    import typer

    from experiments.console import configure_logging, user_errors
    from experiments.demo import run_demo
    from experiments.settings import Settings

    configure_logging("WARNING")
    with user_errors():
        run_demo(Settings(), say=typer.echo)
