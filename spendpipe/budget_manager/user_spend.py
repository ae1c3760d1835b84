"""A user's spend in its budget's current window, as `BudgetManager` answers it: the pipeline's
confirmed totals (one snapshot per user, reused for up to `max_age_s`) plus what the ledger
holds that the snapshot does not include, less what the budget's reset leaves out.

Order of a refresh: the positions of spooled events are looked up in `events` first, then the
snapshot is read. The aggregator writes `events` after the totals that count them, so a
position found is one the later snapshot's watermark covers.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from spendpipe.budget_manager.ledger import SpendLedger
from spendpipe.contracts.budgets import Budget, Cap
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar
from spendpipe.store.calendar import check_calendar
from spendpipe.store.sql_endpoint.client import SqlSource
from spendpipe.store.totals import ModelSpend, SpendTotals, grain, spent_before_reset

Clock = Callable[[], float]
_MINUTE = Cap(parse_duration("1m"), Decimal(0))


@dataclass(frozen=True)
class _Cached:
    key: tuple[object, ...]
    read_at: float
    snapshot: ModelSpend


class UserSpend:
    def __init__(
        self,
        *,
        sql: SqlSource,
        ledger: SpendLedger,
        events_topic: str,
        max_age_s: float,
        clock: Clock,
        calendar: Calendar | None = None,
    ) -> None:
        """`calendar`: the deployment's; checked against the store's at the first read (None:
        UTC and Sunday, unchecked, for a source that is not a spendpipe store)."""
        self._sql = sql
        self._calendar = calendar or UTC_SUNDAY
        self._totals = SpendTotals(sql=sql, calendar=self._calendar)
        self._calendar_checked = calendar is None
        self._ledger = ledger
        self._events_topic = events_topic
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}

    def by_model(self, user: str, budget: Budget) -> dict[str, Decimal]:
        """The user's exact spend per model under `budget`'s `max_budget` window."""
        cap = user_cap(budget)
        now = int(self._clock())
        rows = grain(cap, now, self._calendar)
        snapshot = self._snapshot(user, cap, now, (rows.rows, rows.start, rows.end))
        spend = _plus(snapshot.spend, self._ledger.not_in(user, snapshot.watermarks, rows.start, rows.end))
        spend = {model: cost - spent_before_reset(cap, model, now, self._calendar) for model, cost in spend.items()}
        return {model: cost for model, cost in spend.items() if cost > 0}

    def in_minute(self, user: str, minute: int) -> dict[str, Decimal]:
        """The user's spend per model in the minute starting at `minute`, read fresh."""
        with self._lock:
            snapshot = self._read(user, _MINUTE, minute)
        return _plus(snapshot.spend, self._ledger.not_in(user, snapshot.watermarks, minute, minute + 60))

    def _snapshot(self, user: str, cap: Cap, now: int, key: tuple[object, ...]) -> ModelSpend:
        with self._lock:  # one refresh at a time: the cache never goes back to an older snapshot
            cached = self._cache.get(user)
            if cached is not None and cached.key == key and time.monotonic() - cached.read_at < self._max_age_s:
                return cached.snapshot
            read_at = time.monotonic()
            snapshot = self._read(user, cap, now)
            self._cache[user] = _Cached(key, read_at, snapshot)
            return snapshot

    def _read(self, user: str, cap: Cap, now: int) -> ModelSpend:
        """A fresh snapshot; the ledger drops what it includes, so the user's cached snapshot,
        older, goes too. Called with `_lock` held."""
        if not self._calendar_checked:
            check_calendar(self._sql, self._calendar)  # CalendarMismatchError: the totals are on another calendar
            self._calendar_checked = True
        self._place_spooled(user)
        snapshot = self._totals.by_model(user_scope_of(user), cap, now, events_topic=self._events_topic)
        self._ledger.confirm(user, snapshot.watermarks)
        self._cache.pop(user, None)
        return snapshot

    def _place_spooled(self, user: str) -> None:
        unplaced = self._ledger.unplaced(user)
        if not unplaced:
            return
        _, rows = self._sql.query(
            "SELECT toString(event_id), kafka_partition, kafka_offset FROM events "
            "WHERE has({ids:Array(UUID)}, event_id)",
            {"ids": unplaced},
        )
        for event_id, partition, offset in rows:
            self._ledger.place(str(event_id), int(partition), int(offset))


def user_cap(budget: Budget) -> Cap:
    """The cap `get_current_cost` reads: `max_budget` over `budget_duration`, from the reset on."""
    duration = parse_duration(budget.budget_duration) if budget.budget_duration else None
    return Cap(duration, budget.max_budget or Decimal(0), budget.spend_reset)


def user_scope_of(user: str) -> Scope:
    return Scope(ScopeType.USER, user)


def _plus(a: dict[str, Decimal], b: dict[str, Decimal]) -> dict[str, Decimal]:
    total = dict(a)
    for model, cost in b.items():
        total[model] = total.get(model, Decimal(0)) + cost
    return total
