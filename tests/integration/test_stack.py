"""The local stack for real: every service up and healthy, one round trip through each, restarts keep data."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from kafka import KafkaConsumer, KafkaProducer

from deploy.kafka import lib_dir
from deploy.stack import SERVICES, Stack, StackError
from opsmon.settings import Settings

T = TypeVar("T")


def _eventually(fetch: Callable[[], T | None], timeout: float = 20.0, what: str = "result") -> T:
    """Call ``fetch`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.2)


def _http(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=10.0, trust_env=False)


def _victoria_export(base: str, selector: str) -> list[dict]:
    """Series matching ``selector`` from victoria-metrics (forcing a flush so new series show at once)."""
    with _http(base) as http:
        http.get("/internal/force_flush").raise_for_status()
        resp = http.get("/api/v1/export", params={"match[]": selector, "start": "0"})
        resp.raise_for_status()
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def test_all_services_healthy(stack: Stack) -> None:
    status = stack.status()
    assert set(status) == set(SERVICES)
    for st in status.values():
        assert st.running and st.healthy, st
        assert st.pid is not None
    assert len({st.pid for st in status.values()}) == len(SERVICES)


def test_up_is_idempotent_and_status_works_from_a_new_instance(stack: Stack, stack_settings: Settings) -> None:
    before = {name: st.pid for name, st in stack.status().items()}
    other = Stack(stack_settings)  # as another process would see it: pid files and probes only
    assert other.up(SERVICES) == []
    assert {name: st.pid for name, st in other.status().items()} == before


def test_kafka_produce_and_consume(stack: Stack, stack_settings: Settings) -> None:
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(**stack_settings.kafka_client_config(), acks="all")
    producer.send(topic, key=b"k", value=b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, **stack_settings.kafka_client_config(), group_id=f"g-{topic}",
                             auto_offset_reset="earliest", consumer_timeout_ms=30_000)
    try:
        message = next(iter(consumer))
    finally:
        consumer.close()
    assert (message.key, message.value) == (b"k", b"hello")


def test_victoria_accepts_influx_v2_writes(stack: Stack) -> None:
    base = stack.status()["victoria"].endpoint
    ts_ns = time.time_ns()
    with InfluxDBClient(url=base, token="unused", org="opsmon") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            "opsmon", record=f"stack_test,site=s1,device=d1 temp_c=21.5,rpm=900i {ts_ns}")
    series = _eventually(lambda: _victoria_export(base, '{__name__=~"stack_test_.*"}'), what="series")
    by_name = {s["metric"]["__name__"]: s for s in series}
    assert set(by_name) == {"stack_test_temp_c", "stack_test_rpm"}
    temp = by_name["stack_test_temp_c"]
    assert temp["metric"] == {"__name__": "stack_test_temp_c", "site": "s1", "device": "d1"}
    assert temp["values"] == [21.5]
    assert temp["timestamps"] == [ts_ns // 1_000_000]  # milliseconds, truncated
    # PromQL sees a new sample about 0.5 s after the export API does: poll.
    with _http(base) as http:
        result = _eventually(lambda: http.get("/api/v1/query", params={
            "query": 'stack_test_rpm{site="s1"}', "time": f"{ts_ns / 1e9:.3f}"}).json()["data"]["result"],
            what="query result")
    assert result[0]["value"][1] == "900"


def test_influxdb_write_and_influxql(stack: Stack, stack_settings: Settings) -> None:
    base = stack.status()["influxdb"].endpoint
    db = stack_settings.influx_bucket  # created by the stack on start
    ts_ms = int(time.time() * 1000)
    with _http(base) as http:
        http.post("/write", params={"db": db, "precision": "ms"},
                  content=f"window_agg,site=s1 mean=2.5,count=4i {ts_ms}").raise_for_status()
        resp = http.get("/query", params={"db": db, "epoch": "ms",
                                          "q": "SELECT mean, count FROM window_agg WHERE site = 's1'"})
    resp.raise_for_status()
    series = resp.json()["results"][0]["series"][0]
    assert series["columns"] == ["time", "mean", "count"]
    assert series["values"] == [[ts_ms, 2.5, 4]]


def test_alertmanager_accepts_alerts(stack: Stack) -> None:
    base = stack.status()["alertmanager"].endpoint
    name = f"StackTest{uuid.uuid4().hex[:6]}"
    with _http(base) as http:
        resp = http.post("/api/v2/alerts", json=[{"labels": {"alertname": name, "severity": "info"},
                                                  "annotations": {"summary": "stack test"}}])
        assert resp.status_code == 200, resp.text
        alerts = _eventually(lambda: [a for a in http.get("/api/v2/alerts").json()
                                      if a["labels"]["alertname"] == name], what="alert")
    assert alerts[0]["status"]["state"] in ("active", "unprocessed")


def test_mosquitto_pub_sub(stack: Stack, stack_settings: Settings) -> None:
    port = stack_settings.stack_mosquitto_port
    topic = f"opsmon/test/{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []
    subscribed, received = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:6]}")
    client.on_connect = lambda c, _u, _f, rc, _p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, msg: (got.append(msg.payload), received.set())
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        client.publish(topic, b"21.5", qos=1).wait_for_publish(10)
        assert received.wait(10)
    finally:
        client.loop_stop()
        client.disconnect()
    assert got == [b"21.5"]


def test_victoria_stop_start_keeps_data(stack: Stack) -> None:
    base = stack.status()["victoria"].endpoint
    ts_ms = int(time.time() * 1000)
    with _http(base) as http:
        http.post("/write", params={"db": "stacktest"}, content=f"restart_probe value=7 {ts_ms * 1_000_000}")
    _eventually(lambda: _victoria_export(base, "restart_probe_value"), what="point before restart")
    old_pid = stack.status()["victoria"].pid
    stack.stop("victoria")
    try:
        st = stack.status()["victoria"]
        assert not st.running and not st.healthy and st.pid is None
    finally:
        assert stack.start("victoria") is True
    assert stack.status()["victoria"].pid != old_pid
    series = _victoria_export(base, "restart_probe_value")
    assert series[0]["metric"] == {"__name__": "restart_probe_value", "db": "stacktest"}
    assert series[0]["values"] == [7] and series[0]["timestamps"] == [ts_ms]


def test_kafka_survives_kill(stack: Stack, stack_settings: Settings) -> None:
    topic = f"stack-kill-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(**stack_settings.kafka_client_config(), acks="all")
    producer.send(topic, value=b"before-crash").get(timeout=30)
    producer.close()
    stack.kill("kafka")
    try:
        assert not stack.status()["kafka"].running
    finally:
        stack.start("kafka")
    consumer = KafkaConsumer(topic, **stack_settings.kafka_client_config(), auto_offset_reset="earliest",
                             consumer_timeout_ms=30_000)
    try:
        assert next(iter(consumer)).value == b"before-crash"
    finally:
        consumer.close()


@pytest.mark.integration
def test_failed_start_reports_the_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An invalid webhook URL makes Alertmanager reject its config and exit at once.
    monkeypatch.setenv("OPSMON_ALERTMANAGER_WEBHOOK_URL", "not a url")
    stack = Stack(Settings(data_dir=tmp_path, stack_alertmanager_port=_free_port()))
    with pytest.raises(StackError, match=r"(?s)alertmanager exited.*last lines of .*alertmanager\.log"):
        stack.up(["alertmanager"])
    assert not stack.status()["alertmanager"].running


def test_port_taken_by_a_stranger_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        stack = Stack(Settings(data_dir=tmp_path, stack_mosquitto_port=port))
        with pytest.raises(StackError, match=f"port {port} .* did not start"):
            stack.up(["mosquitto"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_install_script_and_python_agree_on_the_kafka_jar_cache() -> None:
    script = Path(__file__).parents[2] / "deploy" / "install-system-deps.sh"
    out = subprocess.run(["bash", str(script), "--print-kafka-lib"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == lib_dir()
