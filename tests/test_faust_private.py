"""The two private faust-streaming calls the worker makes are still there, with the shape it relies on.

``streams/app.py`` commits the feed's offsets through ``Consumer._commit`` (the group member's generation fences
a worker that lost the partition) and pauses Faust's own client on the source partitions through the consumer
thread's ``_ensure_consumer()``. faust-streaming is pinned below 0.16; an upgrade that moves either fails here,
in the test command, rather than in a worker at its first commit or rebalance.
"""

from __future__ import annotations

import inspect

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as driver


def test_the_consumer_commits_a_mapping_of_offsets_and_says_whether_it_did() -> None:
    commit = driver.Consumer._commit
    assert inspect.iscoroutinefunction(commit)
    assert list(inspect.signature(commit).parameters) == ["self", "offsets"]


def test_the_consumer_thread_hands_out_the_aiokafka_client_it_pauses() -> None:
    ensure = driver.AIOKafkaConsumerThread._ensure_consumer
    assert list(inspect.signature(ensure).parameters) == ["self"]
    assert "pause" in vars(AIOKafkaConsumer) and "resume" in vars(AIOKafkaConsumer)
