"""Real clients, not only ours: line protocol over plain HTTP as Telegraf sends it, read back with
influxdb-client's query API (Flux at /api/v2/query) from the stack's InfluxDB."""

from __future__ import annotations

import time
import uuid

import httpx
from influxdb_client import InfluxDBClient

from deploy.stack import Stack
from opsmon.settings import Settings


def test_telegraf_style_writes_read_back_with_influxdb_client_flux(stack: Stack, stack_settings: Settings) -> None:
    base = stack.status()["influxdb"].endpoint
    auth = stack.influx_auth()
    host = f"telegraf-{uuid.uuid4().hex[:6]}"
    now_s = int(time.time())
    lines = "\n".join(f"cpu,host={host},cpu=cpu-total usage_idle={90 + i}.5,usage_user={i}i {now_s - 60 + i * 10}"
                      for i in range(3))
    # Telegraf's influxdb output: POST /write with the database, second precision and basic auth.
    resp = httpx.post(f"{base}/write", params={"db": stack.influx_database, "precision": "s"}, content=lines,
                      auth=(auth.writer_user, auth.writer_password), trust_env=False, timeout=10)
    assert resp.status_code == 204, resp.text
    flux = (f'from(bucket: "{stack_settings.influx_bucket}") |> range(start: -5m) '
            f'|> filter(fn: (r) => r._measurement == "cpu" and r.host == "{host}") '
            f'|> sort(columns: ["_time"])')
    with InfluxDBClient(url=base, token=auth.token, org="-") as client:
        tables = client.query_api().query(flux)
    got = {(r.get_field(), int(r.get_time().timestamp())): r.get_value() for t in tables for r in t.records}
    assert got == {**{("usage_idle", now_s - 60 + i * 10): 90 + i + 0.5 for i in range(3)},
                   **{("usage_user", now_s - 60 + i * 10): i for i in range(3)}}
    assert {r.values["cpu"] for t in tables for r in t.records} == {"cpu-total"}
