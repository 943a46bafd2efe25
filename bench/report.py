"""The bench's result: targets met or missed, the JSON document, the terminal tables and the chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SCHEMA = "opsmon-bench/2"  # 2: the rebalance phase
KIB = 1024


def targets(result: dict) -> list[dict]:
    """The targets of the worker core (issue 21) with the measured value and whether each is met.

    ``met`` is None when the figure was not measured in this run, and for the 2-worker speed-up, which the
    bench reports without a target (two workers share the machine's two cores with Kafka).

    >>> rows = targets({"pipeline": {"1": {"events_per_s_per_worker": 60000.0}}, "ratios": {}, "latency": {},
    ...                 "memory": {}})
    >>> [(r["name"], r["met"]) for r in rows][:2]
    [('events/s, 1 worker, all stages', True), ('pipeline / ceiling', None)]
    """
    one = (result.get("pipeline") or {}).get("1") or {}
    ratios = result.get("ratios") or {}
    lat = result.get("latency") or {}
    mem = result.get("memory") or {}
    stages = result.get("stages") or {}
    rebalance = result.get("rebalance") or {}

    def p99(run: dict | None) -> float | None:
        if not run:
            return None
        v = (run.get("latency_s") or {}).get("p99")
        return math.inf if v is None else v  # not drained counts as missed, not as unknown

    def caught_up(change: dict | None) -> float | None:
        if not change:
            return None
        v = change.get("caught_up_s")
        return math.inf if v is None else v  # measured, but not caught up within the phase's timeout

    broker = (one.get("service_cpu_seconds") or {}).get("kafka")
    window_events = (one.get("events_per_s") or 0) * (one.get("seconds") or 0)
    broker_us = broker / window_events * 1e6 if broker is not None and window_events else None
    rows = [
        ("events/s, 1 worker, all stages", ">= 20,000 events/s", one.get("events_per_s_per_worker"), "events/s",
         lambda v: v >= 20_000),
        ("pipeline / ceiling", ">= 0.10", ratios.get("pipeline_to_ceiling"), "x", lambda v: v >= 0.10),
        ("CPU per event in the worker", "<= 50 µs", one.get("cpu_us_per_event"), "µs", lambda v: v <= 50),
        ("changelog bytes per event", "<= 0.5 KiB", stages.get("changelog_bytes_per_event"), "bytes",
         lambda v: v <= 0.5 * KIB),
        (f"p99 latency at {(lat.get('target_rate') or {}).get('rate_target', 10_000):,.0f}/s offered", "<= 2 s",
         p99(lat.get("target_rate")), "s", lambda v: v <= 2.0),
        ("p99 latency at half capacity", "<= 1 s", p99(lat.get("half_capacity")), "s", lambda v: v <= 1.0),
        ("memory per IoT device (a full day)", "<= 8 KiB RSS", mem.get("per_entity_bytes"), "bytes",
         lambda v: v <= 8 * KIB),
        ("state serialised per series (a full day)", "<= 3 KiB",
         (mem.get("full_day") or {}).get("changelog_bytes_per_series"), "bytes", lambda v: v <= 3 * KIB),
        ("Kafka broker CPU per event", "<= 20 µs", broker_us, "µs", lambda v: v <= 20),
        ("2 workers / 1 worker", "reported (2 cores)", ratios.get("speedup_2_workers"), "x", None),
        ("rebalance: a worker joins, caught up", "reported", caught_up(rebalance.get("join")), "s", None),
        ("rebalance: a worker leaves, caught up", "reported", caught_up(rebalance.get("leave")), "s", None),
    ]
    return [{"name": name, "target": target, "value": value, "unit": unit,
             "met": None if value is None or ok is None else bool(ok(value))}
            for name, target, value, unit, ok in rows]


REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str, "run": dict, "preload": dict, "ceiling": dict, "pipeline": dict, "ratios": dict,
    "latency": dict, "stages": (dict, type(None)), "profile": (dict, type(None)), "memory": dict,
    "soak": (dict, type(None)), "rebalance": (dict, type(None)), "targets": list,
}
# The figures of each change of the group in ``rebalance`` (bench.rebalance.recovery): seconds, or None when
# the change did not get there within the phase's timeout.
REBALANCE_CHANGES = ("steady", "join", "leave")
REBALANCE_FIGURES = ("rebalanced_s", "caught_up_s", "unfetched_max_s", "paused_s")


def validate(result: dict) -> list[str]:
    """Problems with a result document (empty when it is well-formed).

    >>> validate({"schema": "opsmon-bench/2"})[0]
    'missing run'
    """
    problems = [f"missing {k}" for k in REQUIRED if k not in result]
    problems += [f"{k} is {type(result[k]).__name__}" for k, t in REQUIRED.items()
                 if k in result and not isinstance(result[k], t)]
    if result.get("schema") != SCHEMA:
        problems.append(f"schema is {result.get('schema')!r}, expected {SCHEMA!r}")
    for row in result.get("targets", []) if isinstance(result.get("targets"), list) else []:
        if set(row) != {"name", "target", "value", "unit", "met"}:
            problems.append(f"target row {row.get('name')!r} has keys {sorted(row)}")
        elif row["met"] not in (True, False, None):
            problems.append(f"target {row['name']!r}: met is {row['met']!r}")
    one = (result.get("pipeline") or {}).get("1") if isinstance(result.get("pipeline"), dict) else None
    if one is not None and not isinstance(one.get("events_per_s"), int | float):
        problems.append("pipeline.1.events_per_s is not a number")
    rebalance = result.get("rebalance")
    for change in REBALANCE_CHANGES if isinstance(rebalance, dict) else ():
        figures = rebalance.get(change)
        if not isinstance(figures, dict):
            if not rebalance.get("error"):  # a worker that died in a change ends the phase
                problems.append(f"rebalance.{change} is missing")
            continue
        problems += [f"rebalance.{change}.{k} is not a number of seconds" for k in REBALANCE_FIGURES
                     if not (figures.get(k) is None or isinstance(figures.get(k), int | float)) or k not in figures]
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.append(f"not strict JSON: {exc}")
    return problems


def json_safe(x: Any) -> Any:
    """NaN and infinities as None (strict JSON has neither)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def write_json(result: dict, path: Path) -> None:
    """The result as strict JSON (infinite p99 and the like become null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞ (not drained)"
    if unit == "bytes":
        return f"{v / KIB:,.1f} KiB"
    if unit == "events/s":
        return f"{v:,.0f}/s"
    if unit == "s":
        return f"{v:,.2f} s"
    if unit == "µs":
        return f"{v:,.1f} µs"
    if unit == "x":
        return f"{v:.3f}"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.2f}"


def figures_table(result: dict) -> Table:
    """Every figure of the run, one row each."""
    t = Table(title="opsmon bench: figures", show_lines=False)
    t.add_column("phase")
    t.add_column("figure")
    t.add_column("value", justify="right")
    pre, ceil = result.get("preload") or {}, result.get("ceiling") or {}
    t.add_row("preload", f"{pre.get('events', 0):,} events {pre.get('by_source', {})}",
              f"{pre.get('events_per_s', 0):,.0f}/s")
    t.add_row("ceiling", "aiokafka getmany + msgspec decode", f"{ceil.get('events_per_s', 0):,.0f}/s")
    for k, run in sorted((result.get("pipeline") or {}).items()):
        if not run:
            continue
        t.add_row(f"pipeline, {k} worker(s)", "events/s (per worker)",
                  f"{run['events_per_s']:,.0f}/s ({run['events_per_s_per_worker']:,.0f})")
        t.add_row("", "CPU per event, utilisation",
                  f"{run.get('cpu_us_per_event') or 0:,.0f} µs, {100 * (run.get('cpu_utilisation') or 0):.0f}%")
        t.add_row("", "peak RSS per worker", f"{run.get('peak_rss_mib', 0):,.0f} MiB")
        svc = run.get("service_cpu_seconds") or {}
        t.add_row("", "CPU µs/event of Kafka, InfluxDB; machine busy",
                  ", ".join(f"{v / run['events'] * 1e6:,.0f}" for v in svc.values())
                  + f"; {100 * (run.get('machine_cpu_busy') or 0):.0f}%")
    for name, run in (result.get("what_if") or {}).items():
        t.add_row(f"what-if {name}", "1 worker: events/s (x baseline), CPU µs/event (x baseline)",
                  f"{run['events_per_s']:,.0f}/s ({run['speedup'] or 0:.2f}x), {run['cpu_us_per_event'] or 0:,.0f} µs "
                  f"({run['cpu_per_event_ratio'] or 0:.2f}x)")
    ratios = result.get("ratios") or {}
    t.add_row("ratios", "pipeline / ceiling", _fmt(ratios.get("pipeline_to_ceiling"), "x"))
    t.add_row("", "2 workers / 1 worker", _fmt(ratios.get("speedup_2_workers"), "x"))
    for name, lat in (result.get("latency") or {}).items():
        if not lat:
            continue
        p = lat.get("latency_s") or {}
        label = name.replace("_", " ")
        t.add_row(f"latency ({label})", f"offered {lat.get('offered_per_s', 0):,.0f}/s for {lat['duration_s']:.0f}s, "
                  "p50 / p95 / p99", " / ".join(_fmt(p.get(q) if p.get(q) is not None else math.inf, "s")
                                                 for q in ("p50", "p95", "p99")))
        t.add_row("", "IoT readings acknowledged / lag at end of offer",
                  f"{lat.get('acknowledged', 0):,} of {lat.get('iot_readings', 0):,} / "
                  f"{lat.get('lag_at_end_of_offer', 0):,}")
    mem = result.get("memory") or {}
    for row in mem.get("series", []):
        t.add_row("memory", f"{row['devices']:,} devices x {row['readings_per_device']:g} readings",
                  f"{row['rss_bytes_per_entity'] / KIB:,.1f} KiB RSS, {row['changelog_bytes_per_entity'] / KIB:,.1f}"
                  " KiB changelog")
    if mem.get("full_day"):
        row = mem["full_day"]
        t.add_row("memory", f"{row['devices']:,} devices, a full day ({row['readings_per_device']:g} readings)",
                  f"{row['rss_bytes_per_entity'] / KIB:,.1f} KiB RSS, {row['changelog_bytes_per_entity'] / KIB:,.1f}"
                  " KiB changelog")
        if row.get("marginal_bytes_per_entity") is not None:  # (runs before the slope reported one fleet)
            small = row["fleets"][0]["devices"]
            t.add_row("", f"one more device ({small:,} -> {row['devices']:,} devices)",
                      f"{row['marginal_bytes_per_entity'] / KIB:,.1f} KiB RSS; "
                      f"{row['fixed_bytes'] / 2**20:,.1f} MiB for any fleet")
    for row in rebalance_rows(result.get("rebalance")):
        t.add_row(*row)
    soak = result.get("soak")
    if soak:
        t.add_row("soak", f"{soak['minutes']:g} min at {soak['rate']:,.0f}/s: RSS slope, lag max",
                  f"{soak['rss_slope_mib_per_min']:+.2f} MiB/min, {soak['lag_max']:,}")
        t.add_row("", "memory flat / lag bounded", f"{soak['memory_flat']} / {soak['lag_bounded']}")
    return t


def rebalance_rows(rebalance: dict | None) -> list[tuple[str, str, str]]:
    """The figures table's rows of the rebalance phase: one per change of the group.

    >>> rebalance_rows({"rate": 5000.0, "checkpoint_seconds": 5.0, "join": {"rebalanced_s": 7.5,
    ...     "caught_up_s": 11.0, "unfetched_max_s": 2.5, "paused_s": 1.5, "ready_s": 4.0}})[1]
    ('', 'a 2nd worker joins (spawned; ready in 4.0 s)', '7.5 s / 11.0 s; 2.5 s / 1.5 s')
    """
    if not rebalance:
        return []
    rows = [("rebalance", f"at {rebalance.get('rate', 0):,.0f}/s, checkpoints every "
                          f"{rebalance.get('checkpoint_seconds', 0):g} s: all partitions fetched / caught up; "
                          "longest unfetched / without events", "")]
    labels = {"steady": "no change (the floor: a checkpoint)", "join": "a 2nd worker joins (spawned",
              "leave": "the 2nd worker leaves (SIGTERM)"}
    for change, label in labels.items():
        f = rebalance.get(change)
        if not f:
            continue
        if change == "join":
            label += f"; ready in {f.get('ready_s', 0):.1f} s)"
        rows.append(("", label, f"{_secs(f.get('rebalanced_s'))} / {_secs(f.get('caught_up_s'))}; "
                                f"{_secs(f.get('unfetched_max_s'))} / {_secs(f.get('paused_s'))}"))
    if rebalance.get("error"):
        rows.append(("", "[red]a worker died[/]: " + rebalance["error"].splitlines()[0], "phase ended"))
    return rows


def _secs(v: float | None) -> str:
    return "not within the timeout" if v is None else f"{v:.1f} s"


def stages_table(result: dict) -> Table | None:
    """Time per stage (µs/event and share of the worker's wall time per event)."""
    st = result.get("stages")
    if not st or not st.get("rows"):
        return None
    t = Table(title=f"time per stage (in process on {st['events']:,} events; the rest is the 1-worker run's "
                    f"{st.get('worker_us_per_event') or 0:,.0f} µs/event of wall time, "
                    f"{st.get('worker_cpu_us_per_event') or 0:,.0f} on the CPU, minus the stages)")
    t.add_column("stage")
    t.add_column("µs/event", justify="right")
    t.add_column("share", justify="right")
    for row in st["rows"]:
        t.add_row(row["stage"], f"{row['us_per_event']:,.1f}", f"{100 * row['share']:.1f}%")
    t.caption = (f"{st['lines_per_event']:.2f} lines/event; changelog {st['changelog_states_per_event']:.2f} "
                 f"states/event, {st['changelog_bytes_per_state'] / KIB:,.1f} KiB/state = "
                 f"{st['changelog_bytes_per_event'] / KIB:,.1f} KiB/event")
    return t


def profile_table(result: dict) -> Table | None:
    """The worker's py-spy profile: share per category and the top functions by self time."""
    prof = result.get("profile")
    if not prof:
        return None
    t = Table(title=f"worker profile (py-spy, {prof['samples']:,} samples during {prof.get('during', 'a run')})")
    t.add_column("category / function")
    t.add_column("share", justify="right")
    for row in prof["categories"]:
        t.add_row(row["category"], f"{100 * row['share']:.1f}%")
    t.add_section()
    for row in prof["top_functions"][:10]:
        t.add_row(f"[dim]self[/] {row['function']}", f"{100 * row['self']:.1f}%")
    return t


def targets_table(result: dict) -> Table:
    """The targets, marked met or missed."""
    t = Table(title="targets")
    for col in ("target", "goal", "measured", ""):
        t.add_column(col, justify="right" if col == "measured" else "left")
    for row in result["targets"]:
        mark = {True: "[green]met[/]", False: "[red]missed[/]", None: "[yellow]not measured[/]"}[row["met"]]
        if row["met"] is None and row["value"] is not None:
            mark = "[dim]no target[/]"
        t.add_row(row["name"], row["target"], _fmt(row["value"], row["unit"]), mark)
    return t


def print_report(result: dict, console: Console) -> None:
    """All tables."""
    console.print(figures_table(result))
    for table in (stages_table(result), profile_table(result)):
        if table is not None:
            console.print(table)
    console.print(targets_table(result))


def chart(result: dict, path: Path) -> None:
    """Throughput, latency percentiles and memory per entity, each against its target, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reb = result.get("rebalance") or {}
    fig, axes = plt.subplots(1, 4 if reb else 3, figsize=(21 if reb else 16, 5.2))
    ax = axes[0]
    pipe = result.get("pipeline") or {}
    bars = [("ceiling\n(fetch+decode)", (result.get("ceiling") or {}).get("events_per_s"))]
    bars += [(f"pipeline\n{k} worker{'s' if k != '1' else ''}", (pipe.get(k) or {}).get("events_per_s"))
             for k in ("1", "2") if pipe.get(k)]
    names, values = [b[0] for b in bars if b[1]], [b[1] for b in bars if b[1]]
    ax.bar(names, values, color=["#777777"] + ["#1f77b4"] * (len(values) - 1))
    ax.axhline(20_000, color="red", linestyle="--", label="target per worker 20k/s")
    ax.set_yscale("log")
    ax.set_ylabel("events/s (log)")
    ax.set_title("throughput")
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom")
    ax.legend(loc="upper right")
    ax = axes[1]
    lats = [(k, v) for k, v in (result.get("latency") or {}).items() if v]
    qs = ("p50", "p95", "p99")
    width = 0.8 / max(1, len(lats))
    for j, (name, lat) in enumerate(lats):
        cap = lat["drain_wait_s"] + lat["duration_s"]
        ys = [(lat["latency_s"].get(q) if lat["latency_s"].get(q) is not None else cap) for q in qs]
        xs = [i + j * width for i in range(len(qs))]
        ax.bar(xs, ys, width=width, label=f"{name}: offered {lat['offered_per_s']:,.0f}/s")
        for x, q, y in zip(xs, qs, ys, strict=True):
            ax.text(x, y, (">" if lat["latency_s"].get(q) is None else "") + f"{y:.2f}s", ha="center",
                    va="bottom", fontsize=8)
    ax.axhline(2.0, color="red", linestyle="--", label="target p99 2 s")
    ax.set_xticks([i + width * (len(lats) - 1) / 2 for i in range(len(qs))], qs)
    ax.set_yscale("log")
    ax.set_ylabel("event → InfluxDB ack (s, log)")
    ax.set_title("latency of IoT readings")
    ax.legend(fontsize=8)
    ax = axes[2]
    mem = result.get("memory") or {}
    rows = list(mem.get("series", [])) + ([mem["full_day"]] if mem.get("full_day") else [])
    labels = [f"{r['devices']:,}\n×{r['readings_per_device']:g}" for r in rows]
    ax.bar([i - 0.2 for i in range(len(rows))],
           [r.get("marginal_bytes_per_entity", r["rss_bytes_per_entity"]) / KIB for r in rows], width=0.4,
           label="RSS (a full day: one more device)")
    ax.bar([i + 0.2 for i in range(len(rows))], [r["changelog_bytes_per_entity"] / KIB for r in rows], width=0.4,
           label="changelog record")
    ax.axhline(8.0, color="red", linestyle="--", label="target 8 KiB RSS (a full day)")
    ax.set_xticks(range(len(rows)), labels)
    ax.set_ylabel("KiB per IoT device")
    ax.set_title("memory per tracked entity (devices × readings)")
    ax.legend(fontsize=8)
    if reb:
        _rebalance_chart(axes[3], reb)
    fig.suptitle(f"opsmon bench {result['run'].get('started_at', '')} — {result['run'].get('events', 0):,} events, "
                 f"{result['run'].get('machine', {}).get('cpus', '?')} CPUs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rebalance_chart(ax: Any, reb: dict) -> None:
    """Seconds from each change of the group until every partition is fetched again, and until caught up."""
    changes = [c for c in REBALANCE_CHANGES if reb.get(c)]
    timeout = reb.get("timeout_s") or 0.0
    for j, (key, label) in enumerate((("rebalanced_s", "all partitions fetched"),
                                      ("caught_up_s", "caught up (committed)"))):
        ys = [reb[c].get(key) for c in changes]
        xs = [i + (j - 0.5) * 0.4 for i in range(len(changes))]
        ax.bar(xs, [timeout if y is None else y for y in ys], width=0.4, label=label)
        for x, y in zip(xs, ys, strict=True):
            ax.text(x, timeout if y is None else y, f">{timeout:.0f}s" if y is None else f"{y:.1f}s", ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(range(len(changes)), [{"steady": "no change", "join": "2nd worker\njoins",
                                         "leave": "2nd worker\nleaves"}[c] for c in changes])
    ax.set_ylabel("seconds after the change")
    ax.set_title(f"rebalance at {reb.get('rate', 0):,.0f}/s (checkpoints every {reb.get('checkpoint_seconds', 0):g} s)")
    ax.legend(fontsize=8)
