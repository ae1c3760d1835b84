"""A gateway's lease chains and the calls reserved on them: pure, thread-safe, no I/O. Hand-written
because it is the gateway half of spendpipe's own protocol (docs/leases.md).

One chain per leased target key at a time. A call reserves its estimate on every leased target
it counts towards, or on none (`reserve`); the answer is `RESERVED`, `WAIT` (ask the enforcer and
wait for a grant), `REFUSE` (the enforcer's latest word leaves less than the estimate free, and
the chain cannot cover it) or `UNANSWERED` (the enforcer did not answer the last ask within the
wait: the unsynced policy decides). Asks to send come back as `LeaseRequest`s; the caller sends
them. Times are the caller's monotonic clock; a chain is usable for `ttl_s` after its grant was
received, so the gateway stops before the enforcer's expiry.
"""

import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from spendpipe.contracts.leases import LeaseGrant, LeaseRequest, LeaseSettings, commitment_of, target_key
from spendpipe.contracts.money import cost_floor

ZERO = Decimal(0)
REASK_S = 1.0
"""An ask without an answer is sent again after this long; a refused target is asked again
after this long (a return elsewhere may have freed headroom)."""
RATE_WINDOW_S = 5.0
ASK_AHEAD_CALLS = 8
"""A chain asks for at least this many calls' estimates at a time."""


class Verdict(Enum):
    RESERVED = "reserved"
    WAIT = "wait"
    REFUSE = "refuse"
    UNANSWERED = "unanswered"


@dataclass
class ChainState:
    scope: str
    model: str
    chain: str = field(default_factory=lambda: secrets.token_hex(16))
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    granted: Decimal = ZERO
    version: int = -1
    used: Decimal = ZERO
    reserved: Decimal = ZERO
    usable_until: float = 0.0
    asked_at: float | None = None
    """When the last unanswered ask went out; None when the last ask was answered."""
    unanswered_since: float | None = None
    """When the first ask the enforcer has not answered yet went out."""
    answered_once: bool = False
    last_call: float = 0.0
    recent: deque[tuple[float, Decimal]] = field(default_factory=deque)
    """(when, estimate) of the calls reserved in the last `RATE_WINDOW_S`."""

    @property
    def available(self) -> Decimal:
        return self.granted - self.used - self.reserved

    def usable(self, now: float) -> bool:
        return now < self.usable_until

    def rate(self, now: float) -> Decimal:
        while self.recent and self.recent[0][0] < now - RATE_WINDOW_S:
            self.recent.popleft()
        return sum((amount for _, amount in self.recent), ZERO) / Decimal(str(RATE_WINDOW_S))


@dataclass(frozen=True)
class Held:
    key: str
    chain: str
    amount: Decimal


@dataclass
class Reservation:
    held: list[Held]
    model: str
    at: float


@dataclass(frozen=True)
class Known:
    free: Decimal
    at: float


