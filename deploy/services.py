"""How each Debian-packaged service of the local stack is configured, started and probed.

Victoria-metrics (1.79) stands in for InfluxDB 2.x/3.x as the write target (``influx_url``): it
accepts InfluxDB line protocol on ``/write`` and ``/api/v2/write`` and is read back with
``/api/v1/export`` or PromQL (``/api/v1/query``). Verified mapping, with the flags set below:

* metric name = ``{measurement}_{field}`` for every field, also when a line has one field
  (``-influxSkipSingleField`` off, ``-influxMeasurementFieldSeparator`` the default ``_``):
  ``cpu,host=a usage=1,idle=2i`` gives ``cpu_usage{host="a"}`` and ``cpu_idle{host="a"}``.
* tags become labels. ``/write?db=X`` adds the label ``db="X"``; ``/api/v2/write?org=..&bucket=..``
  (what influxdb-client sends) adds no label: org and bucket are dropped.
* values are floats: integers lose their ``i``, booleans become 1/0, string fields are stored as 0
  (so send no strings).
* timestamps are kept in milliseconds, finer digits truncated: influxdb-client's default
  nanoseconds ``ts_ns`` comes back from ``/api/v1/export`` as ``ts_ns // 1_000_000`` (Unix ms);
  the ``precision`` argument (s, ms, us, ns) is honoured; PromQL takes ``time``/``start`` in
  Unix seconds (fractions allowed) or RFC 3339.
* rewriting a point (same series and millisecond) leaves one sample (``-dedup.minScrapeInterval=1ms``),
  but NOT reliably the last written: we saw the last one win until a restart merged the parts and
  an earlier value win after it. Re-sending the same value is safe; for "a later write corrects the
  value" semantics, test against InfluxDB 1.6 (which overwrites), not against victoria-metrics.
* ``-retentionPeriod=100y``: replayed historical data is kept (the default of one month drops it
  silently); points more than 2 days in the future are still dropped, with a warning in the log.
* visibility: a write is acknowledged before it is searchable. ``GET /internal/force_flush`` makes
  it searchable for ``/api/v1/export`` within about 0.5 s (a new series otherwise waits up to
  10 s for the current-hour index); ``/api/v1/query`` sees it about 0.5 s later still. Tests
  should force_flush and poll with a deadline. ``-search.latencyOffset=0s`` and
  ``-search.disableCache`` keep queries from hiding the last 30 s or serving stale results.
"""


from __future__ import annotations

import getpass
import socket
import string
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
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


def alertmanager(home: Path, port: int, webhook_url: str, boards_only: Sequence[str] = ("info",)) -> ServiceSpec:
    """prometheus-alertmanager, gossip off: alerts to ``webhook_url``, except those whose severity is in
    ``boards_only``, which go to a receiver that notifies no one (the boards and Alertmanager list them)."""
    base = f"http://127.0.0.1:{port}"

    def prepare() -> list[str]:
        conf = render("alertmanager.yml", home / "alertmanager.yml", webhook_url=webhook_url,
                      boards_only="|".join(boards_only) or "-")
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
