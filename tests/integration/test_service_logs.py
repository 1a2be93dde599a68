"""A service started as users start it (``preuve serve``) writes its INFO lines to stderr:
the CLI sets the root logger to WARNING for every command, and the service's own level
must win (before, the portal's sign-in lines and the gateway's "accepted" lines were
never written). Its state directory and files are private (0700, 0600)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from experiments.access import issue_token
from experiments.database import dispose_engines, registry_engine
from experiments.settings import Settings
from ingest.kafka.broker import free_port

pytestmark = pytest.mark.integration


def test_preuve_serve_logs_sign_ins_and_keeps_its_state_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = issue_token(registry_engine(Settings(state_dir=state)), "officer", "*")
    dispose_engines()
    os.chmod(state, 0o755)
    os.chmod(state / "registry.sqlite", 0o644)
    port = free_port()
    env = {**os.environ, "PREUVE_STATE_DIR": str(state), "PREUVE_LOG_LEVEL": "INFO"}
    server = subprocess.Popen([sys.executable, "-m", "experiments", "serve", "--port", str(port)],
                              env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # start-up, not an assertion on speed
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        for sent, expected in (("pv_officer_wrong", 401), (token, 303)):
            answer = httpx.post(f"{base}/connexion",
                                content=urlencode({"csrf": "c", "token": sent}).encode(),
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "Cookie": "preuve_login_csrf=c"})
            assert answer.status_code == expected, answer.text[:300]
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    assert "INFO experiments.portal.sign_ins: portal: sign-in refused from 127.0.0.1" in stderr
    assert "INFO experiments.portal.app: portal: officer:*:* signed in" in stderr, stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # The registry was made 0644 before the service started: the service tightened it.
    made = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in state.rglob("*")
            if p.is_file()}
    assert "registry.sqlite" in made and set(made.values()) == {"0o600"}, made