class LeaseBook:
    def __init__(self, *, gateway_id: str, settings: LeaseSettings) -> None:
        self.gateway_id = gateway_id
        self._settings = settings
        self._chains: dict[str, ChainState] = {}
        self._free: dict[str, Known] = {}
        self._refused_at: dict[str, float] = {}
        self._reservations: dict[str, Reservation] = {}
        self.changed = threading.Condition()
        """Notified whenever a grant is applied; waiters re-run `reserve`."""

    def reserve(
        self, reservation: str, needs: dict[str, tuple[str, str, Decimal]], model: str, now: float
    ) -> tuple[Verdict, list[LeaseRequest]]:
        """Reserve `needs` ({target key: (scope, model, estimate)}) all at once, or nothing."""
        asks: list[LeaseRequest] = []
        with self.changed:
            short = []
            for key, (scope, target_model, amount) in needs.items():
                chain = self._chain(key, scope, target_model, now)
                if not (chain.usable(now) and chain.available >= amount):
                    short.append((key, chain, amount))
            if not short:
                held = []
                for key, (_, _, amount) in needs.items():
                    chain = self._chains[key]
                    chain.reserved += amount
                    chain.last_call = now
                    chain.recent.append((now, amount))
                    held.append(Held(key, chain.chain, amount))
                    asks += self._ask_ahead(chain, amount, now)
                self._reservations[reservation] = Reservation(held, model, now)
                return Verdict.RESERVED, asks
            verdict = Verdict.WAIT
            for key, chain, amount in short:
                chain.last_call = now
                waited = chain.unanswered_since
                if waited is not None and chain.asked_at is not None and now - waited >= self._settings.wait_s:
                    verdict = Verdict.UNANSWERED if verdict is Verdict.WAIT else verdict
                    if now - chain.asked_at >= REASK_S:
                        asks.append(self._ask(chain, amount, now))
                    continue
                known = self._free.get(key)
                fresh = known is not None and now - known.at < self._settings.ttl_s
                if fresh and known is not None and known.free < amount and chain.asked_at is None:
                    verdict = Verdict.REFUSE
                    if now - self._refused_at.get(key, -REASK_S) >= REASK_S:
                        self._refused_at[key] = now
                        asks.append(self._ask(chain, amount, now))
                    continue
                if chain.asked_at is None or now - chain.asked_at >= REASK_S:
                    asks.append(self._ask(chain, amount, now))
            return verdict, asks

    def apply(self, grant: LeaseGrant, now: float) -> None:
        """A grant read from `spend.leases` (already verified). Any gateway's live grant updates
        what is known free on its target; this gateway's own updates its chain."""
        with self.changed:
            if not grant.revoked:
                self._free[grant.key] = Known(grant.free, now)
            chain = self._chains.get(grant.key)
            mine = grant.gateway_id == self.gateway_id and chain is not None and chain.chain == grant.chain
            if mine and chain is not None and grant.version > chain.version:
                chain.version = grant.version
                chain.asked_at = chain.unanswered_since = None
                chain.answered_once = True
                if grant.revoked:
                    chain.usable_until = 0.0
                    self._chains.pop(grant.key)
                else:
                    chain.granted = max(chain.granted, grant.granted)
                    chain.usable_until = now + grant.ttl_s
            self.changed.notify_all()

    def settle(self, reservation: str, cost: Decimal | None) -> str | None:
        """A reserved call ended: charge its exact `cost` (None: it cost nothing) and free its
        estimates. Returns the call's model, or None for an unknown reservation."""
        with self.changed:
            held = self._reservations.pop(reservation, None)
            if held is None:
                return None
            for part in held.held:
                chain = self._chains.get(part.key)
                if chain is None or chain.chain != part.chain:
                    continue  # the chain ended; the enforcer counts the call from its event
                chain.reserved -= part.amount
                chain.used += cost or ZERO
            self.changed.notify_all()
            return held.model

    def to_return(self, now: float, *, everything: bool = False, lapse_s: float = 600.0) -> list[LeaseRequest]:
        """Chains to hand back: idle for `idle_return_s`, no longer usable, or all of them
        (`everything`, at shutdown). Reservations older than `lapse_s` are freed first."""
        with self.changed:
            for name in [n for n, r in self._reservations.items() if now - r.at >= lapse_s]:
                self.settle(name, None)
            returns = []
            for key, chain in list(self._chains.items()):
                idle = chain.reserved == 0 and now - chain.last_call >= self._settings.idle_return_s
                lapsed = chain.answered_once and not chain.usable(now) and chain.asked_at is None
                if everything or idle or lapsed:
                    del self._chains[key]
                    if chain.answered_once:
                        returns.append(self._return(chain))
            return returns

    def holding(self, key: str) -> ChainState | None:
        with self.changed:
            return self._chains.get(key)

    def _chain(self, key: str, scope: str, model: str, now: float) -> ChainState:
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = ChainState(scope, model, last_call=now)
        return chain

    def _ask_ahead(self, chain: ChainState, amount: Decimal, now: float) -> list[LeaseRequest]:
        low = max(chain.rate(now) * Decimal(str(self._settings.prefetch_s)), 2 * amount)
        known = self._free.get(chain_key(chain))
        spent = known is not None and now - known.at < self._settings.ttl_s and known.free < amount
        if chain.available >= low or chain.asked_at is not None or spent:
            return []  # enough, already asked, or nothing free to ask for
        return [self._ask(chain, ZERO, now, estimate=amount)]

    def _ask(self, chain: ChainState, need: Decimal, now: float, *, estimate: Decimal | None = None) -> LeaseRequest:
        per_call = estimate if estimate is not None else need
        rate = chain.rate(now)
        want = max(rate * Decimal(str(self._settings.horizon_s)), ASK_AHEAD_CALLS * per_call, need)
        first = chain.version < 0 and chain.asked_at is None and not chain.answered_once
        chain.asked_at = now
        if chain.unanswered_since is None:
            chain.unanswered_since = now
        return LeaseRequest(
            kind="request",
            gateway_id=self.gateway_id,
            chain=chain.chain,
            scope=chain.scope,
            model=chain.model,
            want=cost_floor(want),
            need=cost_floor(need),
            rate=cost_floor(rate),
            commitment=commitment_of(chain.secret) if first or chain.version < 0 else None,
        )

    def _return(self, chain: ChainState) -> LeaseRequest:
        return LeaseRequest(
            kind="return",
            gateway_id=self.gateway_id,
            chain=chain.chain,
            scope=chain.scope,
            model=chain.model,
            secret=chain.secret,
            used=cost_floor(chain.used),
            reserved=cost_floor(max(chain.reserved, ZERO)),
        )


def chain_key(chain: ChainState) -> str:
    return target_key(chain.scope, chain.model)
