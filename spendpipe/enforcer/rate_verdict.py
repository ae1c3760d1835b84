"""Judging one rate limit: pure, no I/O. Blocked exactly while the sliding minute holds the
limit or more (`requests >= rpm_limit`, `tokens >= tpm_limit`), and only until the moment the
window will admit again, so the block lifts by itself at every gateway even if nothing else
is published."""

from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.contracts.rate_limits import RateLimit, RateLimitType, refusal_message
from spendpipe.enforcer.rate_reader import RateUsage
from spendpipe.enforcer.verdict import Verdict

RATE_WINDOW = "1m"
"""The `window` of a rate-limit decision: the sliding minute."""


def judge_rate(limit: RateLimit, usage: RateUsage) -> Verdict:
    exceeded: list[tuple[RateLimitType, int, int, float]] = []
    if limit.rpm and usage.requests >= limit.rpm and usage.requests_free_at is not None:
        exceeded.append(("requests", usage.requests, limit.rpm, usage.requests_free_at))
    if limit.tpm and usage.tokens >= limit.tpm and usage.tokens_free_at is not None:
        exceeded.append(("tokens", usage.tokens, limit.tpm, usage.tokens_free_at))
    if not exceeded:
        return Verdict(False, f"within the {limit.source}", kind="rate_limit")
    kind, used, cap, until = max(exceeded, key=lambda e: e[3])
    resets = f"{datetime.fromtimestamp(until, UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC"
    reason = refusal_message(
        scope=limit.scope,
        model=limit.model,
        rate_limit_type=kind,
        used=used,
        limit=cap,
        token_type=limit.token_type,
        resets=resets,
    )
    return Verdict(True, reason, RATE_WINDOW, Decimal(used), Decimal(cap), until, "rate_limit", kind)
