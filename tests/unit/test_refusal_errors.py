"""A gateway's refusals are LiteLLM's proxy errors under the names the enforcer leaves out."""

from litellm.proxy._types import ProxyException
from litellm.proxy.common_utils.proxy_rate_limit_error import ProxyRateLimitError

from spendpipe.contracts.refusals import BUDGET_REFUSAL, RATE_LIMIT_REFUSAL
from spendpipe.gateway.refusals.refusal_errors import SpendpipeBudgetExceededError, SpendpipeRateLimitError


def test_the_refusal_classes_are_named_as_the_schema_says_and_are_litellms_errors() -> None:
    assert SpendpipeRateLimitError.__name__ == RATE_LIMIT_REFUSAL
    assert SpendpipeBudgetExceededError.__name__ == BUDGET_REFUSAL
    assert issubclass(SpendpipeRateLimitError, ProxyRateLimitError)
    assert issubclass(SpendpipeBudgetExceededError, ProxyException)
