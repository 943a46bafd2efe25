"""Kafka for the local stack: jars from Maven Central (deploy/kafka/pom.xml), KRaft single node.

The jars are resolved once per pom into a shared cache (``$OPSMON_KAFKA_LIB_DIR``, default
``~/.cache/opsmon/kafka-<pom hash>/lib``), not per stack root: every test session has its own
root, and copying 46 MB of jars through Maven again would cost seconds each time.

Besides the PLAINTEXT listener clients use by default, the broker can listen with SASL/SCRAM-SHA-512, in
plain text and over TLS (see :class:`KafkaAuth`): user ``opsmon``, a random password generated into
``sasl/opsmon.password`` (mode 600), and a CA and server certificate made with ``openssl`` under ``tls/``.
The SCRAM credential is written when the storage is formatted; a storage formatted before that gets it
with ``kafka-configs`` once the broker runs.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from deploy.process import StackError
from deploy.services import ServiceSpec, find_binary, render

POM = Path(__file__).parent / "kafka" / "pom.xml"
HEAP = "-Xmx512m"
SASL_USER = "opsmon"
SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaAuth:
    """The broker's SCRAM listeners (a port of 0 is off) and what a client needs to use them."""

    sasl_port: int  # SASL_PLAINTEXT
    ssl_port: int  # SASL_SSL
    username: str
    password_file: Path  # mode 600; point OPSMON_KAFKA_SASL_PASSWORD_FILE here
    cafile: Path  # the stack's CA, for OPSMON_KAFKA_SSL_CAFILE
    keystore: Path  # the broker's key and certificate chain (PEM)

    @property
    def enabled(self) -> bool:
        """True when at least one SCRAM listener is configured."""
        return bool(self.sasl_port or self.ssl_port)

    @property
    def ports(self) -> tuple[int, ...]:
        """The ports of the enabled SCRAM listeners."""
        return tuple(p for p in (self.sasl_port, self.ssl_port) if p)


def kafka_auth(home: Path, sasl_port: int, ssl_port: int) -> KafkaAuth:
    """Where the SCRAM listeners of the broker under ``home`` are, and their credential and CA files."""
    return KafkaAuth(sasl_port, ssl_port, SASL_USER, home / "sasl" / f"{SASL_USER}.password", home / "tls" / "ca.pem",
                     home / "tls" / "server.pem")


def ensure_password(path: Path) -> str:
    """The stack's SCRAM password, generated into ``path`` (readable by its owner only) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def ensure_tls(auth: KafkaAuth) -> None:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (openssl), unless present."""
    tls = auth.cafile.parent
    if auth.cafile.exists() and auth.keystore.exists():
        return
    tls.mkdir(parents=True, exist_ok=True)
    tls.chmod(0o700)
    openssl = find_binary("openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ext = tls / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                   "authorityKeyIdentifier=keyid\n")
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
         "-subj", "/CN=opsmon local stack CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.crt", "-days", "3650", "-extfile", str(ext)],
    ]
    for cmd in steps:
        result = subprocess.run(cmd, cwd=tls, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise StackError(f"making the stack's TLS certificates failed ({' '.join(cmd[:3])}):\n"
                             f"{(result.stdout + result.stderr)[-2000:]}")
    # Kafka's PEM keystore: the (PKCS#8, unencrypted) key followed by the certificate chain, in one file.
    key = (tls / "server.key").read_text()
    tmp = auth.keystore.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + (tls / "server.crt").read_text() + auth.cafile.read_text())
    tmp.replace(auth.keystore)
    for name in ("ca.key", "server.key"):
        (tls / name).chmod(0o600)


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def kafka_version() -> str:
    """The Kafka version pinned in deploy/kafka/pom.xml."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise StackError(f"no <kafka.version> in {POM}")
    return match.group(1)


def lib_dir() -> Path:
    """Where the broker's jars live (resolved by :func:`ensure_jars`)."""
    override = os.environ.get("OPSMON_KAFKA_LIB_DIR")
    if override:
        return Path(override)
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "opsmon" / f"kafka-{kafka_version()}-{digest}" / "lib"


