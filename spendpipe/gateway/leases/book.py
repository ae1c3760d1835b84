"""A gateway's lease chains and the calls reserved on them: pure, thread-safe, no I/O. Hand-written
because it is the gateway half of spendpipe's own protocol (docs/leases.md).

One chain per leased target key at a time. A call reserves its estimate on every leased target
it counts towards, or on none (`reserve`); the answer is `RESERVED`, `WAIT` (ask the enforcer and
wait for a grant, or for other chains to hand headroom back), `REFUSE` (the chain cannot cover
it, and the enforcer's latest word leaves less than the estimate unspent, or less than it free
for the whole wait) or `UNANSWERED` (the enforcer did not answer the last ask within the wait:
the unsynced policy decides). Asks to send come back as `LeaseRequest`s; the caller sends
them. While the enforcer says less is free than a chain would ask for, a chain that holds more
than that hands the rest back (`to_return`, a release), so a busy gateway does not sit on
headroom another gateway is refused for. Times are the caller's monotonic clock; a chain is
usable for `ttl_s` after its grant was received, so the gateway stops before the enforcer's
expiry.

A chain handed back (returned, or revoked by the enforcer) with calls still in flight is kept
aside (`Ended`) until those calls have ended; then the book settles it (`kind = "settle"`) with
their exact cost, so the enforcer stops counting their estimates as lent.
"""

import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

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
    released: Decimal = ZERO
    """Handed back with releases, cumulative: the chain may spend `granted - released`."""
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
    recent: deque[tuple[float, str]] = field(default_factory=deque)
    """(when, reservation) of the calls that came for the chain in the last `RATE_WINDOW_S`,
    reserved or still waiting: the demand, which a chain short of headroom does not admit yet."""
    seen: set[str] = field(default_factory=set)
    """The reservations in `recent`."""
    per_call: Decimal = ZERO
    """The latest call's cost on the chain: its estimate when reserved, its exact cost once
    settled (a model's first calls are estimated high until the gateway has seen one)."""

    @property
    def available(self) -> Decimal:
        return self.granted - self.released - self.used - self.reserved

    def usable(self, now: float) -> bool:
        return now < self.usable_until

    def came(self, reservation: str, now: float) -> None:
        if reservation not in self.seen:
            self.seen.add(reservation)
            self.recent.append((now, reservation))

    def rate(self, now: float) -> Decimal:
        """Recent demand per second: the calls that came in the last `RATE_WINDOW_S` at the
        latest call's cost (not at their own estimates, which a model's first calls make high)."""
        while self.recent and self.recent[0][0] < now - RATE_WINDOW_S:
            self.seen.discard(self.recent.popleft()[1])
        return len(self.recent) * self.per_call / Decimal(str(RATE_WINDOW_S))


@dataclass(frozen=True)
class Held:
    key: str
    chain: str
    amount: Decimal


@dataclass
class Ended:
    """A chain handed back with calls in flight, waiting for them to end."""

    chain: ChainState
    calls: int
    """Its reservations still in flight."""
    cost: Decimal = ZERO
    """The exact cost of those that ended since."""


@dataclass
class Reservation:
    held: list[Held]
    model: str
    at: float


@dataclass(frozen=True)
class Known:
    free: Decimal
    headroom: Decimal | None
    """Unspent as the pipeline counts it (`free` plus what chains hold); None: not said."""
    at: float
    issued_at: datetime
    """When the enforcer issued the grant that said it: an older grant (a replay of one the topic
    keeps for an hour) never takes its place."""


