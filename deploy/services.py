"""How the Debian-packaged services of the local stack (Alertmanager, Mosquitto) are configured, started
and probed, and the helpers every service spec uses (InfluxDB lives in deploy/influxdb.py, Kafka in
deploy/kafka.py)."""


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
