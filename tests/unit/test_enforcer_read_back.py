"""The enforcer service reading its decisions back, alone: a key whose last record is not the
decision the enforcer holds for it (a record that fails verification or that this version cannot
read, a replayed older decision, a block another key signed) gets that decision published again,
so that compaction keeps a genuine one; a key it holds no decision for gets nothing, whatever the
record says. At start that is the key's last record read back; once started, a record read after
where the decision last landed, while the enforcer's own decisions read back late get nothing.
Records are built in memory, signed (or not) as a writer would, each at the next offset of one
partition; the FastStream broker is wired but never started, and its publisher is a double that
records what reaches the topic and acknowledges where it landed."""

import asyncio
import itertools
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker

from spendpipe.contracts.decisions import MESSAGE_TYPE, Decision
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.signing import Headers
from spendpipe.platform.signing.records import writer_of
from tests.support.acknowledgements import landed_at
from tests.support.signing import WriterKey, forged_headers
from tests.support.waiting import eventually

ENFORCER, RETIRED = WriterKey.generate(), WriterKey.generate()
UNREADABLE = b'{"scope": "team:eng", "version": "a newer schema"}'
WITHIN_S = 5.0


def service() -> EnforcerService:
    """An enforcer signing with `ENFORCER`'s key, accepting it and `RETIRED`'s, not started."""
    settings = EnforcerSettings(signing=ENFORCER.settings(ENFORCER, RETIRED))
    return EnforcerService(settings=settings, broker=KafkaBroker("127.0.0.1:9"), clickhouse=None)  # type: ignore[arg-type]


def decision(scope: str, version: int, *, blocked: bool = True) -> Decision:
    return Decision(scope=scope, version=version, blocked=blocked, reason="test", decided_at=datetime.now(UTC))


OFFSETS = itertools.count()
"""One partition: each record built lands after the ones built before it."""


def record(key: str, value: bytes | None, headers: Headers) -> Any:
    return SimpleNamespace(key=key.encode(), value=value, headers=headers, partition=0, offset=next(OFFSETS))


def signed(key: str, value: bytes | None, writer: WriterKey = ENFORCER) -> Any:
    return record(key, value, writer.settings().signer().headers(MESSAGE_TYPE, key.encode(), value))


def of(made: Decision, writer: WriterKey = ENFORCER) -> Any:
    return signed(made.key, made.model_dump_json().encode(), writer)


def forged(key: str, value: bytes | None, how: str = "unknown_key") -> Any:
    return record(key, value, forged_headers(MESSAGE_TYPE, key.encode(), value, how, genuine=ENFORCER))


def read_back(s: EnforcerService, *records: Any) -> list[Decision]:
    """What the start publishes again after reading back `records`, in order."""
    for each in records:
        s._on_decision_read(each)
    return s._published_again_at_start()


def reasserted(s: EnforcerService) -> float:
    return float(s.metrics.decisions_reasserted._value.get())


def test_a_key_whose_last_record_cannot_be_read_gets_the_decision_held_for_it() -> None:
    s = service()
    block = decision("team:eng", 5)
    assert read_back(s, of(block), signed(block.key, UNREADABLE)) == [block]
    assert reasserted(s) == 1


@pytest.mark.parametrize("how", ["unsigned", "unknown_key", "bad_signature"])
def test_a_key_whose_last_record_fails_verification_gets_the_decision_held_not_the_forged_one(how: str) -> None:
    s = service()
    unblock = decision("team:eng", 5, blocked=False)
    forgery = decision("team:eng", 2**62)  # a block, at a version above any the enforcer makes
    assert read_back(s, of(unblock), forged(unblock.key, forgery.model_dump_json().encode(), how)) == [unblock]
    assert s.enforcer.last(unblock.key) == unblock


def test_a_forged_tombstone_after_a_block_gets_the_block_again() -> None:
    s = service()
    block = decision("team:eng", 5)
    assert read_back(s, of(block), forged(block.key, None, "unsigned")) == [block]