class LeaseBook:
    def __init__(self, *, gateway_id: str, settings: LeaseSettings) -> None:
        self.gateway_id = gateway_id
        self._settings = settings
        self._chains: dict[str, ChainState] = {}
        self._free: dict[str, Known] = {}
        self._short_asked_at: dict[str, float] = {}
        self._reservations: dict[str, Reservation] = {}
        self._ended: dict[str, Ended] = {}
        """By chain id: chains handed back with calls in flight, until those end."""
        self._revoked: list[ChainState] = []
        """Chains the enforcer revoked, to hand back (with their use) at the next `to_return`."""
        self.changed = threading.Condition()
        """Notified whenever a grant is applied or a call settles; waiters re-run `reserve`."""
        self.listeners: list[Callable[[], None]] = []
        """Called (on the notifying thread) whenever `changed` is notified: how waiters on an
        event loop learn of it."""

    def reserve(
        self,
        reservation: str,
        needs: dict[str, tuple[str, str, Decimal]],
        model: str,
        now: float,
        *,
        give_up: bool = False,
    ) -> tuple[Verdict, list[LeaseRequest]]:
        """Reserve `needs` ({target key: (scope, model, estimate)}) all at once, or nothing.
        `give_up`: the call has waited long enough; a target the enforcer says has less than the
        estimate free refuses it even while other chains still hold headroom."""
        asks: list[LeaseRequest] = []
        with self.changed:
            short = []
            for key, (scope, target_model, amount) in needs.items():
                chain = self._chain(key, scope, target_model, now)
                chain.came(reservation, now)
                if not (chain.usable(now) and chain.available >= amount):
                    short.append((key, chain, amount))
            if not short:
                held = []
                for key, (_, _, amount) in needs.items():
                    chain = self._chains[key]
                    chain.reserved += amount
                    chain.last_call = now
                    chain.per_call = amount
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
                if fresh and known is not None and known.free < amount and (chain.asked_at is None or give_up):
                    # less is free than the call needs: refuse when it is spent (or the call has
                    # waited), else wait for chains that hold headroom to hand some back
                    spent = known.headroom is None or known.headroom < amount
                    if spent or give_up:
                        verdict = Verdict.REFUSE
                    if now - self._short_asked_at.get(key, -REASK_S) >= REASK_S:
                        self._short_asked_at[key] = now
                        asks += self._release_all(chain, now)  # what it holds is less than a call
                        asks.append(self._ask(chain, amount, now))
                    continue
                if chain.asked_at is None or now - chain.asked_at >= REASK_S:
                    asks.append(self._ask(chain, amount, now))
            return verdict, asks

    def apply(self, grant: LeaseGrant, now: float) -> None:
        """A grant read from `spend.leases` (already verified). Any gateway's live grant updates
        what is known free on its target; this gateway's own updates its chain."""
        with self.changed:
            known = self._free.get(grant.key)
            newer = known is None or grant.issued_at >= known.issued_at
            if newer and (not grant.revoked or grant.headroom is not None):  # a return's answer says what it freed
                self._free[grant.key] = Known(grant.free, grant.headroom, now, grant.issued_at)
            chain = self._chains.get(grant.key)
            mine = grant.gateway_id == self.gateway_id and chain is not None and chain.chain == grant.chain
            if mine and chain is not None and grant.version > chain.version:
                chain.version = grant.version
                chain.asked_at = chain.unanswered_since = None
                chain.answered_once = True
                if grant.revoked:
                    chain.usable_until = 0.0
                    self._revoked.append(self._chains.pop(grant.key))
                else:
                    chain.granted = max(chain.granted, grant.granted)
                    chain.usable_until = now + grant.ttl_s
            self._notify()

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
                    ended = self._ended.get(part.chain)
                    if ended is not None:  # the enforcer counts the call from its event; says its cost
                        ended.calls -= 1
                        ended.cost += cost or ZERO
                    continue
                chain.reserved -= part.amount
                chain.used += cost or ZERO
                if cost is not None:
                    chain.per_call = cost
            self._notify()
            return held.model

    def to_return(self, now: float, *, everything: bool = False, lapse_s: float = 600.0) -> list[LeaseRequest]:
        """Chains to hand back: idle for `idle_return_s`, no longer usable, or all of them
        (`everything`, at shutdown), and those the enforcer revoked; releases of what a chain holds
        beyond what it would ask for, while the enforcer says less than that is free (`_release`);
        and settles of handed-back chains whose calls in flight have all ended. Reservations older
        than `lapse_s` are freed first."""
        with self.changed:
            for name in [n for n, r in self._reservations.items() if now - r.at >= lapse_s]:
                self.settle(name, None)
            returns = [self._return(chain) for chain in self._revoked]
            self._revoked.clear()
            for key, chain in list(self._chains.items()):
                idle = chain.reserved == 0 and now - chain.last_call >= self._settings.idle_return_s
                lapsed = chain.answered_once and not chain.usable(now) and chain.asked_at is None
                if everything or idle or lapsed:
                    del self._chains[key]
                    if chain.answered_once:
                        returns.append(self._return(chain))
                    continue
                release = self._release(key, chain, now)
                if release is not None:
                    returns.append(release)
            for name, ended in list(self._ended.items()):
                if ended.calls <= 0:
                    del self._ended[name]
                    returns.append(self._settle(ended))
            return returns

    def short_of(self, needs: dict[str, tuple[str, str, Decimal]], now: float) -> str | None:
        """The target key of `needs` that keeps a call out, for its refusal: among those whose
        chain cannot cover the estimate now, the first the enforcer last said has less than it
        unspent, else less than it free, else the first (None: every chain covers it)."""
        with self.changed:
            short: list[tuple[bool, bool, int, str]] = []
            for order, (key, (_, _, amount)) in enumerate(needs.items()):
                chain = self._chains.get(key)
                if chain is None or not (chain.usable(now) and chain.available >= amount):
                    known = self._free.get(key)
                    unspent = None if known is None else known.free if known.headroom is None else known.headroom
                    spent = unspent is not None and unspent < amount
                    taken = known is not None and known.free < amount
                    short.append((not spent, not taken, order, key))
            return min(short)[3] if short else None

    def holding(self, key: str) -> ChainState | None:
        with self.changed:
            return self._chains.get(key)

    def _notify(self) -> None:
        self.changed.notify_all()
        for listener in list(self.listeners):
            listener()

    def _chain(self, key: str, scope: str, model: str, now: float) -> ChainState:
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = ChainState(scope, model, last_call=now)
        return chain

    def _release(self, key: str, chain: ChainState, now: float) -> LeaseRequest | None:
        """Hand back what the chain holds beyond one ask's worth (`_wanted`), when the enforcer's
        latest word says less than that is free: some other chain may be waiting for it."""
        known = self._free.get(key)
        if known is None or now - known.at >= self._settings.ttl_s or chain.asked_at is not None:
            return None
        if not (chain.answered_once and chain.usable(now)) or chain.per_call <= 0:
            return None
        keep = self._wanted(chain, chain.per_call, now)
        surplus = cost_floor(chain.available - keep)
        if known.free >= keep or surplus < chain.per_call:
            return None
        return self._release_request(chain, surplus)

    def _release_all(self, chain: ChainState, now: float) -> list[LeaseRequest]:
        """A chain short of a call while too little is free hands back the rest it holds: each
        gateway's remainder of less than a call, pooled, may make a call another one waits for."""
        rest = cost_floor(chain.available)
        if rest <= 0 or not (chain.answered_once and chain.usable(now)):
            return []
        return [self._release_request(chain, rest)]

    def _release_request(self, chain: ChainState, amount: Decimal) -> LeaseRequest:
        secret, chain.secret = chain.secret, secrets.token_hex(32)
        chain.released += amount
        return self._message(
            chain,
            "release",
            secret=secret,
            commitment=commitment_of(chain.secret),
            released=chain.released,
        )

    def _wanted(self, chain: ChainState, per_call: Decimal, now: float) -> Decimal:
        """What the chain asks for at a time: `horizon_s` of its recent spend, at least
        `ASK_AHEAD_CALLS` calls."""
        return max(chain.rate(now) * Decimal(str(self._settings.horizon_s)), ASK_AHEAD_CALLS * per_call)

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
        want = max(self._wanted(chain, per_call, now), need)
        first = chain.version < 0 and chain.asked_at is None and not chain.answered_once
        chain.asked_at = now
        if chain.unanswered_since is None:
            chain.unanswered_since = now
        return self._message(
            chain,
            "request",
            want=cost_floor(want),
            need=cost_floor(need),
            rate=cost_floor(rate),
            commitment=commitment_of(chain.secret) if first or chain.version < 0 else None,
        )

    def _return(self, chain: ChainState) -> LeaseRequest:
        """Hand `chain` back. With calls in flight it commits to one more secret, which its
        settle reveals once they have ended (`to_return`)."""
        secret, commitment = chain.secret, None
        calls = sum(part.chain == chain.chain for held in self._reservations.values() for part in held.held)
        if calls:
            chain.secret = secrets.token_hex(32)
            commitment = commitment_of(chain.secret)
            self._ended[chain.chain] = Ended(chain, calls)
        return self._message(
            chain,
            "return",
            secret=secret,
            commitment=commitment,
            used=cost_floor(chain.used),
            reserved=cost_floor(max(chain.reserved, ZERO)),
        )

    def _settle(self, ended: Ended) -> LeaseRequest:
        """The calls `ended` had in flight at its return have all ended, at `cost`."""
        return self._message(ended.chain, "settle", secret=ended.chain.secret, used=cost_floor(ended.cost))

    def _message(
        self, chain: ChainState, kind: Literal["request", "release", "return", "settle"], **fields: Any
    ) -> LeaseRequest:
        """A request, release or return on `chain`, from this gateway."""
        return LeaseRequest(
            kind=kind, gateway_id=self.gateway_id, chain=chain.chain, scope=chain.scope, model=chain.model, **fields
        )


def chain_key(chain: ChainState) -> str:
    return target_key(chain.scope, chain.model)
