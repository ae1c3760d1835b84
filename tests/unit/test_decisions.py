"""Decisions: the key they are published under, whether a block is still in force, and which
version of a key a reader keeps."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from spendpipe.contracts.decisions import Decision, LatestDecisions, decision_key

NOW = datetime(2026, 11, 28, 13, tzinfo=UTC)


def block(expires_at: datetime | None, *, blocked: bool = True) -> Decision:
    return Decision(
        scope="team:eng",
        version=1,
        blocked=blocked,
        reason="Budget has been exceeded!",
        expires_at=expires_at,
        decided_at=NOW,
    )


def test_decision_key_of_a_scope_over_all_models() -> None:
    assert decision_key("team:eng") == "team:eng"
    assert decision_key("global", "") == "global"


def test_decision_key_of_a_per_model_decision() -> None:
    assert decision_key("team:eng", "gpt-4o") == "team:eng|gpt-4o"


def test_decision_key_property_matches_decision_key() -> None:
    decision = block(None).model_copy(update={"model": "gpt-4o"})

    assert decision.key == "team:eng|gpt-4o"
    assert block(None).key == "team:eng"


def test_block_is_in_force_until_it_expires() -> None:
    decision = block(NOW + timedelta(hours=1))

    assert decision.in_force(NOW)
    assert decision.in_force(NOW + timedelta(minutes=59, seconds=59))
    assert not decision.in_force(NOW + timedelta(hours=1))
    assert not decision.in_force(NOW + timedelta(days=1))


def test_block_without_expiry_is_always_in_force() -> None:
    assert block(None).in_force(NOW + timedelta(days=10_000))


def test_an_unblock_is_never_in_force() -> None:
    assert not block(None, blocked=False).in_force(NOW)
    assert not block(NOW + timedelta(hours=1), blocked=False).in_force(NOW)


def test_expiry_compares_instants_not_wall_clock_text() -> None:
    # 00:30 at UTC+01:00 is 23:30 UTC the day before: still before a midnight-UTC expiry
    decision = block(datetime(2026, 11, 29, tzinfo=UTC))
    plus_one = timezone(timedelta(hours=1))

    assert decision.in_force(datetime(2026, 11, 29, 0, 30, tzinfo=plus_one))
    assert not decision.in_force(datetime(2026, 11, 29, 1, 0, tzinfo=plus_one))


def test_json_round_trip_keeps_exact_amounts() -> None:
    decision = block(NOW + timedelta(hours=1)).model_copy(
        update={"spend": Decimal("10.000000000000000000000001"), "cap": Decimal(10), "window": "24h"}
    )

    wire = decision.model_dump_json()

    assert '"spend":"10.000000000000000000000001"' in wire
    assert Decision.model_validate_json(wire) == decision


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError, match="expires_at"):
        Decision(
            scope="team:eng",
            version=1,
            blocked=True,
            reason="x",
            expires_at=datetime(2026, 11, 29),  # naive: the point of the test
            decided_at=NOW,
        )


def versioned(version: int, *, scope: str = "team:eng", blocked: bool = True) -> Decision:
    return block(None, blocked=blocked).model_copy(update={"version": version, "scope": scope})


def test_the_highest_version_per_key_wins_and_an_older_or_equal_one_changes_nothing() -> None:
    latest = LatestDecisions()

    assert latest.offer(versioned(5))
    assert not latest.offer(versioned(4, blocked=False)), "late"
    assert not latest.offer(versioned(5, blocked=False)), "the same version read again"
    assert latest.offer(versioned(6, blocked=False))
    assert latest.offer(versioned(1, scope="team:sales")), "each key has its own versions"

    assert latest.get("team:eng") == versioned(6, blocked=False)
    assert sorted(d.key for d in latest) == ["team:eng", "team:sales"]
    assert len(latest) == 2
