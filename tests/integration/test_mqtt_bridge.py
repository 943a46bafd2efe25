"""MQTT bridge against the real Mosquitto and Kafka: everything forwarded, nothing lost across restarts.

Devices publish with QoS 1. The bridge acknowledges a message to Mosquitto only after Kafka has it and
keeps a persistent session, so while it is down Mosquitto queues the readings. After a clean stop no
reading is lost; after a SIGKILL none is lost either, but some may be in Kafka twice (produced, killed
before the PUBACK): the pipeline overwrites readings by timestamp, so duplicates are harmless.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from opsmon.settings import Settings
from streams.mqtt_bridge import BridgeConfig, MqttBridge
from streams.schemas import MAX_EVENT_BYTES
from tests.integration.harness import read_topic

T0 = 1_794_787_200.0  # 2026-11-16T00:00:00Z


def _reading(i: int) -> tuple[str, bytes]:
    """Reading ``i``: its topic path and payload; every third one names site and device itself."""
    site, device = f"site-{i % 2}", f"dev-{i % 5}"
    body: dict = {"v": 1, "time": f"2026-11-16T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                  "measurements": {"temperature": round(4 + i / 1000, 3), "seq": float(i)}}
    if i % 3 == 0:
        body = {"site": site, "device": device, **body}
    return f"sites/{site}/devices/{device}/readings", orjson.dumps(body)


def _identity(value: bytes) -> tuple:
    ev = orjson.loads(value)
    return ev["site"], ev["device"], ev["time"], ev["measurements"]["seq"]


def _expected(indices: range) -> set[tuple]:
    return {(f"site-{i % 2}", f"dev-{i % 5}", f"2026-11-16T00:{i // 60 % 60:02d}:{i % 60:02d}Z", float(i))
            for i in indices}


class Devices:
    """A paho client publishing readings with QoS 1 under a per-test topic prefix."""

    def __init__(self, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"devices-{prefix}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, indices: range, rate: float | None = None) -> None:
        """Publish readings and wait until Mosquitto has acknowledged every one (PUBACK)."""
        infos = []
        for i in indices:
            topic, payload = _reading(i)
            infos.append(self.client.publish(f"{self.prefix}/{topic}", payload, qos=1))
            if rate:
                time.sleep(1 / rate)
        for info in infos:
            info.wait_for_publish(timeout=30)
            assert info.is_published()

    def raw(self, topic: str, payload: bytes) -> None:
        """Publish any payload."""
        self.client.publish(f"{self.prefix}/{topic}", payload, qos=1).wait_for_publish(timeout=30)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix (and client-id part) of this test only."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def devices(pipeline_settings: Settings, prefix: str):  # noqa: ANN201
    """Devices publishing to the test stack's Mosquitto."""
    d = Devices(pipeline_settings.stack_mosquitto_port, prefix)
    yield d
    d.close()


def _config(settings: Settings, prefix: str, protocol: str = "5") -> BridgeConfig:
    return BridgeConfig(port=settings.stack_mosquitto_port, topic=f"{prefix}/sites/+/devices/+/readings",
                        client_id=f"bridge-{prefix}", protocol=protocol)  # type: ignore[arg-type]


def _values(settings: Settings, expect: int, timeout: float = 60.0) -> list[bytes]:
    return [r.value for r in read_topic(settings, settings.topic_iot, expect=expect, timeout=timeout)]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])  # session expiry (5) or clean_session=False (3.1.1)
def test_forwards_all_and_restart_loses_nothing(
        pipeline_settings: Settings, devices: Devices, prefix: str, protocol: str) -> None:
    s = pipeline_settings
    bridge = MqttBridge(s, _config(s, prefix, protocol)).start(wait=15)
    assert bridge.subscribed
    devices.publish(range(0, 200))
    records = read_topic(s, s.topic_iot, expect=200, timeout=30)
    assert Counter(_identity(r.value) for r in records) == Counter(_expected(range(0, 200)))  # exact, no duplicates
    assert {r.key.decode() for r in records} == {f"site-{i % 2}/dev-{i % 5}" for i in range(10)}
    assert dict(records[0].headers)["opsmon-mqtt-topic"].startswith(prefix.encode())

    # Restart mid-stream: devices keep publishing (QoS 1) while the bridge stops and starts again.
    stream = threading.Thread(target=devices.publish, args=(range(200, 800), 400.0))
    stream.start()
    time.sleep(0.5)
    bridge.stop()
    stopped = bridge.stats()
    time.sleep(0.5)
    bridge = MqttBridge(s, _config(s, prefix, protocol)).start(wait=15)
    stream.join(timeout=60)
    values = _values(s, expect=800)
    bridge.stop()
    got = Counter(_identity(v) for v in values)
    assert set(got) == _expected(range(0, 800))  # nothing lost
    assert stopped["acked"] + stopped["pending"] >= 200 and stopped["ignored"] + 200 < 800  # it did stop mid-stream
    assert max(got.values()) == 1  # a clean stop acknowledges all it forwarded: no duplicates either


