"""The spend figure a successful proxy response carries for its key (`x-litellm-key-spend`).

As LiteLLM's own header, the figure is the key's spend after the call being answered: the call's
own cost (`response_cost`) is in it, counted once even if its event was already recorded. A
gateway does not read the totals: it knows what the enforcer last told it and what it recorded
itself. So the figure is an estimate, and `x-spendpipe-key-spend-basis` says what it is made of:

- with a figure from the enforcer for the key's own budget in its current window (the spend in a
  decision on `key:<hash>`, over all models, whose window has not reset): that figure, plus the
  cost of the calls this gateway recorded for the key in the minutes after the decision;
- without one: the cost of the calls this gateway recorded for the key since the start of the
  key's current window (its LiteLLM `budget_duration`, on the deployment's calendar), or since the
  gateway started if that is later, or if the key has no duration.

Other gateways' calls since the enforcer's figure are not in it, nor are this gateway's earlier
calls whose events were not built yet (a few milliseconds after their answer).

Costs are kept per key and minute for the last two hours, per quarter hour before that back to 32
days (the longest calendar window), and in one sum per key beyond: a busy key holds at most about
3,200 sums, not 46,000, and a response adds at most those. Every zone's offset is a whole number
of quarter hours, so a window's start is a quarter boundary and its figure is exact; a figure
counted from an instant inside an older quarter (the minute after an enforcer's decision hours
ago) starts at the next quarter, and the basis header says so.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.durations import Duration
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar

_KEPT_S = 32 * 86_400
_MINUTES_KEPT_S = 2 * 3600
_QUARTER_S = 900
_CALL_IDS_KEPT = 10_000


@dataclass(frozen=True)
class KeySpendFigure:
    spend: Decimal
    enforcer_at: datetime | None
    """When the enforcer's figure in `spend` was decided; None: none is in it."""
    gateway_since: datetime
    """This gateway's calls from this instant on are in `spend`."""

    def headers(self) -> dict[str, str]:
        basis = (
            f"enforcer at {_rfc3339(self.enforcer_at)} + this gateway since {_rfc3339(self.gateway_since)}"
            if self.enforcer_at is not None
            else f"this gateway since {_rfc3339(self.gateway_since)}"
        )
        return {"x-litellm-key-spend": format(self.spend, "f"), "x-spendpipe-key-spend-basis": basis}


