"""Signed decisions and budgets, on the real broker, with the real enforcer (in one
broker with the aggregator, as `spendpipe run all` runs them) and a real gateway (the plugin and
the followers it reads the topics with): what a writer without an accepted key puts on
spend.decisions or spend.budgets changes nothing, whatever its version; a genuine decision
replayed does not undo a newer one, and the enforcer publishes its decision again after any
record on the key that is not it, at start and while running (not over its own history read
again); a writer key can be rotated while enforcing.

Topics have one partition here, so a genuine "sentinel" record written after the forgeries is
read after them: once a reader holds the sentinel, it has read, and dropped, every forgery."""

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Counter

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.budgets import MESSAGE_TYPE as BUDGET_TYPE
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.signatures import KEY_ID_HEADER
from spendpipe.contracts.topics import Topics
from spendpipe.enforcer.app import EnforcerService
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import SigningSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway import sdk_plugin
from tests.support.gateway_blocks import at, latest
from tests.support.pipeline import ManualClock, produce, read_topic, running_pipeline
from tests.support.processes import run_cli
from tests.support.signing import FORGED_AS, WriterKey, forged_headers, reader_settings, write_forgeries, write_records
from tests.support.waiting import eventually

SCOPE = "team:eng"
BUDGET = {"scope": SCOPE, "max_budget": "1.00", "budget_duration": "1mo", "rpm_limit": 100}


class Stack:
    """The topics, the clock, a budget writer and the enforcer's settings of one test."""

    def __init__(
        self, bootstrap: str, topics: Topics, clickhouse: ClickhouseStore, settings: ClickhouseSettings
    ) -> None:
        self.bootstrap, self.topics, self.clickhouse, self.clickhouse_settings = bootstrap, topics, clickhouse, settings
        self.clock = ManualClock(datetime.now(UTC))

    def admin(self, signing: SigningSettings | None = None) -> BudgetAdmin:
        return BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=self.bootstrap), topics=self.topics, signing=signing)

    @asynccontextmanager
    async def enforcer(self, signing: SigningSettings | None = None) -> AsyncIterator[EnforcerService]:
        extra = {"signing": signing} if signing else {}
        aggregator = aggregator_settings(self.bootstrap, self.topics, self.clickhouse_settings)
        enforcer = enforcer_settings(self.bootstrap, self.topics, self.clickhouse_settings, **extra)
        async with running_pipeline(aggregator, enforcer, self.clickhouse, self.clock) as service:
            yield service

    async def spend(self, cost: str) -> None:
        event = make_event(occurred_at=at(self.clock()), cost=Decimal(cost), team_id="eng")
        await produce(self.bootstrap, self.topics.events, [event.to_json()])

    async def sentinel_decision(self, writer: WriterKey) -> None:
        """A decision `writer` signs on another key, written after whatever came before."""
        decision = Decision(
            scope="team:sentinel", version=1, blocked=False, reason="sentinel", decided_at=datetime.now(UTC)
        )
        key, value = decision.key.encode(), decision.model_dump_json().encode()
        headers = writer.settings().signer().headers(DECISION_TYPE, key, value)
        await write_records(self.bootstrap, self.topics.decisions, [(key, value, headers)])

    def cli_env(self) -> dict[str, str]:
        return {
            "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "SPENDPIPE_TOPICS__BUDGETS": self.topics.budgets,
            "SPENDPIPE_TOPICS__DECISIONS": self.topics.decisions,
        }

    def cli(self, *args: str) -> str:
        done = run_cli(self.cli_env(), *args)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
