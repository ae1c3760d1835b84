"""Budgets LiteLLM keys declare: read from the key object the proxy hands its hooks, valid or
refused by field; and in the enforcer's book, an operator's budget for the scope wins."""

from decimal import Decimal
from types import SimpleNamespace

import pytest
from litellm.proxy._types import UserAPIKeyAuth

from spendpipe.contracts.budgets import Budget, BudgetRejectedError
from spendpipe.contracts.declared_budgets import declared_key_budget
from spendpipe.contracts.scopes import Scope
from spendpipe.enforcer.targets import BudgetBook
from spendpipe.gateway.declared_budgets import DeclaredBudgets
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import RecordSigner

KEY_HASH = "b" * 64
SCOPE = f"key:{KEY_HASH}"
WHO = RequestIdentity(key_hash=KEY_HASH)


def test_a_key_without_caps_or_limits_declares_nothing() -> None:
    assert declared_key_budget(KEY_HASH, UserAPIKeyAuth(api_key=KEY_HASH, user_id="alice", team_id="eng")) is None


def test_the_keys_own_fields_become_its_budget_without_float_noise() -> None:
    key = UserAPIKeyAuth(
        api_key=KEY_HASH,
        max_budget=0.1 + 0.2,
        budget_duration="daily",
        soft_budget=0.25,
        rpm_limit=60,
        tpm_limit=10_000,
        max_parallel_requests=4,
        model_max_budget={"gpt-4o": {"max_budget": 0.05, "budget_duration": "1h"}},
        rpm_limit_per_model={"gpt-4o": 10},
        team_max_budget=99.0,  # the team's cap is not the key's
    )

    budget = declared_key_budget(KEY_HASH, key)

    assert budget is not None
    assert budget.scope == SCOPE
    assert (budget.max_budget, budget.budget_duration, budget.soft_budget) == (
        Decimal("0.3"),  # read as every float cost is, without the float noise
        "24h",
        Decimal("0.25"),
    )
    assert (budget.rpm_limit, budget.tpm_limit, budget.max_parallel_requests) == (60, 10_000, 4)
    assert budget.model_max_budget["gpt-4o"].max_budget == Decimal("0.05")
    assert budget.model_max_budget["gpt-4o"].budget_duration == "1h"
    assert budget.model_rpm_limit == {"gpt-4o": 10}


def test_several_windows_at_once() -> None:
    key = UserAPIKeyAuth(
        api_key=KEY_HASH,
        budget_limits=[{"budget_duration": "24h", "max_budget": 1.0}, {"budget_duration": "30d", "max_budget": 10.0}],
    )

    budget = declared_key_budget(KEY_HASH, key)

    assert budget is not None
    assert [(w.budget_duration, w.max_budget) for w in budget.budget_limits] == [
        ("24h", Decimal("1.0")),
        ("30d", Decimal("10.0")),
    ]


def test_what_is_no_valid_budget_is_refused_by_field() -> None:
    with pytest.raises(BudgetRejectedError, match="budget_duration"):
        declared_key_budget(KEY_HASH, UserAPIKeyAuth(api_key=KEY_HASH, max_budget=1.0, budget_duration="30s"))


def test_the_operators_budget_wins_and_its_deletion_puts_the_keys_own_back() -> None:
    book = BudgetBook()
    declared = Budget(scope=SCOPE, max_budget=Decimal("0.002"), budget_duration="24h")
    operators = Budget(scope=SCOPE, max_budget=Decimal(100))

    book.declare(declared)
    assert book.get(SCOPE) == declared
    book.put(operators)
    assert book.get(SCOPE) == operators
    book.declare(declared)  # a gateway publishing the key's budget again changes nothing
    assert book.get(SCOPE) == operators
    assert [t.caps[0].limit for t in book.targets_for(Scope.parse(SCOPE))] == [Decimal(100)]

    book.delete(SCOPE)
    assert book.get(SCOPE) == declared
    book.undeclare(SCOPE)
    assert book.get(SCOPE) is None
    assert list(book) == []


def test_whatever_a_key_holds_the_request_path_never_raises_and_publishes_nothing_invalid() -> None:
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=RecordSigner(None))
    odd = SimpleNamespace(max_budget=0.5, budget_limits=[object(), "24h"], model_max_budget={"m": 7})

    declared.observe(WHO, odd)
    declared.observe(WHO, UserAPIKeyAuth(api_key=KEY_HASH, max_budget=1.0, budget_duration="30s"))

    assert declared.queued() == {}
    declared.observe(WHO, UserAPIKeyAuth(api_key=KEY_HASH, max_budget=1.0, budget_duration="1d"))
    assert list(declared.queued()) == [SCOPE]


def test_a_key_is_queued_once_per_change_and_a_withdrawn_budget_as_a_deletion() -> None:
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=RecordSigner(None))
    capped = UserAPIKeyAuth(api_key=KEY_HASH, max_budget=1.0, budget_duration="1d")
    uncapped = UserAPIKeyAuth(api_key=KEY_HASH)

    declared.observe(WHO, uncapped)  # a key that never declared a budget: nothing to withdraw
    assert declared.queued() == {}
    declared.observe(WHO, capped)
    first = declared.queued()[SCOPE]
    declared.observe(WHO, capped)
    assert declared.queued() == {SCOPE: first}
    declared.observe(WHO, uncapped)
    assert declared.queued() == {SCOPE: None}


def test_without_a_writer_key_nothing_is_published() -> None:
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=None)

    declared.observe(WHO, UserAPIKeyAuth(api_key=KEY_HASH, max_budget=1.0))

    assert declared.queued() == {}


async def test_without_a_writer_key_the_first_proxy_request_says_so_once_and_an_sdk_gateway_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def said() -> list[str]:
        return [r.levelname for r in caplog.records if "not published: no writer key" in r.getMessage()]

    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=None)
    declared.start()  # an SDK gateway: started, never handed a key object
    assert said() == []

    for _ in range(3):
        await declared.observe_proxy_request(WHO, UserAPIKeyAuth(api_key=KEY_HASH, max_budget=1.0), cache=None)

    assert said() == ["WARNING"]
    assert declared.queued() == {}
