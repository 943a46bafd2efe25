"""Messages the consumer skipped are read back from a real broker, in order, headers and all."""

from __future__ import annotations

import asyncio

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from opsmon.settings import Settings
from streams.gaps import kafka_gaps, read_range, resume_offsets
from streams.pipeline import Record


def _produce(s: Settings, n: int) -> None:
    producer = KafkaProducer(**s.kafka_client_config(), acks="all")
    try:
        for i in range(n):
            producer.send(s.topic_iot, key=b"site/dev", value=f"reading-{i}".encode(), partition=0,
                          headers=[("producer", f"gw-{i}".encode())])
        producer.flush()
    finally:
        producer.close()


def test_a_range_of_offsets_is_read_with_keys_values_and_headers(pipeline_settings: Settings) -> None:
    s = pipeline_settings
    _produce(s, 10)
    got = read_range(s, s.topic_iot, 0, 3, 7)
    assert [r.offset for r in got] == [3, 4, 5, 6]
    assert [r.value for r in got] == [b"reading-3", b"reading-4", b"reading-5", b"reading-6"]
    assert got[0].key == b"site/dev" and got[0].headers == (("producer", b"gw-3"),) and got[0].partition == 0


def test_holes_in_consumed_offsets_are_filled_from_the_broker(pipeline_settings: Settings) -> None:
    s = pipeline_settings
    _produce(s, 10)
    gaps = kafka_gaps(s, s.topic_iot)

    def consumed(offset: int) -> Record:
        return Record(0, offset, b"site/dev", f"reading-{offset}".encode())

    first = asyncio.run(gaps.fill([consumed(0), consumed(1), consumed(4)]))  # nothing committed; 2 and 3 skipped
    second = asyncio.run(gaps.fill([consumed(2), consumed(9)]))  # a replay of 2, then a hole 5..8
    assert [r.offset for r in first] == [0, 1, 2, 3, 4]
    assert [r.offset for r in second] == [2, 5, 6, 7, 8, 9]
    assert [r.value for r in first + second] == [f"reading-{r.offset}".encode() for r in first + second]
    assert (gaps.holes, gaps.filled) == (2, 6)


def _commit(s: Settings, topic: str, partition: int, offset: int) -> None:
    """Commit ``offset`` for the worker's consumer group, as a worker that processed up to ``offset - 1`` does."""
    consumer = KafkaConsumer(**s.kafka_client_config(), group_id=s.app_id, enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)})
    finally:
        consumer.close()


def test_a_resumed_partition_whose_first_messages_were_skipped_gets_them_back(pipeline_settings: Settings) -> None:
    s = pipeline_settings
    _produce(s, 10)
    assert resume_offsets(s, s.topic_iot, [0, 1]) == {0: 0, 1: 0}  # nothing committed: the log's start
    _commit(s, s.topic_iot, 0, 4)
    assert resume_offsets(s, s.topic_iot, [0]) == {0: 4}
    gaps = kafka_gaps(s, s.topic_iot)
    got = asyncio.run(gaps.fill([Record(0, 7, b"site/dev", b"reading-7")]))  # the consumer resumed at 7, not 4
    assert [r.offset for r in got] == [4, 5, 6, 7]
    assert [r.value for r in got] == [f"reading-{o}".encode() for o in (4, 5, 6, 7)]
    assert (gaps.holes, gaps.filled) == (1, 3)
    again = kafka_gaps(s, s.topic_iot)  # a consumer that resumes where the group left off fetches nothing
    assert [r.offset for r in asyncio.run(again.fill([Record(0, 4, b"site/dev", b"reading-4")]))] == [4]
    assert again.holes == 0
