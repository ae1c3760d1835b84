"""The enforcer's lease desk: lends slices of a leased budget's headroom to gateway chains and
keeps `sum(outstanding) <= headroom` at every grant (docs/leases.md). Blocking calls
(ClickHouse); the service runs them on the store thread.

Hand-written because no library keeps this account: per target, `headroom = min(cap - spend)`
over the target's windows (the same `SpendTotals` read as block decisions), and per chain
`outstanding = max(0, granted - released - counted)` where `counted` is the chain's gateway's events since
the chain began (`lease_spend.py`). A grant adds at most what no chain holds (`free`), capped at
a fair share; a chain is lent again only after it lapsed and its last calls had
`settle_grace_s` to be counted. Chains live in memory: a restarted desk lends nothing for
`ttl_s + settle_grace_s`, by when every chain its predecessor granted has lapsed.

A chain returned with calls in flight keeps their estimates as lent, and when it leaves the
account they carry over to its gateway's next chain with the rest of what it was not counted
for. The gateway's settle says what those calls cost: the desk then lowers what it counts as
lent by the estimates' excess over that cost (`InFlight`), where that excess is at the time: in
the returned chain's grant, or in the carry of the chain it passed to. Without it a failed call,
reserved and costing nothing, would leave its estimate lent for as long as the gateway starts
new chains.
"""

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.contracts.budgets import Cap
from spendpipe.contracts.leases import LeaseGrant, LeaseRequest, LeaseSettings, reveals
from spendpipe.contracts.money import cost_floor
from spendpipe.contracts.scopes import Scope
from spendpipe.enforcer.lease_reads import BatchReads, Counted, Measure
from spendpipe.enforcer.targets import BudgetBook, Target

log = logging.getLogger(__name__)

ZERO = Decimal(0)


@dataclass
class InFlight:
    """Calls a chain had in flight when it was returned, until its gateway settles them."""

    chain: str
    """The returned chain."""
    commitment: str
    """What the settle's secret must hash to (committed to by the return)."""
    estimate: Decimal
    """What the chain was lent for those calls: its grant after the return less its `used`."""
    cap: Decimal
    """The most of `estimate` the holding chain still counts as lent: all of it in the returned
    chain itself, at most the remainder it passed on once it left the account."""


@dataclass
class Chain:
    gateway_id: str
    chain: str
    commitment: str
    started: float
    target: tuple[str, str] = ("", "")
    """The (scope, model) its first request named: a target key can be spelled two ways
    (`team:a|gpt-4o` is the scope `team:a` with the model `gpt-4o`, or a scope of that text)."""
    granted: Decimal = ZERO
    version: int = 0
    expires_at: float = 0.0
    window_end: float | None = None
    released: Decimal = ZERO
    """What the gateway handed back without ending the chain (releases), cumulative."""
    carry: Decimal = ZERO
    """What the gateway's earlier chains on the target may still spend in this chain's count:
    their calls that end after this chain began count for it (`lease_spend.py`), so when an
    earlier chain leaves the account, what it was lent and not counted for carries over here."""
    counted: Decimal = ZERO
    """The chain's counted spend as last read (it only grows)."""
    closed: bool = False
    """Returned or revoked: lent nothing more, kept in the account until it lapses."""
    in_flight: list[InFlight] = field(default_factory=list)
    """Unsettled calls counted as lent here: this chain's own since its return (in `granted`),
    and those of its gateway's earlier chains whose remainder it carries (in `carry`)."""

    def alive(self, now: float) -> bool:
        return not self.closed and now < self.expires_at


