"""Shared fixtures: settings for a test stack on its own ports, and that stack, started once per session."""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from deploy.process import port_free
from deploy.stack import SERVICES, Stack
from opsmon.settings import Settings

# A port range of its own, so a developer's running demo stack (19092, 18086, ...) does not clash.
# Sessions running at the same time (several people, one machine) each claim the next free range,
# shifted by RANGE_STEP, by holding a lock file for the whole session.
TEST_PORTS = {
    "stack_kafka_port": 29092,
    "stack_kafka_controller_port": 29093,
    "stack_influxdb_port": 28086,  # and 28087 for its RPC listener
    "stack_alertmanager_port": 29193,
    "stack_mosquitto_port": 21883,
}
RANGE_STEP, RANGES = 10, 20
WEBHOOK_PORT = 29999  # the test's own webhook receiver, where the test Alertmanager sends notifications
_LOCK_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opsmon" / "test-stacks"


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing every client at the test stack, with data under a pytest tmp dir."""
    data_dir = tmp_path_factory.mktemp("opsmon")
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for index in range(RANGES):
        ports = {k: v + index * RANGE_STEP for k, v in TEST_PORTS.items()}
        settings = Settings(data_dir=data_dir, kafka_bootstrap=f"127.0.0.1:{ports['stack_kafka_port']}",
                            influx_url=f"http://127.0.0.1:{ports['stack_influxdb_port']}",
                            # The stack makes this InfluxDB user, so the worker writes with it as its v2 token.
                            influx_token=f"opsmon-writer:{secrets.token_urlsafe(12)}",
                            alertmanager_url=f"http://127.0.0.1:{ports['stack_alertmanager_port']}",
                            alertmanager_webhook_url=f"http://127.0.0.1:{WEBHOOK_PORT + index * RANGE_STEP}/alerts",
                            **ports)
        with (_LOCK_DIR / f"range-{index}.lock").open("a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live session owns this range
            _down_leftover(lock, settings)
            kafka = ports["stack_kafka_port"]  # and +2, +3: its SASL and TLS listeners
            if all(port_free(p) for p in (*ports.values(), ports["stack_influxdb_port"] + 1, kafka + 2, kafka + 3)):
                lock.truncate(0)
                lock.write(str(Stack(settings).root))
                lock.flush()
                yield settings  # the lock is held until the session ends
                return
    pytest.fail(f"no free test port range for the local stack (tried {RANGES}, see {_LOCK_DIR})")


@pytest.fixture(scope="session")
def stack(stack_settings: Settings) -> Iterator[Stack]:
    """All services of the local stack, up and healthy for the whole session, wiped at its end."""
    st = Stack(stack_settings)
    try:
        st.up(SERVICES)
        yield st
    finally:
        st.down(wipe=True)


def _down_leftover(lock: IO[str], settings: Settings) -> None:
    """Stop the stack of an earlier session that held this range and died before its teardown."""
    lock.seek(0)
    root = Path(lock.read().strip() or "/nonexistent")
    if root.is_dir():
        Stack(settings, root=root).down(wipe=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the real stack (directly or through another fixture) ``integration``."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
