"""The BudgetManager's rules without I/O: the user's label, the ledger's reconciliation (each
event counted once, before and after the totals include it), and the reset marker's reads."""

import concurrent.futures
from decimal import Decimal
from pathlib import Path
from typing import Any

import litellm
import pytest

from spendpipe.budget_manager import BudgetManager, BudgetManagerSettings
from spendpipe.budget_manager.ledger import Pending, SpendLedger
from spendpipe.budget_manager.manager import _scope
from spendpipe.budget_manager.user_spend import UserSpend
from spendpipe.contracts.budgets import Budget, Cap, SpendReset
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.windows import Window
from spendpipe.gateway.labels import label_of
from spendpipe.store.totals import grain, spent_before_reset

LONG_USER = "user-" + "u" * 400
NOON = 1_764_590_400  # 2025-12-01 12:00:00 UTC
CENT = Decimal("0.01")


class Totals:
    """What `spend_totals` answers: per-model spend and the events topic's watermarks."""

    def __init__(self) -> None:
        self.spend: dict[str, Decimal] = {}
        self.watermarks: dict[int, int] = {}
        self.events: list[tuple[str, int, int]] = []
        self.reads = 0

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        if "FROM events" in sql:
            return [], [row for row in self.events if row[0] in (parameters or {})["ids"]]
        self.reads += 1
        rows = [[0, model, spend, 0] for model, spend in self.spend.items()]
        return [], rows + [[1, f"events:{p}", 0, offset] for p, offset in self.watermarks.items()]


def spend_of(totals: Totals, ledger: SpendLedger, budget: Budget, max_age_s: float = 0) -> Decimal:
    view = UserSpend(sql=totals, ledger=ledger, events_topic="events", max_age_s=max_age_s, clock=lambda: NOON)
    return sum(view.by_model("alice", budget).values(), Decimal(0))


DAILY = Budget(scope="user:alice", max_budget=Decimal(10), budget_duration="1d")


def test_a_recorded_event_counts_once_before_and_after_the_totals_include_it() -> None:
    totals, ledger = Totals(), SpendLedger()
    totals.watermarks = {0: 41}
    ledger.add(Pending("e1", "alice", "gpt-4o", CENT, NOON, position=(0, 42)))

    assert spend_of(totals, ledger, DAILY) == CENT  # from the ledger: the totals lack it
    totals.spend, totals.watermarks = {"gpt-4o": CENT}, {0: 42}
    assert spend_of(totals, ledger, DAILY) == CENT  # from the totals: not twice
    assert len(ledger) == 0


def test_an_event_on_another_partition_is_not_taken_as_included() -> None:
    totals, ledger = Totals(), SpendLedger()
    totals.watermarks = {0: 100}
    ledger.add(Pending("e1", "alice", "gpt-4o", CENT, NOON, position=(1, 7)))
    assert spend_of(totals, ledger, DAILY) == CENT
    assert len(ledger) == 1


def test_a_spooled_event_is_placed_from_the_events_table() -> None:
    totals, ledger = Totals(), SpendLedger()
    ledger.add(Pending("e1", "alice", "gpt-4o", CENT, NOON))
    assert spend_of(totals, ledger, DAILY) == CENT  # no position yet: not in any totals
    totals.events, totals.spend, totals.watermarks = [("e1", 2, 9)], {"gpt-4o": CENT}, {2: 9}
    assert spend_of(totals, ledger, DAILY) == CENT
    assert len(ledger) == 0


def test_totals_are_reused_within_their_age_and_the_ledger_still_adds() -> None:
    totals, ledger = Totals(), SpendLedger()
    view = UserSpend(sql=totals, ledger=ledger, events_topic="events", max_age_s=60, clock=lambda: NOON)
    view.by_model("alice", DAILY)
    ledger.add(Pending("e1", "alice", "gpt-4o", CENT, NOON, position=(0, 1)))
    assert view.by_model("alice", DAILY) == {"gpt-4o": CENT}
    assert totals.reads == 1


def test_a_reset_reads_the_minutes_from_it_less_what_its_minute_held() -> None:
    minute = NOON - NOON % 60
    reset = SpendReset(at=minute, spent_before=CENT, model_spent_before={"gpt-4o": CENT})
    cap = Cap(parse_duration("1d"), Decimal(10), reset)
    assert grain(cap, NOON + 5) == (Window.MINUTE, minute, NOON - NOON % 86_400 + 86_400, NOON - NOON % 86_400 + 86_400)
    assert spent_before_reset(cap, "", NOON) == CENT
    assert spent_before_reset(cap, "gpt-4o", NOON) == CENT
    tomorrow = NOON + 86_400
    assert grain(cap, tomorrow).rows is Window.DAY  # a new window started after the reset
    assert spent_before_reset(cap, "", tomorrow) == 0


def test_a_budget_reset_reaches_the_enforcers_caps() -> None:
    reset = SpendReset(at=NOON - NOON % 60)
    budget = Budget(
        scope="user:alice",
        max_budget=Decimal(1),
        budget_limits=[{"budget_duration": "7d", "max_budget": 5}],
        spend_reset=reset,
    )
    assert [cap.reset for cap in budget.hard_caps()] == [reset, reset]


def test_the_ledger_and_the_reset_offset_agree_on_an_unconfirmed_event() -> None:
    """An event of the reset minute still in the ledger is in the offset too: zero, not less."""
    totals, ledger = Totals(), SpendLedger()
    ledger.add(Pending("e1", "alice", "gpt-4o", CENT, NOON))
    reset = SpendReset(at=NOON - NOON % 60, spent_before=CENT, model_spent_before={"gpt-4o": CENT})
    assert spend_of(totals, ledger, DAILY.model_copy(update={"spend_reset": reset})) == 0


def test_a_long_users_cost_is_recorded_under_its_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = BudgetManager("app", settings=BudgetManagerSettings(spool_dir=str(tmp_path)), sql=Totals())
    sent: list[SpendEvent] = []

    def send(event: SpendEvent) -> "concurrent.futures.Future[tuple[int, int]]":
        sent.append(event)
        done: concurrent.futures.Future[tuple[int, int]] = concurrent.futures.Future()
        done.set_result((0, 1))
        return done

    monkeypatch.setattr(manager._sender, "send", send)
    manager._budgets.wrote(Budget(scope=_scope(LONG_USER), max_budget=Decimal(1)))
    response = litellm.ModelResponse(model="gpt-4o", usage={"prompt_tokens": 5, "completion_tokens": 3})

    updated = manager.update_cost(user=LONG_USER, completion_obj=response)

    (event,) = sent
    assert event.user_id == label_of(LONG_USER)
    assert event.cost > 0
    assert updated["user"]["current_cost"] == float(event.cost)
    assert _scope(LONG_USER) == f"user:{label_of(LONG_USER)}"


def test_a_user_without_an_id_is_refused() -> None:
    with pytest.raises(ValueError, match="a user needs an id"):
        _scope("  ")
