"""An acknowledging proxy in front of the time-series server: it times when each event's point was stored.

``python -m bench.proxy --listen 31429 --upstream http://127.0.0.1:31428`` forwards every request as it
is and, for each write the server acknowledged (2xx), records the acknowledgement
time and the timestamp of every ``iot_reading`` line in it. The bench stamps each IoT event with the
wall-clock time it was scheduled to be sent, and the worker writes one ``iot_reading`` point per reading
with the event's timestamp, so ``ack - timestamp`` is that event's latency from send to stored.
``GET /__bench/latency?since_ms=T`` returns ``{"ts": [...], "ack": [...]}`` (milliseconds) of the points
with a timestamp at or after ``T``. It runs in a process of its own, so the bench's producer does not
delay the acknowledgements it times.
"""

from __future__ import annotations

import argparse
import time
import zlib
from array import array

from aiohttp import ClientSession, ClientTimeout, web

PROBE = b"iot_reading,"
# aiohttp's server has already gunzipped the request body: it goes upstream plain, without its encoding.
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


def timestamps(body: bytes) -> list[int]:
    """Millisecond timestamps of the ``iot_reading`` lines of a line-protocol body (gzip or plain).

    >>> timestamps(b"iot_reading,device=d t=1 1700000000123\\nother x=1 5\\n")
    [1700000000123]
    """
    if body[:2] == b"\x1f\x8b":
        body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if PROBE not in body:
        return []
    return [int(line.rsplit(b" ", 1)[1]) for line in body.split(b"\n") if line.startswith(PROBE)]


def make_app(upstream: str) -> web.Application:
    """The proxy as an aiohttp application."""
    ts_ms, ack_ms = array("q"), array("q")
    app = web.Application(client_max_size=256 * 1024 * 1024)

    async def session_ctx(app: web.Application):  # noqa: ANN202
        app["session"] = ClientSession(timeout=ClientTimeout(total=60), auto_decompress=False)
        yield
        await app["session"].close()

    async def latency(request: web.Request) -> web.Response:
        since = int(request.query.get("since_ms", "0"))
        keep = [i for i, t in enumerate(ts_ms) if t >= since]
        return web.json_response({"ts": [ts_ms[i] for i in keep], "ack": [ack_ms[i] for i in keep]})

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with request.app["session"].request(request.method, upstream + request.path_qs, data=body,
                                                  headers=headers) as resp:
            payload = await resp.read()
            ack = int(time.time() * 1000)
            status = resp.status
            out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
        if 200 <= status < 300 and request.method == "POST" and request.path.endswith("/write"):
            stamps = timestamps(body)
            ts_ms.extend(stamps)
            ack_ms.extend([ack] * len(stamps))
        return web.Response(status=status, body=payload, headers=out_headers)

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/__bench/latency", latency)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    """Serve until terminated."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args()
    web.run_app(make_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.listen, print=None,
                access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
