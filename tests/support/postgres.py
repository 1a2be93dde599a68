"""A throwaway PostgreSQL cluster from Debian's ``postgresql`` package.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is created
and started as the ``postgres`` system user (``runuser``), in a directory it owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.kafka.broker import free_port


def _bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if candidates:
        return candidates[-1]
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} not found: apt-get install postgresql")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class PostgresCluster:
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://preuve@127.0.0.1:{self.port}/{database}"

    durable: bool = False

    @classmethod
    def start(cls, durable: bool = False) -> PostgresCluster:
        """Create and start a cluster; ``durable`` keeps fsync on (benchmarks), tests
        turn it off for speed."""
        root = Path(tempfile.mkdtemp(prefix="preuve-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = cls(root=root, port=free_port(), durable=durable)
        subprocess.run(
            _as_postgres([_bin("initdb"), "-D", str(cluster.data), "-U", "preuve", "-A", "trust",
                          "--no-sync", "-E", "UTF8", "--locale=C"]),
            check=True, capture_output=True,
        )
        cluster.pg_ctl("start")
        return cluster

    def pg_ctl(self, action: str) -> None:
        # fsync off: a test cluster need not survive power loss, and it is much faster.
        durability = "" if self.durable else "-c fsync=off -c full_page_writes=off "
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            f"{durability}-c max_connections=200"
        )
        command = [_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                   "-w", "-t", "60", "-m", "fast"]
        if action == "start":
            command += ["-o", options]
        subprocess.run(_as_postgres([*command, action]), check=True, capture_output=True)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=preuve dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self.pg_ctl("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def wait_until(predicate, timeout_s: float, interval_s: float = 0.25) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
