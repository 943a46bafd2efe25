"""Kafka for the local stack: jars from Maven Central (deploy/kafka/pom.xml), KRaft single node.

The jars are resolved once per pom into a shared cache (``$OPSMON_KAFKA_LIB_DIR``, default
``~/.cache/opsmon/kafka-<pom hash>/lib``), not per stack root: every test session has its own
root, and copying 46 MB of jars through Maven again would cost seconds each time.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import uuid
from pathlib import Path

from deploy.process import StackError
from deploy.services import ServiceSpec, find_binary, render

POM = Path(__file__).parent / "kafka" / "pom.xml"
HEAP = "-Xmx512m"


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


def kafka(home: Path, port: int, controller_port: int, partitions: int) -> ServiceSpec:
    """The broker+controller: writes server.properties, formats storage once, runs kafka.Kafka."""
    data = home / "data"
    server_log = home / "server.log"

    def java_cmd(lib: Path, main: str, *args: str) -> list[str]:
        java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java") if os.environ.get("JAVA_HOME") \
            else find_binary("java")
        return [java, HEAP, "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{home / 'log4j.properties'}",
                f"-Dkafka.logs.dir={home}", "-cp", f"{lib}/*", main, *args]

    def prepare() -> list[str]:
        lib = ensure_jars()
        props = render("kafka-server.properties", home / "server.properties", kafka_version=kafka_version(),
                       kafka_port=port, controller_port=controller_port, log_dirs=data,
                       num_partitions=partitions)
        render("kafka-log4j.properties", home / "log4j.properties", log_file=server_log)
        if not (data / "meta.properties").exists():
            id_file = home / "cluster.id"
            if not id_file.exists():
                id_file.write_text(new_cluster_id())
            cmd = java_cmd(lib, "kafka.tools.StorageTool", "format", "-t", id_file.read_text().strip(),
                           "-c", str(props), "--ignore-formatted")
            result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                raise StackError(f"formatting Kafka storage failed:\n{(result.stdout + result.stderr)[-3000:]}")
        return java_cmd(lib, "kafka.Kafka", str(props))

    return ServiceSpec("kafka", home, port, f"127.0.0.1:{port}", prepare, lambda: metadata_ok(port),
                       binds=(port, controller_port), start_timeout=120.0, stop_timeout=30.0,
                       extra_logs=(server_log,))
