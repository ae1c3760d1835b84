"""Budgets in LiteLLM's field names: what is accepted, and every refusal as a `field: reason` line."""

from decimal import Decimal

import pytest

from spendpipe.contracts.budgets import Budget, BudgetRejectedError, Cap, validate_budget
from spendpipe.contracts.durations import parse_duration

UNKNOWN_5X = (
    "unknown duration '5x': use a whole number and a unit, s, m, h, d, w or mo (e.g. 15m, 1h, 24h, 7d, 1w, 1mo), "
    "or hourly, daily, weekly, monthly"
)


def problems_of(document: dict[str, object]) -> list[str]:
    with pytest.raises(BudgetRejectedError) as raised:
        validate_budget(document)
    return raised.value.problems


def test_max_budget_with_a_duration() -> None:
    budget = validate_budget({"scope": "team:eng", "max_budget": "10.50", "budget_duration": "30d"})

    assert budget.scope == "team:eng"
    assert budget.max_budget == Decimal("10.50")
    assert budget.budget_duration == "30d"
    assert budget.hard_caps() == (Cap(parse_duration("30d"), Decimal("10.50")),)


def test_budget_limits_with_several_windows() -> None:
    budget = validate_budget(
        {
            "scope": "key:" + "a" * 64,
            "budget_limits": [
                {"budget_duration": "1h", "max_budget": 1},
                {"budget_duration": "24h", "max_budget": 10},
                {"budget_duration": "1mo", "max_budget": 100},
            ],
        }
    )

    assert [(str(cap.duration), cap.limit) for cap in budget.hard_caps()] == [
        ("1h", Decimal(1)),
        ("24h", Decimal(10)),
        ("1mo", Decimal(100)),
    ]


def test_max_budget_and_budget_limits_together_give_every_cap() -> None:
    budget = validate_budget(
        {
            "scope": "user:alice",
            "max_budget": 50,
            "budget_duration": "7d",
            "budget_limits": [{"budget_duration": "1d", "max_budget": 10}],
        }
    )

    assert {(str(cap.duration), cap.limit) for cap in budget.hard_caps()} == {
        ("1d", Decimal(10)),
        ("7d", Decimal(50)),
    }


def test_max_budget_without_a_duration_is_a_lifetime_cap() -> None:
    budget = validate_budget({"scope": "user:alice", "max_budget": 5})

    assert budget.hard_caps() == (Cap(None, Decimal(5)),)


def test_soft_budget_alone_is_accepted_but_caps_nothing() -> None:
    budget = validate_budget({"scope": "team:eng", "soft_budget": 8})

    assert budget.soft_budget == Decimal(8)
    assert budget.hard_caps() == ()


def test_max_budget_in_team_on_a_team() -> None:
    budget = validate_budget(
        {"scope": "team:eng", "max_budget": 100, "budget_duration": "30d", "max_budget_in_team": 5}
    )

    assert budget.max_budget_in_team == Decimal(5)


def test_max_end_user_budget_on_global() -> None:
    budget = validate_budget({"scope": "global", "max_end_user_budget": "0.5"})

    assert budget.scope == "global"
    assert budget.max_end_user_budget == Decimal("0.5")
    assert budget.hard_caps() == ()


def test_model_max_budget() -> None:
    budget = validate_budget(
        {
            "scope": "team:eng",
            "model_max_budget": {
                "gpt-4o": {"max_budget": 20, "budget_duration": "1d"},
                "claude-sonnet": {"max_budget": 3},
            },
        }
    )

    assert budget.model_max_budget["gpt-4o"].max_budget == Decimal(20)
    assert budget.model_max_budget["gpt-4o"].budget_duration == "1d"
    assert budget.model_max_budget["claude-sonnet"].budget_duration is None


def test_scope_and_durations_are_normalised() -> None:
    budget = validate_budget({"scope": "global", "max_budget": 1, "budget_duration": " 01d "})

    assert budget.budget_duration == "1d"


def test_zero_is_a_valid_cap() -> None:
    assert validate_budget({"scope": "end_user:acme", "max_budget": 0}).hard_caps() == (Cap(None, Decimal(0)),)


