"""The enforcer's state: budgets and rate limits, the last decision per key, and turning
verdicts into versioned decisions. Blocking calls (ClickHouse); the service runs them on the
store thread.

A decision is published only when it changes what gateways should do: a new block, a block
with a different window, cap or expiry, or the lifting of a block. Versions grow per key and
never go back, also across restarts: the service first reads the decisions topic back. A
decision whose send failed is not taken back (Kafka may hold it): the service sends it again.
Nor is one decided by a call that raised afterwards (a later query of the same judgement): it is
the one in force, so it is kept for the service to send (`take_unsent`); otherwise, never sent
and never decided again (nothing changed), gateways would never hear of it.
"""

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Concatenate, ParamSpec, TypeVar

from spendpipe.contracts.alerts import BurnRateAlert, SoftBudgetAlert
from spendpipe.contracts.decisions import Decision, LatestDecisions, decision_key
from spendpipe.contracts.rate_limits import RateLimit
from spendpipe.contracts.scopes import Scope
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar
from spendpipe.enforcer.burn_rate import Projection, cap_projection, lookback_start
from spendpipe.enforcer.rate_reader import RateReader
from spendpipe.enforcer.rate_verdict import judge_rate
from spendpipe.enforcer.targets import BudgetBook, Target, direct_targets, soft_target
from spendpipe.enforcer.verdict import LIFETIME, Verdict, judge
from spendpipe.store.totals import Measurement, SpendTotals

Clock = Callable[[], float]
Projected = list[tuple[Measurement, Projection | None]]
"""A target's caps measured, each with its burn-rate projection (None: there is none)."""
_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ScopesJudged:
    """What `judge_scopes` measured and decided, passed on so the alerts that follow a flush read
    no spend a second time."""

    decisions: list[Decision]
    targets: list[Target]
    measured: list[list[Measurement]]
    """Each target's caps, measured at `now`."""
    soft: list[tuple[Scope, Measurement]]
    """Each scope with a soft budget, its soft budget measured at `now`."""
    now: float


class _Call(threading.local):
    """The deciding call running on this thread: how deep, and the keys it decided so far."""

    def __init__(self) -> None:
        self.depth = 0
        self.decided: list[str] = []


