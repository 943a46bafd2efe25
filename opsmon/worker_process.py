"""A real opsmon worker in a child process (``python -m opsmon worker``): for the demo, scenario runs and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from opsmon.settings import Settings


class WorkerProcess:
    """``python -m opsmon worker`` with the given settings; start, kill, restart, read its stats."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 90.0) -> WorkerProcess:
        """Start and wait until its web endpoint answers."""
        env = {**os.environ, **self.settings.to_env()}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "opsmon", "worker"], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.stats() is not None:
                return self
            time.sleep(0.5)
        raise RuntimeError(f"worker not ready after {ready_timeout}s:\n{self.log_tail()}")

    def stats(self) -> dict | None:
        """The worker's counters, or None while it is not serving."""
        try:
            resp = httpx.get(f"http://127.0.0.1:{self.settings.worker_web_port}/opsmon/stats", timeout=2)
            return resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def running(self) -> bool:
        """True while the child process lives."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM and wait (Faust shuts down cleanly)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        """The end of the worker's log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
