"""Where a worker's time goes, from py-spy's raw (collapsed) stacks: shares per stage and the top functions.

Each sample is a stack ``frame;frame;...;leaf count`` with frames like ``process (streams/app.py:311)``.
A sample is put in the first category whose rule matches (rules see the whole stack, so a detector
pickled for a changelog counts as changelog, not scoring):

>>> rows = categorise(["a (faust/tables/base.py:1);Collection.send_changelog (x.py:2);d (pickle.py:3) 3",
...                    "SourcePipeline.process (streams/pipeline.py:1);decode (streams/schemas.py:9) 1"])
>>> [(r["category"], r["share"]) for r in rows]
[('changelog: serialise (pickle)', 0.75), ('decode + validate', 0.25)]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

Rule = tuple[str, Callable[[str, str], bool]]


def _has(*needles: str) -> Callable[[str, str], bool]:
    return lambda stack, leaf: any(n in stack for n in needles)


def _in_pipeline(*needles: str) -> Callable[[str, str], bool]:
    def match(stack: str, leaf: str) -> bool:
        if "SourcePipeline." not in stack:
            return False
        # Within the pipeline, the innermost opsmon module decides (scoring calls line, process calls decode).
        tail = stack.rsplit("SourcePipeline.", 1)[1]
        return any(n in tail for n in needles)
    return match


RULES: list[Rule] = [
    # The worker's checkpoint pickles each state itself (snapshot in streams/app.py) before Faust sends it.
    ("changelog: serialise (pickle)", _has("Collection.send_changelog", "snapshot (streams/app.py")),
    ("InfluxDB write (thread)", _has("sinks/influx.py", "influxdb_client/", "urllib3")),
    ("line protocol", _in_pipeline("sinks/lineproto.py")),
    ("scoring (models)", _in_pipeline("models/", "streams/scoring.py", "streams/demand.py")),
    ("decode + validate", _in_pipeline("streams/schemas.py", "msgspec")),
    ("fold + aggregate", _in_pipeline("streams/")),
    ("event loop (epoll wait)", lambda stack, leaf: "select (selectors.py" in leaf),
    ("Kafka produce (aiokafka)", _has("aiokafka/producer", "ProducerBuffer", "faust/transport/producer.py")),
    ("Kafka fetch (aiokafka)", _has("aiokafka/consumer", "Fetcher._fetcher", "faust/transport/consumer.py")),
    # Every stack starts in mode's worker, so only faust's own frames count here.
    ("Faust (streams, agents, tables)", _has("faust/")),
    ("asyncio", _has("asyncio/")),
]
OTHER = "other"


def read_stacks(path: Path) -> list[str]:
    """The lines of a py-spy ``--format raw`` file."""
    return [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]


def _parse(lines: Iterable[str]) -> Iterable[tuple[str, str, int]]:
    for ln in lines:
        stack, _, count = ln.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        yield stack, stack.rsplit(";", 1)[-1], int(count)


def categorise(lines: Iterable[str]) -> list[dict]:
    """Samples per category (``share`` of all samples), largest first."""
    counts: Counter = Counter()
    for stack, leaf, n in _parse(lines):
        counts[next((name for name, rule in RULES if rule(stack, leaf)), OTHER)] += n
    total = sum(counts.values())
    return [{"category": k, "samples": v, "share": round(v / total, 4)} for k, v in counts.most_common()]


def top_functions(lines: Iterable[str], n: int = 15) -> list[dict]:
    """Functions by self samples (the leaf frame), with their inclusive share too.

    >>> top_functions(["a (m.py:1);b (m.py:2) 3", "a (m.py:1) 1"], n=1)
    [{'function': 'b (m.py:2)', 'self': 0.75, 'inclusive': 0.75}]
    """
    own: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for stack, leaf, k in _parse(lines):
        total += k
        own[leaf] += k
        for frame in set(stack.split(";")):
            incl[frame] += k
    return [{"function": f, "self": round(c / total, 4), "inclusive": round(incl[f] / total, 4)}
            for f, c in own.most_common(n)]


def inclusive(lines: Iterable[str], needles: Iterable[str]) -> dict[str, float]:
    """Share of samples whose stack contains each needle (e.g. a function name)."""
    parsed = list(_parse(lines))
    total = sum(k for _, _, k in parsed) or 1
    return {nd: round(sum(k for s, _, k in parsed if nd in s) / total, 4) for nd in needles}


def summarise(path: Path) -> dict:
    """Categories, top functions and a few inclusive shares of one profile file."""
    lines = read_stacks(path)
    return {"samples": sum(k for _, _, k in _parse(lines)), "categories": categorise(lines),
            "top_functions": top_functions(lines),
            "inclusive": inclusive(lines, ("SourcePipeline.process", "Collection.send_changelog",
                                           "InfluxWriter._post", "Agent._execute_actor"))}
