"""Building a `SpendEvent` from what LiteLLM hands a callback.

The source is `kwargs["standard_logging_object"]`, LiteLLM's own normalised record of a
call, so SDK and proxy mode give the same event. Who made the call (the key's hash, never the
key; user, team, organisation, end customer, agent, session, tags, provider) is read by
`RequestIdentity`.

Every other label (key alias, model, provider, call type, error class, tags) goes through
`labels.py` too, so no value a client chose can make the event invalid. If an event still cannot
be built, `fallback_spend_event` charges the call's cost to the key, user, team and organisation
alone: the plugin publishes that and counts the full event as lost.

A call LiteLLM served but could not price (no price for the model it priced it under) is recorded
at cost 0, as LiteLLM records it, and counted (`spendpipe_gateway_unpriced_calls_total`): a
deployment of a model LiteLLM has no price for needs one in the proxy's config.
"""

import hashlib
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from spendpipe.contracts.events import MAX_EVENT_COST, SpendEvent
from spendpipe.contracts.money import cost_from_float
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.labels import label_of, model_label
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.platform.first_logged import FirstLogged

log = logging.getLogger(__name__)

MOST_UNPRICED_LOGGED = 20
"""Unpriced calls a process logs; `spendpipe_gateway_unpriced_calls_total` counts them all."""


def build_spend_event(
    kwargs: Mapping[str, Any],
    *,
    gateway_id: str,
    fallback_id: str | None = None,
    recorded_at: datetime | None = None,
) -> SpendEvent | None:
    """The event for one finished call, or None when LiteLLM gave no standard logging object.
    `fallback_id` is the event id of a call that names neither its call id nor its response id
    (a random one without it), and `recorded_at` the time of a call that names neither its start
    nor its end (now without it): the subprocess publisher passes ones that stay the same when a
    record is sent to it again, so a resent call builds the same event."""
    record = kwargs.get("standard_logging_object")
    if not isinstance(record, Mapping):
        return None
    metadata = _mapping(record.get("metadata"))
    who = RequestIdentity.of_logged_call(kwargs)
    cache_hit = bool(record.get("cache_hit"))
    start, end = _as_float(record.get("startTime")), _as_float(record.get("endTime"))
    return SpendEvent(
        event_id=_event_id(record, fallback_id),
        occurred_at=datetime.fromtimestamp(end or start, UTC) if end or start else recorded_at or datetime.now(UTC),
        key_hash=who.key_hash,
        key_alias=label_of(metadata.get("user_api_key_alias")),
        user_id=who.user_id,
        team_id=who.team_id,
        org_id=who.org_id,
        end_user=who.end_user,
        model=model_label(record.get("model")),
        model_group=label_of(record.get("model_group")),
        provider=who.provider,
        call_type=label_of(record.get("call_type")),
        prompt_tokens=int(record.get("prompt_tokens") or 0),
        completion_tokens=int(record.get("completion_tokens") or 0),
        total_tokens=int(record.get("total_tokens") or 0),
        cost=_cost(record),
        cache_hit=cache_hit,
        status="failure" if record.get("status") == "failure" else "success",
        error_class=_error_class(record),
        latency_ms=max(0.0, (end - start) * 1000.0) if start and end else 0.0,
        request_tags=who.tags,
        gateway_id=gateway_id,
        agent_id=who.agent_id,
        session_id=who.session_id,
    )


def fallback_spend_event(
    kwargs: Mapping[str, Any],
    *,
    gateway_id: str,
    fallback_id: str | None = None,
    recorded_at: datetime | None = None,
) -> SpendEvent:
    """The least event that still charges a call whose full event could not be built: its cost
    against the key, user, team and organisation (and so their team membership and global), at
    `recorded_at` (now without it), with the full event's id so a repeated callback is still one
    event. Raises if even this cannot be built (no standard logging object, or a cost that is not
    an amount)."""
    record = kwargs.get("standard_logging_object")
    if not isinstance(record, Mapping):
        raise ValueError("no standard_logging_object")
    who = RequestIdentity.of_logged_call(kwargs)
    return SpendEvent(
        event_id=_event_id(record, fallback_id),
        occurred_at=recorded_at or datetime.now(UTC),
        key_hash=who.key_hash,
        user_id=who.user_id,
        team_id=who.team_id,
        org_id=who.org_id,
        model=model_label(None),
        cost=_cost(record),
        gateway_id=gateway_id,
    )


class Recorded(NamedTuple):
    """What the gateway process keeps of an event it recorded (`SpendpipeLogger.account`)."""

    key_hash: str | None
    cost: Decimal
    occurred_at: datetime
    call_id: str | None

    @classmethod
    def of(cls, event: SpendEvent, call: Mapping[str, Any]) -> "Recorded":
        call_id = call.get("litellm_call_id")
        return cls(event.key_hash, event.cost, event.occurred_at, call_id if isinstance(call_id, str) else None)