def test_a_replayed_older_decision_as_the_last_record_gets_the_newer_one() -> None:
    s = service()
    unblock, block = decision("team:eng", 5, blocked=False), decision("team:eng", 6)
    assert read_back(s, of(unblock), of(block), of(unblock)) == [block]


def test_a_key_whose_unreadable_record_a_genuine_decision_followed_gets_nothing() -> None:
    s = service()
    block = decision("team:eng", 5)
    assert read_back(s, signed(block.key, UNREADABLE), forged(block.key, b"{}"), of(block)) == []
    assert reasserted(s) == 0


@pytest.mark.parametrize(
    "last",
    [
        signed("team:eng", UNREADABLE),
        forged("team:eng", decision("team:eng", 2**62).model_dump_json().encode()),
        forged("team:eng", decision("team:eng", 2**62, blocked=False).model_dump_json().encode(), "bad_signature"),
        signed("\ufffd", b"not json"),
    ],
    ids=["unreadable", "forged block", "forged unblock", "no scope"],
)
def test_a_key_the_enforcer_holds_no_decision_for_is_left_as_it_is(last: Any, caplog: pytest.LogCaptureFixture) -> None:
    s = service()
    other = decision("team:other", 5)
    assert read_back(s, of(other), last) == []
    assert s.enforcer.last(last.key.decode()) is None
    assert "leaving 1 keys" in caplog.text


def test_a_block_another_accepted_key_signed_is_signed_again_and_an_unblock_is_not() -> None:
    s = service()
    block, unblock = decision("team:eng", 5), decision("team:ops", 5, blocked=False)
    assert read_back(s, of(block, RETIRED), of(unblock, RETIRED)) == [block]
    assert reasserted(s) == 0  # a rotation, not a record to overwrite


def test_where_signatures_are_not_required_an_unsigned_block_is_not_signed_again() -> None:
    settings = EnforcerSettings(signing=ENFORCER.settings(ENFORCER).model_copy(update={"required": False}))
    s = EnforcerService(settings=settings, broker=KafkaBroker("127.0.0.1:9"), clickhouse=None)  # type: ignore[arg-type]
    block = decision("team:eng", 5)
    unsigned = record(block.key, block.model_dump_json().encode(), [])
    assert read_back(s, unsigned) == []


def test_a_genuine_tombstone_leaves_the_key_as_the_enforcer_holds_it() -> None:
    s = service()
    block = decision("team:eng", 5)
    assert read_back(s, of(block), signed(block.key, UNREADABLE), signed(block.key, None)) == []


class Topic:
    """A double of the enforcer's publisher: each send lands at the next offset (`landed`, the
    record as the decisions follower reads it back) and is acknowledged, at once or, while
    `held_up` is clear, once it is set."""

    def __init__(self) -> None:
        self.landed: list[Any] = []
        self.held_up = asyncio.Event()
        self.held_up.set()

    async def publish(self, value: bytes, key: bytes, headers: dict[str, str]) -> RecordMetadata:
        landed = record(key.decode(), value, [(name, text.encode()) for name, text in headers.items()])
        self.landed.append(landed)
        await self.held_up.wait()
        return landed_at(landed.offset)

    def sent(self) -> list[Decision]:
        return [Decision.model_validate_json(r.value) for r in self.landed]


def started(*records: Any) -> tuple[EnforcerService, Topic]:
    """A service that read `records` back at start (publishing nothing again), and its topic."""
    s = service()
    assert read_back(s, *records) == []
    s.ready.set()
    topic = Topic()
    s._decisions.publish = topic.publish  # type: ignore[method-assign,assignment]
    return s, topic


async def decided(s: EnforcerService, made: Decision) -> None:
    """`made` decided by the enforcer and sent, as a judgement does."""
    s.enforcer.remember(made)
    await s._publish([made])