async def stack(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> Stack:
    return Stack(kafka_broker, await make_topics(kafka_broker, 1), clickhouse, clickhouse_settings)


def rejected(counter: Counter, topic: str) -> dict[str, float]:
    """{reason: count} of one topic's dropped records."""
    return {
        sample.labels["reason"]: sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["topic"] == topic and sample.value
    }


async def last_record(stack: Stack, key: str) -> TopicRecord | None:
    """The decisions topic's last record on `key` (one partition: offset order is write order)."""
    records = await read_topic(stack.bootstrap, stack.topics.decisions, expected=1)
    return next((r for r in reversed(records) if r.key == key.encode()), None)


def blocked_at(plugin: SpendpipeLogger) -> Callable[[], Decision | None]:
    return lambda: plugin.blocklist.blocking([SCOPE])


async def blocked_by_spend(stack: Stack, plugin: SpendpipeLogger) -> Decision:
    await stack.spend("1.10")
    found: Decision = await eventually(blocked_at(plugin), bool, within=30, what=f"{SCOPE} blocked at the gateway")
    return found


async def lift_and_block_again(admin: BudgetAdmin, plugin: SpendpipeLogger) -> tuple[Decision, Decision]:
    """Raise the cap (the block lifts at the gateway), then lower it again (blocked again)."""
    await asyncio.to_thread(admin.set, BUDGET | {"max_budget": "5.00"})
    lifted = await eventually(
        lambda: latest(plugin.blocklist, SCOPE), lambda d: not d.blocked, within=15, what="unblock on raise"
    )
    await asyncio.to_thread(admin.set, BUDGET)
    again = await eventually(blocked_at(plugin), bool, within=15, what="blocked again on lower")
    return lifted, again


async def replay_the_unblock(stack: Stack) -> bytes:
    """Write the genuine unblock among the three decisions `lift_and_block_again` leaves again,
    byte for byte with its signature, as whoever can write the topic could; returns its value."""
    records = await read_topic(stack.bootstrap, stack.topics.decisions, expected=3)
    unblock = next(r for r in records if r.value and not Decision.model_validate_json(r.value).blocked)
    assert unblock.key is not None
    value: bytes | None = unblock.value
    assert value is not None
    await write_records(stack.bootstrap, stack.topics.decisions, [(unblock.key, value, list(unblock.headers))])
    return value


async def forge(stack: Stack, genuine: WriterKey) -> None:
    """A forged unblock at version 2^62 and a forged cap of $1000 (rpm 10^6), three ways each,
    and an unsigned tombstone."""
    raised = Budget(scope=SCOPE, max_budget=Decimal(1000), rpm_limit=1_000_000)
    await write_forgeries(stack.bootstrap, stack.topics, raised, genuine=genuine)


@contextmanager
def started_gateway(
    stack: Stack, spool: Path, signing: SigningSettings | None = None, topics: Topics | None = None
) -> Iterator[SpendpipeLogger]:
    """The gateway plugin as the SDK runs it, following this test's topics (or `topics`) from now on."""
    extra = {"signing": signing} if signing else {}
    with sdk_plugin(stack.bootstrap, topics or stack.topics, spool, **extra) as plugin:
        plugin.start()
        yield plugin


async def test_forged_decisions_and_budgets_are_ignored_by_gateways_and_the_enforcer(
    stack: Stack, signing_keys: WriterKey, tmp_path: Path
) -> None:
    # given a scope the enforcer blocked, at a gateway
    await asyncio.to_thread(stack.admin().set, BUDGET)
    with started_gateway(stack, tmp_path / "spool") as plugin:
        async with stack.enforcer() as service:
            genuine = await blocked_by_spend(stack, plugin)

            # when decisions and budgets without an accepted signature are written on the real topics
            await forge(stack, signing_keys)
            await stack.sentinel_decision(signing_keys)
            await asyncio.to_thread(stack.admin().set, {"scope": "team:sentinel", "rpm_limit": 7})
            await eventually(
                lambda: latest(plugin.blocklist, "team:sentinel"),
                bool,
                within=10,
                what="the gateway past the forgeries",
            )
            await eventually(
                lambda: plugin.gate.remaining(["team:sentinel"], "gpt-4o-mini").request_limit,
                lambda limit: limit == 7,
                within=10,
                what="the gateway's limits past the forgeries",
            )
            await eventually(
                lambda: service.enforcer.book.get("team:sentinel"), bool, within=10, what="the enforcer past them"
            )

            # then the gateway still refuses the scope, with the genuine decision and the genuine limits
            assert plugin.blocklist.blocking([SCOPE]) == genuine
            assert plugin.gate.remaining([SCOPE], "gpt-4o-mini").request_limit == 100
            # and the enforcer still enforces the genuine cap
            budget = service.enforcer.book.get(SCOPE)
            assert budget is not None
            assert budget.max_budget == Decimal("1.00")
            # every forgery was counted, by its reason, at the gateway and the enforcer
            every = {reason: float(count) for reason, count in collections.Counter(FORGED_AS.values()).items()}
            assert rejected(plugin.metrics.records_rejected, stack.topics.decisions) == every
            assert rejected(plugin.metrics.records_rejected, stack.topics.budgets) == every | {"unsigned": 2.0}
            assert rejected(service.metrics.records_rejected, stack.topics.budgets) == every | {"unsigned": 2.0}
            # and operators still see the block and the genuine budget
            listed = await asyncio.to_thread(stack.cli, "blocks", "list")
            assert SCOPE in listed
            budgets = await asyncio.to_thread(stack.cli, "budgets", "list")
            assert "1.00" in budgets
            assert "1000" not in budgets
            # and the enforcer published its block again after the forgeries, so the key's last
            # record is genuine: what compaction keeps for gateways that start later
            last = await eventually(
                lambda: last_record(stack, SCOPE),
                lambda r: r is not None and r.value == genuine.model_dump_json().encode(),
                within=10,
                what="the genuine block as the key's last record",
            )
            assert service.metrics.decisions_reasserted._value.get() >= 1
            assert dict(last.headers)[KEY_ID_HEADER].decode() == signing_keys.settings().signer().key_id

        # a restarted enforcer reads the forged version back and does not continue from it: its
        # next decisions, with versions of its own clock, reach the gateway
        async with stack.enforcer() as restarted:
            assert rejected(restarted.metrics.records_rejected, stack.topics.decisions) == every
            lifted, again = await lift_and_block_again(stack.admin(), plugin)
            assert genuine.version < lifted.version < again.version < 2**62


async def test_a_replayed_genuine_decision_does_not_undo_a_newer_one(
    stack: Stack, signing_keys: WriterKey, tmp_path: Path
) -> None:
    # given a block, lifted by a raised cap, then back by a lowered one: three genuine decisions
    await asyncio.to_thread(stack.admin().set, BUDGET)
    with started_gateway(stack, tmp_path / "spool") as plugin:
        async with stack.enforcer():
            await blocked_by_spend(stack, plugin)
            _, newest = await lift_and_block_again(stack.admin(), plugin)

            # when the genuine unblock is written again, byte for byte with its signature
            await replay_the_unblock(stack)
            await stack.sentinel_decision(signing_keys)
            await eventually(lambda: latest(plugin.blocklist, "team:sentinel"), bool, within=10, what="past the replay")

            # then the newer block stands, at the gateway and in `blocks list`
            assert plugin.blocklist.blocking([SCOPE]) == newest
            assert rejected(plugin.metrics.records_rejected, stack.topics.decisions) == {}
            assert SCOPE in await asyncio.to_thread(stack.cli, "blocks", "list")


async def test_a_genuine_older_decision_replayed_while_the_enforcer_runs_is_published_over(
    stack: Stack, signing_keys: WriterKey, tmp_path: Path, make_topics: Callable[[str, int], Awaitable[Topics]]
) -> None:
    # given a running enforcer holding a block, decided after an unblock it signed (a raised cap, then lowered)
    await asyncio.to_thread(stack.admin().set, BUDGET)
    with started_gateway(stack, tmp_path / "spool") as plugin:
        async with stack.enforcer() as service:
            await blocked_by_spend(stack, plugin)
            _, newest = await lift_and_block_again(stack.admin(), plugin)

            # when whoever can write the topic writes that unblock again, byte for byte with its signature
            replayed = await replay_the_unblock(stack)

            # then the enforcer publishes its block again after it: the key's last record, which
            # compaction keeps, is the block, signed with the enforcer's key
            last = await eventually(
                lambda: last_record(stack, SCOPE),
                lambda r: r is not None and r.value != replayed,
                within=15,
                what="a record after the replayed unblock",
            )
            assert last.value == newest.model_dump_json().encode()
            assert key_id_of(last.headers) == signing_keys.settings().signer().key_id
            # once: its own decisions read back were not taken for replays
            assert service.metrics.decisions_reasserted._value.get() == 1
            assert plugin.blocklist.blocking([SCOPE]) == newest

    # and a gateway that starts afterwards, on what compaction keeps of the topic, refuses the scope
    compacted = await compacted_decisions(stack, make_topics)
    with started_gateway(stack, tmp_path / "spool-2", topics=compacted) as fresh:
        assert (
            await eventually(
                lambda: fresh.blocklist.blocking([SCOPE]),
                bool,
                within=15,
                what="blocked at a gateway started afterwards",
            )
            == newest
        )


async def compacted_decisions(stack: Stack, make_topics: Callable[[str, int], Awaitable[Topics]]) -> Topics:
    """This test's topics, with in place of spend.decisions a fresh topic holding what compaction
    keeps of it: each key's last record, as written (signature included), in their order.
    Compaction cleans only closed segments, which a test's few records are far from filling, so
    the topic itself still holds every record here."""
    records = await read_topic(stack.bootstrap, stack.topics.decisions, expected=1)
    last = {r.key: r.offset for r in records}
    kept = [(r.key or b"", r.value, list(r.headers)) for r in records if last[r.key] == r.offset]
    fresh = await make_topics(stack.bootstrap, 1)
    await write_records(stack.bootstrap, fresh.decisions, kept)
    return stack.topics.model_copy(update={"decisions": fresh.decisions})


def key_id_of(headers: Any) -> str:
    return str(dict(headers)[KEY_ID_HEADER].decode())


async def test_key_rotation_keeps_enforcing(stack: Stack, signing_keys: WriterKey, tmp_path: Path) -> None:
    old, new = signing_keys, WriterKey.generate()
    # given gateways that accept the old and the new public key, and a scope blocked under the old
    await asyncio.to_thread(stack.admin(old.settings(old, new)).set, BUDGET)
    both = reader_settings(old, new)
    with started_gateway(stack, tmp_path / "spool", both) as plugin:
        async with stack.enforcer(old.settings(old, new)):
            blocked = await blocked_by_spend(stack, plugin)

        # when the enforcer and the budget writer switch to the new key
        async with stack.enforcer(new.settings(old, new)) as service:
            assert service.enforcer.book.get(SCOPE) is not None  # budgets the old key signed still count
            lifted, again = await lift_and_block_again(stack.admin(new.settings(old, new)), plugin)

    # then the gateway followed every decision, the latest ones signed by the new key (the
    # block in force first: the enforcer published it again at start, signed with its new key)
    assert blocked.version < lifted.version < again.version
    records = await read_topic(stack.bootstrap, stack.topics.decisions, expected=4)
    assert [key_id_of(r.headers) for r in records] == [
        *[old.settings().signer().key_id] * 1,
        *[new.settings().signer().key_id] * 3,
    ]
    assert [Decision.model_validate_json(r.value or b"").version for r in records[:2]] == [blocked.version] * 2
    # and once the old key is retired, a fresh gateway holding only the new one still refuses the scope
    only_new = reader_settings(new)
    with started_gateway(stack, tmp_path / "spool-2", only_new) as fresh:
        assert await eventually(
            lambda: fresh.blocklist.blocking([SCOPE]), bool, within=15, what="blocked at a new-key-only gateway"
        )
        rejected_old = await eventually(
            lambda: rejected(fresh.metrics.records_rejected, stack.topics.decisions),
            lambda counts: counts.get("unknown_key") == 1.0,
            within=10,
            what="the old key's decision dropped",
        )
        assert rejected_old == {"unknown_key": 1.0}


async def test_a_block_in_force_outlives_the_retired_key_that_signed_it(
    stack: Stack, signing_keys: WriterKey, tmp_path: Path
) -> None:
    old, new = signing_keys, WriterKey.generate()
    # given a scope blocked under the old key
    await asyncio.to_thread(stack.admin(old.settings(old, new)).set, BUDGET)
    with started_gateway(stack, tmp_path / "spool", reader_settings(old, new)) as plugin:
        async with stack.enforcer(old.settings(old, new)):
            blocked = await blocked_by_spend(stack, plugin)

    # when the enforcer switches to the new key, with nothing to decide anew (same cap, same spend)
    new_id = new.settings().signer().key_id
    async with stack.enforcer(new.settings(old, new)) as service:
        assert service.enforcer.last(SCOPE) == blocked
        # then it publishes the block again, same version, signed with the new key
        resigned = await eventually(
            lambda: last_record(stack, SCOPE),
            lambda r: r is not None and key_id_of(r.headers) == new_id,
            within=10,
            what="the block signed with the new key",
        )
        assert Decision.model_validate_json(resigned.value or b"") == blocked

    # and once the old key is retired, a gateway that starts with only the new one refuses the scope
    with started_gateway(stack, tmp_path / "spool-2", reader_settings(new)) as fresh:
        assert await eventually(
            lambda: fresh.blocklist.blocking([SCOPE]), bool, within=15, what="blocked at a new-key-only gateway"
        )


async def test_a_key_whose_last_record_is_not_the_enforcers_decision_gets_it_again(
    stack: Stack, signing_keys: WriterKey, tmp_path: Path
) -> None:
    # given a scope the enforcer blocked
    await asyncio.to_thread(stack.admin().set, BUDGET)
    with started_gateway(stack, tmp_path / "spool") as plugin:
        async with stack.enforcer():
            genuine = await blocked_by_spend(stack, plugin)

        # when, while no enforcer runs, the block's key gets a record this version cannot read
        # (signed with the enforcer's own key: a newer version's schema, say), and a key the
        # enforcer never decided a forged block at version 2^62
        newer = b'{"scope": "team:eng", "version": "a newer schema"}'
        newer_record = (
            SCOPE.encode(),
            newer,
            signing_keys.settings().signer().headers(DECISION_TYPE, SCOPE.encode(), newer),
        )
        other = Decision(scope="team:other", version=2**62, blocked=True, reason="forged", decided_at=datetime.now(UTC))
        other_key, other_value = other.key.encode(), other.model_dump_json().encode()
        forged_block = (
            other_key,
            other_value,
            forged_headers(DECISION_TYPE, other_key, other_value, "unknown_key", genuine=signing_keys),
        )
        await write_records(stack.bootstrap, stack.topics.decisions, [newer_record, forged_block])

        # then the enforcer's start publishes its block again, same version, signed with its key,
        # as the key's last record: what compaction keeps for readers that start later
        async with stack.enforcer() as restarted:
            records = await read_topic(stack.bootstrap, stack.topics.decisions, expected=4)
            last = [r for r in records if r.key == SCOPE.encode()][-1]
            assert last.value == genuine.model_dump_json().encode()
            assert key_id_of(last.headers) == signing_keys.settings().signer().key_id
            assert restarted.metrics.decisions_reasserted._value.get() == 1
            # and publishes nothing under the key it never decided: the forgery stays, dropped by every reader
            assert [r.value for r in records if r.key == other_key] == [other_value]
            assert restarted.enforcer.last(other.key) is None
            assert plugin.blocklist.blocking([SCOPE]) == genuine

            # and once started, another unreadable record on the key gets the block again on the tick
            await write_records(stack.bootstrap, stack.topics.decisions, [newer_record])
            again = await eventually(
                lambda: last_record(stack, SCOPE),
                lambda r: r is not None and r.value != newer,
                within=10,
                what="the block published after the unreadable record",
            )
            assert again.value == genuine.model_dump_json().encode()
            assert restarted.metrics.decisions_reasserted._value.get() == 2

            # and when its decisions follower fails and reads the topic again from the beginning,
            # the unreadable records it passes sit before the block published after them: nothing
            # is published again
            await restarted._decisions_read.stop()  # the consumer closed under the follower
            failures = restarted.metrics.follow_failures.labels(stack.topics.decisions)
            await eventually(failures._value.get, bool, within=10, what="the follower failed")
            await eventually(restarted.not_ready, lambda why: why is None, within=15, what="the topic read again")
            read_again_at = restarted.metrics.last_tick._value.get()
            await eventually(
                restarted.metrics.last_tick._value.get,
                lambda at: at > read_again_at,
                within=10,
                what="a tick after the topic was read again",
            )
            assert restarted.metrics.decisions_reasserted._value.get() == 2
            assert (await last_record(stack, SCOPE)) == again


async def test_unsigned_records_are_counted_and_logged_once_per_writer(
    stack: Stack, signing_keys: WriterKey, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="spendpipe.platform.signing.records")
    with started_gateway(stack, tmp_path / "spool") as plugin:
        # given three unsigned decisions and two from each of two writers nobody accepts
        strangers = [WriterKey.generate(), WriterKey.generate()]
        records = []
        for n in range(3):
            decision = Decision(
                scope=f"team:t{n}", version=2**62, blocked=False, reason="x", decided_at=datetime.now(UTC)
            )
            key, value = decision.key.encode(), decision.model_dump_json().encode()
            records.append((key, value, forged_headers(DECISION_TYPE, key, value, "unsigned", genuine=signing_keys)))
            if n < 2:
                records += [(key, value, s.settings().signer().headers(DECISION_TYPE, key, value)) for s in strangers]
        # when they are written, then a genuine record
        await write_records(stack.bootstrap, stack.topics.decisions, records)
        await stack.sentinel_decision(signing_keys)
        await eventually(lambda: latest(plugin.blocklist, "team:sentinel"), bool, within=15, what="past them")

        # then each is counted, and logged once per reason and writer key
        counts = rejected(plugin.metrics.records_rejected, stack.topics.decisions)
        assert counts == {"unsigned": 3.0, "unknown_key": 4.0}
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("spendpipe.platform.signing")]
        ids = [s.settings().signer().key_id for s in strangers]
        assert len([line for line in lines if "unsigned" in line and "(none)" in line]) == 1
        for key_id in ids:
            assert len([line for line in lines if f"writer key '{key_id}'" in line]) == 1
        assert len(lines) == 3