def event_or_fallback(
    call: Mapping[str, Any],
    *,
    gateway_id: str,
    metrics: GatewayMetrics,
    fallback_id: str | None = None,
    recorded_at: datetime | None = None,
) -> SpendEvent | None:
    """The call's event; a call whose full event cannot be built is still charged by its fallback
    event (`events_lost{reason="unbuildable"}`), or, if not even that can be built, by nothing
    (`reason="uncharged"`). None when there is no event to publish (each case counted and logged).
    `fallback_id`, `recorded_at`: as `build_spend_event` takes them."""
    try:
        event = build_spend_event(call, gateway_id=gateway_id, fallback_id=fallback_id, recorded_at=recorded_at)
    except Exception:
        log.exception("spendpipe could not build the spend event of call %s", _call_id(call))
    else:
        if event is None:
            metrics.build_errors.inc()
            log.warning("spendpipe: call %s has no standard_logging_object", _call_id(call))
        elif _unpriced(call["standard_logging_object"]):
            metrics.unpriced.inc()
            _UNPRICED.error(
                "spendpipe: LiteLLM could not price call %s of model %s (provider %s); it is recorded at cost 0",
                _call_id(call),
                event.model,
                event.provider,
            )
        return event
    metrics.build_errors.inc()
    try:
        fallback = fallback_spend_event(call, gateway_id=gateway_id, fallback_id=fallback_id, recorded_at=recorded_at)
    except Exception:
        metrics.lost.labels(reason="uncharged").inc()
        log.exception("spendpipe lost call %s: its cost is charged to no scope", _call_id(call))
        return None
    metrics.lost.labels(reason="unbuildable").inc()
    log.error(
        "spendpipe lost the event of call %s: %s charged to its key, user, team and org only",
        _call_id(call),
        fallback.cost,
    )
    return fallback


_UNPRICED = FirstLogged(log, MOST_UNPRICED_LOGGED)


def _unpriced(record: Mapping[str, Any]) -> bool:
    """A call served with tokens that LiteLLM left without a cost (it has no price for the model
    it priced the call under), not a cache hit (free by design) or a failure."""
    if record.get("response_cost") is not None or record.get("cache_hit") or record.get("status") == "failure":
        return False
    return any(
        type(tokens) is int and tokens > 0 for tokens in (record.get("prompt_tokens"), record.get("completion_tokens"))
    )


def _call_id(call: Mapping[str, Any]) -> str:
    return str(call.get("litellm_call_id", "?"))


def charged_cost(kwargs: Mapping[str, Any]) -> Decimal | None:
    """What the call's event (full or fallback) charges, read without building it: for the hook
    that settles a capped session's call. None when the call is charged to nothing (no standard
    logging object, or a cost that is not an amount the contract takes)."""
    record = kwargs.get("standard_logging_object")
    if not isinstance(record, Mapping):
        return None
    try:
        cost = _cost(record)
    except (TypeError, ValueError, ArithmeticError):
        return None
    return cost if cost.is_finite() and 0 <= cost <= MAX_EVENT_COST else None


class CallOutcome(NamedTuple):
    """What settling a call needs of its event, read from the logged call without building it."""

    status: str
    billed_model: str
    completion_tokens: int
    cost: Decimal


def call_outcome(kwargs: Mapping[str, Any]) -> CallOutcome | None:
    """The outcome of a logged call, or None when it is charged to nothing (`charged_cost`)."""
    cost = charged_cost(kwargs)
    if cost is None:
        return None
    record = _mapping(kwargs.get("standard_logging_object"))
    tokens = record.get("completion_tokens")
    return CallOutcome(
        status="failure" if record.get("status") == "failure" else "success",
        billed_model=str(record.get("model_group") or record.get("model") or ""),
        completion_tokens=tokens if type(tokens) is int and tokens >= 0 else 0,
        cost=cost,
    )


def _cost(record: Mapping[str, Any]) -> Decimal:
    # LiteLLM records a cache hit as free; so do we.
    return Decimal(0) if record.get("cache_hit") else cost_from_float(record.get("response_cost") or 0.0)


def _event_id(record: Mapping[str, Any], fallback_id: str | None = None) -> str:
    """Stable for one callback of one call (so a repeated callback is dropped as a duplicate),
    but not choosable by a client: the proxy takes `litellm_call_id` from the request's
    `x-litellm-call-id` header, so it is combined with the response id and the call's times."""
    parts = [record.get("litellm_call_id"), record.get("id"), record.get("startTime"), record.get("endTime")]
    if not any(parts[:2]):
        return fallback_id or str(uuid.uuid4())
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    # `str(uuid.UUID(bytes=digest[:16]))` (no version bits are set), without building the UUID
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _error_class(record: Mapping[str, Any]) -> str | None:
    info = _mapping(record.get("error_information"))
    return label_of(info.get("error_class")) if record.get("status") == "failure" else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_float(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, int | float) else 0.0