async def test_once_started_an_unreadable_record_on_a_decided_key_gets_its_decision_on_the_tick() -> None:
    block = decision("team:eng", 5)
    s, topic = started(of(block))
    s._on_decision_read(signed(block.key, UNREADABLE))
    s._on_decision_read(signed("team:other", UNREADABLE))  # never decided: nothing to restore
    await s._reassert()
    assert topic.sent() == [block]
    assert reasserted(s) == 1


async def test_once_started_a_replayed_older_decision_gets_the_newer_one_on_the_tick() -> None:
    unblock, block = decision("team:eng", 5, blocked=False), decision("team:eng", 6)
    s, topic = started(of(unblock), of(block))
    s._on_decision_read(of(unblock))  # the genuine unblock written again, after the block
    await s._reassert()
    assert topic.sent() == [block]
    assert reasserted(s) == 1


async def test_once_started_a_block_another_accepted_key_signed_written_again_gets_it_signed_again() -> None:
    block = decision("team:eng", 5)
    s, topic = started(of(block))
    s._on_decision_read(of(block, RETIRED))
    await s._reassert()
    assert topic.sent() == [block]
    assert writer_of(topic.landed[0]) == ENFORCER.settings().signer().key_id


async def test_the_enforcers_own_decisions_read_back_late_are_not_published_over() -> None:
    first, second, third = (decision("team:eng", v, blocked=v % 2 == 1) for v in (5, 6, 7))
    s, topic = started(of(first))
    await decided(s, second)
    await decided(s, third)
    for landed in topic.landed:  # the follower reads them after both were acknowledged
        s._on_decision_read(landed)
    await s._reassert()
    assert topic.sent() == [second, third]
    assert reasserted(s) == 0


async def test_reading_the_topic_again_after_a_failure_publishes_nothing_again() -> None:
    unblock, block = decision("team:eng", 5, blocked=False), decision("team:eng", 6)
    history = [of(unblock), forged(unblock.key, b"{}", "unsigned"), of(block), signed(block.key, UNREADABLE)]
    s, topic = started(*history[:3])
    s._on_decision_read(history[3])
    await s._reassert()  # the unreadable record came after the block: published again
    assert topic.sent() == [block]
    for again in [*history, *topic.landed]:  # the follower reconnects and reads from the beginning
        s._on_decision_read(again)
    await s._reassert()
    assert topic.sent() == [block]
    assert reasserted(s) == 1


async def test_a_record_read_while_a_send_awaits_its_acknowledgement_is_judged_when_it_comes() -> None:
    unblock, block = decision("team:eng", 5, blocked=False), decision("team:eng", 6)
    s, topic = started(of(unblock))
    topic.held_up.clear()
    sending = asyncio.create_task(decided(s, block))
    await eventually(lambda: topic.landed, bool, within=WITHIN_S, what="the block stored, not yet acknowledged")
    s._on_decision_read(topic.landed[0])  # the block read back before its acknowledgement
    s._on_decision_read(of(unblock))  # and the unblock replayed after it
    await asyncio.wait_for(s._reassert(), WITHIN_S)  # publishing would wait for the block's acknowledgement
    assert topic.sent() == [block]  # not yet known to come after the block
    topic.held_up.set()
    await sending
    await s._reassert()
    assert topic.sent() == [block, block]
    assert reasserted(s) == 1


async def test_a_record_that_landed_before_a_send_acknowledged_later_is_not_published_over() -> None:
    unblock, block = decision("team:eng", 5, blocked=False), decision("team:eng", 6)
    s, topic = started(of(unblock))
    replay = of(unblock)  # lands before the block
    topic.held_up.clear()
    sending = asyncio.create_task(decided(s, block))
    await eventually(lambda: topic.landed, bool, within=WITHIN_S, what="the block stored, not yet acknowledged")
    s._on_decision_read(replay)
    topic.held_up.set()
    await sending
    await s._reassert()
    assert topic.sent() == [block]
    assert reasserted(s) == 0