class KeySpend:
    """This gateway's recorded cost per key hash and minute. Thread-safe: events are added on the
    publisher's thread, figures read on the event loop."""

    def __init__(self, *, calendar: Calendar = UTC_SUNDAY, clock: Callable[[], float] = time.time) -> None:
        self._calendar = calendar
        self._clock = clock
        self._started = int(clock())
        self._lock = threading.Lock()
        self._minutes: dict[str, dict[int, Decimal]] = {}
        self._quarters: dict[str, dict[int, Decimal]] = {}
        """Per key, the cost per quarter hour before `_minutes_from`."""
        self._minutes_from = _quarter(self._started)
        """Minutes before this are in `_quarters` (or folded): a quarter boundary."""
        self._folded: dict[str, Decimal] = {}
        """Per key, the cost of quarters older than `_KEPT_S`."""
        self._pruned = self._quarters_pruned = self._started
        self._recorded_calls: OrderedDict[str, None] = OrderedDict()
        """The latest calls recorded (LiteLLM call ids), so the call being answered is not counted twice."""

    def add(self, key_hash: str | None, cost: Decimal, occurred_at: datetime, call_id: str | None = None) -> None:
        if key_hash is None or cost == 0:
            return
        seconds = int(occurred_at.timestamp())
        minute = seconds - seconds % 60
        now = int(self._clock())
        with self._lock:
            if call_id:
                self._recorded_calls[call_id] = None
                if len(self._recorded_calls) > _CALL_IDS_KEPT:
                    self._recorded_calls.popitem(last=False)
            if minute >= self._minutes_from:
                _add(self._minutes.setdefault(key_hash, {}), minute, cost)
            else:  # a late event: straight into its quarter
                _add(self._quarters.setdefault(key_hash, {}), _quarter(minute), cost)
            if now - self._pruned >= 60:
                self._fold(now)
                self._pruned = now

    def _fold(self, now: int) -> None:
        """Minutes older than two hours into their quarters, quarters older than 32 days into
        the key's lifetime sum."""
        self._minutes_from = max(self._minutes_from, _quarter(now - _MINUTES_KEPT_S))
        for key_hash, minutes in self._minutes.items():
            for old in [m for m in minutes if m < self._minutes_from]:
                _add(self._quarters.setdefault(key_hash, {}), _quarter(old), minutes.pop(old))
        if now - self._quarters_pruned < 3600:  # a scan of every quarter: hourly is soon enough
            return
        self._quarters_pruned = now
        horizon = now - _KEPT_S
        for key_hash, quarters in self._quarters.items():
            for old in [q for q in quarters if q < horizon]:
                self._folded[key_hash] = self._folded.get(key_hash, Decimal(0)) + quarters.pop(old)

    def figure(
        self,
        key_hash: str,
        duration: Duration | None,
        decision: Decision | None,
        *,
        call: tuple[str | None, Decimal] = (None, Decimal(0)),
    ) -> KeySpendFigure:
        """The key's figure (module docstring). `decision`: the latest on the key's own budget, if
        any; `call`: the LiteLLM call id and cost of the call being answered."""
        call_id, cost = call
        with self._lock:
            current = Decimal(0) if call_id in self._recorded_calls else cost
        figure = self._recorded(key_hash, duration, decision)
        return KeySpendFigure(figure.spend + current, figure.enforcer_at, figure.gateway_since)

    def _recorded(self, key_hash: str, duration: Duration | None, decision: Decision | None) -> KeySpendFigure:
        now = self._clock()
        if decision is not None and _current(decision, now):
            assert decision.spend is not None
            own, since = self._since(key_hash, int(decision.decided_at.timestamp()) // 60 * 60 + 60)
            return KeySpendFigure(decision.spend + own, decision.decided_at, _at(since))
        if duration is None:  # everything this gateway recorded
            with self._lock:
                folded = self._folded.get(key_hash, Decimal(0))
            own, _ = self._since(key_hash, self._started)
            return KeySpendFigure(own + folded, None, _at(self._started))
        # a window older than the quarters kept is counted from their start
        start = max(self._started, duration.bounds(int(now), self._calendar)[0], _quarter(int(now) - _KEPT_S))
        own, since = self._since(key_hash, start)
        return KeySpendFigure(own, None, _at(since))

    def _since(self, key_hash: str, start: int) -> tuple[Decimal, int]:
        """This gateway's cost for the key from `start` on, and the instant it actually counts
        from: `start`, or the next quarter when `start` falls in an older quarter (see the
        module's docstring). From its own start, everything it recorded."""
        with self._lock:
            minutes = self._minutes.get(key_hash, {})
            quarters = self._quarters.get(key_hash, {})
            if start <= self._started:
                since, first_quarter = start, -1
            elif start >= self._minutes_from:
                since, first_quarter = start, self._minutes_from
            else:
                since = first_quarter = -(-start // _QUARTER_S) * _QUARTER_S
            own = sum((cost for at, cost in minutes.items() if at >= since - since % 60), Decimal(0))
            own += sum((cost for at, cost in quarters.items() if at >= first_quarter), Decimal(0))
            return own, since


def _quarter(seconds: int) -> int:
    return seconds - seconds % _QUARTER_S


def _add(sums: dict[int, Decimal], at: int, cost: Decimal) -> None:
    sums[at] = sums.get(at, Decimal(0)) + cost


def _current(decision: Decision, now: float) -> bool:
    """A budget figure on the key over all models whose window has not reset."""
    if decision.kind != "budget" or decision.model or decision.spend is None:
        return False
    return decision.expires_at is None or decision.expires_at.timestamp() > now


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
