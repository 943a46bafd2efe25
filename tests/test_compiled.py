"""The detector's helpers that setup.py compiles with mypyc: compiled here, deciding exactly as their source does,
and reading states pickled by either build (a worker upgraded to or from a pure-Python install restores its tables).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPILED = [p.removesuffix(".py").replace("/", ".") for p in ast.literal_eval(
    next(line for line in (ROOT / "setup.py").read_text().splitlines()
         if line.startswith("COMPILED = ")).split("=", 1)[1].strip())]

# Run in a fresh interpreter: "source" imports the compiled modules from their .py files instead.
_RUN = r'''
import hashlib, importlib.util, json, math, pickle, random, sys
from pathlib import Path

mode, phase, compiled, state = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
if mode == "source":
    class SourceFinder:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name in compiled:
                return importlib.util.spec_from_file_location(name, Path.cwd() / (name.replace(".", "/") + ".py"))
            return None
    sys.meta_path.insert(0, SourceFinder)

from models.alert_filter import AlertFilter
from models.anomaly import SeriesDetector
from tests.test_detection_unseen import poisson

T0, STEP, N, CUT = 1_700_000_000.0, 60.0, 9000, 6000

def readings(i, rng):  # a daily cycle with noise; a spike, a level shift and a stuck run
    y = 20.0 + 5.0 * math.sin(2 * math.pi * i / 1440) + rng.gauss(0.0, 0.5)
    y += 12.0 if i == 6500 else (4.0 if 7000 <= i < 7300 else 0.0)
    return 21.5 if 8000 <= i < 8100 else y

def counts(i, rng):  # orders a minute, busier by day; an outage (zeros)
    return 0.0 if 7600 <= i < 7660 else float(poisson(rng, 3.0 + 2.5 * math.sin(2 * math.pi * i / 1440)))

def detectors():
    return [AlertFilter(SeriesDetector()), AlertFilter(SeriesDetector(scale="log", floor=0.0, side=-1))]

def feed(dets, lo, hi, digest):
    rng, flags = [random.Random(1), random.Random(2)], 0
    for i in range(hi):  # (the generators draw every value, so each run sees the same series)
        values = (readings(i, rng[0]), counts(i, rng[1]))
        if i >= lo:
            for det, y in zip(dets, values):
                verdict = det.process_one(y, T0 + STEP * i)
                flags += verdict.is_anomaly
                digest.update(repr(tuple(verdict)).encode())
    return flags

whole, tail = hashlib.sha256(), hashlib.sha256()
if phase == "write":  # learn up to CUT, pickle the detectors there, go on to N
    dets = detectors()
    feed(dets, 0, CUT, whole)
    with open(state, "wb") as f:
        pickle.dump(dets, f)
else:  # go on from a pickled state
    with open(state, "rb") as f:
        dets = pickle.load(f)
flags = feed(dets, CUT, N, tail)
whole.update(tail.digest())
import models.surprise
print(json.dumps({"module": models.surprise.__file__, "whole": whole.hexdigest(), "tail": tail.hexdigest(),
                  "flags": flags}))
'''


def _run(mode: str, phase: str, state: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUN, mode, phase, ",".join(COMPILED), str(state)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def test_the_helpers_are_compiled() -> None:
    """A build that silently fell back to Python would cost the worker a fifth of its throughput."""
    if not COMPILED:
        pytest.fail("setup.py compiles nothing")
    for name in COMPILED:
        module = __import__(name, fromlist=["_"])
        assert module.__file__.endswith(".so"), f"{name} runs as Python: run `make setup`"


def test_compiled_helpers_decide_as_the_source_and_read_its_states(tmp_path: Path) -> None:
    """Every verdict over 9,000 readings and counts is the same, compiled or not; a state pickled by either build,
    restored by the other, goes on exactly as in the build that wrote it."""
    source = _run("source", "write", tmp_path / "source.pkl")
    compiled = _run("compiled", "write", tmp_path / "compiled.pkl")
    assert source["module"].endswith(".py") and compiled["module"].endswith(".so")
    assert source["flags"] > 0  # the spike, the shift, the stuck run, the outage: not a run of quiet verdicts
    assert compiled["whole"] == source["whole"]
    assert _run("compiled", "read", tmp_path / "source.pkl")["tail"] == source["tail"]
    assert _run("source", "read", tmp_path / "compiled.pkl")["tail"] == compiled["tail"]
