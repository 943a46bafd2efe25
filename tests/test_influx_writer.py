"""The InfluxDB writer against a real HTTP server on loopback that speaks the v2 write API."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from sinks.influx import InfluxWriter, is_loopback, use_gzip


class WriteServer:
    """Records every write; can fail the first N requests (503) and refuse lines containing 'bad' (400).

    ``fail_after_refusal``: after each refusal, that many requests fail (503), as in an outage.
    """

    def __init__(self, fail_first: int = 0, delay_s: float = 0.0, fail_after_refusal: int = 0) -> None:
        self.bodies: list[list[str]] = []
        self.fail_first = fail_first
        self.fail_after_refusal = fail_after_refusal
        self.failing = 0
        self.delay_s = delay_s
        self.requests = 0
        self.gzipped = 0  # requests whose body was gzipped

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()  # aiohttp inflates a gzipped body itself
        self.gzipped += request.headers.get("Content-Encoding") == "gzip"
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        lines = body.decode().splitlines()
        assert request.query["precision"] == "ms" and request.query["bucket"] == "b"
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.requests <= self.fail_first or self.failing:
            self.failing = max(0, self.failing - 1)
            return web.Response(status=503, text="overloaded")
        if any("bad" in ln for ln in lines):
            self.failing = self.fail_after_refusal
            return web.json_response({"code": "invalid", "message": "unable to parse"}, status=400)
        self.bodies.append(lines)
        return web.Response(status=204)

    @property
    def stored(self) -> list[str]:
        return [ln for body in self.bodies for ln in body]


@asynccontextmanager
async def serve(handler: WriteServer) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/api/v2/write", handler.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def run(coro):
    return asyncio.run(coro)


def test_write_returns_after_the_server_stored_the_lines() -> None:
    async def main() -> None:
        server = WriteServer()
        async with serve(server) as url:
            w = InfluxWriter(url, "t", "o", "b")
            await w.write(["m f=1 1", "m f=2 2"])
            assert server.stored == ["m f=1 1", "m f=2 2"]
            await w.close()
    run(main())


def test_concurrent_writers_are_group_committed() -> None:
    async def main() -> None:
        server = WriteServer(delay_s=0.05)
        async with serve(server) as url:
            w = InfluxWriter(url, "t", "o", "b", max_batch_lines=10_000)
            await asyncio.gather(*(w.write([f"m f={i} {i}"]) for i in range(200)))
            assert sorted(server.stored) == sorted(f"m f={i} {i}" for i in range(200))
            assert server.requests < 20  # 200 callers, a handful of requests
            await w.close()
    run(main())


def test_batches_respect_the_line_limit() -> None:
    async def main() -> None:
        server = WriteServer()
        async with serve(server) as url:
            w = InfluxWriter(url, "t", "o", "b", max_batch_lines=100)
            await asyncio.gather(*(w.write([f"m f={i}i {i}" for i in range(j, j + 40)]) for j in range(0, 400, 40)))
            assert len(server.stored) == 400 and max(len(b) for b in server.bodies) <= 100
            await w.close()
    run(main())


def test_server_errors_are_retried_until_stored() -> None:
    async def main() -> None:
        server = WriteServer(fail_first=3)
        async with serve(server) as url:
            w = InfluxWriter(url, "t", "o", "b", max_backoff_s=0.05)
            await w.write(["m f=1 1"])
            assert server.stored == ["m f=1 1"] and w.stats.retries == 3
            await w.close()
    run(main())


def test_server_down_then_up_loses_nothing() -> None:
    async def main() -> None:
        server = WriteServer()
        app = web.Application()
        app.router.add_post("/api/v2/write", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        probe = web.TCPSite(runner, "127.0.0.1", 0)
        await probe.start()
        port = probe._server.sockets[0].getsockname()[1]
        await probe.stop()  # nobody listens on the port now
        w = InfluxWriter(f"http://127.0.0.1:{port}", "t", "o", "b", max_backoff_s=0.1)
        pending = asyncio.ensure_future(w.write(["m f=1 1"]))
        await asyncio.sleep(0.5)
        assert not pending.done() and w.stats.retries >= 2
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        await asyncio.wait_for(pending, 5)
        assert server.stored == ["m f=1 1"]
        await w.close()
        await runner.cleanup()
    run(main())


def test_refused_lines_are_isolated_and_set_aside(tmp_path: Path) -> None:
    async def main() -> None:
        server = WriteServer()
        async with serve(server) as url:
            reject = tmp_path / "rejected.txt"
            w = InfluxWriter(url, "t", "o", "b", reject_file=reject)
            lines = [f"m f={i} {i}" for i in range(20)]
            lines[7] = "m bad=1 7"
            await w.write(lines)
            assert sorted(server.stored) == sorted(ln for ln in lines if "bad" not in ln)
            assert w.stats.rejected == 1 and reject.read_text().endswith("\tm bad=1 7\n")
            await w.close()
    run(main())


def test_an_outage_while_a_refused_batch_is_searched_is_waited_out(tmp_path: Path) -> None:
    async def main() -> None:
        server = WriteServer(fail_after_refusal=2)
        async with serve(server) as url:
            w = InfluxWriter(url, "t", "o", "b", reject_file=tmp_path / "rejected.txt")
            lines = [f"m f={i} {i}" for i in range(16)]
            lines[3] = "m bad=1 3"
            await asyncio.wait_for(w.write(lines), 30)  # the writer must not die on a 503 mid-search
            assert sorted(server.stored) == sorted(ln for ln in lines if "bad" not in ln)
            assert w.stats.rejected == 1 and w.stats.retries >= 2
            await w.close()
    run(main())


@pytest.mark.parametrize(("mode", "gzipped"), [("auto", False), ("off", False), ("on", True), (True, True)])
def test_gzip_is_off_on_loopback_unless_asked_for(mode: str | bool, gzipped: bool) -> None:
    async def main() -> None:
        server = WriteServer()
        async with serve(server) as url:
            w = InfluxWriter(url, "t", "o", "b", gzip=mode)  # type: ignore[arg-type]
            await w.write(["m f=1 1", "m f=2 2"])
            assert server.stored == ["m f=1 1", "m f=2 2"] and w.gzip is gzipped
            assert server.gzipped == (1 if gzipped else 0)
            await w.close()
    run(main())


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8086", True), ("http://127.1.2.3", True), ("http://localhost:8086", True),
    ("http://LOCALHOST", True), ("http://[::1]:8086/", True), ("https://influx.example.com", False),
    ("http://10.0.0.5:8086", False), ("http://[2001:db8::1]:8086", False), ("http://influx:8086", False)])
def test_auto_compresses_unless_the_host_is_loopback(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback
    assert use_gzip(url, "auto") is not loopback
    assert use_gzip(url, "on") is True and use_gzip(url, "off") is False


def test_an_unknown_gzip_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, on or off"):
        use_gzip("http://127.0.0.1", "yes")  # type: ignore[arg-type]
