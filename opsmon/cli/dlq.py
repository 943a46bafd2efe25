"""``opsmon dlq inspect|replay``: what the worker rejected and why, and putting it back after a fix."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from opsmon.settings import Settings

app = typer.Typer(help="Dead letters: inspect them, replay them into their source topic after a fix.",
                  no_args_is_help=True)
console = Console()


class SourceChoice(StrEnum):
    """Which dead-letter topics a command reads."""

    iot = "iot"
    pos = "pos"
    web = "web"
    all = "all"


class _Errors(logging.Handler):
    """Keeps the error lines kafka-python logs: its exceptions hide why a connection failed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage().split(">: ", 1)[-1])


@contextmanager
def _kafka_errors(settings: Settings) -> Iterator[None]:
    """A Kafka failure (a refused login, a TLS problem, no broker) as one clear line and exit code 1."""
    from kafka.errors import KafkaError

    errors = _Errors()
    logger = logging.getLogger("kafka")
    logger.addHandler(errors)
    try:
        yield
    except KafkaError as exc:
        # kafka-python reports a refused login as an unsupported broker version; its log says why.
        why = next((line for line in reversed(errors.lines) if "Authentication failed" in line), None) \
            or next(iter(reversed(errors.lines)), None) or str(exc)
        who = f", SASL {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username}" \
            if settings.kafka_security_protocol.startswith("SASL") else ""
        console.print(Text(f"Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_protocol}{who}) failed: "
                           f"{why}"), soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        logger.removeHandler(errors)


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _table(title: str, columns: tuple[str, ...], rows: list[tuple], more: int) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in ("count", "failed replays") else "left",
                         overflow="fold")
    for row in rows:
        # Text, not markup: reasons and payloads are untrusted and contain [brackets].
        table.add_row(*(Text(str(c)) for c in row))
    if more:
        table.caption = f"… and {more} more group(s); raise --top to see them"
    return table


@app.command()
def inspect(
    source: Annotated[SourceChoice, typer.Option(help="Which source's dead letters.")] = SourceChoice.all,
    limit: Annotated[int, typer.Option(help="Read at most this many messages per dead-letter topic, from the "
                                       "beginning (0: all).")] = 100_000,
    top: Annotated[int, typer.Option(help="Rows per table, largest groups first.")] = 20,
) -> None:
    """Dead letters grouped by reason and by producer, with counts and a sample payload each."""
    from streams.dlq import (
        count_dead_letters,
        distinct_by_origin,
        group_by_producer,
        group_by_reason,
        read_dead_letters,
        topic_sources,
    )

    settings = Settings()
    with _kafka_errors(settings):
        held = count_dead_letters(settings, source.value)
        read = read_dead_letters(settings, source.value, limit=limit or None)
    names = topic_sources(settings)
    records = distinct_by_origin(read)
    per_topic: dict[str, int] = {}
    for r in records:
        per_topic[r.topic] = per_topic.get(r.topic, 0) + 1
    summary = ", ".join(f"{names.get(t, t)} {n}" for t, n in sorted(per_topic.items())) or "none"
    total = sum(held.values())
    if len(read) < total:
        scope = f"read the first {len(read)} of the {total} held (at most {limit} per topic; --limit 0 reads all)"
    else:
        scope = f"read all {total} held"
    resent = len(read) - len(records)
    again = f"; {resent} re-sent after a restart counted once" if resent else ""
    console.print(Text(f"{len(records)} dead letter(s): {summary} ({scope}{again})"), soft_wrap=True)
    if not records:
        return
    by_reason = group_by_reason(records, names)
    console.print(_table(
        "by reason", ("source", "kind", "reason", "count", "failed replays", "sample payload"),
        [(g.source, g.key[0], g.key[1], g.count, g.failed_replays, g.sample_payload) for g in by_reason[:top]],
        max(0, len(by_reason) - top)))
    by_producer = group_by_producer(records, names)
    console.print(_table(
        "by producer (producer header, else message key)", ("source", "producer", "count", "kinds", "sample payload"),
        [(g.source, g.key[0], g.count, _kinds(g.kinds), g.sample_payload) for g in by_producer[:top]],
        max(0, len(by_producer) - top)))


@app.command()
def replay(
    source: Annotated[SourceChoice, typer.Option(help="Which source's dead letters.")] = SourceChoice.all,
    kind: Annotated[str | None, typer.Option(help="Only dead letters of this kind (json, schema, version, value, "
                                             "time, size, late, duplicate).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be replayed; send nothing.")] = False,
    again: Annotated[bool, typer.Option("--again", help="Also replay copies that failed again after an earlier "
                                        "replay (each once).")] = False,
) -> None:
    """Re-inject dead letters into their source topic, each at most once (a ledger remembers what was sent)."""
    from streams.dlq import dlq_topics
    from streams.dlq import replay as do_replay

    settings = Settings()
    table = Table(title="dry run: would replay" if dry_run else "replayed", title_justify="left")
    for col in ("source", "replayed", "kinds", "skipped", "settled"):
        table.add_column(col)
    total = 0
    for name in dlq_topics(settings, source.value):
        with _kafka_errors(settings):
            res = do_replay(settings, name, kind=kind, dry_run=dry_run, again=again)
        sent = sum(res.sent.values())
        total += sent
        table.add_row(*(Text(str(c)) for c in (name, sent, _kinds(res.sent), _kinds(res.skipped), res.settled)))
    console.print(table)
    console.print(Text(f"{'would replay' if dry_run else 'replayed'} {total} message(s)"))
