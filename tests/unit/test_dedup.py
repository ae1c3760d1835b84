"""Recently counted event ids: found with the record they were first counted from, kept for
at least the horizon, forgotten a generation at a time after it."""

from spendpipe.aggregator.dedup import GENERATIONS, Origin, RecentEventIds, same_content

HORIZON = 800.0
SPAN = HORIZON / GENERATIONS


def eid(name: str) -> bytes:
    return name.encode().ljust(16, b"\0")


def counted(*names: str, digest: int = 0) -> dict[bytes, bytes]:
    return {eid(name): Origin(0, n, digest).pack() for n, name in enumerate(names)}


def test_remembered_ids_are_found_with_their_origin() -> None:
    seen = RecentEventIds(horizon_s=HORIZON)

    seen.remember(counted("a", "b"), at=1000.0)

    assert seen.known([eid("a"), eid("c")]) == {eid("a"): Origin(0, 0, 0).pack()}
    assert eid("b") in seen
    assert len(seen) == 2


def test_an_id_is_kept_for_the_whole_horizon() -> None:
    seen = RecentEventIds(horizon_s=HORIZON)
    seen.remember(counted("first"), at=1000.0)
    seen.remember(counted("late-in-generation"), at=1000.0 + SPAN - 1)

    seen.expire(now=1000.0 + SPAN - 1 + HORIZON)

    assert eid("first") in seen
    assert eid("late-in-generation") in seen


def test_a_generation_is_forgotten_once_all_its_ids_are_past_the_horizon() -> None:
    seen = RecentEventIds(horizon_s=HORIZON)
    seen.remember(counted("old"), at=1000.0)
    seen.remember(counted("new"), at=1000.0 + 2 * SPAN)

    seen.expire(now=1000.0 + SPAN + HORIZON + 0.5)

    assert eid("old") not in seen
    assert eid("new") in seen
    assert len(seen) == 1


def test_the_oldest_origin_wins_when_an_id_is_in_two_generations() -> None:
    """After a reload an id can be remembered twice; its first count is the one that holds."""
    seen = RecentEventIds(horizon_s=HORIZON)
    seen.remember({eid("a"): Origin(1, 7, 11).pack()}, at=1000.0)
    seen.remember({eid("a"): Origin(0, 9, 12).pack()}, at=1000.0 + SPAN)

    assert seen.known({eid("a")}) == {eid("a"): Origin(1, 7, 11).pack()}


def test_a_forgotten_id_can_be_remembered_again() -> None:
    seen = RecentEventIds(horizon_s=HORIZON)
    seen.remember(counted("a"), at=1000.0)
    seen.expire(now=3000.0)

    seen.remember(counted("a"), at=3000.0)
    seen.expire(now=3500.0)

    assert eid("a") in seen


def test_clear_forgets_everything() -> None:
    seen = RecentEventIds(horizon_s=HORIZON)
    seen.remember(counted("a", "b"), at=1000.0)

    seen.clear()

    assert eid("a") not in seen
    assert len(seen) == 0


def test_origins_pack_and_compare_by_content() -> None:
    here, there, other = Origin(3, 2**40, 99), Origin(0, 5, 99), Origin(0, 5, 98)

    assert Origin.unpack(here.pack()) == here
    assert same_content(here.pack(), there.pack())
    assert not same_content(there.pack(), other.pack())
