"""A real opsmon worker in a child process, as production runs it, for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from kafka import KafkaConsumer

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


def read_topic(settings: Settings, topic: str, expect: int, timeout: float = 60.0) -> list:
    """Every record of ``topic`` from the beginning, waiting until at least ``expect`` arrived."""
    consumer = KafkaConsumer(topic, **settings.kafka_client_config(), auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=1000)
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


class WebhookReceiver:
    """A real HTTP server on loopback that records every JSON body POSTed to it (Alertmanager's receiver)."""

    def __init__(self, url: str) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse

        self.bodies: list[dict] = []
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        bodies, arrivals, lock = self.bodies, self.arrivals, self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with lock:
                    bodies.append(body)
                    arrivals.append(time.time())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        parsed = urlparse(url)
        self.server = ThreadingHTTPServer((parsed.hostname or "127.0.0.1", parsed.port or 80), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, status: str | None = None) -> list[dict]:
        """Every alert of every notification so far (optionally of one status), with the group labels."""
        with self.lock:
            return [{**a, "groupLabels": n.get("groupLabels", {})} for n in self.bodies for a in n["alerts"]
                    if status is None or a["status"] == status]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