class LeaseDesk:
    def __init__(
        self,
        *,
        book: BudgetBook,
        measure: Measure,
        counted: Counted,
        settings: LeaseSettings,
        clock: Callable[[], float],
    ) -> None:
        self._book = book
        self._measure = measure
        self._counted = counted
        self._settings = settings
        self._clock = clock
        self._lends_from = clock() + settings.ttl_s + settings.settle_grace_s
        self._chains: dict[str, dict[str, Chain]] = {}
        self._caps: dict[str, tuple[Cap, ...]] = {}
        """Per target key, the caps its chains were lent under: a change revokes them."""
        self._lock = threading.Lock()
        self._reads = BatchReads(measure=measure, counted=counted, at=self._lends_from)
        """The current batch's reads (`handle_many`)."""
        self.rejected = 0
        """Requests dropped: a return without the chain's secret, a chain without a commitment,
        or a request naming another gateway's chain."""

    def handle(self, request: LeaseRequest) -> LeaseGrant | None:
        """The grant answering `request`, or None when there is nothing to say (a dropped
        request, or a desk that has just started and lends nothing yet)."""
        grants = self.handle_many([request])
        return grants[0] if grants else None

    def handle_many(self, requests: Sequence[LeaseRequest]) -> list[LeaseGrant]:
        """The grants answering `requests`, in order, as of one instant: each target's totals and
        chain counts are read once for the batch (`BatchReads`)."""
        with self._lock:
            self._reads = BatchReads(measure=self._measure, counted=self._counted, at=self._clock())
            return [grant for grant in map(self._handle, requests) if grant is not None]

    def _handle(self, request: LeaseRequest) -> LeaseGrant | None:
        now = self._clock()
        chains = self._chains.setdefault(request.key, {})
        self._drop_lapsed(chains, now)
        chain = chains.get(request.chain)
        if chain is not None and (wrong := _not_its_chain(chain, request)):
            return self._reject(wrong)
        if request.kind != "request":
            return self._hand_back(request, chain, chains, now)
        if chain is None:
            if request.commitment is None:
                return self._reject("a new chain without a commitment")
            named = (request.scope, request.model)
            chain = Chain(request.gateway_id, request.chain, request.commitment, started=now, target=named)
            chains[request.chain] = chain
        if now < self._lends_from:
            return None  # the predecessor's chains may still be out: lend nothing yet
        target = self._target(request.scope, request.model)
        if target is None or chain.closed:
            return self._close(chain, request.key, now, "its budget does not lease this target")
        return self._lend(target, chain, chains, request, now)

    def _lend(
        self, target: Target, chain: Chain, chains: dict[str, Chain], request: LeaseRequest, now: float
    ) -> LeaseGrant:
        measurements = self._reads.measure(target)
        headroom = min(m.cap.limit - m.spend for m in measurements)
        window_end = min((float(m.end) for m in measurements if m.end is not None), default=None)
        if chain.granted and chain.window_end != window_end:
            return self._close(chain, request.key, now, "its window reset")  # a new chain counts the new window
        chain.window_end = window_end
        self._caps[request.key] = target.caps
        free = headroom - self._outstanding(target, chains)
        alive = max(1, sum(1 for c in chains.values() if c.alive(now) or c is chain))
        give = min(request.want, cost_floor(free / alive))
        if give < request.need <= free:
            give = request.need
        give = max(give, ZERO)
        expires = now + self._settings.ttl_s if window_end is None else min(now + self._settings.ttl_s, window_end)
        if expires <= now:
            return self._close(chain, request.key, now, "its window ends now")
        chain.granted += give
        chain.expires_at = expires
        return self._grant(chain, request.scope, request.model, max(free - give, ZERO), now, headroom=headroom)

    def _outstanding(self, target: Target, chains: dict[str, Chain]) -> Decimal:
        held = [c for c in chains.values() if c.granted > 0 or c.carry > 0]
        ends = _ends(chains)
        counted = self._reads.counted(target, [(c.gateway_id, c.started, ends.get(c.chain)) for c in held])
        for chain, spent in zip(held, counted, strict=True):
            chain.counted = spent
        return sum((max(ZERO, c.granted - c.released + c.carry - c.counted) for c in held), ZERO)

    def _hand_back(
        self, request: LeaseRequest, chain: Chain | None, chains: dict[str, Chain], now: float
    ) -> LeaseGrant | None:
        if request.kind == "settle":
            return self._settle(request, chains, now)
        if request.kind == "return":
            return self._return(request, chain, chains, now)
        return self._release(request, chain, chains, now)

    def _return(
        self, request: LeaseRequest, chain: Chain | None, chains: dict[str, Chain], now: float
    ) -> LeaseGrant | None:
        if chain is None:
            return None  # lapsed already, or never lent
        if not reveals(request.secret, chain.commitment):
            return self._reject("a return without the chain's secret")
        chain.granted = min(chain.granted - chain.released, request.used + request.reserved)
        chain.released = ZERO
        chain.commitment = ""  # its secret is public now: no second return, and no release
        if request.reserved > 0 and request.commitment is not None:
            estimate = max(ZERO, chain.granted - request.used)
            chain.in_flight.append(InFlight(chain.chain, request.commitment, estimate, estimate))
        target = self._target(request.scope, request.model)
        free, headroom = ZERO, None
        if target is not None and now >= self._lends_from:
            free, headroom = self._unlent(target, chains, now)
        chain.closed = True
        chain.version += 1
        chain.expires_at = min(chain.expires_at, now)  # kept in the account for the grace from now
        return self._grant(chain, request.scope, request.model, free, now, revoked=True, headroom=headroom)

    def _release(
        self, request: LeaseRequest, chain: Chain | None, chains: dict[str, Chain], now: float
    ) -> LeaseGrant | None:
        """Part of an open chain handed back: the chain may spend `granted - released` from now
        on. Answered with a grant that says what is free now, so waiting gateways ask again."""
        if chain is None or chain.closed:
            return None  # lapsed, returned or revoked already: nothing more is lent on it
        if request.commitment is None or not reveals(request.secret, chain.commitment):
            return self._reject("a release without the chain's secret")
        chain.commitment = request.commitment  # the next release or the return reveals the next secret
        chain.released = max(chain.released, min(request.released, chain.granted))
        target = self._target(request.scope, request.model)
        if target is None or now < self._lends_from:
            return None
        free, headroom = self._unlent(target, chains, now)
        return self._grant(chain, request.scope, request.model, free, now, headroom=headroom)

    def _settle(self, request: LeaseRequest, chains: dict[str, Chain], now: float) -> LeaseGrant | None:
        """The calls a returned chain had in flight have ended and cost `used`: what was lent for
        them beyond that is lent no more. Answered on the chain that held them, with what is free
        now, so waiting gateways ask again."""
        for holder in chains.values():
            record = next((r for r in holder.in_flight if r.chain == request.chain), None)
            if record is None or holder.gateway_id != request.gateway_id:
                continue
            if not reveals(request.secret, record.commitment):
                return self._reject("a settle without the secret its chain's return committed to")
            holder.in_flight.remove(record)
            excess = min(max(ZERO, record.estimate - request.used), record.cap)
            if holder.chain == record.chain:
                holder.granted -= excess
            else:
                holder.carry = max(ZERO, holder.carry - excess)
            target = self._target(request.scope, request.model)
            if target is None or now < self._lends_from:
                return None
            free, headroom = self._unlent(target, chains, now)
            holder.version += 1 if holder.closed else 0
            return self._grant(
                holder, request.scope, request.model, free, now, revoked=holder.closed, headroom=headroom
            )
        return None  # out of the account already (no later chain of its gateway took it), or never returned

    def _unlent(self, target: Target, chains: dict[str, Chain], now: float) -> tuple[Decimal, Decimal]:
        """(free, headroom) of a target now: its headroom lent to no chain, and its headroom."""
        measurements = self._reads.measure(target)
        headroom = max(ZERO, min(m.cap.limit - m.spend for m in measurements))
        return max(ZERO, headroom - self._outstanding(target, chains)), headroom

    def revoke_changed(self) -> list[LeaseGrant]:
        """Revoke every open chain whose target's caps changed, or whose budget no longer leases
        (run after budget changes). Revoked chains stay in the account until they lapse."""
        now = self._clock()
        grants = []
        with self._lock:
            for key, chains in self._chains.items():
                open_chains = [c for c in chains.values() if not c.closed]
                if not open_chains:
                    continue
                target = self._target(*_split(key))
                if target is not None and self._caps.get(key) in (None, target.caps):
                    continue
                grants += [self._close(chain, key, now, "its budget changed") for chain in open_chains]
        return grants

    def sweep(self) -> None:
        now = self._clock()
        with self._lock:
            for chains in self._chains.values():
                self._drop_lapsed(chains, now)
            for key in [k for k, chains in self._chains.items() if not chains]:
                del self._chains[key]

    def lending(self) -> bool:
        """Whether the start-up wait is over (a predecessor's chains have all lapsed)."""
        return self._clock() >= self._lends_from

    def resume(self, last_expiry: float | None) -> None:
        """What the grants topic says of the chains lent before this desk started: the latest
        `expires_at` of any grant on it (epoch seconds), None when there is none. Those chains
        are spent on until they expire and settled within the grace after: the desk lends from
        then on, and never later than a full TTL and grace from its start (a grant dated far
        ahead, forged or from a fast clock, cannot hold it off longer than that)."""
        ends = self._settings.settle_grace_s + (last_expiry if last_expiry is not None else float("-inf"))
        with self._lock:
            self._lends_from = min(self._lends_from, ends)

    def chains(self) -> int:
        with self._lock:
            return sum(len(chains) for chains in self._chains.values())

    def _target(self, scope: str, model: str) -> Target | None:
        try:
            parsed = Scope.parse(scope)
        except ValueError:
            return None
        return next((t for t in self._book.leased_targets(parsed) if t.model == model), None)

    def _drop_lapsed(self, chains: dict[str, Chain], now: float) -> None:
        """Drop the chains that lapsed a grace period ago, and those that asked and were never
        lent anything. What a dropped chain was lent and not counted for carries over to its
        gateway's next chain, whose count holds the dropped one's last calls, and so do its
        unsettled calls (`InFlight`), within what it carries over."""
        grace = self._settings.settle_grace_s
        dropped = {
            name
            for name, c in chains.items()
            if (c.expires_at + grace <= now and (c.granted or c.closed))
            or (not c.granted and now - c.started > self._settings.ttl_s + grace)
        }
        for chain in sorted((chains[n] for n in dropped), key=lambda c: c.started):
            later = [c for c in chains.values() if c.gateway_id == chain.gateway_id and c.started > chain.started]
            if later:
                left = max(ZERO, chain.granted - chain.released + chain.carry - chain.counted)
                successor = min(later, key=lambda c: c.started)
                successor.carry += left
                successor.in_flight += _within(chain.in_flight, left)
        for name in dropped:
            del chains[name]

    def _close(self, chain: Chain, key: str, now: float, why: str) -> LeaseGrant:
        log.info("lease chain %s of %s on %s closed: %s", chain.chain, chain.gateway_id, key, why)
        chain.closed = True
        chain.version += 1
        chain.expires_at = max(now, chain.expires_at)  # kept in the account for the grace period from now
        scope, model = _split(key)
        return self._grant(chain, scope, model, ZERO, now, revoked=True)

    def _grant(
        self,
        chain: Chain,
        scope: str,
        model: str,
        free: Decimal,
        now: float,
        *,
        revoked: bool = False,
        headroom: Decimal | None = None,
    ) -> LeaseGrant:
        chain.version += 0 if revoked else 1
        return LeaseGrant(
            gateway_id=chain.gateway_id,
            chain=chain.chain,
            scope=scope,
            model=model,
            version=chain.version,
            granted=chain.granted,
            free=free,
            headroom=None if headroom is None else max(headroom, ZERO),
            ttl_s=max(0.001, chain.expires_at - now) if not revoked else self._settings.ttl_s,
            expires_at=datetime.fromtimestamp(max(chain.expires_at, now), UTC),
            revoked=revoked,
            issued_at=datetime.fromtimestamp(now, UTC),
        )

    def _reject(self, why: str) -> LeaseGrant | None:
        """Drop a request (counted, logged): there is no answer to it."""
        self.rejected += 1
        log.warning("lease request dropped: %s", why)
        return None


