"""Batched, acknowledged writes to InfluxDB's v2 write API (InfluxDB 2.x/3.x, VictoriaMetrics).

``await writer.write(lines)`` returns only once those lines are stored, so the caller can let Kafka
offsets move on afterwards. Lines from all callers are group-committed: while one request is in flight,
the next batch accumulates, so batches grow with load and latency stays at one round trip when idle.
The HTTP call runs in a thread (influxdb-client is synchronous) and never blocks the event loop.

Failure policy, chosen deliberately (influxdb-client's own batching drops data on 4xx with a log line):
- connection errors, timeouts, 5xx and 429: retry the same batch with exponential back-off, for ever;
  callers wait, which back-pressures the Kafka consumers, and nothing is lost;
- 400/422 (the server refuses some line): bisect to find the refused lines, append them to a reject file
  with the server's message, count them, and store the rest.

Request bodies are gzipped unless the server is on this host: ``gzip="auto"`` (the default) compresses
only when the URL's host is not a loopback name or address, where compressing costs CPU on both ends and
saves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

log = logging.getLogger(__name__)

GzipMode = Literal["auto", "on", "off"]


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback address (no name is resolved)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def use_gzip(url: str, mode: GzipMode | bool) -> bool:
    """Whether to gzip request bodies to ``url``: ``auto`` compresses unless the server is on loopback."""
    if isinstance(mode, bool):
        return mode
    if mode == "auto":
        return not is_loopback(url)
    if mode in ("on", "off"):
        return mode == "on"
    raise ValueError(f"gzip must be auto, on or off, not {mode!r}")


class RejectedLines(Exception):
    """The server refused a batch as malformed (HTTP 400/422); retrying will not help."""


@dataclass
class WriterStats:
    """Counters a dashboard or a test can read."""

    lines_written: int = 0
    requests: int = 0
    retries: int = 0
    rejected: int = 0
    last_error: str = ""


class InfluxWriter:
    """Acknowledged, batched writer; one per worker process."""

    def __init__(self, url: str, token: str, org: str, bucket: str, *, max_batch_lines: int = 5000,
                 timeout_s: float = 10.0, max_backoff_s: float = 5.0, reject_file: Path | None = None,
                 gzip: GzipMode | bool = "auto") -> None:
        self.bucket = bucket
        self.org = org
        self.max_batch_lines = max_batch_lines
        self.max_backoff_s = max_backoff_s
        self.reject_file = reject_file
        self.stats = WriterStats()
        self.gzip = use_gzip(url, gzip)
        # Retries are ours (urllib3's would block the thread without back-pressure accounting).
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      enable_gzip=self.gzip, retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._pending: list[tuple[Sequence[str], asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closed = False

    async def write(self, lines: Sequence[str]) -> None:
        """Store ``lines``; returns once the server has acknowledged them."""
        if not lines:
            return
        if self._closed:
            raise RuntimeError("InfluxWriter is closed")
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="influx-writer")
        fut: asyncio.Future = loop.create_future()
        self._pending.append((lines, fut))
        assert self._wakeup is not None
        self._wakeup.set()
        await fut

    async def close(self) -> None:
        """Drain what is pending, then release the HTTP client."""
        self._closed = True
        if self._task is not None:
            assert self._wakeup is not None
            while self._pending:
                self._wakeup.set()
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._client.close()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, waiters, size = [], [], 0
                while self._pending and (size == 0 or size + len(self._pending[0][0]) <= self.max_batch_lines):
                    lines, fut = self._pending.pop(0)
                    batch.extend(lines)
                    waiters.append(fut)
                    size += len(lines)
                await self._store(batch)
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)

    async def _store(self, batch: list[str]) -> None:
        """Write one batch, retrying transient failures with back-off until it is stored.

        A refused batch is bisected: each half is stored the same way (so an outage in the middle of the
        search is waited out too), and a single refused line is set aside.
        """
        backoff = 0.1
        while True:
            try:
                await asyncio.to_thread(self._post, batch)
                self.stats.lines_written += len(batch)
                return
            except RejectedLines:
                if len(batch) == 1:
                    await asyncio.to_thread(self._set_aside, batch[0])
                    return
                mid = len(batch) // 2
                await self._store(batch[:mid])
                await self._store(batch[mid:])
                return
            except Exception as exc:  # connection refused, timeout, 5xx, 429: all transient here
                self.stats.retries += 1
                self.stats.last_error = f"{type(exc).__name__}: {_short(exc)}"
                log.warning("influx write failed (attempt %d, %d lines), retrying in %.1fs: %s",
                            self.stats.retries, len(batch), backoff, self.stats.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _post(self, batch: list[str]) -> None:
        self.stats.requests += 1
        try:
            self._api.write(bucket=self.bucket, org=self.org, record="\n".join(batch),
                            write_precision=WritePrecision.MS)
        except ApiException as exc:
            if exc.status in (400, 422):
                raise RejectedLines(_short(exc)) from exc
            raise

    def _set_aside(self, line: str) -> None:
        """A line the server refuses on its own: counted, logged and kept in the reject file."""
        self.stats.rejected += 1
        log.error("influx refused a line, set aside: %s", line[:200])
        if self.reject_file is not None:
            self.reject_file.parent.mkdir(parents=True, exist_ok=True)
            with self.reject_file.open("a") as f:
                f.write(f"{time.time():.3f}\t{line}\n")


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text[:300]