def test_invalid_and_oversized_payloads(pipeline_settings: Settings, devices: Devices, prefix: str) -> None:
    s = pipeline_settings
    bridge = MqttBridge(s, _config(s, prefix)).start(wait=15)
    try:
        devices.raw("sites/s9/devices/d9/readings", b"{not json")
        devices.raw("sites/s9/devices/d9/readings", b'{"v":1,"time":"2026-11-16T00:00:00Z","measurements":{}}')
        devices.raw("sites/s9/devices/d9/readings", b"x" * (MAX_EVENT_BYTES + 10))
        devices.publish(range(0, 1))  # and a good one after them is not held up
        iot = read_topic(s, s.topic_iot, expect=3, timeout=30)
        dlq = read_topic(s, s.dlq_topics[s.topic_iot], expect=1, timeout=30)
    finally:
        bridge.stop()
    # Invalid readings go to the IoT topic unchanged (keyed by the topic path): the worker dead-letters them.
    assert [(r.key, r.value[:9]) for r in iot[:2]] == [(b"s9/d9", b"{not json"), (b"s9/d9", b'{"v":1,"t')]
    assert _identity(iot[2].value) == next(iter(_expected(range(0, 1))))
    # Oversized ones cannot be valid (and may exceed Kafka's limit): cut, straight to the dead-letter topic.
    (dead,) = dlq
    headers = dict(dead.headers)
    assert len(dead.value) == MAX_EVENT_BYTES and headers["opsmon-kind"] == b"size"
    assert headers["opsmon-reason"].startswith(b"size: ") and dead.key == b"s9/d9"


def _cli_bridge(settings: Settings, prefix: str, log: Path) -> subprocess.Popen:
    """``opsmon bridge mqtt`` in a child process, once it has subscribed (it logs to ``log``)."""
    before = log.read_text().count("mqtt bridge subscribed") if log.exists() else 0
    env = {**os.environ, **settings.to_env(), "OPSMON_LOG_LEVEL": "info"}
    with log.open("ab") as f:
        proc = subprocess.Popen([sys.executable, "-m", "opsmon", "bridge", "mqtt", "--topic",
                                 f"{prefix}/sites/+/devices/+/readings", "--client-id", f"bridge-{prefix}"],
                                env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while log.read_text().count("mqtt bridge subscribed") == before:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return proc


def test_killed_mid_stream_loses_nothing(pipeline_settings: Settings, devices: Devices, prefix: str,
                                                tmp_path: Path) -> None:
    s = pipeline_settings
    log = tmp_path / "bridge.log"
    proc = _cli_bridge(s, prefix, log)
    stream = threading.Thread(target=devices.publish, args=(range(0, 600), 300.0))
    stream.start()
    time.sleep(0.8)
    proc.send_signal(signal.SIGKILL)  # a crash: no flush, no PUBACKs for what was in flight
    proc.wait(timeout=10)
    proc = _cli_bridge(s, prefix, log)
    try:
        stream.join(timeout=60)
        values = _values(s, expect=600)
        deadline = time.monotonic() + 30
        while {_identity(v) for v in values} != _expected(range(0, 600)) and time.monotonic() < deadline:
            values = _values(s, expect=len(values) + 1, timeout=2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    got = Counter(_identity(v) for v in values)
    assert set(got) == _expected(range(0, 600)), log.read_text()[-3000:]  # nothing lost
    duplicates = sum(got.values()) - len(got)
    assert duplicates < 600  # at most what was in flight when it died
    assert "mqtt bridge stopped" in log.read_text()  # SIGTERM: a clean stop
