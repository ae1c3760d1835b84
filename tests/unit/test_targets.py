"""Which (scope, model) pairs a budget caps: a scope's own budget, else the derived caps."""

from decimal import Decimal

from spendpipe.contracts.budgets import Budget, Cap, validate_budget
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.enforcer.targets import BudgetBook, Target, direct_targets, soft_target

ENG = Scope(ScopeType.TEAM, "eng")
ALICE_IN_ENG = Scope(ScopeType.TEAM_MEMBER, "eng/alice")
ACME = Scope(ScopeType.END_USER, "acme")


def book_of(*documents: dict[str, object]) -> BudgetBook:
    book = BudgetBook()
    for document in documents:
        book.put(validate_budget(document))
    return book


def summary(targets: list[Target]) -> list[tuple[str, str, list[tuple[str | None, Decimal]]]]:
    """(scope, model, [(duration, limit)...]) per target, for comparing at a glance."""
    return [
        (str(t.scope), t.model, [(str(c.duration) if c.duration else None, c.limit) for c in t.caps]) for t in targets
    ]


def test_own_budget_gives_direct_targets() -> None:
    book = book_of(
        {
            "scope": "team:eng",
            "max_budget": 100,
            "budget_duration": "1mo",
            "budget_limits": [{"budget_duration": "24h", "max_budget": 10}],
        }
    )

    targets = book.targets_for(ENG)

    assert summary(targets) == [("team:eng", "", [("24h", Decimal(10)), ("1mo", Decimal(100))])]
    assert targets[0].source == "budget of team:eng"


def test_each_model_max_budget_entry_is_a_target_of_its_own() -> None:
    book = book_of(
        {
            "scope": "team:eng",
            "max_budget": 100,
            "model_max_budget": {
                "gpt-4o": {"max_budget": 20, "budget_duration": "1d"},
                "claude-sonnet": {"max_budget": 3},
            },
        }
    )

    targets = book.targets_for(ENG)

    assert summary(targets) == [
        ("team:eng", "", [(None, Decimal(100))]),
        ("team:eng", "claude-sonnet", [(None, Decimal(3))]),
        ("team:eng", "gpt-4o", [("1d", Decimal(20))]),
    ]
    assert targets[2].source == "model_max_budget[gpt-4o] of team:eng"


def test_model_budgets_without_scope_caps_give_only_model_targets() -> None:
    key = "ab" * 32
    book = book_of({"scope": f"key:{key}", "model_max_budget": {"gpt-4o": {"max_budget": 1}}})

    assert summary(book.targets_for(Scope(ScopeType.KEY, key))) == [(f"key:{key}", "gpt-4o", [(None, Decimal(1))])]


def test_a_soft_budget_alone_gives_no_target() -> None:
    book = book_of({"scope": "team:eng", "soft_budget": 5})

    assert book.targets_for(ENG) == []


def test_team_member_without_own_budget_is_capped_by_max_budget_in_team() -> None:
    book = book_of({"scope": "team:eng", "max_budget": 100, "budget_duration": "24h", "max_budget_in_team": 5})

    targets = book.targets_for(ALICE_IN_ENG)

    # The member's cap resets with the team's budget.
    assert targets == [
        Target(ALICE_IN_ENG, "", (Cap(parse_duration("24h"), Decimal(5)),), "max_budget_in_team of team:eng")
    ]


def test_max_budget_in_team_without_a_duration_is_a_lifetime_cap_per_member() -> None:
    book = book_of({"scope": "team:eng", "max_budget_in_team": 5})

    assert summary(book.targets_for(ALICE_IN_ENG)) == [("team_member:eng/alice", "", [(None, Decimal(5))])]


def test_team_member_of_another_team_is_not_capped() -> None:
    book = book_of({"scope": "team:eng", "max_budget_in_team": 5})

    assert book.targets_for(Scope(ScopeType.TEAM_MEMBER, "sales/alice")) == []


def test_team_without_max_budget_in_team_does_not_cap_members() -> None:
    book = book_of({"scope": "team:eng", "max_budget": 100})

    assert book.targets_for(ALICE_IN_ENG) == []


def test_team_member_with_own_budget_uses_it() -> None:
    book = book_of(
        {"scope": "team:eng", "max_budget_in_team": 5},
        {"scope": "team_member:eng/alice", "max_budget": 50, "budget_duration": "7d"},
    )

    targets = book.targets_for(ALICE_IN_ENG)

    assert summary(targets) == [("team_member:eng/alice", "", [("7d", Decimal(50))])]
    assert targets[0].source == "budget of team_member:eng/alice"


