"""Fixtures for pipeline tests: per-test topics and consumer group, and a real worker process."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.stack import Stack
from opsmon.settings import Settings
from streams.topics import create_topics
from tests.integration.harness import WebhookReceiver, WorkerProcess


def _free_port() -> int:
    """A port nobody listens on now (concurrent test sessions must not share worker ports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pipeline_settings(stack: Stack, stack_settings: Settings, request: pytest.FixtureRequest,
                      tmp_path: Path) -> Settings:
    """Settings of one test: its own topics, app id (consumer group, changelogs) and web port."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]
    settings = stack_settings.model_copy(update={
        "app_id": f"opsmon-{name}",
        "topic_iot": f"{name}.iot", "topic_pos": f"{name}.pos", "topic_web": f"{name}.web",
        "topic_alerts": f"{name}.alerts", "topic_feedback": f"{name}.feedback",
        "worker_web_port": _free_port(),
        "data_dir": tmp_path / "worker",
        "idle_close_seconds": 2.0,
        "feedback_token": "test-feedback-token",
    })
    settings.__dict__.pop("dlq_topics", None)  # a cached property of the copied settings
    create_topics(settings)
    return settings


@pytest.fixture
def worker_factory(pipeline_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for the test (stopped at its end); their logs go to the test's tmp dir."""
    workers: list[WorkerProcess] = []

    def start(settings: Settings | None = None) -> WorkerProcess:
        w = WorkerProcess(settings or pipeline_settings, tmp_path / f"worker-{len(workers)}.log").start()
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()


@pytest.fixture
def webhook(stack_settings: Settings) -> Iterator[WebhookReceiver]:
    """The test's own receiver of what the stack's Alertmanager delivers."""
    hook = WebhookReceiver(stack_settings.alertmanager_webhook_url)
    yield hook
    hook.close()
