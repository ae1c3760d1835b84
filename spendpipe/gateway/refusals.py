"""Every way the gateway turns a request away, each read as LiteLLM's own refusal of that kind,
so a client written against LiteLLM needs no change.

* **Budget**: an enforcer budget block, or failing closed before the block list or the rate
  limits were read. SDK mode: `SpendpipeBudgetExceededError`, a `litellm.BudgetExceededError`.
  Proxy: a `ProxyException` of type `budget_exceeded` with `litellm.budget_exceeded_status_code`,
  answered as `{"error": {"message", "type", "param", "code"}}`.
* **Rate limit**: this gateway's own count (`RateGate`) or an enforcer block that holds across
  replicas (a `Decision` of kind `rate_limit`); both read the same. SDK mode:
  `SpendpipeRateLimitError`, a `litellm.RateLimitError`. Proxy: what LiteLLM's v3 limiter raises,
  a `ProxyRateLimitError` (HTTP 429, `retry-after`, `rate_limit_type` and `reset_at` headers, and
  a `litellm.RateLimitError` for code that catches that).
* **Bad request** (proxy only): a request the gateway will not serve as sent, a 400
  `ProxyException` of type `invalid_request_error` naming the parameter (a `custom_llm_provider`
  that none of the model's deployments uses: `providers.provider_override`).
* **Session**: an agent session cap (proxy only), as LiteLLM's session limiters
  (`max_iterations_limiter`, `max_budget_per_session_limiter`) refuse: a 429
  `ProxyRateLimitError` of type `max_iterations` or `budget`, naming the session, the cap and the
  count or spend.

The errors of both modes are raised as subclasses named as `spendpipe.contracts.refusals` says, so
the logged event of a refused request (the proxy logs it, and so does the SDK when its pre-call
hook refuses) says spendpipe refused it and the enforcer does not count it as admitted; LiteLLM
and its callers handle them exactly as their LiteLLM base classes. The proxy's are made on first
use (`proxy_errors()`): `litellm.proxy` needs the proxy's dependencies (fastapi), which an SDK
install lacks, and takes half a second to import.
"""

import functools
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from litellm import BudgetExceededError, RateLimitError
from litellm.exceptions import RateLimitErrorCategory

from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.rate_limits import RateLimitType

if TYPE_CHECKING:  # proxy only: see above
    from litellm.proxy._types import ProxyException
    from litellm.proxy.common_utils.proxy_rate_limit_error import ProxyRateLimitError

NOT_IN_SYNC = Decision(
    scope="global",
    version=0,
    blocked=True,
    reason="spendpipe has not read the block list yet and is configured to fail closed",
    decided_at=datetime(1970, 1, 1, tzinfo=UTC),
)
LIMITS_NOT_IN_SYNC = NOT_IN_SYNC.model_copy(
    update={"reason": "spendpipe has not read the rate limits yet and is configured to fail closed"}
)


class SpendpipeBudgetExceededError(BudgetExceededError):  # type: ignore[misc]  # litellm is not type-checked
    """A budget refusal by spendpipe in SDK mode: a `litellm.BudgetExceededError`."""


class SpendpipeRateLimitError(RateLimitError):  # type: ignore[misc]
    """A rate-limit refusal by spendpipe in SDK mode: a `litellm.RateLimitError`."""


def sdk_refusal(decision: Decision, model: str | None) -> BudgetExceededError | RateLimitError:
    """What `check()` raises for a blocking decision."""
    if decision.kind == "rate_limit":
        return sdk_rate_limit_error(RateLimited.of_decision(decision), model)
    return budget_exceeded(decision)


def proxy_refusal(decision: Decision, model: str | None) -> "ProxyException | ProxyRateLimitError":
    """What the pre-call hook raises for a blocking decision."""
    if decision.kind == "rate_limit":
        return proxy_rate_limit_error(RateLimited.of_decision(decision), model)
    return proxy_budget_exceeded(decision)


# Budgets


def budget_exceeded(decision: Decision) -> BudgetExceededError:
    """The error LiteLLM raises for an exceeded budget; its proxy answers it with HTTP 400 and
    `"type": "budget_exceeded"`."""
    error = SpendpipeBudgetExceededError(
        current_cost=float(decision.spend or 0),
        max_budget=float(decision.cap or 0),
        message=decision.reason,
    )
    error.entity_type, error.entity_id = decision.scope.partition(":")[0], decision.scope.partition(":")[2]
    return error


def key_spend_headers(decision: Decision | None) -> dict[str, str] | None:
    """LiteLLM's `x-litellm-key-spend` and `x-litellm-key-max-budget`, with the enforcer's exact
    figures, from the budget block of the request's own key (over all models); None without one.
    LiteLLM writes its own figures (the key's spend as its proxy counts it, `0.0` where it counts
    none) before the headers hook runs, and the hook's values replace them."""
    if decision is None or decision.kind != "budget" or decision.model or decision.spend is None:
        return None
    headers = {"x-litellm-key-spend": format(decision.spend, "f")}
    if decision.cap is not None:
        headers["x-litellm-key-max-budget"] = format(decision.cap, "f")
    return headers


def proxy_budget_exceeded(decision: Decision) -> "ProxyException":
    """What LiteLLM's proxy raises for an exceeded budget: a `ProxyException` of type
    `budget_exceeded` with `litellm.budget_exceeded_status_code`."""
    from litellm.proxy._types import ProxyErrorTypes  # noqa: PLC0415 - proxy only

    error = budget_exceeded(decision)
    return proxy_errors().budget(
        message=error.message, type=ProxyErrorTypes.budget_exceeded, param=None, code=error.status_code
    )


