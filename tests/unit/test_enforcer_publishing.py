"""The enforcer service publishing decisions, alone: per key the decisions topic holds them in
version order whichever task sends them, and a decision whose send failed stays in force and is
sent again. The FastStream broker is wired but never started: its publisher is replaced by a
double that records what reaches the topic, the store runs each call in line, and the spend is
read from a dict. A decision is never held unsent: one decided by a judgement that then raised is
published on the tick too."""

import asyncio
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import pytest
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker

from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.rate_limits import RateLimit
from spendpipe.contracts.scopes import Scope
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.rate_reader import RateUsage
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.enforcer.targets import Target
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.platform.signing.settings import SigningSettings
from spendpipe.store.totals import Measurement
from tests.support.acknowledgements import landed_at
from tests.support.waiting import eventually

ENG, OTHER = Scope.parse("team:eng"), Scope.parse("team:a")
WITHIN_S = 10.0


class Spend:
    def __init__(self, spend: dict[str, Decimal]) -> None:
        self.spend = spend

    def measure_many(self, targets: Iterable[Target], now: int) -> list[list[Measurement]]:
        return [[Measurement(cap, self.spend[str(t.scope)], None) for cap in t.caps] for t in targets]

    def spent_since(self, targets: list[Target], since: int) -> list[Decimal]:
        return [Decimal(0)] * len(targets)


class InlineStore:
    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        return call(*args)


def service_spending(spend: dict[str, Decimal], clock: list[float]) -> EnforcerService:
    """A service whose every scope in `spend` has a lifetime cap of 10."""
    settings = EnforcerSettings(signing=SigningSettings(required=False))
    service = EnforcerService(settings=settings, broker=KafkaBroker("127.0.0.1:9"), clickhouse=InlineStore())  # type: ignore[arg-type]
    service.enforcer._clock = lambda: clock[0]
    service.enforcer._reader = Spend(spend)  # type: ignore[assignment]
    for scope in spend:
        service.enforcer.book.put(Budget(scope=scope, max_budget=Decimal(10)))
    service.ready.set()
    return service


def raise_cap(service: EnforcerService, scope: str) -> None:
    """What `_on_budget` does with a raised budget read from the topic: the tick judges it."""
    service.enforcer.book.put(Budget(scope=scope, max_budget=Decimal(100), version=2))
    service._pending_scopes.add(scope)


async def unblock_meanwhile(
    service: EnforcerService, clock: list[float], flush: "asyncio.Task[None]", held: asyncio.Event
) -> None:
    """While `flush` is held up sending, team:eng's cap is raised and the tick decides its
    unblock (a newer version); then `held` lets the flush go on, and both finish."""
    clock[0] += 1
    raise_cap(service, "team:eng")
    tick = asyncio.create_task(service._apply_budget_changes())
    await eventually(
        lambda: service.enforcer.last("team:eng"),
        lambda decided: decided is not None and not decided.blocked,
        within=WITHIN_S,
        what="the tick's unblock of team:eng decided",
    )
    held.set()
    await asyncio.gather(flush, tick)


async def test_a_keys_decisions_reach_the_topic_in_version_order_whichever_task_sends_them() -> None:
    clock = [1_000_000.0]
    service = service_spending({"team:a": Decimal(50), "team:eng": Decimal(15)}, clock)
    topic: list[Decision] = []
    first_ack = asyncio.Event()

    async def publish(value: bytes, key: bytes, headers: dict[str, str]) -> RecordMetadata:
        topic.append(Decision.model_validate_json(value))  # in the log once sent; the ack comes later
        offset = len(topic) - 1
        if offset == 0:
            await first_ack.wait()
        return landed_at(offset)

    service._decisions.publish = publish  # type: ignore[method-assign,assignment]
    # a flush judges both scopes (two blocks) and waits for the ack of the first
    flush = asyncio.create_task(service._judge([OTHER, ENG]))
    await eventually(lambda: len(topic), lambda sent: sent == 1, within=WITHIN_S, what="the first block sent")
    block = service.enforcer.last("team:eng")
    assert block is not None
    assert block.blocked
    # meanwhile team:eng's cap is raised and the tick decides its unblock, a newer version
    await unblock_meanwhile(service, clock, flush, first_ack)

    eng = [d.version for d in topic if d.key == "team:eng"]
    assert eng == sorted(eng), "team:eng's decisions reached the topic out of version order"
    compacted = {d.key: d for d in topic}  # the last record per key: what a gateway starting later reads
    assert compacted["team:eng"] == service.enforcer.last("team:eng")
    cold = BlockList()
    for decision in compacted.values():
        cold.apply(decision)
    assert cold.blocking(["team:eng"]) is None
    assert cold.blocking(["team:a"]) is not None