def test_end_user_without_own_budget_gets_the_global_default() -> None:
    book = book_of({"scope": "global", "max_budget": 1000, "budget_duration": "1mo", "max_end_user_budget": "0.5"})

    targets = book.targets_for(ACME)

    assert targets == [Target(ACME, "", (Cap(parse_duration("1mo"), Decimal("0.5")),), "max_end_user_budget")]


def test_end_user_with_own_budget_uses_it() -> None:
    book = book_of(
        {"scope": "global", "max_end_user_budget": "0.5"},
        {"scope": "end_user:acme", "max_budget": 20},
    )

    assert summary(book.targets_for(ACME)) == [("end_user:acme", "", [(None, Decimal(20))])]


def test_end_user_without_global_default_is_not_capped() -> None:
    book = book_of({"scope": "global", "max_budget": 1000})

    assert book.targets_for(ACME) == []


def test_global_budget_caps_the_global_scope_not_the_end_users_own_spend() -> None:
    book = book_of({"scope": "global", "max_budget": 1000, "max_end_user_budget": 1})

    assert summary(book.targets_for(Scope(ScopeType.GLOBAL, ""))) == [("global", "", [(None, Decimal(1000))])]


def test_scope_without_any_budget_has_no_target() -> None:
    book = book_of({"scope": "team:eng", "max_budget": 1, "max_budget_in_team": 1})

    for scope in (
        Scope(ScopeType.USER, "alice"),
        Scope(ScopeType.KEY, "abc"),
        Scope(ScopeType.ORG, "acme"),
        Scope(ScopeType.TEAM, "sales"),
        ACME,
    ):
        assert book.targets_for(scope) == []


def test_put_replaces_and_delete_removes() -> None:
    book = book_of({"scope": "team:eng", "max_budget": 1})
    book.put(validate_budget({"scope": "team:eng", "max_budget": 2}))

    assert summary(book.targets_for(ENG)) == [("team:eng", "", [(None, Decimal(2))])]

    deleted = book.delete("team:eng")

    assert isinstance(deleted, Budget)
    assert book.targets_for(ENG) == []
    assert book.delete("team:eng") is None
    assert list(book) == []


def test_a_reset_marker_reaches_the_budgets_own_caps_only() -> None:
    reset = {"at": 1_764_590_400, "spent_before": "0.5"}
    alice = validate_budget(
        {
            "scope": "user:alice",
            "max_budget": 10,
            "soft_budget": 5,
            "model_max_budget": {"gpt-4o": {"max_budget": 2}},
            "spend_reset": reset,
        }
    )
    eng = validate_budget({"scope": "team:eng", "max_budget_in_team": 3, "spend_reset": reset})
    soft = soft_target(alice)

    caps = [cap for target in direct_targets(alice) for cap in target.caps]
    assert soft is not None
    assert [cap.reset for cap in [*caps, *soft.caps]] == [alice.spend_reset] * 3
    (member,) = book_of(eng.model_dump(mode="json")).targets_for(ALICE_IN_ENG)
    assert member.caps[0].reset is None


def test_a_scope_no_budget_may_apply_to_has_nothing_to_judge() -> None:
    # given budgets of every kind: own, soft only, rate limits only, per model, deriving, declared
    book = book_of(
        {"scope": "team:eng", "max_budget": 100, "max_budget_in_team": 10, "budget_duration": "1d"},
        {"scope": "global", "max_end_user_budget": 5},
        {"scope": "user:bob", "soft_budget": 3},
        {"scope": "key:" + "cd" * 32, "rpm_limit": 60},
        {"scope": "org:acme", "model_max_budget": {"gpt-4o": {"max_budget": 1}}},
        {"scope": "team:gone", "max_budget": 1},
    )
    book.declare(validate_budget({"scope": "user:carol", "max_budget": 2}))
    book.declare(validate_budget({"scope": "team:withdrawn", "max_budget": 2}))
    book.undeclare("team:withdrawn")
    book.delete("team:gone")
    candidates = [
        Scope.parse(text)
        for text in (
            "team:eng", "global", "user:bob", "key:" + "cd" * 32, "org:acme", "user:carol",
            "team:gone", "team:withdrawn", "team_member:eng/alice", "team_member:ops/alice", "end_user:acme",
            "key:" + "ab" * 32, "user:dave",
        )
    ]  # fmt: skip

    # then a scope is left out only when judging it finds no target, soft budget or rate limit
    for scope in candidates:
        applies = book.may_apply(scope.type.value, scope.id)
        has_something = bool(book.targets_for(scope)) or book.get(str(scope)) is not None
        assert applies or not has_something, scope
    left_out = {str(s) for s in candidates if not book.may_apply(s.type.value, s.id)}
    assert left_out == {"team:gone", "team:withdrawn", "team_member:ops/alice", "key:" + "ab" * 32, "user:dave"}
