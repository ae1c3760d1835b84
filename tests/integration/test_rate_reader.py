"""The enforcer's sliding-minute reads from the raw events table: which calls count, and when."""

from datetime import UTC, datetime, timedelta

from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, SourceRecord
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.rate_limits import WINDOW_S, RateLimit
from spendpipe.contracts.refusals import RATE_LIMIT_REFUSAL
from spendpipe.enforcer.rate_reader import RateReader
from spendpipe.platform.clickhouse import ClickhouseStore
from tests.support.events import make_event

KEY = "a" * 64
NOW = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)


def write(clickhouse: ClickhouseStore, events: list[SpendEvent]) -> None:
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic="spend.events", dedup_horizon_s=600)
    writer.write([SourceRecord(0, i, e.to_json()) for i, e in enumerate(events)])


def call(ended_s_ago: float, *, latency_s: float = 0.0, **fields: object) -> SpendEvent:
    return make_event(
        key_hash=KEY,
        occurred_at=NOW - timedelta(seconds=ended_s_ago),
        latency_ms=latency_s * 1000,
        prompt_tokens=10,
        **fields,
    )


def test_only_the_gateways_own_refusals_are_left_out(clickhouse: ClickhouseStore) -> None:
    write(
        clickhouse,
        [
            call(5),
            call(4, status="failure", error_class=RATE_LIMIT_REFUSAL),  # refused by a gateway
            call(2, status="failure", error_class="ProxyException"),  # admitted, failed later
            call(1.5, status="failure", error_class="ProxyRateLimitError"),  # admitted, a later hook refused
            call(1, status="failure", error_class="RateLimitError"),  # admitted, the provider refused
        ],
    )

    usage = RateReader(clickhouse=clickhouse).measure(RateLimit(f"key:{KEY}", "", 10, None, "input"), NOW.timestamp())

    assert usage.requests == 4


def test_a_request_counts_from_its_start_and_its_tokens_from_its_end(clickhouse: ClickhouseStore) -> None:
    write(
        clickhouse,
        [
            call(30, latency_s=40),  # started 70 s ago: out of the requests, its tokens in
            call(20, latency_s=10),  # started 30 s ago
            call(10, latency_s=1),
        ],
    )
    reader = RateReader(clickhouse=clickhouse)

    usage = reader.measure(RateLimit(f"key:{KEY}", "", 2, 30, "input"), NOW.timestamp())

    assert (usage.requests, usage.tokens) == (2, 30)
    assert usage.requests_free_at == (NOW - timedelta(seconds=30)).timestamp() + WINDOW_S
    assert usage.tokens_free_at == (NOW - timedelta(seconds=30)).timestamp() + WINDOW_S
