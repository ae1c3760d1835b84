"""The gateways' call logs, merged: how much each system admitted past the cap, and when."""

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from spendpipe.contracts.money import cost_from_float


@dataclass(frozen=True)
class Call:
    system: str
    admitted_at: float
    """Wall-clock time of the gate's answer (every gateway runs on this machine: one clock)."""
    done_at: float
    """When the call's cost was incurred, or when it was refused."""
    cost: Decimal
    admitted: bool


def read_calls(paths: Iterable[Path]) -> list[Call]:
    calls = []
    for path in paths:
        with path.open(newline="") as lines:
            for row in csv.DictReader(lines):
                calls.append(
                    Call(
                        system=row["system"],
                        admitted_at=float(row["admitted_at"]),
                        done_at=float(row["done_at"]),
                        cost=cost_from_float(float(row["cost"])),
                        admitted=row["admitted"] == "1",
                    )
                )
    return calls


@dataclass(frozen=True)
class Outcome:
    """One system in one run."""

    admitted: Decimal
    past_cap: Decimal
    """Admitted spend beyond the cap: the part of the call that crossed it and every call after."""
    dollars_per_s: Decimal
    """The rate spend flowed at until the cap: the cap over the time it took to cross it (what the
    gateways actually sent, should a loaded machine keep them behind their schedule)."""
    crossed_at: float | None
    """Seconds into the run at which the cumulative admitted spend passed the cap."""
    last_admitted_at: float
    first_refused_at: float | None
    """Seconds into the run of the first refused call: when the gateways started to refuse."""
    curve: list[tuple[float, float]]
    """(seconds into the run, cumulative admitted $) per admitted call, in the order costs were incurred."""

    @property
    def seconds_past_cap(self) -> float:
        return float(self.past_cap / self.dollars_per_s) if self.dollars_per_s else 0.0


def outcome(calls: list[Call], *, cap: Decimal, start: float) -> Outcome:
    admitted = sorted((c for c in calls if c.admitted), key=lambda c: c.done_at)
    total, crossed_at, curve = Decimal(0), None, []
    for call in admitted:
        total += call.cost
        curve.append((call.done_at - start, float(total)))
        if crossed_at is None and total > cap:
            crossed_at = call.done_at - start
    curve.append((max((c.done_at - start for c in calls), default=0.0), float(total)))  # flat to the run's end
    return Outcome(
        admitted=total,
        past_cap=max(Decimal(0), total - cap),
        dollars_per_s=cap / Decimal(repr(crossed_at)) if crossed_at else Decimal(0),
        crossed_at=crossed_at,
        last_admitted_at=max((c.admitted_at - start for c in admitted), default=0.0),
        first_refused_at=min((c.admitted_at - start for c in calls if not c.admitted), default=None),
        curve=curve,
    )
