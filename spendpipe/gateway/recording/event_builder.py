"""Building a `SpendEvent` from what LiteLLM hands a callback.

The source is `kwargs["standard_logging_object"]`, LiteLLM's own normalised record of a
call, so SDK and proxy mode give the same event. Who made the call (the key's hash, never the
key; user, team, organisation, end customer, agent, session) is read by `RequestIdentity`.
"""

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.money import cost_from_float
from spendpipe.gateway.identity import RequestIdentity


def build_spend_event(kwargs: Mapping[str, Any], *, gateway_id: str) -> SpendEvent | None:
    """The event for one finished call, or None when LiteLLM gave no standard logging object."""
    record = kwargs.get("standard_logging_object")
    if not isinstance(record, Mapping):
        return None
    metadata: Mapping[str, Any] = record.get("metadata") or {}
    who = RequestIdentity.of_logged_call(kwargs)
    cache_hit = bool(record.get("cache_hit"))
    start, end = _as_float(record.get("startTime")), _as_float(record.get("endTime"))
    return SpendEvent(
        event_id=_event_id(record),
        occurred_at=datetime.fromtimestamp(end or start or datetime.now(UTC).timestamp(), UTC),
        key_hash=who.key_hash,
        key_alias=_text(metadata.get("user_api_key_alias")),
        user_id=who.user_id,
        team_id=who.team_id,
        org_id=who.org_id,
        end_user=who.end_user,
        model=_text(record.get("model")) or "unknown",
        model_group=_text(record.get("model_group")),
        provider=_text(record.get("custom_llm_provider")),
        call_type=_text(record.get("call_type")),
        prompt_tokens=int(record.get("prompt_tokens") or 0),
        completion_tokens=int(record.get("completion_tokens") or 0),
        total_tokens=int(record.get("total_tokens") or 0),
        # LiteLLM records a cache hit as free; so do we.
        cost=Decimal(0) if cache_hit else cost_from_float(record.get("response_cost") or 0.0),
        cache_hit=cache_hit,
        status="failure" if record.get("status") == "failure" else "success",
        error_class=_error_class(record),
        latency_ms=max(0.0, (end - start) * 1000.0) if start and end else 0.0,
        request_tags=tuple(str(tag) for tag in record.get("request_tags") or ()),
        gateway_id=gateway_id,
        agent_id=who.agent_id,
        session_id=who.session_id,
    )


def _event_id(record: Mapping[str, Any]) -> str:
    """Stable for one callback of one call (so a repeated callback is dropped as a duplicate),
    but not choosable by a client: the proxy takes `litellm_call_id` from the request's
    `x-litellm-call-id` header, so it is combined with the response id and the call's times."""
    parts = [record.get("litellm_call_id"), record.get("id"), record.get("startTime"), record.get("endTime")]
    if not any(parts[:2]):
        return str(uuid.uuid4())
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16]))


def _error_class(record: Mapping[str, Any]) -> str | None:
    info = record.get("error_information") or {}
    return _text(info.get("error_class")) if record.get("status") == "failure" else None


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _as_float(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, int | float) else 0.0
