"""Judging one target: pure, no I/O. Blocked exactly when some cap's spend has reached it.

"No false blocks" (docs/architecture.md, guarantee 8) is this function's contract: a target whose spend
is under every cap is never blocked. A block lasts until the last exceeded window resets; a
lifetime cap holds until the budget changes.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.contracts.decisions import DecisionKind
from spendpipe.contracts.rate_limits import RateLimitType
from spendpipe.enforcer.targets import Target
from spendpipe.store.totals import Measurement

LIFETIME = "lifetime"


@dataclass(frozen=True)
class Verdict:
    blocked: bool
    reason: str
    window: str | None = None
    spend: Decimal | None = None
    cap: Decimal | None = None
    expires_at: float | None = None
    kind: DecisionKind = "budget"
    rate_limit_type: RateLimitType | None = None


def judge(target: Target, measurements: list[Measurement]) -> Verdict:
    exceeded = [m for m in measurements if m.spend >= m.cap.limit]
    if not exceeded:
        return Verdict(False, f"within the {target.source}")
    lifetime = [m for m in exceeded if m.end is None]
    decisive = lifetime[0] if lifetime else max(exceeded, key=lambda m: m.end or 0)
    window = str(decisive.cap.duration) if decisive.cap.duration else LIFETIME
    what = f"{target.scope}" + (f" on model {target.model}" if target.model else "")
    resets = (
        f"resets at {datetime.fromtimestamp(decisive.end, UTC):%Y-%m-%dT%H:%M:%SZ}"
        if decisive.end is not None
        else "does not reset"
    )
    over = "over its lifetime" if window == LIFETIME else f"per {window}"
    reason = (
        f"Budget has been exceeded! {what}: current cost {decisive.spend.normalize():f}, "
        f"max budget {decisive.cap.limit.normalize():f} {over} ({target.source}); {resets}"
    )
    return Verdict(True, reason, window, decisive.spend, decisive.cap.limit, decisive.end)