def _hands_over(method: "Callable[Concatenate[Enforcer, _P], _R]") -> "Callable[Concatenate[Enforcer, _P], _R]":
    """Marks a call that decides. When it raises, the decisions it made before (each already the
    one in force, `_decide`) go to `take_unsent`: the caller never got them to publish. A call
    within it (`judge_scopes` runs `evaluate_rates`) is part of it: the outermost ends the call."""

    @functools.wraps(method)
    def deciding(self: "Enforcer", /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        call = self._call
        call.depth += 1
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            with self._lock:
                self._unsent.update(call.decided)
            raise
        finally:
            call.depth -= 1
            if not call.depth:
                call.decided.clear()

    return deciding


class Enforcer:
    def __init__(
        self,
        *,
        book: BudgetBook,
        reader: SpendTotals,
        rates: RateReader,
        clock: Clock,
        burn_rate_lookback_minutes: int = 15,
        calendar: Calendar = UTC_SUNDAY,
    ) -> None:
        """`calendar`: the deployment's, the one `reader` reads its rows on."""
        self.book = book
        self._calendar = calendar
        self._lookback_minutes = burn_rate_lookback_minutes
        self._reader = reader
        self._rates = rates
        self._clock = clock
        self._lock = threading.Lock()
        self._last = LatestDecisions()
        self._alerted: set[str] = set()
        self._call = _Call()
        self._unsent: set[str] = set()
        """Keys whose decision in force a call decided and then raised before returning it."""

    def take_unsent(self) -> set[str]:
        """The keys whose decision in force was decided by a call that raised before returning it,
        once: the service publishes their decisions (`EnforcerService._reassert`)."""
        with self._lock:
            keys, self._unsent = self._unsent, set()
            return keys

    def remember(self, decision: Decision) -> None:
        """Take a decision read back from the topic (the highest version wins)."""
        with self._lock:
            self._last.offer(decision)

    def last(self, key: str) -> Decision | None:
        """The decision in force for `key`: the last published (or read back), if any."""
        with self._lock:
            return self._last.get(key)

    def blocks(self) -> list[Decision]:
        with self._lock:
            return [d for d in self._last if d.blocked]

    @_hands_over
    def evaluate_scopes(self, scopes: Iterable[Scope]) -> list[Decision]:
        return self.judge_scopes(scopes).decisions

    @_hands_over
    def judge_scopes(self, scopes: Iterable[Scope]) -> ScopesJudged:
        """Decide the scopes' budgets and rate limits. Their caps and soft budgets are measured in
        one query; the measurements are passed on for `alerts_after` (scopes without a budget of
        their own or a derived one cost no read)."""
        scopes = list(scopes)
        now = self._clock()
        targets = [t for scope in scopes for t in self.book.targets_for(scope)]
        softs = [(scope, target) for scope in scopes if (target := self._soft_target(scope)) is not None]
        measured = self._reader.measure_many(targets + [target for _, target in softs], int(now))
        decisions = self._decide_all(targets, measured[: len(targets)], now)
        decisions += self.evaluate_rates([limit for scope in scopes for limit in self._rate_limits(str(scope))])
        soft = [(scope, m) for (scope, _), (m,) in zip(softs, measured[len(targets) :], strict=True)]
        return ScopesJudged(decisions, targets, measured[: len(targets)], soft, now)

    def alerts_after(self, judged: ScopesJudged) -> tuple[list[SoftBudgetAlert], list[BurnRateAlert]]:
        """The soft-budget and burn-rate alerts of scopes just judged, from `judged`'s measurements:
        one query (each target's recent spend), none when no cap can burn."""
        soft = self._soft_alerts(judged.soft, judged.now)
        kept = [(t, m) for t, m in zip(judged.targets, judged.measured, strict=True) if not self._budget_blocked(t)]
        targets, measured = [t for t, _ in kept], [m for _, m in kept]
        return soft, self._burn_rate_alerts(targets, self._projected(targets, measured, int(judged.now)), judged.now)

    def _soft_target(self, scope: Scope) -> Target | None:
        budget = self.book.get(str(scope))
        return soft_target(budget) if budget else None

    @_hands_over
    def evaluate_all_budgets(self) -> list[Decision]:
        budgets = self.evaluate([t for budget in self.book for t in direct_targets(budget)])
        return budgets + self.evaluate_rates([limit for budget in self.book for limit in budget.rate_limits()])

    @_hands_over
    def evaluate_rates(self, limits: list[RateLimit]) -> list[Decision]:
        """Judge each limit on the sliding minute before now, across every gateway."""
        now = self._clock()
        changed = []
        for limit in limits:
            verdict = judge_rate(limit, self._rates.measure(limit, now))
            decision = self._decide(limit.scope, limit.model, verdict, now)
            if decision is not None:
                changed.append(decision)
        return changed

    def _rate_limits(self, scope: str) -> tuple[RateLimit, ...]:
        budget = self.book.get(scope)
        return budget.rate_limits() if budget is not None else ()

    @_hands_over
    def evaluate_due(self) -> list[Decision]:
        """Re-judge every block whose window has reset: the reset needs no traffic."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        return self._rejudge([d for d in self.blocks() if d.expires_at is not None and d.expires_at <= now])

    @_hands_over
    def reconcile(self) -> list[Decision]:
        """Re-judge every block against the budgets as they are now; lift those no budget
        supports any more. Run after budget changes: a raised `max_budget_in_team`, a changed
        `max_end_user_budget` or a model taken out of `model_max_budget` touch blocks of scopes
        other than the budget's own, which send no traffic while they are blocked."""
        return self._rejudge(self.blocks())

    def _rejudge(self, blocks: list[Decision]) -> list[Decision]:
        spend_blocks = [d for d in blocks if d.kind == "budget"]
        targets = [t for d in spend_blocks for t in self.book.targets_for(Scope.parse(d.scope)) if t.model == d.model]
        limits = [r for d in blocks if d.kind == "rate_limit" for r in self._rate_limits(d.scope) if r.model == d.model]
        judged = {decision_key(str(t.scope), t.model) for t in targets}
        judged |= {decision_key(r.scope, r.model, "rate_limit") for r in limits}
        orphans = [d for d in blocks if d.key not in judged]
        rejudged = self.evaluate(targets) + self.evaluate_rates(limits)
        return rejudged + self.lift(orphans, "its budget no longer applies")

    def soft_budget_alerts(self, scopes: Iterable[Scope]) -> list[SoftBudgetAlert]:
        """An alert for each scope whose spend reached its soft budget in the current window,
        once per window."""
        now = self._clock()
        softs = [(scope, target) for scope in scopes if (target := self._soft_target(scope)) is not None]
        measured = self._reader.measure_many([target for _, target in softs], int(now))
        return self._soft_alerts([(scope, m) for (scope, _), (m,) in zip(softs, measured, strict=True)], now)

    def _soft_alerts(self, soft: list[tuple[Scope, Measurement]], now: float) -> list[SoftBudgetAlert]:
        alerts = []
        for scope, measured in soft:
            if measured.spend < measured.cap.limit:
                continue
            duration = measured.cap.duration
            start, end = duration.bounds(int(now), self._calendar) if duration else (None, None)
            alert = SoftBudgetAlert(
                scope=str(scope),
                soft_budget=measured.cap.limit,
                spend=measured.spend,
                window=str(duration) if duration else LIFETIME,
                window_start=datetime.fromtimestamp(start, UTC) if start is not None else None,
                window_end=datetime.fromtimestamp(end, UTC) if end is not None else None,
                alerted_at=datetime.fromtimestamp(now, UTC),
            )
            if self._first_time(alert.key):
                alerts.append(alert)
        return alerts

    def burn_rate_alerts(self, scopes: Iterable[Scope]) -> list[BurnRateAlert]:
        """An alert for each cap that the scope's current spend rate reaches before the cap's
        window resets, once per window per cap; none for a target whose budget block is in force."""
        now = self._clock()
        targets = [t for scope in scopes for t in self.book.targets_for(scope) if not self._budget_blocked(t)]
        return self._burn_rate_alerts(targets, self.project(targets, int(now)), now)

    def _burn_rate_alerts(self, targets: list[Target], projected: list[Projected], now: float) -> list[BurnRateAlert]:
        alerts = []
        for target, caps in zip(targets, projected, strict=True):
            for measured, projection in caps:
                if projection is None or not projection.before_reset or projection.exhausted_at is None:
                    continue
                alert = _burn_rate_alert(target, measured, projection, now, self._calendar)
                if self._first_time(alert.key):
                    alerts.append(alert)
        return alerts

    def _first_time(self, alert_key: str) -> bool:
        """Whether no alert went out yet on `alert_key` (which names its window); counts it."""
        with self._lock:
            if alert_key in self._alerted:
                return False
            self._alerted.add(alert_key)
            return True

    def _budget_blocked(self, target: Target) -> bool:
        keys = {decision_key(str(target.scope), target.model), decision_key(str(target.scope), "")}
        return any(d is not None and d.blocked for d in map(self.last, keys))

    def project(self, targets: list[Target], now: int) -> list[Projected]:
        """Each target's caps measured at `now`, with their burn-rate projections: two queries
        (the windows' spend, and every target's spend over the lookback's minutes)."""
        return self._projected(targets, self._reader.measure_many(targets, now), now)

    def _projected(self, targets: list[Target], measured: list[list[Measurement]], now: int) -> list[Projected]:
        """The projections of caps measured at `now`: one query, none when no cap has a window."""
        since = lookback_start(0, now, self._lookback_minutes)
        windowed = [t for t, caps in zip(targets, measured, strict=True) if any(m.end is not None for m in caps)]
        recent = {}
        if windowed:
            recent = dict(zip(map(id, windowed), self._reader.spent_since(windowed, since), strict=True))
        return [
            [(m, cap_projection(m, recent.get(id(t), Decimal(0)), since, now, self._calendar)) for m in measurements]
            for t, measurements in zip(targets, measured, strict=True)
        ]

    def project_budgets(self) -> list[tuple[Target, Projected]]:
        """Every budget's own targets with each cap's spend in its current window and its burn-rate
        projection (derived targets, team members and end customers, are not included: there is
        no bound on how many there are)."""
        targets = [t for budget in self.book for t in direct_targets(budget)]
        return list(zip(targets, self.project(targets, int(self._clock())), strict=True))

    def remember_alert(self, key: str) -> None:
        with self._lock:
            self._alerted.add(key)

    @_hands_over
    def evaluate(self, targets: list[Target]) -> list[Decision]:
        now = self._clock()
        return self._decide_all(targets, self._reader.measure_many(targets, int(now)), now)  # one query

    def _decide_all(self, targets: list[Target], measured: list[list[Measurement]], now: float) -> list[Decision]:
        changed = []
        for target, measurements in zip(targets, measured, strict=True):
            verdict = judge(target, measurements)
            decision = self._decide(str(target.scope), target.model, verdict, now)
            if decision is not None:
                changed.append(decision)
        return changed

    @_hands_over
    def lift(self, blocks: list[Decision], why: str) -> list[Decision]:
        now = self._clock()
        lifted = [self._decide(d.scope, d.model, Verdict(False, f"unblocked: {why}", kind=d.kind), now) for d in blocks]
        return [d for d in lifted if d is not None]

    def _decide(self, scope: str, model: str, verdict: Verdict, now: float) -> Decision | None:
        assert self._call.depth, "decided outside a call that hands its decisions over (@_hands_over)"
        key = decision_key(scope, model, verdict.kind)
        expires = datetime.fromtimestamp(verdict.expires_at, UTC) if verdict.expires_at else None
        with self._lock:
            last = self._last.get(key)
            if last is None and not verdict.blocked:
                return None
            if last is not None and (last.blocked, last.window, last.cap, last.expires_at, last.rate_limit_type) == (
                verdict.blocked,
                verdict.window,
                verdict.cap,
                expires,
                verdict.rate_limit_type,
            ):
                return None
            decision = Decision(
                scope=scope,
                model=model,
                kind=verdict.kind,
                rate_limit_type=verdict.rate_limit_type,
                version=max(int(now * 1_000_000), last.version + 1 if last else 0),
                blocked=verdict.blocked,
                reason=verdict.reason,
                window=verdict.window,
                spend=verdict.spend,
                cap=verdict.cap,
                expires_at=expires,
                decided_at=datetime.fromtimestamp(now, UTC),
            )
            self._last.offer(decision)  # its version is above the last one's
            self._call.decided.append(key)
            return decision


def _burn_rate_alert(
    target: Target, measured: Measurement, projection: Projection, now: float, calendar: Calendar
) -> BurnRateAlert:
    assert measured.cap.duration is not None  # a lifetime cap has no projection
    assert projection.exhausted_at is not None  # alerted only on a rate above zero
    start, end = measured.cap.duration.bounds(int(now), calendar)
    return BurnRateAlert(
        scope=str(target.scope),
        model=target.model,
        cap=measured.cap.limit,
        spend=measured.spend,
        rate_per_second=projection.rate,
        lookback_start=datetime.fromtimestamp(projection.since, UTC),
        projected_exhaustion_at=datetime.fromtimestamp(float(projection.exhausted_at), UTC),
        window=str(measured.cap.duration),
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(end, UTC),
        alerted_at=datetime.fromtimestamp(now, UTC),
    )
