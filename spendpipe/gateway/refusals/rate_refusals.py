"""Refusing a rate-limited request the way LiteLLM's own limiter does: in the proxy a
`ProxyRateLimitError` (HTTP 429, `retry-after`, `rate_limit_type` and `reset_at` headers, and a
`litellm.RateLimitError` for code that catches that); in SDK mode a `litellm.RateLimitError`.

The refusal comes either from this gateway's own count (`Refusal`) or from an enforcer block
that holds across replicas (a `Decision` of kind `rate_limit`); both read the same.
"""

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from litellm import RateLimitError
from litellm.exceptions import RateLimitErrorCategory

from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.rate_limits import RateLimitType
from spendpipe.gateway.rate_limits.rate_gate import Refusal

_DESCRIPTORS = {"key": "api_key", "user": "user", "team": "team", "end_user": "end_user", "agent": "agent"}
"""LiteLLM's descriptor names for the scopes that carry limits."""


@dataclass(frozen=True, slots=True)
class RateLimited:
    scope: str
    model: str
    rate_limit_type: RateLimitType
    retry_at: float | None
    message: str

    @classmethod
    def of_refusal(cls, refusal: Refusal) -> "RateLimited":
        return cls(refusal.scope, refusal.model, refusal.rate_limit_type, refusal.retry_at, refusal.message)

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
    return RateLimitError(
        message=limited.message,
        llm_provider="litellm_proxy",
        model=model or "",
        category=RateLimitErrorCategory.LITELLM_RATE_LIMIT,
        rate_limit_type=_public_type(limited.rate_limit_type),
        headers=limited.headers(time.time()),
    )


def proxy_rate_limit_error(limited: RateLimited, model: str | None) -> Exception:
    """What LiteLLM's v3 limiter raises (a `ProxyRateLimitError`, named as spendpipe's own:
    `contracts/refusals.py`): answered with 429 and `{"error": {"message": ...}}`."""
    from spendpipe.gateway.refusals.refusal_errors import SpendpipeRateLimitError  # noqa: PLC0415 - proxy only

    return SpendpipeRateLimitError(
        detail=limited.message,
        headers=limited.headers(time.time()),
        rate_limit_type=_public_type(limited.rate_limit_type),
        model=model,
        descriptor_key=limited.descriptor_key,
    )


def _public_type(rate_limit_type: RateLimitType) -> str:
    """LiteLLM's public `RateLimitType` value (`max_parallel_requests` is `concurrent_requests`)."""
    return {"requests": "requests", "tokens": "tokens"}.get(rate_limit_type, "concurrent_requests")
