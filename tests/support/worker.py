"""Stream workers as child processes, configured through the environment like in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.settings import Settings
from ingest.kafka.clients import security_env
from ingest.stream.worker import READY_LINE


def settings_env(settings: Settings) -> dict[str, str]:
    """The PREUVE_* environment that makes a child process build the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREUVE_")}
    env["PREUVE_STATE_DIR"] = str(settings.state_dir)
    env["PREUVE_CACHE_DIR"] = str(settings.cache_dir)
    if settings.kafka_bootstrap:
        env["PREUVE_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    if settings.database_url:
        env["PREUVE_DATABASE_URL"] = settings.database_url.get_secret_value()
    if settings.pseudonym_key is not None:
        env["PREUVE_PSEUDONYM_KEY"] = settings.pseudonym_key.get_secret_value()
    if settings.simulated_now is not None:
        env["PREUVE_SIMULATED_NOW"] = settings.simulated_now.isoformat()
    for name, value in settings.topics.model_dump().items():
        env[f"PREUVE_TOPICS__{name.upper()}"] = value
    for name, value in settings.kafka.model_dump(exclude={"security"}).items():
        env[f"PREUVE_KAFKA__{name.upper()}"] = str(value)
    env.update(security_env(settings))
    for name, value in settings.worker.model_dump().items():
        env[f"PREUVE_WORKER__{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """``preuve worker`` in a child process, logging to a file."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 90.0) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "experiments", "worker"],
                env=settings_env(self.settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if READY_LINE in text:
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            "worker not ready in time:\n" + self.log.read_text(errors="replace")[-3000:]
        )

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(30)
