"""Assembling and running the stream worker (``preuve worker``)."""

from __future__ import annotations

import logging

import faust

from experiments.database import registry_engine
from experiments.settings import Settings
from ingest.producer import ensure_topics, kafka_bootstrap
from ingest.pseudonym import load_pseudonym_key
from ingest.stream.agents import declare_agents
from ingest.stream.app import create_app
from ingest.stream.router import EventRouter
from ingest.stream.tables import declare_enrollment_table
from ingest.stream.topics import declare_topics

__all__ = ["build_worker_app", "run_worker"]

logger = logging.getLogger(__name__)


def build_worker_app(settings: Settings) -> faust.App:
    """The faust app with its topics, enrollment table and agents."""
    app = create_app(settings)
    topics = declare_topics(app, settings)
    table = declare_enrollment_table(app, settings)
    router = EventRouter(settings, load_pseudonym_key(settings), registry_engine(settings))
    declare_agents(app, settings, topics, table, router, kafka_bootstrap(settings))
    return app


def run_worker(settings: Settings) -> None:
    """Create the topics if needed and run the worker until SIGTERM/SIGINT.

    faust's Worker owns the event loop and installs the signal handlers; on SIGTERM it
    stops the agents, finishes the current batch and commits its offsets.
    """
    ensure_topics(settings)
    app = build_worker_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    worker.execute_from_commandline()