async def test_a_decision_on_its_way_to_the_broker_is_not_overtaken_by_a_newer_one() -> None:
    clock = [1_000_000.0]
    service = service_spending({"team:eng": Decimal(15)}, clock)
    topic: list[Decision] = []
    entered, through = asyncio.Event(), asyncio.Event()

    async def publish(value: bytes, key: bytes, headers: dict[str, str]) -> RecordMetadata:
        if not entered.is_set():  # the first record is held up before it reaches the log
            entered.set()
            await through.wait()
        topic.append(Decision.model_validate_json(value))
        return landed_at(len(topic) - 1)

    service._decisions.publish = publish  # type: ignore[method-assign,assignment]
    flush = asyncio.create_task(service._judge([ENG]))  # the block, newest of its key when sent
    await entered.wait()
    await unblock_meanwhile(service, clock, flush, through)

    assert [d.blocked for d in topic] == [True, False]
    assert topic[-1] == service.enforcer.last("team:eng")


async def test_a_send_that_failed_after_kafka_stored_it_leaves_the_block_in_force_and_liftable() -> None:
    clock = [1_000_000.0]
    service = service_spending({"team:eng": Decimal(15)}, clock)
    gateway, topic, failing = BlockList(), list[Decision](), [True]

    async def publish(value: bytes, key: bytes, headers: dict[str, str]) -> RecordMetadata:
        decision = Decision.model_validate_json(value)
        topic.append(decision)  # the broker stored it, gateways apply it
        gateway.apply(decision)
        service.enforcer.remember(decision)  # and the enforcer's decisions follower reads it back
        if failing[0]:
            raise TimeoutError("no acknowledgement within request_timeout_ms")
        return landed_at(len(topic) - 1)

    service._decisions.publish = publish  # type: ignore[method-assign,assignment]
    with pytest.raises(TimeoutError):
        await service._judge([ENG])
    failing[0] = False
    assert gateway.blocking(["team:eng"]) is not None
    block = service.enforcer.last("team:eng")
    assert block is not None, "the enforcer forgot a block gateways hold"
    assert block.blocked

    clock[0] += 1
    raise_cap(service, "team:eng")
    await service._apply_budget_changes()

    assert gateway.blocking(["team:eng"]) is None, "raising the cap did not lift the block"
    assert not topic[-1].blocked


async def test_decisions_whose_send_failed_are_published_again_on_the_tick() -> None:
    clock = [1_000_000.0]
    service = service_spending({"team:a": Decimal(50), "team:eng": Decimal(15)}, clock)
    topic: list[Decision] = []
    failing = [True]

    async def publish(value: bytes, key: bytes, headers: dict[str, str]) -> RecordMetadata:
        if failing[0]:
            raise TimeoutError("the broker is unreachable")  # Kafka took nothing
        topic.append(Decision.model_validate_json(value))
        return landed_at(len(topic) - 1)

    service._decisions.publish = publish  # type: ignore[method-assign,assignment]
    with pytest.raises(TimeoutError):
        await service._judge([OTHER, ENG])
    assert topic == []
    with pytest.raises(TimeoutError):
        await service._reassert()  # the tick, while Kafka still takes nothing
    assert topic == []

    failing[0] = False
    await service._reassert()  # the next tick

    assert sorted((d.key, d.blocked) for d in topic) == [("team:a", True), ("team:eng", True)]
    assert [d.key for d in service.enforcer.blocks()] == ["team:a", "team:eng"]
    # the next judgement finds nothing new to publish, and the next tick nothing to send again
    await service._judge([OTHER, ENG])
    await service._reassert()
    assert len(topic) == 2


class UnreachableRates:
    """The rate limits' query, run after the budgets' spend was read in the same judgement."""

    def __init__(self) -> None:
        self.failing = True

    def measure(self, limit: RateLimit, now: float) -> RateUsage:
        if self.failing:
            raise ConnectionError("ClickHouse went away")
        return RateUsage(0, 0, None, None)


async def test_a_block_decided_before_its_judgement_failed_is_published_on_the_tick() -> None:
    clock = [1_000_000.0]
    service = service_spending({"team:eng": Decimal(15)}, clock)
    service.enforcer.book.put(Budget(scope="team:eng", max_budget=Decimal(10), rpm_limit=100))
    rates = UnreachableRates()
    service.enforcer._rates = rates  # type: ignore[assignment]
    gateway, topic = BlockList(), list[Decision]()

    async def publish(value: bytes, key: bytes, headers: dict[str, str]) -> RecordMetadata:
        topic.append(Decision.model_validate_json(value))
        gateway.apply(topic[-1])
        return landed_at(len(topic) - 1)

    service._decisions.publish = publish  # type: ignore[method-assign,assignment]
    # a flush's judgement decides team:eng's block, then its rate limit's query raises
    with pytest.raises(ConnectionError):
        await service._judge([ENG])
    assert topic == []
    block = service.enforcer.last("team:eng")
    assert block is not None
    assert block.blocked
    rates.failing = False
    await service._judge([ENG])  # judged again: the block is in force, nothing new to publish
    assert topic == []

    await service._reassert()  # the tick

    assert topic == [block]
    assert gateway.blocking(["team:eng"]) is not None
    await service._reassert()  # and only once
    assert topic == [block]
