"""Kafka topic names. Defaults here; every service takes them from its settings."""

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, Field

TYPE_HEADER = "spendpipe-type"
"""Kafka header naming a message's versioned type (`spendpipe.decision.v1`...), apart from its encoding."""


def message_type(headers: Sequence[tuple[str, bytes | None]] | None) -> str:
    """The versioned type a record's headers name; '' when they name none. A topic that carries
    several types (`spend.alerts`) is read by dispatching on this."""
    return next((header_text(value) for name, value in headers or () if name == TYPE_HEADER), "")


def header_text(value: bytes | None) -> str:
    """A header's value as text, as written (bytes that are not UTF-8 replaced); '' for a header
    without a value, which Kafka allows, so whoever writes a topic can send one."""
    return value.decode(errors="replace") if isinstance(value, bytes) else ""


TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]
"""Kafka's own rule for topic names: ASCII letters, digits, '.', '_' and '-', at most 249."""


class Topics(BaseModel):
    """The topics spendpipe reads and writes. Names are configurable (`SPENDPIPE_TOPICS__EVENTS`...)."""

    events: TopicName = "spend.events"
    """`SpendEvent` JSON, keyed by key hash. Written by gateways, read by the aggregator."""

    events_dead_letter: TopicName = "spend.events.dlq"
    """Messages the aggregator could not use: the original bytes, the reason in headers."""

    flushes: TopicName = "spend.flushes"
    """`ScopesFlushed` announcements: which scopes' totals changed in a committed flush."""

    decisions: TopicName = "spend.decisions"
    """Block/unblock `Decision`s (compacted, keyed by scope), written by the enforcer."""

    budgets: TopicName = "spend.budgets"
    """Budgets (compacted, keyed by scope), written by `spendpipe budgets` and the Python API."""

    declared_budgets: TopicName = "spend.budgets.declared"
    """Budgets LiteLLM declares on its virtual keys (compacted, keyed by scope), published by the
    gateways that see them; the enforcer applies one where no budget of `budgets` is set."""

    alerts: TopicName = "spend.alerts"
    """`SoftBudgetAlert`s: a scope reached its soft budget, once per window."""

    sessions: TopicName = "spend.sessions"
    """`SessionRecord`s: the admission log of capped agent sessions, keyed by agent and session,
    written and read by every gateway."""

    lease_requests: TopicName = "spend.lease_requests"
    """`LeaseRequest`s: gateways ask for (or return) slices of a budget's headroom."""

    leases: TopicName = "spend.leases"
    """`LeaseGrant`s, signed by the enforcer: the slices of headroom each gateway may spend."""