# Rate limits

_DESCRIPTORS = {"key": "api_key", "user": "user", "team": "team", "end_user": "end_user", "agent": "agent"}
"""LiteLLM's descriptor names for the scopes that carry limits."""


@dataclass(frozen=True, slots=True)
class RateLimited:
    """A rate-limit refusal, from this gateway's count or from an enforcer block."""

    scope: str
    model: str
    rate_limit_type: RateLimitType
    retry_at: float | None
    """When the request would be admitted again (epoch seconds), if known."""
    message: str

    @classmethod
    def of_decision(cls, decision: Decision) -> "RateLimited":
        expires = decision.expires_at.timestamp() if decision.expires_at else None
        return cls(decision.scope, decision.model, decision.rate_limit_type or "requests", expires, decision.reason)

    def headers(self, now: float) -> dict[str, str]:
        headers: dict[str, str] = {"rate_limit_type": self.rate_limit_type}
        if self.retry_at is not None and self.rate_limit_type != "max_parallel_requests":
            headers["retry-after"] = str(max(1, math.ceil(self.retry_at - now)))
            headers["reset_at"] = f"{datetime.fromtimestamp(self.retry_at, UTC):%Y-%m-%d %H:%M:%S} UTC"
        return headers

    @property
    def descriptor_key(self) -> str:
        kind = _DESCRIPTORS.get(self.scope.partition(":")[0], "api_key")
        return f"model_per_{kind.removeprefix('api_')}" if self.model else kind


def sdk_rate_limit_error(limited: RateLimited, model: str | None) -> RateLimitError:
    return SpendpipeRateLimitError(
        message=limited.message,
        llm_provider="litellm_proxy",
        model=model or "",
        category=RateLimitErrorCategory.LITELLM_RATE_LIMIT,
        rate_limit_type=_public_type(limited.rate_limit_type),
        headers=limited.headers(time.time()),
    )


def proxy_rate_limit_error(limited: RateLimited, model: str | None) -> "ProxyRateLimitError":
    """What LiteLLM's v3 limiter raises, answered with 429 and `{"error": {"message": ...}}`."""
    return proxy_errors().rate_limit(
        detail=limited.message,
        headers=limited.headers(time.time()),
        rate_limit_type=_public_type(limited.rate_limit_type),
        model=model,
        descriptor_key=limited.descriptor_key,
    )


def _public_type(rate_limit_type: RateLimitType) -> str:
    """LiteLLM's public `RateLimitType` value (`max_parallel_requests` is `concurrent_requests`)."""
    return {"requests": "requests", "tokens": "tokens"}.get(rate_limit_type, "concurrent_requests")


# Agent sessions


def max_iterations_exceeded(session_id: str, agent_id: str, count: int, max_iterations: int) -> str:
    return (
        f"Max iterations exceeded for session {session_id} of agent:{agent_id}. Current count: {count}, "
        f"max_iterations: {max_iterations}."
    )


def session_budget_exceeded(session_id: str, agent_id: str, spend: Decimal, cap: Decimal) -> str:
    return (
        f"Session budget exceeded for session {session_id} of agent:{agent_id}. Current spend: ${spend}, "
        f"max_budget_per_session: ${cap}."
    )


def session_not_admitted(session_id: str, agent_id: str, wait_s: float) -> str:
    return f"Session {session_id} of agent:{agent_id}: no admission within {wait_s:g}s; retry."


def proxy_session_refused(message: str, cap_kind: str | None, model: Any) -> "ProxyRateLimitError":
    """A 429 `ProxyRateLimitError` of type `max_iterations` or `budget`."""
    from litellm.exceptions import RateLimitType as LiteLLMRateLimitType  # noqa: PLC0415 - proxy only

    kind = LiteLLMRateLimitType.MAX_ITERATIONS if cap_kind == "max_iterations" else LiteLLMRateLimitType.BUDGET
    return proxy_errors().rate_limit(
        detail=message, headers={"rate_limit_type": kind.value}, rate_limit_type=kind, model=model or None
    )


# Requests


def proxy_bad_request(message: str, param: str) -> "ProxyException":
    """A 400 `invalid_request_error` naming `param`, as LiteLLM's proxy refuses a bad request."""
    return proxy_errors().request(message=message, type="invalid_request_error", param=param, code=400)


# The proxy's error classes


class ProxyErrors(NamedTuple):
    rate_limit: "type[ProxyRateLimitError]"
    budget: "type[ProxyException]"
    request: "type[ProxyException]"


@functools.cache
def proxy_errors() -> ProxyErrors:
    """LiteLLM's proxy errors under spendpipe's names (`RATE_LIMIT_REFUSAL`, `BUDGET_REFUSAL`,
    `REQUEST_REFUSAL`)."""
    from litellm.proxy._types import ProxyException  # noqa: PLC0415 - proxy only
    from litellm.proxy.common_utils.proxy_rate_limit_error import ProxyRateLimitError  # noqa: PLC0415

    class SpendpipeRateLimitError(ProxyRateLimitError):  # type: ignore[misc]  # litellm is not type-checked
        """A 429 refusal by spendpipe."""

    class SpendpipeBudgetExceededError(ProxyException):  # type: ignore[misc]
        """A `budget_exceeded` refusal by spendpipe."""

    class SpendpipeBadRequestError(ProxyException):  # type: ignore[misc]
        """A request spendpipe will not serve as sent."""

    return ProxyErrors(
        rate_limit=SpendpipeRateLimitError, budget=SpendpipeBudgetExceededError, request=SpendpipeBadRequestError
    )
