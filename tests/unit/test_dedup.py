"""Recently counted event ids, forgotten once they are older than the horizon."""

from spendpipe.aggregator.dedup import Origin, RecentEventIds


def counted(*event_ids: str) -> list[tuple[str, Origin]]:
    return [(event_id, Origin(0, n)) for n, event_id in enumerate(event_ids)]


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
    seen.remember([("a", Origin(1, 7))], at=1000.0)
    seen.remember([("a", Origin(0, 9))], at=1001.0)

    assert seen.origin("a") == Origin(1, 7)
    assert seen.origin("b") is None
