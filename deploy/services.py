"""How each Debian-packaged service of the local stack is configured, started and probed.

Victoria-metrics stands in for InfluxDB 2.x/3.x as the write target (``influx_url``): it accepts
InfluxDB line protocol on ``/write`` and ``/api/v2/write`` and is queried with PromQL/MetricsQL or
``/api/v1/export``. How it maps line protocol (this is version 1.79, flags as set below):

* metric name = ``{measurement}_{field}`` for every field, even when a line has a single field
  (``-influxSkipSingleField`` is off, ``-influxMeasurementFieldSeparator`` is the default ``_``);
  ``cpu,host=a usage=1,idle=2`` gives ``cpu_usage{host="a"}`` and ``cpu_idle{host="a"}``.
* tags become labels. ``/write?db=X`` adds the label ``db="X"``; ``/api/v2/write?bucket=X`` (what
  influxdb-client sends) adds no label in this version, so bucket and org are dropped.
* only numbers are kept: string fields are dropped, booleans become 0/1.
* timestamps are stored in milliseconds (finer precision is truncated); ``/api/v1/export`` returns
  them as Unix milliseconds, queries take seconds (``time=`` / ``start=`` as Unix seconds or RFC 3339).
* rewriting a point (same series and millisecond) keeps one sample thanks to ``-dedup.minScrapeInterval``.
* ``-retentionPeriod=100y`` keeps replayed historical data (the default one month would silently drop
  older points); points more than ~2 days in the future are still dropped.
* ``-search.latencyOffset=0s`` and ``-search.disableCache``: a point is visible to queries once
  ingested (within about a second, or at once after ``GET /internal/force_flush``).
"""

from __future__ import annotations

import getpass
import socket
import string
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.process import StackError

CONFIG_DIR = Path(__file__).parent / "config"
# Loopback only: never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the stack needs to start, probe and stop one service under ``home``."""

    name: str
    home: Path  # config, data, log and pid file of this service
    port: int  # the port clients use
    endpoint: str
    prepare: Callable[[], list[str]]  # writes config (and data dirs); returns the command line
    probe: Callable[[], bool]
    binds: tuple[int, ...] = ()  # every port the service listens on (checked free before start)
    start_timeout: float = 30.0
    stop_timeout: float = 20.0
    extra_logs: tuple[Path, ...] = ()
    after_start: Callable[[], None] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log_file(self) -> Path:
        """Where stdout and stderr of the process go."""
        return self.home / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        """The pid file that lets another process find this service."""
        return self.home / f"{self.name}.pid"


def render(template: str, dest: Path, **values: object) -> Path:
    """Fill ``deploy/config/<template>`` with ``values`` (string.Template) and write it to ``dest``."""
    text = string.Template((CONFIG_DIR / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def find_binary(name: str) -> str:
    """Absolute path of a system binary (also looks in sbin, which a non-root PATH may lack)."""
    for folder in ("/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        path = Path(folder) / name
        if path.is_file():
            return str(path)
    import shutil

    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed: run deploy/install-system-deps.sh (or `make setup`)")
    return found


def http_ok(url: str, expect: tuple[int, ...] = (200,), timeout: float = 1.0) -> bool:
    """True when GET ``url`` answers with one of the ``expect`` status codes."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status in expect
    except (urllib.error.URLError, OSError, ValueError):
        return False


def http_post(url: str, data: dict[str, str], timeout: float = 5.0) -> bytes:
    """POST a form to ``url`` and return the body (StackError on failure)."""
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), method="POST")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise StackError(f"POST {url} failed: {exc}") from exc


def mqtt_ok(port: int, timeout: float = 1.0) -> bool:
    """True when an MQTT 3.1.1 CONNECT on ``port`` is accepted (CONNACK with return code 0)."""
    client_id = b"opsmon-stack-probe"
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol name, level 4, clean session, keepalive 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    packet = bytes([0x10, len(variable) + len(payload)]) + variable + payload
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(packet)
            connack = sock.recv(4)
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs no error
    except OSError:
        return False
    return connack[:2] == b"\x20\x02" and connack[3:4] == b"\x00"


def victoria(home: Path, port: int) -> ServiceSpec:
    """victoria-metrics: InfluxDB line protocol in, PromQL/export out (see the module docstring)."""
    base = f"http://127.0.0.1:{port}"

    def prepare() -> list[str]:
        (home / "data").mkdir(parents=True, exist_ok=True)
        return [
            find_binary("victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={home / 'data'}",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1ms",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-memory.allowedPercent=20",
        ]

    return ServiceSpec("victoria", home, port, base, prepare, lambda: http_ok(f"{base}/health"),
                       binds=(port,))


def influxdb(home: Path, port: int, database: str) -> ServiceSpec:
    """InfluxDB 1.6 (influxd) for running InfluxQL for real; ``database`` is created on start.

    Its RPC (backup) listener, 0.0.0.0:8088 by default, is moved to 127.0.0.1:<port + 1>.
    """
    base = f"http://127.0.0.1:{port}"
    rpc_port = port + 1

    def prepare() -> list[str]:
        conf = render("influxdb.conf", home / "influxdb.conf", root=home, http_port=port, rpc_port=rpc_port)
        return [find_binary("influxd"), "run", "-config", str(conf)]

    def after_start() -> None:
        # Idempotent in InfluxQL; saves every client from doing it.
        http_post(f"{base}/query", {"q": f'CREATE DATABASE "{database}"'})

    return ServiceSpec("influxdb", home, port, base, prepare,
                       lambda: http_ok(f"{base}/ping", expect=(204,)),
                       binds=(port, rpc_port), after_start=after_start)


def alertmanager(home: Path, port: int, webhook_url: str) -> ServiceSpec:
    """prometheus-alertmanager, one route to ``webhook_url``, gossip off."""
    base = f"http://127.0.0.1:{port}"

    def prepare() -> list[str]:
        conf = render("alertmanager.yml", home / "alertmanager.yml", webhook_url=webhook_url)
        (home / "data").mkdir(parents=True, exist_ok=True)
        return [
            find_binary("prometheus-alertmanager"),
            f"--config.file={conf}",
            f"--storage.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={base}",
            "--cluster.listen-address=",  # empty: no gossip listener on 9094
        ]

    return ServiceSpec("alertmanager", home, port, base, prepare, lambda: http_ok(f"{base}/-/ready"),
                       binds=(port,))


def mosquitto(home: Path, port: int) -> ServiceSpec:
    """mosquitto: anonymous MQTT on loopback, persistence under ``home``."""

    def prepare() -> list[str]:
        (home / "data").mkdir(parents=True, exist_ok=True)
        conf = render("mosquitto.conf", home / "mosquitto.conf", root=home, port=port, user=getpass.getuser())
        return [find_binary("mosquitto"), "-c", str(conf)]

    return ServiceSpec("mosquitto", home, port, f"mqtt://127.0.0.1:{port}", prepare,
                       lambda: mqtt_ok(port), binds=(port,))
