"""Spend events for tests, and an independent reference for what their totals must be."""

import itertools
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.windows import Window, window_start

_counter = itertools.count()


def make_event(**overrides: Any) -> SpendEvent:
    n = next(_counter)
    values: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC),
        "key_hash": f"{n % 4:064x}",
        "user_id": f"user-{n % 3}",
        "team_id": f"team-{n % 2}",
        "org_id": "org-1",
        "end_user": f"customer-{n % 5}",
        "model": ("gpt-4o-mini", "claude-3-haiku")[n % 2],
        "prompt_tokens": 10 + n % 7,
        "completion_tokens": 20 + n % 11,
        "total_tokens": 30 + n % 7 + n % 11,
        "cost": Decimal("0.000123456789012345678") * (1 + n % 9),
        "gateway_id": "test-gateway",
    }
    values.update(overrides)
    return SpendEvent(**values)


def expected_spend(events: list[SpendEvent], window: Window) -> dict[tuple[str, str, str], Decimal]:
    """Spend per (scope_type, scope_id, model) summed over the window's starts, computed the
    plain way: one loop per event and scope, no batching, no rollup code from the service."""
    expected: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for event in events:
        window_start(window, int(event.occurred_at.timestamp()))  # every event falls in some window
        attributions = [("global", "")]
        if event.key_hash:
            attributions.append(("key", event.key_hash))
        if event.user_id:
            attributions.append(("user", event.user_id))
        if event.team_id:
            attributions.append(("team", event.team_id))
            if event.user_id:
                attributions.append(("team_member", f"{event.team_id}/{event.user_id}"))
        if event.org_id:
            attributions.append(("org", event.org_id))
        if event.end_user:
            attributions.append(("end_user", event.end_user))
        if event.provider:
            attributions.append(("provider", event.provider))
        tags = [t for t in dict.fromkeys(event.request_tags) if t and not re.fullmatch("<[+][0-9]+ more>", t)]
        attributions += [("tag", tag) for tag in tags[:32]]
        for scope_type, scope_id in attributions:
            for model in ("", event.model_group or event.model):
                expected[(scope_type, scope_id, model)] += event.cost
    return dict(expected)
