"""Kafka over SASL/SCRAM-SHA-512 (plain and TLS) against the real broker, and secrets that are never shown.

The local stack's broker has SCRAM listeners on its port + 2 (SASL_PLAINTEXT) and + 3 (SASL_SSL, a CA made
by the stack); the password of its user sits in a file, which is how opsmon reads it here too
(``OPSMON_KAFKA_SASL_PASSWORD_FILE``). Secrets get distinctive values, and every log and output the test
produced is searched for them.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from pydantic import SecretStr
from typer.testing import CliRunner

from deploy.stack import Stack
from opsmon.cli import app as cli_app
from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, raw
from tests.integration.harness import WorkerProcess
from tests.tsdb import eventually, influx_points

SECRET_FIELDS = ("kafka_sasl_password", "influx_token", "feedback_token", "link_secret")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _secure(settings: Settings, stack: Stack, protocol: str, password: str | None = None) -> Settings:
    """``settings`` pointed at one of the broker's SCRAM listeners (password: None reads it from the file)."""
    auth = stack.kafka_auth
    port = auth.ssl_port if protocol == "SASL_SSL" else auth.sasl_port
    return settings.model_copy(update={
        "kafka_bootstrap": f"127.0.0.1:{port}", "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": auth.username,
        "kafka_sasl_password": SecretStr(password) if password is not None else None,
        "kafka_ssl_cafile": auth.cafile if protocol == "SASL_SSL" else None})


def _cli(settings: Settings, *args: str, exit_code: int = 0) -> str:
    result = CliRunner().invoke(cli_app, list(args), env={**settings.to_env(), "COLUMNS": "200"})
    assert result.exit_code == exit_code, result.output + repr(result.exception)
    return result.output


def test_settings_never_show_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {f: f"{f}-{uuid.uuid4().hex}" for f in SECRET_FIELDS}
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n")
        monkeypatch.setenv(f"OPSMON_{name.upper()}_FILE", str(tmp_path / name))
    from_files = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="opsmon")
    direct = Settings(**values)
    for s in (from_files, direct):
        assert {f: getattr(s, f).get_secret_value() for f in SECRET_FIELDS} == values
        shown = [repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), repr(s.model_fields_set)]
        from streams.app import faust_broker_options

        shown.append(repr(faust_broker_options(s)))
        for text in shown:
            for value in values.values():
                assert value not in text


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_scram_login_works_and_a_wrong_password_is_refused_clearly(
        stack: Stack, stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    monkeypatch.setenv("OPSMON_KAFKA_SASL_PASSWORD_FILE", str(stack.kafka_auth.password_file))
    good = Settings(**_secure(stack_settings, stack, protocol).model_dump(exclude={"kafka_sasl_password"}))
    assert good.kafka_sasl_password is not None  # read from the file
    topic = f"scram-{protocol.lower()}-{uuid.uuid4().hex[:6]}"
    producer = KafkaProducer(**good.kafka_client_config(), acks="all")
    producer.send(topic, key=b"k", value=b"over scram").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, **good.kafka_client_config(), auto_offset_reset="earliest", group_id=None,
                             consumer_timeout_ms=20_000)
    try:
        assert next(iter(consumer)).value == b"over scram"
    finally:
        consumer.close()

    wrong = f"wrong-{uuid.uuid4().hex}"
    bad = _secure(stack_settings, stack, protocol, password=wrong)
    out = _cli(bad, "dlq", "inspect", exit_code=1)
    assert "invalid credentials" in out and "SCRAM-SHA-512 as opsmon" in out, out
    assert wrong not in out


