"""A gateway's refusals read as LiteLLM's own, under the names the enforcer leaves out."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import litellm
import pytest
from litellm.proxy._types import ProxyException
from litellm.proxy.common_utils.proxy_rate_limit_error import ProxyRateLimitError

from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.refusals import BUDGET_REFUSAL, RATE_LIMIT_REFUSAL, REQUEST_REFUSAL
from spendpipe.gateway.refusals import (
    RateLimited,
    proxy_errors,
    proxy_refusal,
    proxy_session_refused,
    sdk_refusal,
)

NOW = datetime(2026, 11, 28, 13, tzinfo=UTC)


def block(**fields: object) -> Decision:
    values: dict[str, object] = {
        "scope": "team:eng",
        "version": 1,
        "blocked": True,
        "reason": "over",
        "spend": Decimal("10.5"),
        "cap": Decimal(10),
        "expires_at": NOW + timedelta(seconds=30),
        "decided_at": NOW,
    }
    return Decision.model_validate(values | fields)


def test_the_refusal_classes_are_named_as_the_schema_says_and_are_litellms_errors() -> None:
    errors = proxy_errors()

    assert errors.rate_limit.__name__ == RATE_LIMIT_REFUSAL
    assert errors.budget.__name__ == BUDGET_REFUSAL
    assert errors.request.__name__ == REQUEST_REFUSAL
    assert issubclass(errors.rate_limit, ProxyRateLimitError)
    assert issubclass(errors.budget, ProxyException)
    assert issubclass(errors.request, ProxyException)
    assert proxy_errors() is errors  # one class each, made once


def test_a_budget_block_is_litellms_budget_error_in_both_modes() -> None:
    sdk = sdk_refusal(block(), "gpt-4o")
    proxy = proxy_refusal(block(), "gpt-4o")

    assert isinstance(sdk, litellm.BudgetExceededError)
    assert (sdk.current_cost, sdk.max_budget) == (10.5, 10.0)
    assert isinstance(proxy, ProxyException)
    assert type(proxy).__name__ == BUDGET_REFUSAL
    assert proxy.type == "budget_exceeded"
    assert proxy.code == str(litellm.budget_exceeded_status_code)


def test_a_rate_limit_block_is_a_429_that_says_when_to_retry() -> None:
    decision = block(kind="rate_limit", rate_limit_type="tokens", model="gpt-4o")

    sdk = sdk_refusal(decision, "gpt-4o")
    proxy = proxy_refusal(decision, "gpt-4o")

    assert isinstance(sdk, litellm.RateLimitError)
    assert isinstance(proxy, ProxyRateLimitError)
    assert type(proxy).__name__ == RATE_LIMIT_REFUSAL
    assert proxy.status_code == 429
    assert proxy.headers["rate_limit_type"] == "tokens"
    assert int(proxy.headers["retry-after"]) >= 1
    assert "reset_at" in proxy.headers


@pytest.mark.parametrize(
    ("scope", "model", "descriptor"),
    [("key:abc", "", "api_key"), ("key:abc", "m", "model_per_key"), ("agent:a", "", "agent"), ("org:x", "", "api_key")],
)
def test_the_descriptor_is_litellms_name_for_the_limited_scope(scope: str, model: str, descriptor: str) -> None:
    assert RateLimited(scope, model, "requests", None, "").descriptor_key == descriptor


def test_parallel_requests_give_no_retry_time() -> None:
    limited = RateLimited("key:abc", "", "max_parallel_requests", retry_at=1_000.0, message="")

    assert limited.headers(now=990.0) == {"rate_limit_type": "max_parallel_requests"}


@pytest.mark.parametrize(("cap_kind", "rate_limit_type"), [("max_iterations", "max_iterations"), ("budget", "budget")])
def test_a_session_refusal_is_litellms_session_limiter_429(cap_kind: str, rate_limit_type: str) -> None:
    refused = proxy_session_refused("Max iterations exceeded", cap_kind, "gpt-4o")

    assert isinstance(refused, ProxyRateLimitError)
    assert type(refused).__name__ == RATE_LIMIT_REFUSAL
    assert refused.headers["rate_limit_type"] == rate_limit_type