async def test_budgets_resign_moves_budgets_to_a_new_key(stack: Stack, signing_keys: WriterKey) -> None:
    old, new = signing_keys, WriterKey.generate()
    # given a budget the old key signed, and one written before signing was turned on
    await asyncio.to_thread(stack.admin(old.settings()).set, BUDGET)
    legacy = Budget(scope="team:legacy", max_budget=Decimal(5)).model_dump_json(exclude_none=True).encode()
    await write_records(
        stack.bootstrap,
        stack.topics.budgets,
        [(b"team:legacy", legacy, forged_headers(BUDGET_TYPE, b"team:legacy", legacy, "unsigned", genuine=old))],
    )
    only_new = stack.admin(new.settings())
    assert await asyncio.to_thread(only_new.current) == []

    # when the writer, switched to the new key, signs every budget again (`spendpipe budgets resign`)
    env = new.env(old, new)
    done = await asyncio.to_thread(run_cli, {**env, **stack.cli_env()}, "budgets", "resign")
    assert done.returncode == 0, done.stderr
    assert "1 budget(s) published again" in done.stdout

    # then readers that hold only the new key take it, and the unsigned one only when asked for
    assert [b.scope for b in await asyncio.to_thread(only_new.current)] == [SCOPE]
    await asyncio.to_thread(stack.admin(new.settings(old, new)).resign, include_unsigned=True)
    assert [b.scope for b in await asyncio.to_thread(only_new.current)] == [SCOPE, "team:legacy"]


