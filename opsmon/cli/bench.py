"""``opsmon bench``: the pipeline measured against its ceiling on a local stack of its own (see docs/benchmark.md)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# Piped into a file, rich would wrap the tables at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=150)


def bench(
    out: Annotated[Path | None, typer.Option(help="Write bench.json and bench.png (and the worker profile) here.")
                   ] = Path(".opsmon/bench/out"),
    events: Annotated[int, typer.Option(help="Events to preload and push through the pipeline.")] = 100_000,
    quick: Annotated[bool, typer.Option(help="A small run for smoke use (about two minutes).")] = False,
    skip_scaling: Annotated[bool, typer.Option(help="Skip the run with two workers.")] = False,
    skip_rebalance: Annotated[bool, typer.Option(help="Skip the rebalance phase (a second worker joins and "
                                                 "leaves under a steady load).")] = False,
    soak: Annotated[float, typer.Option(help="Minutes of steady load after the rest (RSS and lag sampled); "
                                        "0: no soak.")] = 0.0,
    soak_rate: Annotated[float | None, typer.Option(help="Events/s of the soak; default half of one worker's "
                                                    "measured capacity.")] = None,
    latency_rate: Annotated[float, typer.Option(help="Offered events/s of the latency run.")] = 10_000.0,
    latency_seconds: Annotated[float, typer.Option(help="Seconds of offered load per latency run.")] = 30.0,
    profile: Annotated[bool, typer.Option(help="Sample the worker of the latency run at the target rate with "
                                          "py-spy (when installed).")] = True,
    what_if: Annotated[list[str] | None, typer.Option(
        "--what-if", help="Also run one worker with a proposed change patched in (bench.whatif): no-changelog, "
        "several are joined by a comma. Repeatable.")] = None,
    keep_stack: Annotated[bool, typer.Option(help="Leave the bench stack running if this run started it.")] = False,
    data_dir: Annotated[Path, typer.Option(help="The bench stack's data and the runs' logs.")] = Path(".opsmon/bench"),
) -> None:
    """Measure throughput, latency, time per stage, scaling, rebalances and memory per entity against the targets."""
    from bench import report
    from bench.run import Options, run_bench

    # A topic just created has no leader for a moment; aiokafka retries and says so at WARNING.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    opts = Options(events=events, skip_scaling=skip_scaling, skip_rebalance=skip_rebalance, soak_minutes=soak,
                   soak_rate=soak_rate, latency_rate=latency_rate, latency_seconds=latency_seconds, profile=profile,
                   keep_stack=keep_stack, data_dir=data_dir, what_if=tuple(what_if or ()))
    if quick:
        opts.quicken()
    from bench.whatif import PATCHES

    unknown = [p for w in opts.what_if for p in w.split(",") if p not in PATCHES]
    if unknown:
        raise typer.BadParameter(f"unknown {', '.join(unknown)}; known: {', '.join(PATCHES)}", param_hint="--what-if")
    result = run_bench(opts, console, out)
    report.print_report(result, console)
    problems = report.validate(report.json_safe(result))
    if problems:
        console.print(f"[red]result document problems: {problems}[/]")
    if out is not None:
        report.write_json(result, out / "bench.json")
        report.chart(result, out / "bench.png")
        console.print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