def _ends(chains: dict[str, Chain]) -> dict[str, float]:
    """Per chain with a later chain of its gateway in the account: that later chain's start."""
    ends: dict[str, float] = {}
    by_gateway: dict[str, list[Chain]] = {}
    for chain in chains.values():
        by_gateway.setdefault(chain.gateway_id, []).append(chain)
    for own in by_gateway.values():
        own.sort(key=lambda c: c.started)
        for earlier, later in itertools.pairwise(own):
            ends[earlier.chain] = later.started
    return ends


def _within(records: list[InFlight], left: Decimal) -> list[InFlight]:
    """`records` passed on with a remainder of `left`: their caps, in order, add up to no more
    than it, so a settle never takes from the carry more than they brought to it."""
    passed = []
    for record in records:
        cap = min(record.cap, left)
        left -= cap
        if cap > 0:
            passed.append(InFlight(record.chain, record.commitment, record.estimate, cap))
    return passed


def _split(key: str) -> tuple[str, str]:
    scope, _, model = key.partition("|")
    return scope, model


def _not_its_chain(chain: Chain, request: LeaseRequest) -> str | None:
    """Why `request` may not act on `chain`, which its key names; None when it may."""
    if chain.gateway_id != request.gateway_id:
        return "a request names another gateway's chain"
    if chain.target != (request.scope, request.model):
        return "a request names its chain's target another way"
    return None
