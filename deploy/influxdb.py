"""InfluxDB OSS 1.x for the local stack: ``influxd`` built from the Go module proxy, auth on.

The binary is built once per version by ``deploy/build-influxd.sh`` (``make setup`` runs it) into a shared
cache, ``$OPSMON_INFLUXDB_DIR`` or ``~/.cache/opsmon/influxdb-<version>/bin/influxd``, beside the Kafka jars.
Every stack root gets its own config, data and users under ``root/influxdb/``:

* an admin user ``admin`` with a random password in ``admin.password`` (mode 600), created while the
  server still has no user (InfluxDB allows exactly that first statement without credentials);
* the writer: ``user:password`` taken from ``OPSMON_INFLUX_TOKEN`` when it has that form, else generated into
  ``writer.token`` (mode 600). The same string is the v2 API token (``Authorization: Token user:password``);
* the database (``influx_bucket``) and its retention policy ``autogen`` (infinite: replayed history stays),
  created at every start, because the v2 write endpoint does not create databases.

The server serves the v2 write API (``/api/v2/write``, bucket ``db`` or ``db/rp``), InfluxQL (``/query``)
and Flux (``/api/v2/query``, ``flux-enabled``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from deploy.process import StackError
from deploy.services import ServiceSpec, render

# Keep in step with deploy/build-influxd.sh (tests/integration/test_stack.py checks it).
VERSION = "1.13.2"
ADMIN_USER = "admin"
WRITER_USER = "opsmon-writer"
RETENTION_POLICY = "autogen"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def version() -> str:
    """The InfluxDB version the stack runs (``OPSMON_INFLUXDB_VERSION``, default :data:`VERSION`)."""
    return os.environ.get("OPSMON_INFLUXDB_VERSION") or VERSION


def cache_dir() -> Path:
    """Where ``deploy/build-influxd.sh`` puts the build of :func:`version`."""
    override = os.environ.get("OPSMON_INFLUXDB_DIR")
    if override:
        return Path(override)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "opsmon" / f"influxdb-{version()}"


def binary() -> Path:
    """The cached ``influxd``; a StackError saying how to build it when it is missing."""
    home = cache_dir()
    path = home / "bin" / "influxd"
    if not (home / ".complete").exists() or not path.is_file():
        raise StackError(f"influxd {version()} is not built in {home}: run deploy/build-influxd.sh (or `make setup`)")
    return path


@dataclass(frozen=True)
class InfluxAuth:
    """The credentials of one stack's InfluxDB and where the writer's came from."""

    admin_user: str
    admin_password_file: Path
    writer_user: str
    writer_password: str
    writer_source: str  # "OPSMON_INFLUX_TOKEN" or the generated file

    @property
    def token(self) -> str:
        """The writer as a v2 API token (``user:password``)."""
        return f"{self.writer_user}:{self.writer_password}"

    def admin_password(self) -> str:
        """The admin password (generated into its file on first use)."""
        return _ensure_secret(self.admin_password_file, secrets.token_urlsafe(24))


def _ensure_secret(path: Path, value: str) -> str:
    """The content of ``path``, writing ``value`` there first (mode 600) when the file does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this stack won the race: use its secret
        else:
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
    return path.read_text().strip()


def influx_auth(home: Path, token: str) -> InfluxAuth:
    """The stack's credentials: the writer from ``token`` when it reads ``user:password``, else generated."""
    user, sep, password = token.partition(":")
    if sep and user and password:
        return InfluxAuth(ADMIN_USER, home / "admin.password", user, password, "OPSMON_INFLUX_TOKEN")
    file = home / "writer.token"
    stored = _ensure_secret(file, f"{WRITER_USER}:{secrets.token_urlsafe(18)}")
    user, _, password = stored.partition(":")
    return InfluxAuth(ADMIN_USER, home / "admin.password", user, password, str(file))


def query(base: str, q: str, user: str, password: str, db: str | None = None, timeout: float = 10.0) -> dict:
    """POST one InfluxQL statement to ``/query`` with basic auth; its first result (StackError on an error)."""
    form = {"q": q, **({"db": db} if db else {})}
    req = urllib.request.Request(f"{base}/query", data=urllib.parse.urlencode(form).encode(), method="POST")
    if user:  # the very first statement (the admin user) goes without credentials
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise StackError(f"InfluxDB refused {q.split(' WITH PASSWORD')[0]!r}: {exc.code} {exc.read()[:300]!r}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise StackError(f"InfluxDB at {base} unreachable: {exc}") from exc
    result = (body.get("results") or [{}])[0]
    if "error" in result:
        raise StackError(f"InfluxDB: {result['error']} (in {q.split(' WITH PASSWORD')[0]!r})")
    return result


def server_version(base: str, timeout: float = 1.0) -> str | None:
    """The version ``/ping`` reports (header ``X-Influxdb-Version``), None when the server does not answer 204."""
    try:
        with _OPENER.open(f"{base}/ping", timeout=timeout) as resp:
            return resp.headers.get("X-Influxdb-Version") if resp.status == 204 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _quote(text: str) -> str:
    """An InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def provision(base: str, auth: InfluxAuth, database: str) -> None:
    """Admin and writer users, the database and its infinite retention policy; idempotent."""
    admin_pw = auth.admin_password()
    users_exist = True
    try:
        query(base, "SHOW USERS", auth.admin_user, admin_pw)
    except StackError:
        users_exist = False
    if not users_exist:
        # With no user yet, InfluxDB accepts exactly this statement without credentials.
        query(base, f'CREATE USER "{auth.admin_user}" WITH PASSWORD {_quote(admin_pw)} WITH ALL PRIVILEGES', "", "")
    db = f'"{database}"'
    query(base, f'CREATE DATABASE {db} WITH DURATION INF REPLICATION 1 NAME "{RETENTION_POLICY}"',
          auth.admin_user, admin_pw)
    # CREATE DATABASE keeps an existing policy as it was: set the one we rely on.
    query(base, f'ALTER RETENTION POLICY "{RETENTION_POLICY}" ON {db} DURATION INF DEFAULT', auth.admin_user, admin_pw)
    users = query(base, "SHOW USERS", auth.admin_user, admin_pw).get("series", [{}])[0].get("values", [])
    writer = f'"{auth.writer_user}"'
    if auth.writer_user not in {row[0] for row in users}:
        query(base, f"CREATE USER {writer} WITH PASSWORD {_quote(auth.writer_password)}", auth.admin_user, admin_pw)
    else:  # the token may have changed since the last start
        query(base, f"SET PASSWORD FOR {writer} = {_quote(auth.writer_password)}", auth.admin_user, admin_pw)
    # Boards read with the same credential, so the writer may read too.
    query(base, f"GRANT ALL ON {db} TO {writer}", auth.admin_user, admin_pw)


def influxdb(home: Path, port: int, database: str, token: str) -> ServiceSpec:
    """influxd with auth on and flux enabled; users, ``database`` and its retention policy made on start.

    Its RPC (backup) listener, 0.0.0.0:8088 by default, is moved to 127.0.0.1:<port + 1>.
    """
    base = f"http://127.0.0.1:{port}"
    rpc_port = port + 1

    def prepare() -> list[str]:
        conf = render("influxdb.conf", home / "influxdb.conf", root=home, http_port=port, rpc_port=rpc_port)
        return [str(binary()), "run", "-config", str(conf)]

    def after_start() -> None:
        provision(base, influx_auth(home, token), database)

    return ServiceSpec("influxdb", home, port, base, prepare, lambda: server_version(base) is not None,
                       binds=(port, rpc_port), after_start=after_start, start_timeout=60.0)
