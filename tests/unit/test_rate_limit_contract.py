"""Rate limits on the budget contract, in LiteLLM's field names: what is accepted, every refusal
as a `field: reason` line, and the limits a budget gives the gateways and the enforcer."""

import pytest

from spendpipe.admin.budget_file import budgets_from_document
from spendpipe.contracts.budgets import BudgetRejectedError, validate_budget
from spendpipe.contracts.rate_limits import RateLimit, tokens_of

KEY = "key:" + "a" * 64


def problems_of(document: dict[str, object]) -> list[str]:
    with pytest.raises(BudgetRejectedError) as raised:
        validate_budget(document)
    return raised.value.problems


def test_every_limit_field_of_litellm() -> None:
    budget = validate_budget(
        {
            "scope": "team:eng",
            "rpm_limit": 100,
            "tpm_limit": 10_000,
            "max_parallel_requests": 4,
            "model_rpm_limit": {"gpt-4o": 10},
            "model_tpm_limit": {"gpt-4o": 900, "gpt-4o-mini": 5000},
            "token_rate_limit_type": "input",
        }
    )

    assert budget.rate_limits() == (
        RateLimit("team:eng", "", 100, 10_000, "input"),
        RateLimit("team:eng", "gpt-4o", 10, 900, "input"),
        RateLimit("team:eng", "gpt-4o-mini", None, 5000, "input"),
    )
    assert budget.max_parallel_requests == 4


def test_token_type_defaults_to_total_as_litellm() -> None:
    assert validate_budget({"scope": KEY, "tpm_limit": 5}).token_rate_limit_type == "total"


def test_only_max_parallel_requests_gives_no_sliding_limit() -> None:
    assert validate_budget({"scope": KEY, "max_parallel_requests": 2}).rate_limits() == ()


@pytest.mark.parametrize("scope", [KEY, "user:alice", "team:eng", "end_user:acme"])
def test_limits_apply_to_keys_users_teams_and_end_customers(scope: str) -> None:
    assert validate_budget({"scope": scope, "rpm_limit": 1}).rpm_limit == 1


def test_limits_on_other_scopes_are_refused_naming_each_field() -> None:
    assert problems_of({"scope": "global", "rpm_limit": 5, "model_tpm_limit": {"gpt-4o": 5}}) == [
        "rpm_limit: rate limits apply to agent, end_user, key, team, user scopes, not global",
        "model_tpm_limit: rate limits apply to agent, end_user, key, team, user scopes, not global",
    ]


def test_bad_values_name_the_field_and_the_reason() -> None:
    problems = problems_of(
        {
            "scope": KEY,
            "rpm_limit": 0,
            "tpm_limit": "many",
            "max_parallel_requests": -1,
            "model_rpm_limit": {"gpt-4o": 1.5},
            "token_rate_limit_type": "cached",
        }
    )

    assert problems == [
        "rpm_limit: Input should be greater than or equal to 1",
        "tpm_limit: Input should be a valid integer, unable to parse string as an integer",
        "max_parallel_requests: Input should be greater than or equal to 1",
        "model_rpm_limit.gpt-4o: Input should be a valid integer, got a number with a fractional part",
        "token_rate_limit_type: Input should be 'input', 'output' or 'total'",
    ]


def test_a_yaml_entry_with_limits() -> None:
    (budget,) = budgets_from_document(
        {"budgets": [{"scope": "end_user:acme", "rpm_limit": 60, "model_tpm_limit": {"gpt-4o": 1000}}]}
    )

    assert budget.rate_limits() == (
        RateLimit("end_user:acme", "", 60, None, "total"),
        RateLimit("end_user:acme", "gpt-4o", None, 1000, "total"),
    )


def test_tokens_counted_by_type() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}

    assert [tokens_of(kind, usage) for kind in ("input", "output", "total")] == [10, 20, 30]
