"""A real opsmon worker in a child process, as production runs it, for integration tests."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from opsmon.settings import Settings
from opsmon.worker_process import WorkerProcess

__all__ = ["WebhookReceiver", "WorkerProcess", "committed_lag", "read_topic"]


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


def committed_lag(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    """Per partition of ``topics``, records beyond the worker group's committed offset, read from the broker."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)
    admin = KafkaAdminClient(**settings.kafka_client_config())
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(tps)
        committed = admin.list_consumer_group_offsets(settings.app_id)
    finally:
        consumer.close()
        admin.close()
    return {(tp.topic, tp.partition): end - (committed[tp].offset if tp in committed else 0)
            for tp, end in ends.items()}


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
