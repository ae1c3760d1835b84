"""Requests in flight per scope, for `max_parallel_requests`: only a gateway can count them, so
each gateway process (each LiteLLM worker) holds its own count.

A request takes a lease when it is admitted and gives it back when it ends, by whichever hook
sees the end first (the proxy's success or failure hook, or the success log of a stream; not the
failure log, which LiteLLM writes for every failed attempt it retries); giving it back twice is
harmless. A lease that nothing gave back (a call cancelled without any hook running) lapses
after `lease_s`, so a leak can never hold a scope shut for good.

Every lease lasts `lease_s`, so leases lapse in the order they were taken: admission looks only
at the oldest lease held, not at every one (a clock stepping back delays a lapse, no more).
"""

from collections import OrderedDict
from collections.abc import Iterable


class InFlight:
    """Not thread-safe: the caller serialises access."""

    def __init__(self, *, lease_s: float) -> None:
        self._lease_s = lease_s
        self._counts: dict[str, int] = {}
        self._leases: OrderedDict[str, tuple[tuple[str, ...], float]] = OrderedDict()
        """lease -> (its scopes, when it lapses), oldest first"""

    def count(self, scope: str, now: float) -> int:
        self._lapse(now)
        return self._counts.get(scope, 0)

    def take(self, lease: str, scopes: Iterable[str], now: float) -> None:
        held = tuple(scopes)
        if not held or lease in self._leases:
            return
        self._leases[lease] = (held, now + self._lease_s)
        for scope in held:
            self._counts[scope] = self._counts.get(scope, 0) + 1

    def give_back(self, lease: str) -> bool:
        """True if the lease was held."""
        held = self._leases.pop(lease, None)
        if held is None:
            return False
        for scope in held[0]:
            left = self._counts[scope] - 1
            if left:
                self._counts[scope] = left
            else:
                del self._counts[scope]
        return True

    def _lapse(self, now: float) -> None:
        while self._leases:
            lease, (_, expiry) = next(iter(self._leases.items()))
            if expiry > now:
                return
            self.give_back(lease)