def ensure_jars() -> Path:
    """Resolve the broker's jars with Maven unless already cached; return the lib directory."""
    lib = lib_dir()
    done = lib / ".complete"
    if done.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    # Two stacks starting at once (parallel test runs) must not copy into the same folder.
    with (lib.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return lib
        staging = lib.parent / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError("mvn is not installed: run deploy/install-system-deps.sh (or `make setup`)")
        cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={staging}"]
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            out = (result.stdout + result.stderr)[-3000:]
            raise StackError(f"resolving the Kafka jars failed ({' '.join(cmd)}):\n{out}")
        shutil.rmtree(lib, ignore_errors=True)
        staging.replace(lib)
        done.touch()
    return lib


def new_cluster_id() -> str:
    """A KRaft cluster id like ``kafka-storage random-uuid`` prints, without starting a JVM for it."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka avoids ids that look like a command-line flag
            return cid


def metadata_ok(port: int, timeout: float = 1.0) -> bool:
    """True when the broker answers a Metadata request listing at least one (unfenced) broker."""
    client_id = b"opsmon-stack-probe"
    # Metadata v1: api_key 3, version 1, correlation id 1, client id, empty topic list.
    body = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = _recv_exact(sock, 12)  # size, correlation id, broker count
    except OSError:
        return False
    _size, correlation, brokers = struct.unpack(">iii", head)
    return correlation == 1 and brokers > 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def kafka(home: Path, port: int, controller_port: int, partitions: int, sasl_port: int = 0,
          ssl_port: int = 0) -> ServiceSpec:
    """The broker+controller: writes server.properties, formats storage once, runs kafka.Kafka.

    ``sasl_port`` / ``ssl_port`` add SASL_PLAINTEXT / SASL_SSL listeners with SCRAM-SHA-512 (0: none).
    """
    data = home / "data"
    server_log = home / "server.log"
    auth = kafka_auth(home, sasl_port, ssl_port)
    scram_marker = home / "sasl" / "credential-created"

    def java_cmd(lib: Path, main: str, *args: str) -> list[str]:
        java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java") if os.environ.get("JAVA_HOME") \
            else find_binary("java")
        return [java, HEAP, "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{home / 'log4j.properties'}",
                f"-Dkafka.logs.dir={home}", "-cp", f"{lib}/*", main, *args]

    def prepare() -> list[str]:
        lib = ensure_jars()
        extra = [(name, p) for name, p in (("SASL_PLAINTEXT", sasl_port), ("SASL_SSL", ssl_port)) if p]
        listeners = "".join(f",{name}://127.0.0.1:{p}" for name, p in extra)
        props = render("kafka-server.properties", home / "server.properties", kafka_version=kafka_version(),
                       kafka_port=port, controller_port=controller_port, log_dirs=data,
                       num_partitions=partitions, extra_listeners=listeners, extra_advertised=listeners)
        password = ""
        if auth.enabled:
            password = ensure_password(auth.password_file)
            ensure_tls(auth)  # the SASL_SSL listener section names the keystore either way
            with props.open("a") as f:
                f.write(render("kafka-sasl.properties", home / "sasl.properties", keystore=auth.keystore).read_text())
        render("kafka-log4j.properties", home / "log4j.properties", log_file=server_log)
        if not (data / "meta.properties").exists():
            id_file = home / "cluster.id"
            if not id_file.exists():
                id_file.write_text(new_cluster_id())
            scram = ["--add-scram", f"{SCRAM}=[name={SASL_USER},password={password}]"] if password else []
            cmd = java_cmd(lib, "kafka.tools.StorageTool", "format", "-t", id_file.read_text().strip(),
                           "-c", str(props), "--ignore-formatted", *scram)
            result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                out = _redact((result.stdout + result.stderr)[-3000:], password)
                raise StackError(f"formatting Kafka storage failed:\n{out}")
            if password:
                scram_marker.touch()
        return java_cmd(lib, "kafka.Kafka", str(props))

    def after_start() -> None:
        # A storage formatted without the SCRAM credential (an older stack) gets it through the admin API.
        if not auth.enabled or scram_marker.exists():
            return
        password = ensure_password(auth.password_file)
        cmd = java_cmd(ensure_jars(), "kafka.admin.ConfigCommand", "--bootstrap-server", f"127.0.0.1:{port}",
                       "--alter", "--entity-type", "users", "--entity-name", SASL_USER,
                       "--add-config", f"{SCRAM}=[password={password}]")
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            out = _redact((result.stdout + result.stderr)[-3000:], password)
            raise StackError(f"creating the Kafka SCRAM user {SASL_USER} failed:\n{out}")
        scram_marker.touch()

    return ServiceSpec("kafka", home, port, f"127.0.0.1:{port}", prepare, lambda: metadata_ok(port),
                       binds=(port, controller_port, *auth.ports), start_timeout=120.0, stop_timeout=30.0,
                       extra_logs=(server_log,), after_start=after_start)