def test_worker_over_scram_and_tls_processes_events_and_no_secret_is_ever_logged(
        stack: Stack, pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    auth = stack.kafka_auth
    password = auth.password_file.read_text().strip()
    # The InfluxDB token must be one the server knows: the session's writer, user:password generated per session.
    influx_token, feedback_token = pipeline_settings.influx_token.get_secret_value(), f"feedback-{uuid.uuid4().hex}"
    link_secret = f"link-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPSMON_KAFKA_SASL_PASSWORD_FILE", str(auth.password_file))
    s = _secure(pipeline_settings, stack, "SASL_SSL").model_copy(update={
        "influx_token": SecretStr(influx_token), "feedback_token": SecretStr(feedback_token),
        "link_secret": SecretStr(link_secret), "worker_web_port": _free_port(), "log_level": "debug"})
    assert "OPSMON_KAFKA_SASL_PASSWORD" not in s.to_env()  # the worker reads it from the file
    worker = worker_factory(s)

    site = f"sec{uuid.uuid4().hex[:6]}"
    t0 = time.time() - 300
    with Publisher(s.model_copy(update={"kafka_sasl_password": SecretStr(password)})) as pub:
        for i in range(5):
            pub.send_raw("iot", f"{site}/d1", raw(iot(t0 + i, site, "d1", temperature=20.0 + i)))
        pub.send_raw("iot", f"{site}/d1", b"{broken")
    stats = eventually(worker.stats, lambda st: (st or {}).get("iot", {}).get("events", 0) == 5
                       and st["iot"].get("dead_lettered") == 1, timeout=60)
    assert stats["iot"]["events"] == 5, worker.log_tail()
    pts = eventually(lambda: influx_points(s, f'iot_reading_temperature{{site="{site}"}}'),
                     lambda p: len(p) == 5, timeout=30)
    assert sorted(pts.values()) == [20.0, 21.0, 22.0, 23.0, 24.0]

    # The CLI with the same secrets: reading dead letters over SCRAM+TLS, feedback with the bearer token.
    outputs = [_cli(s, "dlq", "inspect"), _cli(s, "dlq", "replay", "--dry-run")]
    assert "1 dead letter(s): iot 1" in outputs[0]
    outputs.append(_cli(s, "alerts", "ack", f"iot:{site}/d1:temperature:{int(t0)}", exit_code=1))
    assert "unknown alert id" in outputs[-1]  # the token was accepted; the alert does not exist
    outputs.append(_cli(s, "alerts", "link", f"iot:{site}/d1:temperature:{int(t0)}", "--by", "sam"))
    assert "/opsmon/link?t=" in outputs[-1]  # signed with the link secret, which it does not show

    # A worker with a wrong password stops with the broker's reason, and does not print the password.
    wrong = f"wrong-{uuid.uuid4().hex}"
    bad = s.model_copy(update={"kafka_sasl_password": SecretStr(wrong), "worker_web_port": _free_port(),
                               "app_id": s.app_id + "-wrong", "log_level": "info"})
    refused = WorkerProcess(bad, tmp_path / "worker-wrong-password.log")
    with pytest.raises(RuntimeError, match="worker exited with 1"):
        refused.start(ready_timeout=60)
    log = refused.log_path.read_text(errors="replace")
    assert "[ERROR] Unable connect to" in log and "Authentication failed during authentication due to invalid " \
        "credentials with SASL mechanism SCRAM-SHA-512" in log
    assert wrong not in log

    worker.stop()
    secrets = {"SASL password": password, "InfluxDB token": influx_token, "feedback token": feedback_token,
               "link secret": link_secret}
    logs = [p for p in (*tmp_path.rglob("*"), *stack.root.rglob("*"))
            if p.is_file() and p != auth.password_file]
    assert any(p.name.startswith("worker-0") for p in logs) and any(p.name == "server.log" for p in logs)
    assert "[DEBUG]" in worker.log_path.read_text(errors="replace")  # the chattiest level was searched
    for name, secret in secrets.items():
        for text in outputs:
            assert secret not in text, f"{name} in CLI output"
        needle = secret.encode()
        for path in logs:
            assert needle not in path.read_bytes(), f"{name} in {path}"
