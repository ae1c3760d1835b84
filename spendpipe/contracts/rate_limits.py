"""Rate limits, with LiteLLM's field names, as they sit on a scope's `Budget`.

`rpm_limit` counts requests and `tpm_limit` counts tokens (input, output or total, as
`token_rate_limit_type` says; total by default, as LiteLLM) over a **sliding** minute: at any
instant, what the scope was admitted in the 60 seconds before. Unlike a fixed per-minute counter
(LiteLLM's), it never admits twice the limit across a minute boundary. `model_rpm_limit` and
`model_tpm_limit` do the same for one model. `max_parallel_requests` counts requests in flight,
which only a gateway can see, so each gateway replica enforces it on its own.

Limits apply to keys, users, teams, end customers and agents, as LiteLLM's do.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from spendpipe.contracts.scopes import ScopeType

WINDOW_S = 60
"""The sliding window of `rpm_limit` and `tpm_limit`."""

LIMITED_SCOPES = frozenset({ScopeType.KEY, ScopeType.USER, ScopeType.TEAM, ScopeType.END_USER, ScopeType.AGENT})

TokenType = Literal["input", "output", "total"]
RateLimitType = Literal["requests", "tokens", "max_parallel_requests"]
"""LiteLLM's names for what was exceeded (`rate_limit_type` of its 429)."""

LimitCount = Annotated[int, Field(ge=1, le=1_000_000_000, strict=False)]
ModelName = Annotated[str, Field(min_length=1, max_length=256)]

LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "max_parallel_requests", "model_rpm_limit", "model_tpm_limit")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The sliding-minute limits on one scope's requests, over all models (`model == ""`) or one."""

    scope: str
    model: str
    rpm: int | None
    tpm: int | None
    token_type: TokenType

    @property
    def source(self) -> str:
        """The budget fields this comes from, for messages."""
        if self.model:
            return f"model_rpm_limit/model_tpm_limit[{self.model}] of {self.scope}"
        return f"rpm_limit/tpm_limit of {self.scope}"


TOKEN_COLUMNS: dict[TokenType, str] = {"input": "prompt_tokens", "output": "completion_tokens", "total": "total_tokens"}
"""Which of a call's usage counts (the same names in LiteLLM's `usage` and in the `events` table)."""


def tokens_of(token_type: TokenType, usage: dict[str, int]) -> int:
    """The tokens a call counts against a tpm limit of this type."""
    return int(usage.get(TOKEN_COLUMNS[token_type]) or 0)


def limit_field(rate_limit_type: RateLimitType, model: str) -> str:
    """The budget field a refusal names: `rpm_limit`, `model_tpm_limit[gpt-4o]`..."""
    if rate_limit_type == "max_parallel_requests":
        return "max_parallel_requests"
    name = "rpm_limit" if rate_limit_type == "requests" else "tpm_limit"
    return f"model_{name}[{model}]" if model else name


def refusal_message(
    *, scope: str, model: str, rate_limit_type: RateLimitType, used: int, limit: int, token_type: TokenType, resets: str
) -> str:
    """What a refused client reads, in the words of LiteLLM's limiter ("Rate limit exceeded for
    ...", "Limit resets at: ..."), naming the scope, the limit and its window."""
    what = f"{scope} on model {model}" if model else scope
    field = limit_field(rate_limit_type, model)
    if rate_limit_type == "max_parallel_requests":
        measured = f"{used} requests in flight at this gateway, {field} {limit}"
    elif rate_limit_type == "requests":
        measured = f"{used} requests in the last {WINDOW_S}s, {field} {limit} per sliding minute"
    else:
        measured = f"{used} {token_type} tokens in the last {WINDOW_S}s, {field} {limit} per sliding minute"
    return f"Rate limit exceeded for {what}: {measured}. Limit type: {rate_limit_type}. Limit resets at: {resets}"
