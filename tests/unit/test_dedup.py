"""Recently counted event ids, forgotten once they are older than the horizon."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from spendpipe.aggregator.dedup import Origin, RecentEventIds, content_digest, event_digest
from tests.support.events import make_event


def counted(*event_ids: str) -> list[tuple[str, Origin]]:
    return [(event_id, Origin(0, n, digest=0)) for n, event_id in enumerate(event_ids)]


def test_remembered_ids_are_found() -> None:
    seen = RecentEventIds(horizon_s=600)

    seen.remember(counted("a", "b"), at=1000.0)

    assert "a" in seen
    assert "b" in seen
    assert "c" not in seen
    assert len(seen) == 2


def test_an_id_repeated_in_a_batch_is_kept_once() -> None:
    seen = RecentEventIds(horizon_s=600)

    seen.remember(counted("a", "a", "b"), at=1000.0)
    seen.remember(counted("b"), at=1001.0)

    assert len(seen) == 2


def test_ids_are_kept_until_the_horizon_has_passed() -> None:
    seen = RecentEventIds(horizon_s=600)
    seen.remember(counted("a"), at=1000.0)

    seen.expire(now=1600.0)  # exactly the horizon: still remembered
    assert "a" in seen

    seen.expire(now=1600.5)
    assert "a" not in seen
    assert len(seen) == 0


def test_expire_forgets_only_the_old_batches() -> None:
    seen = RecentEventIds(horizon_s=600)
    seen.remember(counted("old-1", "old-2"), at=1000.0)
    seen.remember(counted("new"), at=1500.0)

    seen.expire(now=1700.0)

    assert "old-1" not in seen
    assert "old-2" not in seen
    assert "new" in seen
    assert len(seen) == 1


def test_a_duplicate_does_not_extend_the_first_count() -> None:
    seen = RecentEventIds(horizon_s=600)
    seen.remember(counted("a"), at=1000.0)
    seen.remember(counted("a", "b"), at=1500.0)

    seen.expire(now=1700.0)

    assert "a" not in seen
    assert "b" in seen


def test_a_forgotten_id_can_be_remembered_again() -> None:
    seen = RecentEventIds(horizon_s=600)
    seen.remember(counted("a"), at=1000.0)
    seen.expire(now=2000.0)

    seen.remember(counted("a"), at=2000.0)
    seen.expire(now=2500.0)

    assert "a" in seen


def test_clear_forgets_everything() -> None:
    seen = RecentEventIds(horizon_s=600)
    seen.remember(counted("a", "b"), at=1000.0)

    seen.clear()

    assert "a" not in seen
    assert len(seen) == 0


def test_an_id_keeps_the_record_it_was_first_counted_from() -> None:
    seen = RecentEventIds(horizon_s=600)
    seen.remember([("a", Origin(1, 7, digest=11))], at=1000.0)
    seen.remember([("a", Origin(0, 9, digest=12))], at=1001.0)

    assert seen.origin("a") == Origin(1, 7, digest=11)
    assert seen.origin("b") is None


def test_an_event_and_its_stored_row_have_the_same_digest() -> None:
    event = make_event(user_id=None, cache_hit=True)
    stored = [
        event.occurred_at.replace(tzinfo=None),  # events hands back naive UTC times
        *("" if value is None else value for value in (event.key_hash, event.user_id, event.team_id)),
        event.org_id,
        event.end_user,
        event.billed_model,
        event.cost.quantize(Decimal(1).scaleb(-24)),  # Decimal(38, 24) keeps trailing zeros
        event.prompt_tokens,
        event.completion_tokens,
        event.total_tokens,
        event.status,
        event.cache_hit,
    ]

    assert content_digest(stored) == event_digest(event)


@pytest.mark.parametrize(
    "change",
    [
        {"cost": Decimal("0.5")},
        {"key_hash": "f" * 64},
        {"end_user": "someone-else"},
        {"model": "other-model"},
        {"total_tokens": 1},
        {"status": "failure"},
        {"occurred_at": datetime(2026, 1, 1, tzinfo=UTC)},
    ],
)
def test_what_the_totals_are_made_of_changes_the_digest(change: dict[str, object]) -> None:
    event = make_event()

    assert event_digest(event.model_copy(update=change)) != event_digest(event)


def test_what_the_totals_do_not_use_leaves_the_digest() -> None:
    event = make_event()

    assert event_digest(event.model_copy(update={"latency_ms": 9.5, "gateway_id": "other"})) == event_digest(event)