async def test_a_gateway_key_signs_neither_decisions_nor_budgets(stack: Stack, tmp_path: Path) -> None:
    # given writer keys scoped by role, as `spendpipe keys generate --name enforcer --name admin
    # --name gateway` names them, and a scope the enforcer blocked
    enforcer, admin, gateway = WriterKey.generate(), WriterKey.generate(), WriterKey.generate()
    by_role = {"enforcer": [enforcer.public], "admin": [admin.public], "gateway": [gateway.public]}
    readers = SigningSettings(public_keys=by_role)
    await asyncio.to_thread(stack.admin(admin.settings().model_copy(update={"public_keys": by_role})).set, BUDGET)
    with started_gateway(stack, tmp_path / "spool", signing=readers) as plugin:
        async with stack.enforcer(enforcer.settings().model_copy(update={"public_keys": by_role})) as service:
            genuine = await blocked_by_spend(stack, plugin)

            # when whoever holds a gateway's key signs an unblock and a raised cap for it
            key = SCOPE.encode()
            unblock = Decision(scope=SCOPE, version=2**62, blocked=False, reason="forged", decided_at=datetime.now(UTC))
            raised = Budget(scope=SCOPE, max_budget=Decimal(1000)).model_dump_json(exclude_none=True).encode()
            signer = gateway.settings().signer()
            decision = unblock.model_dump_json().encode()
            await write_records(
                stack.bootstrap, stack.topics.decisions, [(key, decision, signer.headers(DECISION_TYPE, key, decision))]
            )
            await write_records(
                stack.bootstrap, stack.topics.budgets, [(key, raised, signer.headers(BUDGET_TYPE, key, raised))]
            )
            await stack.sentinel_decision(enforcer)
            await eventually(
                lambda: latest(plugin.blocklist, "team:sentinel"), bool, within=10, what="the gateway past them"
            )
            await asyncio.to_thread(stack.admin(admin.settings()).set, {"scope": "team:sentinel", "rpm_limit": 7})
            await eventually(
                lambda: service.enforcer.book.get("team:sentinel"), bool, within=10, what="the enforcer past them"
            )

            # then both are dropped as signed by a key not allowed to sign them, and the block holds
            assert plugin.blocklist.blocking([SCOPE]) == genuine
            budget = service.enforcer.book.get(SCOPE)
            assert budget is not None
            assert budget.max_budget == Decimal("1.00")
            assert rejected(plugin.metrics.records_rejected, stack.topics.decisions) == {"not_allowed": 1.0}
            assert rejected(service.metrics.records_rejected, stack.topics.budgets) == {"not_allowed": 1.0}


