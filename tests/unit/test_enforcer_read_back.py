"""The enforcer service reading its decisions back, alone: a key whose last record is not the
decision the enforcer holds for it (a record that fails verification or that this version cannot
read, a replayed older decision, a block another key signed) gets that decision published again,
so that compaction keeps a genuine one; a key it holds no decision for gets nothing, whatever the
record says. Records are built in memory, signed (or not) as a writer would; the FastStream broker
is wired but never started, and its publisher is a double that records what reaches the topic."""

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from spendpipe.contracts.decisions import MESSAGE_TYPE, Decision
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.signing import Headers
from tests.support.signing import WriterKey, forged_headers

ENFORCER, RETIRED = WriterKey.generate(), WriterKey.generate()
UNREADABLE = b'{"scope": "team:eng", "version": "a newer schema"}'


def service() -> EnforcerService:
    """An enforcer signing with `ENFORCER`'s key, accepting it and `RETIRED`'s, not started."""
    settings = EnforcerSettings(signing=ENFORCER.settings(ENFORCER, RETIRED))
    return EnforcerService(settings=settings, broker=KafkaBroker("127.0.0.1:9"), clickhouse=None)  # type: ignore[arg-type]


def decision(scope: str, version: int, *, blocked: bool = True) -> Decision:
    return Decision(scope=scope, version=version, blocked=blocked, reason="test", decided_at=datetime.now(UTC))


def record(key: str, value: bytes | None, headers: Headers) -> Any:
    return SimpleNamespace(key=key.encode(), value=value, headers=headers, offset=0)


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


def test_a_genuine_tombstone_leaves_the_key_as_the_enforcer_holds_it() -> None:
    s = service()
    block = decision("team:eng", 5)
    assert read_back(s, of(block), signed(block.key, UNREADABLE), signed(block.key, None)) == []


async def test_once_started_an_unreadable_record_on_a_decided_key_gets_its_decision_on_the_tick() -> None:
    s = service()
    block = decision("team:eng", 5)
    assert read_back(s, of(block)) == []
    s.ready.set()
    sent: list[Decision] = []

    async def publish(value: bytes, key: bytes, headers: dict[str, str]) -> None:
        sent.append(Decision.model_validate_json(value))

    s._decisions.publish = publish  # type: ignore[method-assign,assignment]
    s._on_decision_read(signed(block.key, UNREADABLE))
    s._on_decision_read(signed("team:other", UNREADABLE))  # never decided: nothing to restore
    await s._reassert()
    assert sent == [block]
    assert reasserted(s) == 1
