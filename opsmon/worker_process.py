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

    ARGV: tuple[str, ...] = ("-m", "opsmon", "worker")  # after the interpreter

    def __init__(self, settings: Settings, log_path: Path, argv: tuple[str, ...] | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.argv = argv or self.ARGV
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float | None = 90.0) -> WorkerProcess:
        """Spawn it in its own session (a Ctrl-C of the parent does not reach it first) and, unless
        ``ready_timeout`` is None, wait until its web endpoint answers."""
        if self.stats() is not None:  # its readiness would be another worker's (and its counters too)
            raise RuntimeError(f"a worker already answers on port {self.settings.worker_web_port}: stop it or "
                               "change OPSMON_WORKER_WEB_PORT")
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, *self.argv], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        if ready_timeout is not None:
            self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until the web endpoint answers; RuntimeError with the log tail if the worker dies or hangs."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if self.stats() is not None:
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        """RuntimeError with the log tail if the worker exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")

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
