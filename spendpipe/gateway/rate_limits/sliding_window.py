"""A true sliding window, per gateway replica: what one (scope, model) was admitted in the last
60 seconds, request by request, with the tokens each one used.

Pure state with the clock passed in, so the window maths is testable at any instant. A fixed
per-minute counter (LiteLLM's limiter) lets a scope use its limit at 12:00:59 and again at
12:01:00; this log still holds the first burst at 12:01:00 and refuses the second.
"""

from collections import deque
from dataclasses import dataclass, field

from spendpipe.contracts.rate_limits import WINDOW_S, TokenType


@dataclass(slots=True)
class _Log:
    requests: deque[float] = field(default_factory=deque)
    """When each admitted request started, oldest first."""
    tokens: deque[tuple[float, tuple[int, int, int]]] = field(default_factory=deque)
    """(when, input, output, total) of each finished request, oldest first."""
    sums: list[int] = field(default_factory=lambda: [0, 0, 0])


_INDEX: dict[TokenType, int] = {"input": 0, "output": 1, "total": 2}


class SlidingWindow:
    """Not thread-safe: the caller serialises access."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._logs: dict[tuple[str, str], _Log] = {}

    def __len__(self) -> int:
        """How many (scope, model) logs it holds."""
        return len(self._logs)

    def sweep(self, now: float) -> None:
        """Drop what left the window from every log, and the logs left empty: a scope nobody
        looks up again (idle, or its limit changed) would otherwise be held for good."""
        for key in list(self._logs):
            self._pruned(key, now)

    def forget(self, scope: str) -> None:
        """Drop every log of `scope` (its limits were taken away)."""
        for key in [key for key in self._logs if key[0] == scope]:
            del self._logs[key]

    def requests(self, key: tuple[str, str], now: float) -> int:
        log = self._pruned(key, now)
        return len(log.requests) if log else 0

    def tokens(self, key: tuple[str, str], token_type: TokenType, now: float) -> int:
        log = self._pruned(key, now)
        return log.sums[_INDEX[token_type]] if log else 0

    def admit(self, key: tuple[str, str], now: float) -> None:
        self._logs.setdefault(key, _Log()).requests.append(now)

    def add_tokens(self, key: tuple[str, str], usage: tuple[int, int, int], now: float) -> None:
        log = self._logs.setdefault(key, _Log())
        log.tokens.append((now, usage))
        for n in range(3):
            log.sums[n] += usage[n]

    def requests_free_at(self, key: tuple[str, str], limit: int, now: float) -> float:
        """When the window will again hold fewer than `limit` requests (now, if it does)."""
        log = self._pruned(key, now)
        if log is None or len(log.requests) < limit:
            return now
        return log.requests[len(log.requests) - limit] + self._window_s

    def tokens_free_at(self, key: tuple[str, str], token_type: TokenType, limit: int, now: float) -> float:
        """When the window will again hold fewer than `limit` tokens (now, if it does)."""
        log = self._pruned(key, now)
        index = _INDEX[token_type]
        if log is None or log.sums[index] < limit:
            return now
        left = log.sums[index]
        for when, used in log.tokens:
            left -= used[index]
            if left < limit:
                return when + self._window_s
        return now

    def _pruned(self, key: tuple[str, str], now: float) -> _Log | None:
        log = self._logs.get(key)
        if log is None:
            return None
        horizon = now - self._window_s
        while log.requests and log.requests[0] <= horizon:
            log.requests.popleft()
        while log.tokens and log.tokens[0][0] <= horizon:
            _, used = log.tokens.popleft()
            for n in range(3):
                log.sums[n] -= used[n]
        if not (log.requests or log.tokens):
            del self._logs[key]
            return None
        return log
