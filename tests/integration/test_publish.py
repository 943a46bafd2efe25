"""``opsmon publish``: a JSON-lines file to Kafka, validated first; invalid lines reported, not sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from opsmon.settings import Settings
from opsmon.simulator import Mix, Simulator, parse_time
from tests.integration.harness import read_topic

MONDAY_10H = parse_time("2026-11-16T10:00:00Z")  # in the past, the stores are open


def _publish(settings: Settings, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opsmon", "publish", *args], input=stdin, capture_output=True,
                          env={**os.environ, **settings.to_env(), "COLUMNS": "200"}, timeout=120)


def test_publish_a_file_round_trip_with_invalid_lines_reported(pipeline_settings: Settings, tmp_path: Path) -> None:
    s = pipeline_settings
    sim = Simulator(seed=5, rate=2.0, mix=Mix(iot=0, pos=1, web=0))
    good = [value for _, _, value in sim.raw_events(MONDAY_10H, MONDAY_10H + 600)][:150]
    assert len(good) == 150
    broken_total = orjson.dumps({**orjson.loads(good[0]), "txn_id": "broken", "total": 99999.0})
    lines = [*good[:50], b"{not json", b"", broken_total, *good[50:], b"   "]
    path = tmp_path / "pos.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = _publish(s, "--source", "pos", str(path))
    err = result.stderr.decode()
    assert result.returncode == 1, err  # two lines were left out
    assert "line 51: json:" in err
    assert "line 53: value: total 99999.00 does not match" in err
    assert "152 lines: 150 valid, 2 invalid (not sent); 150 published" in err

    records = read_topic(s, s.topic_pos, expect=150, timeout=30)
    assert sorted(r.value for r in records) == sorted(good)  # exactly the valid lines, byte for byte
    assert {r.key.decode() for r in records} == {orjson.loads(v)["store"] for v in good}  # keyed by store

    # From stdin, invalid lines sent anyway: the worker will dead-letter them with the reason.
    result = _publish(s, "-s", "pos", "--send-invalid", stdin=b"{not json\n" + good[0] + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    records = read_topic(s, s.topic_pos, expect=152, timeout=30)
    assert b"{not json" in {r.value for r in records}


def test_publish_dry_run_and_a_bad_source(stack_settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "iot.jsonl"
    path.write_bytes(b'{"v":1,"site":"s","device":"d","time":"2026-11-16T10:00:00Z","measurements":{"t":1}}\n')
    result = _publish(stack_settings, "--source", "iot", "--dry-run", str(path))
    assert result.returncode == 0 and "1 valid, 0 invalid; dry run" in result.stderr.decode()
    result = _publish(stack_settings, "--source", "tills", str(path))
    assert result.returncode == 2 and "iot, pos, web" in result.stderr.decode()
