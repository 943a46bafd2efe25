"""The local stack for real: every service up and healthy, one round trip through each, restarts keep data."""

from __future__ import annotations

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
from influxdb_client.rest import ApiException
from kafka import KafkaConsumer, KafkaProducer

from deploy.influxdb import cache_dir as influxdb_cache_dir
from deploy.influxdb import version as influxdb_version
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


def _influx(stack: Stack) -> tuple[str, tuple[str, str]]:
    """The stack's InfluxDB endpoint and its writer's basic-auth credential."""
    auth = stack.influx_auth()
    return stack.status()["influxdb"].endpoint, (auth.writer_user, auth.writer_password)


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


def test_influxdb_reports_the_built_version_and_requires_auth(stack: Stack, stack_settings: Settings) -> None:
    base, writer = _influx(stack)
    with _http(base) as http:
        ping = http.get("/ping")
        assert ping.status_code == 204
        assert ping.headers["X-Influxdb-Version"] == influxdb_version()  # -X main.version at build
        anonymous = http.post("/query", data={"q": "SHOW DATABASES"})
        assert anonymous.status_code == 401, anonymous.text
        wrong = http.post("/query", data={"q": "SHOW DATABASES"}, auth=(writer[0], "wrong"))
        assert wrong.status_code == 401, wrong.text
        # The writer is no admin: it cannot create users.
        denied = http.post("/query", data={"q": "CREATE USER x WITH PASSWORD 'y'"}, auth=writer).json()
    assert "error" in denied or "error" in denied.get("results", [{}])[0], denied
    # The tests hand the stack a user:password token; the stack made that user.
    assert stack.influx_auth().token == stack_settings.influx_token.get_secret_value()
    assert stack.influx_auth().writer_source == "OPSMON_INFLUX_TOKEN"
    assert stack.influx_auth().admin_password_file.stat().st_mode & 0o777 == 0o600


def test_influxdb_database_and_retention_policy_exist(stack: Stack, stack_settings: Settings) -> None:
    base, writer = _influx(stack)
    with _http(base) as http:
        resp = http.post("/query", data={"q": f'SHOW RETENTION POLICIES ON "{stack.influx_database}"'}, auth=writer)
    resp.raise_for_status()
    series = resp.json()["results"][0]["series"][0]
    policies = {row[0]: dict(zip(series["columns"], row, strict=True)) for row in series["values"]}
    assert policies["autogen"]["duration"] == "0s" and policies["autogen"]["default"] is True


def test_influxdb_v2_write_with_the_writer_token(stack: Stack, stack_settings: Settings) -> None:
    base, writer = _influx(stack)
    ts_ns = time.time_ns()
    with InfluxDBClient(url=base, token=stack.influx_auth().token, org="opsmon") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            stack_settings.influx_bucket, record=f"stack_test,site=s1,device=d1 temp_c=21.5,rpm=900i {ts_ns}")
    with _http(base) as http:
        resp = http.post("/query", auth=writer, data={
            "db": stack.influx_database, "epoch": "ns",
            "q": "SELECT temp_c, rpm FROM stack_test WHERE site = 's1' AND device = 'd1'"})
    resp.raise_for_status()
    series = resp.json()["results"][0]["series"][0]
    assert series["values"] == [[ts_ns, 21.5, 900]]
    # A wrong token is refused, not silently dropped.
    with InfluxDBClient(url=base, token=f"{writer[0]}:wrong", org="opsmon") as client, \
            pytest.raises(ApiException) as refused:
        client.write_api(write_options=SYNCHRONOUS).write(stack_settings.influx_bucket, record="stack_test x=1")
    assert refused.value.status == 401


def test_influxdb_write_and_influxql(stack: Stack, stack_settings: Settings) -> None:
    base, writer = _influx(stack)
    db = stack.influx_database  # created by the stack on start
    ts_ms = int(time.time() * 1000)
    with _http(base) as http:
        http.post("/write", params={"db": db, "precision": "ms"}, auth=writer,
                  content=f"window_agg,site=s1 mean=2.5,count=4i {ts_ms}").raise_for_status()
        resp = http.get("/query", params={"db": db, "epoch": "ms",
                                          "q": "SELECT mean, count FROM window_agg WHERE site = 's1'"}, auth=writer)
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


def test_influxdb_stop_start_keeps_data_and_users(stack: Stack) -> None:
    base, writer = _influx(stack)
    db = stack.influx_database
    ts_ms = int(time.time() * 1000)
    with _http(base) as http:
        http.post("/write", params={"db": db, "precision": "ms"}, auth=writer,
                  content=f"restart_probe value=7 {ts_ms}").raise_for_status()
    old_pid = stack.status()["influxdb"].pid
    stack.stop("influxdb")
    try:
        st = stack.status()["influxdb"]
        assert not st.running and not st.healthy and st.pid is None
    finally:
        assert stack.start("influxdb") is True
    assert stack.status()["influxdb"].pid != old_pid
    with _http(base) as http:
        resp = http.get("/query", params={"db": db, "epoch": "ms", "q": "SELECT value FROM restart_probe"},
                        auth=writer)
    resp.raise_for_status()
    assert resp.json()["results"][0]["series"][0]["values"] == [[ts_ms, 7]]


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


def test_build_script_and_python_agree_on_the_influxdb_cache() -> None:
    script = Path(__file__).parents[2] / "deploy" / "build-influxd.sh"
    out = subprocess.run(["bash", str(script), "--print-dir"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == influxdb_cache_dir()
    assert influxdb_version() in out.stdout