async def test_a_replayed_genuine_budget_or_deletion_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    # given a cap that was raised: the first, genuine and signed, record is still on the topic
    admin = stack.admin()
    await asyncio.to_thread(admin.set, BUDGET)
    await asyncio.to_thread(admin.set, BUDGET | {"max_budget": "5.00", "rpm_limit": 50})
    first, raised = await read_topic(stack.bootstrap, stack.topics.budgets, expected=2)
    replays = [(first.key or b"", first.value, list(first.headers))]
    with started_gateway(stack, tmp_path / "spool") as plugin:
        async with stack.enforcer() as service:

            async def past_a_sentinel(rpm: int) -> None:
                await asyncio.to_thread(admin.set, {"scope": "team:sentinel", "rpm_limit": rpm})
                await eventually(
                    lambda: plugin.gate.remaining(["team:sentinel"], "gpt-4o-mini").request_limit,
                    lambda limit: limit == rpm,
                    within=10,
                    what="the gateway past the replay",
                )
                await eventually(
                    lambda: service.enforcer.book.get("team:sentinel"),
                    lambda budget: budget is not None and budget.rpm_limit == rpm,
                    within=10,
                    what="the enforcer past the replay",
                )

            # when whoever can write the topic writes the older record again
            await write_records(stack.bootstrap, stack.topics.budgets, replays)
            await past_a_sentinel(7)

            # then every reader keeps the raised cap and limit
            budget = service.enforcer.book.get(SCOPE)
            assert budget is not None
            assert budget.max_budget == Decimal("5.00")
            assert plugin.gate.remaining([SCOPE], "gpt-4o-mini").request_limit == 50
            listed = await asyncio.to_thread(stack.cli, "budgets", "list")
            assert "5.00" in listed
            assert "1.00" not in listed
            assert rejected(service.metrics.records_rejected, stack.topics.budgets) == {"stale": 1.0}
            assert rejected(plugin.metrics.records_rejected, stack.topics.budgets) == {"stale": 1.0}

            # and a deleted budget stays deleted when the raised one is written again
            await asyncio.to_thread(admin.delete, SCOPE)
            await write_records(
                stack.bootstrap, stack.topics.budgets, [(raised.key or b"", raised.value, list(raised.headers))]
            )
            await past_a_sentinel(8)
            assert service.enforcer.book.get(SCOPE) is None
            assert plugin.gate.remaining([SCOPE], "gpt-4o-mini").request_limit is None
            assert rejected(service.metrics.records_rejected, stack.topics.budgets) == {"stale": 2.0}
