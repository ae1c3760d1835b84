"""The gateway's block list: newest version wins, blocks expire locally, and a request's identity
checks the keys that apply to it (`test_identity.py` has which those are)."""

from datetime import UTC, datetime, timedelta

from spendpipe.contracts.decisions import Decision
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.identity import RequestIdentity

NOW = datetime(2026, 11, 28, 13, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 29, tzinfo=UTC)


def decision(
    scope: str, version: int, *, blocked: bool = True, model: str = "", expires: datetime | None = MIDNIGHT
) -> Decision:
    return Decision(
        scope=scope,
        model=model,
        version=version,
        blocked=blocked,
        reason="Budget has been exceeded!" if blocked else "within budget",
        expires_at=expires if blocked else None,
        decided_at=NOW,
    )


def test_a_block_refuses_its_key() -> None:
    blocks = BlockList()
    block = decision("team:eng", 1)

    assert blocks.apply(block)

    assert blocks.blocking(["global", "team:eng"], NOW) == block
    assert blocks.blocking(["global", "team:sales"], NOW) is None


def test_a_newer_unblock_lifts_the_block() -> None:
    blocks = BlockList()
    blocks.apply(decision("team:eng", 1))

    assert blocks.apply(decision("team:eng", 2, blocked=False))

    assert blocks.blocking(["team:eng"], NOW) is None


def test_a_stale_decision_never_overrides_a_newer_one() -> None:
    blocks = BlockList()
    blocks.apply(decision("team:eng", 5, blocked=False))

    # When a late block with an older version arrives, it is ignored
    assert not blocks.apply(decision("team:eng", 4))
    assert blocks.blocking(["team:eng"], NOW) is None

    # And a replay of the same version is ignored too
    assert not blocks.apply(decision("team:eng", 5))
    assert blocks.blocking(["team:eng"], NOW) is None


def test_a_stale_unblock_does_not_lift_a_newer_block() -> None:
    blocks = BlockList()
    blocks.apply(decision("team:eng", 9))

    assert not blocks.apply(decision("team:eng", 3, blocked=False))

    assert blocks.blocking(["team:eng"], NOW) is not None


def test_versions_are_per_key() -> None:
    blocks = BlockList()
    blocks.apply(decision("team:eng", 100))

    assert blocks.apply(decision("team:eng", 1, model="gpt-4o"))
    assert blocks.apply(decision("team:sales", 1))


def test_an_expired_block_no_longer_refuses_without_an_unblock_message() -> None:
    blocks = BlockList()
    blocks.apply(decision("team:eng", 1, expires=MIDNIGHT))

    assert blocks.blocking(["team:eng"], MIDNIGHT - timedelta(microseconds=1)) is not None
    assert blocks.blocking(["team:eng"], MIDNIGHT) is None
    assert blocks.in_force(MIDNIGHT) == []


def test_a_lifetime_block_holds_until_lifted() -> None:
    blocks = BlockList()
    blocks.apply(decision("user:alice", 1, expires=None))

    assert blocks.blocking(["user:alice"], NOW + timedelta(days=3650)) is not None


def test_blocking_returns_the_first_block_in_key_order() -> None:
    blocks = BlockList()
    team, key = decision("team:eng", 1), decision("key:abc", 1)
    blocks.apply(team)
    blocks.apply(key)

    assert blocks.blocking(["global", "key:abc", "team:eng"], NOW) == key
    assert blocks.blocking(["team:eng", "key:abc"], NOW) == team


def test_a_budget_block_is_the_refusal_when_a_rate_limit_block_holds_too() -> None:
    blocks = BlockList()
    limited = Decision(
        scope="key:abc", kind="rate_limit", rate_limit_type="requests", version=1, blocked=True,
        reason="rate limited", expires_at=MIDNIGHT, decided_at=NOW,
    )  # fmt: skip
    budget = decision("team:eng", 1)
    blocks.apply(limited)
    who = RequestIdentity(key_hash="abc", team_id="eng")

    assert blocks.blocking(who.checked_keys(), NOW) == limited
    blocks.apply(budget)
    assert blocks.blocking(who.checked_keys(), NOW) == budget
    assert blocks.blocking(who.checked_keys("gpt-4o"), NOW) == budget


def test_in_force_lists_only_blocks_not_expired() -> None:
    blocks = BlockList()
    blocks.apply(decision("team:eng", 1, expires=NOW + timedelta(hours=1)))
    blocks.apply(decision("team:sales", 1, expires=NOW - timedelta(hours=1)))
    blocks.apply(decision("key:abc", 1, blocked=False))

    assert [d.scope for d in blocks.in_force(NOW)] == ["team:eng"]


def test_a_per_model_block_refuses_only_that_model() -> None:
    blocks = BlockList()
    blocks.apply(decision("team:eng", 1, model="gpt-4o"))

    def keys(model: str) -> list[str]:
        return RequestIdentity(team_id="eng").budget_keys(model)

    assert blocks.blocking(keys("gpt-4o"), NOW) is not None
    assert blocks.blocking(keys("claude-sonnet"), NOW) is None


def test_a_users_personal_block_does_not_refuse_their_team_requests() -> None:
    blocks = BlockList()
    blocks.apply(decision("user:alice", 1))

    personal = RequestIdentity(user_id="alice").budget_keys()
    for_team = RequestIdentity(user_id="alice", team_id="eng").budget_keys()

    assert blocks.blocking(personal, NOW) is not None
    assert blocks.blocking(for_team, NOW) is None


def test_may_block_is_false_only_when_no_kept_block_can_be_in_force() -> None:
    """The request path skips reading who a call is while `may_block()` is false: it must be true
    whenever any block is in force now, whatever its key, expiry or later unblocks elsewhere."""
    now = datetime.now(UTC)
    blocks = BlockList()
    assert not blocks.may_block()

    blocks.apply(decision("team:eng", 1, blocked=False))
    blocks.apply(decision("team:ops", 1, expires=now - timedelta(seconds=1)))
    assert not blocks.may_block(), "an unblock and an expired block refuse nothing"

    blocks.apply(decision("key:k", 1, expires=now + timedelta(hours=1)))
    assert blocks.may_block()
    blocks.apply(decision("team:sales", 1, blocked=False))
    assert blocks.may_block(), "an unblock of another scope leaves the block in force"

    lifetime = BlockList()
    lifetime.apply(decision("user:alice", 1, expires=None))
    assert lifetime.may_block()