@pytest.mark.parametrize(
    ("document", "problems"),
    [
        (
            {"scope": "team:eng", "max_budget": -1},
            ["max_budget: Input should be greater than or equal to 0"],
        ),
        (
            {"scope": "team:eng", "budget_limits": [{"budget_duration": "1d", "max_budget": "-0.01"}]},
            ["budget_limits.0.max_budget: Input should be greater than or equal to 0"],
        ),
        (
            {"scope": "team:eng", "model_max_budget": {"gpt-4o": {"max_budget": -3}}},
            ["model_max_budget.gpt-4o.max_budget: Input should be greater than or equal to 0"],
        ),
        (
            {"scope": "team:eng", "max_budget": 1, "budget_duration": "5x"},
            [f"budget_duration: {UNKNOWN_5X}"],
        ),
        (
            {"scope": "team:eng", "budget_limits": [{"budget_duration": "5x", "max_budget": 1}]},
            [f"budget_limits.0.budget_duration: {UNKNOWN_5X}"],
        ),
        (
            {
                "scope": "team:eng",
                "budget_limits": [
                    {"budget_duration": "1d", "max_budget": 1},
                    {"budget_duration": "24h", "max_budget": 2},
                ],
            },
            ["budget_limits: 1d and 24h are the same window"],
        ),
        (
            {
                "scope": "team:eng",
                "max_budget": 30,
                "budget_duration": "1mo",
                "budget_limits": [{"budget_duration": "30d", "max_budget": 2}],
            },
            ["budget_limits: 1mo and 30d are the same window"],
        ),
        (
            {"scope": "team:eng", "soft_budget": 1, "budget_duration": "1d"},
            ["budget_duration: needs max_budget, the cap that resets"],
        ),
        (
            {"scope": "user:alice", "max_budget_in_team": 1},
            ["max_budget_in_team: only a team budget can cap its members"],
        ),
        (
            {"scope": "team_member:eng/alice", "max_budget_in_team": 1},
            ["max_budget_in_team: only a team budget can cap its members"],
        ),
        (
            {"scope": "team:eng", "max_end_user_budget": 1},
            ["max_end_user_budget: only the global budget sets the end-customer default"],
        ),
        (
            {"scope": "team:eng"},
            ["budget: sets no cap or limit (max_budget, budget_limits, rpm_limit, ...)"],
        ),
        (
            {"scope": "tem:eng", "max_budget": 1},
            [
                "scope: unknown scope type 'tem' "
                "(expected one of: key, user, team, team_member, org, end_user, global, tag, provider, agent)"
            ],
        ),
        (
            {"scope": "team:", "max_budget": 1},
            ["scope: scope 'team:' needs an id, as in team:<id>"],
        ),
        (
            {"scope": "team:eng", "max_budget": 1, "max_budjet": 2},
            ["max_budjet: Extra inputs are not permitted"],
        ),
        (
            {"max_budget": 1},
            ["scope: Field required"],
        ),
    ],
)
def test_refused_with_field_and_reason(document: dict[str, object], problems: list[str]) -> None:
    assert problems_of(document) == problems


def test_repeating_the_same_duration_is_refused() -> None:
    problems = problems_of(
        {
            "scope": "team:eng",
            "budget_limits": [
                {"budget_duration": "1h", "max_budget": 1},
                {"budget_duration": "1h", "max_budget": 2},
            ],
        }
    )

    assert len(problems) == 1
    assert problems == ["budget_limits: 1h appears more than once"]


def test_every_field_problem_is_reported_at_once() -> None:
    problems = problems_of(
        {"scope": "team:eng", "max_budget": -1, "budget_limits": [{"budget_duration": "5x", "max_budget": -2}]}
    )

    assert problems == [
        "max_budget: Input should be greater than or equal to 0",
        f"budget_limits.0.budget_duration: {UNKNOWN_5X}",
        "budget_limits.0.max_budget: Input should be greater than or equal to 0",
    ]


def test_every_consistency_problem_is_its_own_line() -> None:
    # Given a user budget with a duration but no max_budget, and a team-only field
    document: dict[str, object] = {"scope": "user:alice", "budget_duration": "1d", "max_budget_in_team": 1}

    # Then each problem is a `field: reason` line of its own
    assert problems_of(document) == [
        "budget_duration: needs max_budget, the cap that resets",
        "max_budget_in_team: only a team budget can cap its members",
    ]


def test_the_error_message_lists_the_problems() -> None:
    with pytest.raises(BudgetRejectedError) as raised:
        validate_budget({"scope": "team:eng", "max_budget": -1})

    assert str(raised.value) == "budget refused:\n  max_budget: Input should be greater than or equal to 0"
    assert isinstance(raised.value, ValueError)


def test_budget_is_immutable() -> None:
    budget = validate_budget({"scope": "team:eng", "max_budget": 1})

    with pytest.raises(ValueError, match="frozen"):
        budget.max_budget = Decimal(2)  # type: ignore[misc]


def test_budget_round_trips_through_json() -> None:
    budget = validate_budget(
        {
            "scope": "team:eng",
            "max_budget": "12.5",
            "budget_duration": "1d",
            "budget_limits": [{"budget_duration": "1h", "max_budget": "0.25"}],
            "model_max_budget": {"gpt-4o": {"max_budget": 3, "budget_duration": "7d"}},
        }
    )

    assert Budget.model_validate_json(budget.model_dump_json()) == budget
