"""Child processes of the local stack: spawn detached, remember by pid file, stop, wait until healthy."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """A service of the local stack could not be started, probed or stopped."""


@dataclass(frozen=True)
class PidRecord:
    """What a pid file remembers: enough to tell our process from a later one that reused the pid."""

    pid: int
    create_time: float
    argv: list[str]


# Popen handles of children started by this interpreter, so we can reap them (no zombies in tests).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def read_pid(pid_file: Path) -> PidRecord | None:
    """The record in ``pid_file``, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(pid_file.read_text())
        return PidRecord(pid=int(data["pid"]), create_time=float(data["create_time"]),
                         argv=list(data["argv"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def alive(record: PidRecord | None) -> bool:
    """True when the recorded process still runs (and is not a zombie or a reused pid)."""
    if record is None:
        return False
    child = _CHILDREN.get(record.pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(record.pid, None)
        return False
    try:
        proc = psutil.Process(record.pid)
        # create_time is rounded differently in different calls; a reused pid differs by far more.
        return abs(proc.create_time() - record.create_time) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def spawn(argv: Sequence[str], *, cwd: Path, log_file: Path, pid_file: Path,
          env: dict[str, str] | None = None) -> PidRecord:
    """Start ``argv`` in its own session (it outlives us), output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **(env or {})})
        except OSError as exc:
            raise StackError(f"cannot run {argv[0]}: {exc}") from exc
    _CHILDREN[proc.pid] = proc
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = time.time()  # it died already; alive() will say so through the Popen handle
    record = PidRecord(pid=proc.pid, create_time=create_time, argv=list(argv))
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": record.pid, "create_time": record.create_time, "argv": record.argv}))
    tmp.replace(pid_file)
    return record


def exit_code(record: PidRecord) -> int | None:
    """The exit code when the process was our child and has ended, else None."""
    child = _CHILDREN.get(record.pid)
    return child.poll() if child is not None else None


def signal_and_wait(record: PidRecord, sig: signal.Signals, timeout: float) -> bool:
    """Send ``sig`` to the process group of ``record``; True when it is gone within ``timeout``."""
    if not alive(record):
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # The whole session: a wrapper script's children must not outlive it.
        os.killpg(record.pid, sig)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, sig)
    deadline = time.monotonic() + timeout
    child = _CHILDREN.get(record.pid)
    while time.monotonic() < deadline:
        if child is not None:
            try:
                child.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            _CHILDREN.pop(record.pid, None)
            return True
        if not alive(record):
            return True
        time.sleep(0.1)
    return not alive(record)


def stop(record: PidRecord | None, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL: the process is gone when this returns."""
    if record is None or signal_and_wait(record, signal.SIGTERM, timeout):
        return
    if not signal_and_wait(record, signal.SIGKILL, 10.0):
        raise StackError(f"process {record.pid} ({record.argv[0]}) survived SIGKILL")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_healthy(name: str, record: PidRecord, probe: Callable[[], bool], timeout: float,
                 logs: Sequence[Path]) -> None:
    """Poll ``probe`` until it says yes; raise StackError with the log tail on exit or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if not alive(record):
            code = exit_code(record)
            why = f"exited with code {code}" if code is not None else "exited"
            raise StackError(f"{name} {why} before it became healthy.\n{_log_tails(logs)}")
        if time.monotonic() >= deadline:
            raise StackError(f"{name} (pid {record.pid}) not healthy after {timeout:.0f} s.\n"
                             f"{_log_tails(logs)}")
        time.sleep(0.2)


def _log_tails(logs: Sequence[Path]) -> str:
    parts = [f"--- last lines of {p}:\n{tail(p)}" for p in logs if p.exists()]
    return "\n".join(parts) or "(no log written)"
