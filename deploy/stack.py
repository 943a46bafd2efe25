"""The local stack: Kafka, InfluxDB (built from source), Alertmanager and Mosquitto as child processes.

No Docker and no systemd: each service runs from its binary with config, data, log and pid file
under ``root/<service>/``, in its own session so it outlives the process that started it. Any
process can find and control the stack again from the pid files.

    stack = Stack(Settings())
    stack.up(["kafka", "influxdb"])     # blocks until healthy
    stack.influx_auth().token           # the InfluxDB writer as ``user:password`` (the v2 API token)
    stack.status()["kafka"].healthy
    stack.kafka_auth.password_file       # SCRAM listeners: kafka port + 2 (SASL_PLAINTEXT), + 3 (SASL_SSL)
    stack.down()
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deploy import influxdb as _influxdb
from deploy import kafka as _kafka
from deploy import process, services
from deploy.process import StackError
from deploy.services import ServiceSpec
from opsmon.settings import Settings

__all__ = ["DEFAULT_SERVICES", "SERVICES", "ServiceStatus", "Stack", "StackError"]

SERVICES: tuple[str, ...] = ("kafka", "influxdb", "alertmanager", "mosquitto")
DEFAULT_SERVICES: tuple[str, ...] = ("kafka", "influxdb", "alertmanager")
DEFAULT_WEBHOOK_URL = "http://127.0.0.1:19999/alerts"


@dataclass(frozen=True)
class ServiceStatus:
    """What ``Stack.status`` reports for one service."""

    name: str
    running: bool
    healthy: bool
    pid: int | None
    port: int
    endpoint: str  # URL for HTTP services, host:port for Kafka, mqtt://host:port for Mosquitto


def _port(settings: Settings, name: str, default: int) -> int:
    """A stack port from settings, else from ``OPSMON_<NAME>``, else ``default``."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(f"OPSMON_{name.upper()}")
    return int(value) if value is not None and str(value).strip() != "" else default


class Stack:
    """The services of one stack root: start, probe, stop; safe to use from several processes."""

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.settings = settings
        self.root = Path(root if root is not None else settings.data_dir / "stack").absolute()
        s = settings
        webhook = (getattr(s, "alertmanager_webhook_url", None)
                   or os.environ.get("OPSMON_ALERTMANAGER_WEBHOOK_URL") or DEFAULT_WEBHOOK_URL)
        # SCRAM listeners next to the plain one: SASL_PLAINTEXT on kafka port + 2, SASL_SSL on + 3 (0: off).
        sasl_port = _port(s, "stack_kafka_sasl_port", s.stack_kafka_port + 2)
        ssl_port = _port(s, "stack_kafka_ssl_port", s.stack_kafka_port + 3)
        self.kafka_auth = _kafka.kafka_auth(self.root / "kafka", sasl_port, ssl_port)
        self.specs: dict[str, ServiceSpec] = {
            "kafka": _kafka.kafka(self.root / "kafka", s.stack_kafka_port, s.stack_kafka_controller_port,
                                  s.kafka_partitions, sasl_port=sasl_port, ssl_port=ssl_port),
            "influxdb": _influxdb.influxdb(self.root / "influxdb", s.stack_influxdb_port, self.influx_database,
                                           s.influx_token.get_secret_value()),
            "alertmanager": services.alertmanager(self.root / "alertmanager", s.stack_alertmanager_port,
                                                  str(webhook), s.boards_only_severities),
            "mosquitto": services.mosquitto(self.root / "mosquitto", s.stack_mosquitto_port),
        }

    @property
    def influx_database(self) -> str:
        """The database the stack creates: the bucket's name before any ``/retention-policy``."""
        return self.settings.influx_bucket.split("/", 1)[0]

    def influx_auth(self) -> _influxdb.InfluxAuth:
        """The InfluxDB credentials: the writer from ``OPSMON_INFLUX_TOKEN`` if ``user:password``, else generated."""
        return _influxdb.influx_auth(self.specs["influxdb"].home, self.settings.influx_token.get_secret_value())

    def up(self, names: Iterable[str] | None = None) -> list[str]:
        """Start the named services (default: kafka, influxdb, alertmanager) that are not running.

        Blocks until all of them are healthy; returns the names it actually started.
        """
        wanted = self._check(DEFAULT_SERVICES if names is None else names)
        with ThreadPoolExecutor(max_workers=len(wanted) or 1) as pool:
            futures = {name: pool.submit(self._ensure, name) for name in wanted}
        errors = [str(f.exception()) for f in futures.values() if f.exception() is not None]
        if errors:
            raise StackError("\n\n".join(errors))
        return [name for name, f in futures.items() if f.result()]

    def start(self, name: str) -> bool:
        """Start one service (keeping its data) and wait until healthy; False if it already ran."""
        self._check([name])
        return self._ensure(name)

    def stop(self, name: str) -> None:
        """Stop one service with SIGTERM (SIGKILL after its stop timeout); its data stays."""
        spec = self.specs[self._check([name])[0]]
        process.stop(process.read_pid(spec.pid_file), spec.stop_timeout)
        spec.pid_file.unlink(missing_ok=True)

    def kill(self, name: str) -> None:
        """Kill one service with SIGKILL, as a crash would."""
        spec = self.specs[self._check([name])[0]]
        record = process.read_pid(spec.pid_file)
        if record is not None and not process.signal_and_wait(record, signal.SIGKILL, 10.0):
            raise StackError(f"{name} (pid {record.pid}) survived SIGKILL")
        spec.pid_file.unlink(missing_ok=True)

    def down(self, wipe: bool = False) -> None:
        """Stop every service of this root; with ``wipe`` also delete the root (all data and logs)."""
        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            # Kafka's controlled shutdown takes seconds: stop all in parallel.
            futures = [pool.submit(self.stop, name) for name in SERVICES]
        errors = [str(f.exception()) for f in futures if f.exception() is not None]
        if errors:
            raise StackError("\n".join(errors))
        if wipe:
            shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> dict[str, ServiceStatus]:
        """Running and healthy state of every service, read from pid files and health probes."""
        result = {}
        for name in SERVICES:
            spec = self.specs[name]
            record = process.read_pid(spec.pid_file)
            running = process.alive(record)
            result[name] = ServiceStatus(
                name=name, running=running, healthy=running and spec.probe(),
                pid=record.pid if running and record else None, port=spec.port, endpoint=spec.endpoint)
        return result

    def log_file(self, name: str) -> Path:
        """The stdout/stderr log of one service."""
        return self.specs[self._check([name])[0]].log_file

    def _check(self, names: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in SERVICES]
        if unknown:
            raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
        return wanted

    def _ensure(self, name: str) -> bool:
        """Start ``name`` unless it runs; wait until healthy; True when this call started it."""
        spec = self.specs[name]
        record = process.read_pid(spec.pid_file)
        started = False
        if not process.alive(record):
            busy = [p for p in spec.binds if not process.port_free(p)]
            if busy:
                raise StackError(f"{name}: port {', '.join(map(str, busy))} on 127.0.0.1 is taken by a "
                                 f"process this stack ({self.root}) did not start; stop it or change "
                                 f"the OPSMON_STACK_* ports")
            spec.home.mkdir(parents=True, exist_ok=True)
            argv = spec.prepare()
            record = process.spawn(argv, cwd=spec.home, log_file=spec.log_file, pid_file=spec.pid_file,
                                   env=spec.env)
            started = True
        assert record is not None
        process.wait_healthy(name, record, spec.probe, spec.start_timeout, (spec.log_file, *spec.extra_logs))
        if started and spec.after_start is not None:
            spec.after_start()
        return started
