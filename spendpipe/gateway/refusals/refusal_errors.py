"""The exceptions the gateway refuses a proxy request with: LiteLLM's own, under names of
their own (`spendpipe.contracts.refusals`), so the event of a refused request says who refused it.
The proxy answers them exactly as it answers their LiteLLM base classes.

Imported only in proxy mode: `litellm.proxy` needs the proxy's extra dependencies.
"""

from litellm.proxy._types import ProxyException
from litellm.proxy.common_utils.proxy_rate_limit_error import ProxyRateLimitError


class SpendpipeRateLimitError(ProxyRateLimitError):  # type: ignore[misc]  # litellm is not type-checked
    """A 429 refusal by spendpipe (`RATE_LIMIT_REFUSAL`)."""


class SpendpipeBudgetExceededError(ProxyException):  # type: ignore[misc]
    """A `budget_exceeded` refusal by spendpipe (`BUDGET_REFUSAL`)."""
