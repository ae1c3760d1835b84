"""The gateway-local layer of rate limiting: the limits of every scope (read from
`spend.budgets`), requests in flight, and a sliding minute of requests and tokens per
(scope, model), as this replica saw them.

It is the first line: on one replica `rpm_limit` and `tpm_limit` hold exactly and
`max_parallel_requests` holds always. Across N replicas each sees only its own traffic; the
enforcer's time-boxed blocks (the pipeline-wide layer) bound the sum.

`admit()` runs on the request path: with no limit on any of the request's scopes it is a few
dict lookups. A request that is admitted is counted at once; its tokens when it ends
(`finish()`, which also ends its lease on a parallel slot).
"""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.rate_limits import RateLimit, RateLimitType, TokenType, refusal_message
from spendpipe.gateway.rate_limits.in_flight import InFlight
from spendpipe.gateway.rate_limits.sliding_window import SlidingWindow
from spendpipe.gateway.refusals import RateLimited

_SWEEP_EVERY = 1024
"""Admissions between sweeps of calls that never ended (their leases lapsed) and of the window
logs of scopes that went idle."""


@dataclass(frozen=True, slots=True)
class Remaining:
    """The tightest limit left, of the request's scopes, as this gateway sees it."""

    requests: int | None = None
    request_limit: int | None = None
    tokens: int | None = None
    token_limit: int | None = None

    def headers(self) -> dict[str, str] | None:
        """LiteLLM's remaining-capacity headers on a successful response; None if no limit applies."""
        headers = {
            "x-ratelimit-remaining-requests": self.requests,
            "x-ratelimit-limit-requests": self.request_limit,
            "x-ratelimit-remaining-tokens": self.tokens,
            "x-ratelimit-limit-tokens": self.token_limit,
        }
        return {name: str(value) for name, value in headers.items() if value is not None} or None


@dataclass(frozen=True, slots=True)
class _ScopeLimits:
    max_parallel: int | None
    windows: tuple[RateLimit, ...]


class RateGate:
    def __init__(self, *, lease_s: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lease_s = lease_s
        self._limits: dict[str, _ScopeLimits] = {}
        self._window = SlidingWindow()
        self._in_flight = InFlight(lease_s=lease_s)
        self._calls: dict[str, tuple[tuple[tuple[str, str], ...], float]] = {}
        """lease -> (the (scope, model) windows it counts in, when its lease lapses)"""
        self._admitted = 0
        self._lock = threading.Lock()

    def put(self, budget: Budget) -> None:
        """A scope's budget as published: its limits replace the ones it had."""
        limits = _ScopeLimits(budget.max_parallel_requests, budget.rate_limits())
        with self._lock:
            if limits.max_parallel is None and not limits.windows:
                self._limits.pop(budget.scope, None)
                self._window.forget(budget.scope)
            else:
                self._limits[budget.scope] = limits

    def delete(self, scope: str) -> None:
        with self._lock:
            self._limits.pop(scope, None)
            self._window.forget(scope)

    def admit(self, lease: str, scopes: Sequence[str], model: str) -> RateLimited | None:
        """Count the request and return None, or refuse it (counting nothing)."""
        limited = [(scope, self._limits.get(scope)) for scope in scopes]
        applicable = [(scope, limits) for scope, limits in limited if limits is not None]
        if not applicable:
            return None
        now = self._clock()
        with self._lock:
            refusal = self._refusal(applicable, model, now)
            if refusal is not None:
                return refusal
            keys = tuple((w.scope, w.model) for _, limits in applicable for w in limits.windows if _applies(w, model))
            for key in keys:
                self._window.admit(key, now)
            parallel = [scope for scope, limits in applicable if limits.max_parallel is not None]
            self._in_flight.take(lease, parallel, now)
            self._calls[lease] = (keys, now + self._lease_s)
            self._admitted += 1
            if self._admitted % _SWEEP_EVERY == 0:
                self._sweep(now)
        return None

    def finish(self, lease: str, usage: tuple[int, int, int] | None) -> None:
        """The call ended: count its (input, output, total) tokens, free its parallel slot.
        Idempotent: the first of the hooks that see the end counts it."""
        if not lease:  # a call admitted by no lease (an SDK call): nothing to end
            return
        now = self._clock()
        with self._lock:
            call = self._calls.pop(lease, None)
            self._in_flight.give_back(lease)
            if call is not None and usage is not None:
                for key in call[0]:
                    self._window.add_tokens(key, usage, now)

    def remaining(self, scopes: Sequence[str], model: str) -> Remaining:
        now = self._clock()
        requests: list[tuple[int, int]] = []
        tokens: list[tuple[int, int]] = []
        with self._lock:
            for scope in scopes:
                limits = self._limits.get(scope)
                for w in limits.windows if limits else ():
                    if not _applies(w, model):
                        continue
                    key = (w.scope, w.model)
                    if w.rpm:
                        requests.append((w.rpm - self._window.requests(key, now), w.rpm))
                    if w.tpm:
                        tokens.append((w.tpm - self._window.tokens(key, w.token_type, now), w.tpm))
        left_requests, request_limit = min(requests) if requests else (None, None)
        left_tokens, token_limit = min(tokens) if tokens else (None, None)
        return Remaining(
            requests=None if left_requests is None else max(0, left_requests),
            request_limit=request_limit,
            tokens=None if left_tokens is None else max(0, left_tokens),
            token_limit=token_limit,
        )

    def _refusal(self, applicable: list[tuple[str, _ScopeLimits]], model: str, now: float) -> RateLimited | None:
        for scope, limits in applicable:
            if limits.max_parallel is not None:
                in_flight = self._in_flight.count(scope, now)
                if in_flight >= limits.max_parallel:
                    return _refuse(scope, "", "max_parallel_requests", in_flight, limits.max_parallel, "total", now)
            for w in limits.windows:
                if not _applies(w, model):
                    continue
                key = (w.scope, w.model)
                if w.rpm and (used := self._window.requests(key, now)) >= w.rpm:
                    at = self._window.requests_free_at(key, w.rpm, now)
                    return _refuse(scope, w.model, "requests", used, w.rpm, w.token_type, at)
                if w.tpm and (used := self._window.tokens(key, w.token_type, now)) >= w.tpm:
                    at = self._window.tokens_free_at(key, w.token_type, w.tpm, now)
                    return _refuse(scope, w.model, "tokens", used, w.tpm, w.token_type, at)
        return None

    def _sweep(self, now: float) -> None:
        for lease in [lease for lease, (_, expiry) in self._calls.items() if expiry <= now]:
            del self._calls[lease]
            self._in_flight.give_back(lease)
        self._window.sweep(now)


def _applies(window: RateLimit, model: str) -> bool:
    return not window.model or window.model == model


def _refuse(  # noqa: PLR0917 - private, every argument goes into the message
    scope: str, model: str, kind: RateLimitType, used: int, limit: int, token_type: TokenType, at: float
) -> RateLimited:
    resets = "when a request in flight ends" if kind == "max_parallel_requests" else _utc(at)
    message = refusal_message(
        scope=scope, model=model, rate_limit_type=kind, used=used, limit=limit, token_type=token_type, resets=resets
    )
    return RateLimited(scope, model, kind, at, message)


def _utc(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC"
