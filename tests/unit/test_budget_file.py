"""Budgets from a parsed YAML document: LiteLLM's global settings, `budgets:` entries, all or nothing."""

from decimal import Decimal

import pytest

from spendpipe.admin.budget_file import budgets_from_document
from spendpipe.contracts.budgets import BudgetRejectedError


def problems_of(document: object) -> list[str]:
    with pytest.raises(BudgetRejectedError) as raised:
        budgets_from_document(document)
    return raised.value.problems


def test_litellm_settings_become_the_global_budget() -> None:
    document = {
        "litellm_settings": {
            "max_budget": 100,
            "budget_duration": "30d",
            "max_end_user_budget": 0.5,
            # The proxy's other settings live here too: they are not budget fields
            "drop_params": True,
            "callbacks": ["spendpipe.plugin"],
        }
    }

    [budget] = budgets_from_document(document)

    assert budget.scope == "global"
    assert budget.max_budget == Decimal(100)
    assert budget.budget_duration == "30d"
    assert budget.max_end_user_budget == Decimal("0.5")


def test_litellm_settings_without_budget_fields_add_no_budget() -> None:
    assert budgets_from_document({"litellm_settings": {"drop_params": True}}) == []


def test_budgets_entries_in_order_after_the_global_one() -> None:
    document = {
        "litellm_settings": {"max_budget": 100},
        "budgets": [
            {"scope": "team:search", "max_budget": 10, "budget_duration": "24h", "max_budget_in_team": 2},
            {
                "scope": "key:" + "b" * 64,
                "budget_limits": [
                    {"budget_duration": "24h", "max_budget": 10},
                    {"budget_duration": "30d", "max_budget": 100},
                ],
            },
        ],
    }

    budgets = budgets_from_document(document)

    assert [b.scope for b in budgets] == ["global", "team:search", "key:" + "b" * 64]
    assert budgets[1].max_budget_in_team == Decimal(2)
    assert [w.budget_duration for w in budgets[2].budget_limits] == ["24h", "30d"]


@pytest.mark.parametrize("document", [{}, {"budgets": None}, {"budgets": [], "litellm_settings": None}])
def test_a_document_without_budgets_gives_none(document: dict[str, object]) -> None:
    assert budgets_from_document(document) == []


def test_errors_name_the_entry_and_the_field() -> None:
    document = {
        "budgets": [
            {"scope": "team:search", "max_budget": 10},
            {"scope": "team:eng", "max_budget": -1},
        ]
    }

    assert problems_of(document) == ["budgets[1].max_budget: Input should be greater than or equal to 0"]


def test_errors_of_the_global_settings_name_litellm_settings() -> None:
    problems = problems_of({"litellm_settings": {"max_budget": 1, "budget_duration": "5x"}})

    assert len(problems) == 1
    assert problems[0].startswith("litellm_settings.budget_duration: unknown duration '5x'")


def test_consistency_errors_are_prefixed_with_the_entry() -> None:
    problems = problems_of({"budgets": [{"scope": "user:alice", "max_budget": 1, "max_budget_in_team": 1}]})

    assert problems == ["budgets[0].max_budget_in_team: only a team budget can cap its members"]


def test_all_or_nothing_every_bad_entry_is_reported() -> None:
    document = {
        "litellm_settings": {"max_end_user_budget": -1},
        "budgets": [
            {"scope": "team:ok", "max_budget": 1},
            {"scope": "tem:typo", "max_budget": 1},
            {"scope": "team:ok2", "max_budget": 1},
            {"scope": "team:eng"},
        ],
    }

    problems = problems_of(document)

    assert [p.split(":", 1)[0] for p in problems] == [
        "litellm_settings.max_end_user_budget",
        "budgets[1].scope",
        "budgets[3].budget",
    ]


def test_each_problem_of_one_entry_is_prefixed() -> None:
    # Given one entry with two consistency problems
    document = {"budgets": [{"scope": "user:alice", "budget_duration": "1d", "max_budget_in_team": 1}]}

    # Then both name the entry, so an operator can find them
    assert problems_of(document) == [
        "budgets[0].budget_duration: needs max_budget, the cap that resets",
        "budgets[0].max_budget_in_team: only a team budget can cap its members",
    ]


@pytest.mark.parametrize("document", [None, [], "budgets", 3])
def test_a_document_that_is_not_a_mapping_is_refused(document: object) -> None:
    assert problems_of(document) == ["budgets: expected a mapping with `budgets` and/or `litellm_settings`"]


def test_an_entry_that_is_not_a_mapping_is_refused_naming_the_entry() -> None:
    # Given a `budgets:` list whose second entry is a bare string (a YAML slip)
    document = {"budgets": [{"scope": "team:eng", "max_budget": 1}, "team:sales"]}

    # Then the refusal names that entry, like every other refusal
    problems = problems_of(document)

    assert len(problems) == 1
    assert problems[0].startswith("budgets[1]")


def test_litellm_provider_budget_config_becomes_provider_budgets() -> None:
    document = {
        "router_settings": {
            "provider_budget_config": {
                "openai": {"budget_limit": 0.5, "time_period": "1d"},
                "azure": {"budget_limit": 100, "time_period": "1mo"},
            }
        },
        "budgets": [{"scope": "tag:product:chat-bot", "max_budget": 10, "budget_duration": "1d"}],
    }

    budgets = budgets_from_document(document)

    assert [(b.scope, b.max_budget, b.budget_duration) for b in budgets] == [
        ("provider:openai", Decimal("0.5"), "1d"),
        ("provider:azure", Decimal(100), "1mo"),
        ("tag:product:chat-bot", Decimal(10), "1d"),
    ]


def test_a_provider_budget_config_error_names_the_provider_and_field() -> None:
    document = {"router_settings": {"provider_budget_config": {"openai": {"budget_limit": -1, "time_period": "1x"}}}}

    with pytest.raises(BudgetRejectedError) as refused:
        budgets_from_document(document)

    assert all(p.startswith("router_settings.provider_budget_config.openai.") for p in refused.value.problems)
    assert len(refused.value.problems) == 2
    with pytest.raises(BudgetRejectedError, match="openai: expected budget_limit and time_period"):
        budgets_from_document({"router_settings": {"provider_budget_config": {"openai": 5}}})


def test_router_settings_without_provider_budgets_add_none() -> None:
    assert budgets_from_document({"router_settings": {"routing_strategy": "simple-shuffle"}}) == []
