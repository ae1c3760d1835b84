"""What the lease desk reads of each chain's spend from the raw events table: its gateway's events
on the target from the chain's start until the gateway's next chain began, nothing else."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, SourceRecord
from spendpipe.contracts.budgets import Cap
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.scopes import Scope
from spendpipe.enforcer.lease_spend import ChainSpend
from spendpipe.enforcer.targets import Target
from spendpipe.platform.clickhouse import ClickhouseStore
from tests.support.events import make_event

NOW = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
TEAM = Target(Scope.parse("team:search"), "", (Cap(None, Decimal(1)),), "test")


def write(clickhouse: ClickhouseStore, events: list[SpendEvent]) -> None:
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic="spend.events", dedup_horizon_s=600)
    writer.write([SourceRecord(0, i, e.to_json()) for i, e in enumerate(events)])


def call(gateway: str, ended_s_ago: float, cost: str, team: str = "search", model: str = "gpt-4o") -> SpendEvent:
    return make_event(
        gateway_id=gateway,
        team_id=team,
        model=model,
        cost=Decimal(cost),
        occurred_at=NOW - timedelta(seconds=ended_s_ago),
    )


def test_each_chain_counts_its_gateways_events_since_it_began(clickhouse: ClickhouseStore) -> None:
    write(
        clickhouse,
        [
            call("a", 30, "0.5"),  # before a's chain began
            call("a", 10, "0.25"),
            call("a", 5, "0.125"),
            call("b", 5, "0.0625"),
            call("a", 5, "1", team="other"),  # another target
            call("c", 5, "2"),  # a gateway without a chain here
        ],
    )
    start = (NOW - timedelta(seconds=20)).timestamp()
    spent = ChainSpend(clickhouse=clickhouse).counted(
        TEAM, [("a", start, None), ("b", start, None), ("d", start, None)]
    )
    assert spent == [Decimal("0.375"), Decimal("0.0625"), Decimal(0)]


def test_a_model_target_counts_that_model_only(clickhouse: ClickhouseStore) -> None:
    write(clickhouse, [call("a", 5, "0.25", model="gpt-4o"), call("a", 5, "0.5", model="gpt-4o-mini")])
    target = Target(Scope.parse("team:search"), "gpt-4o-mini", (Cap(None, Decimal(1)),), "test")
    start = (NOW - timedelta(seconds=20)).timestamp()
    assert ChainSpend(clickhouse=clickhouse).counted(target, [("a", start, None)]) == [Decimal("0.5")]


def test_an_event_counts_for_one_chain_of_its_gateway_the_one_current_when_it_ended(
    clickhouse: ClickhouseStore,
) -> None:
    write(clickhouse, [call("a", 15, "0.25"), call("a", 5, "0.5"), call("a", 1, "1")])
    first, second = (NOW - timedelta(seconds=20)).timestamp(), (NOW - timedelta(seconds=10)).timestamp()
    spent = ChainSpend(clickhouse=clickhouse).counted(TEAM, [("a", first, second), ("a", second, None)])
    assert spent == [Decimal("0.25"), Decimal("1.5")]


def test_tag_and_provider_targets_count_the_events_that_carry_them(clickhouse: ClickhouseStore) -> None:
    def tagged(cost: str, tags: tuple[str, ...], provider: str) -> SpendEvent:
        return make_event(gateway_id="a", cost=Decimal(cost), request_tags=tags, provider=provider, occurred_at=NOW)

    write(
        clickhouse,
        [
            tagged("0.5", ("batch", "nightly", "batch"), "openai"),  # once, though named twice
            tagged("0.25", ("nightly",), "azure"),
            tagged("0.125", ("<+3 more>",), "openai"),  # the overflow marker is no tag
        ],
    )
    start = (NOW - timedelta(seconds=20)).timestamp()
    desk = ChainSpend(clickhouse=clickhouse)

    def counted(scope: str) -> list[Decimal]:
        return desk.counted(Target(Scope.parse(scope), "", (Cap(None, Decimal(1)),), "test"), [("a", start, None)])

    assert counted("tag:batch") == [Decimal("0.5")]
    assert counted("tag:nightly") == [Decimal("0.75")]
    assert counted("tag:<+3 more>") == [Decimal(0)]
    assert counted("provider:openai") == [Decimal("0.625")]
