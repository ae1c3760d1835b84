"""Building a `SpendEvent` from what LiteLLM hands a callback.

The source is `kwargs["standard_logging_object"]`, LiteLLM's own normalised record of a
call, so SDK and proxy mode give the same event. The raw API key never leaves this module:
LiteLLM's proxy already puts the key's SHA-256 (the token its key table stores) in the
metadata; in SDK mode a raw key passed as `metadata["user_api_key"]` is hashed here.
"""

import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.money import cost_from_float
from spendpipe.gateway.sessions.agent_session import agent_of, session_of

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_api_key(raw_key: str) -> str:
    """The hash LiteLLM's proxy stores for a virtual key (`litellm.proxy.utils.hash_token`)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def build_spend_event(kwargs: Mapping[str, Any], *, gateway_id: str) -> SpendEvent | None:
    """The event for one finished call, or None when LiteLLM gave no standard logging object."""
    record = kwargs.get("standard_logging_object")
    if not isinstance(record, Mapping):
        return None
    metadata: Mapping[str, Any] = record.get("metadata") or {}
    cache_hit = bool(record.get("cache_hit"))
    start, end = _as_float(record.get("startTime")), _as_float(record.get("endTime"))
    return SpendEvent(
        event_id=_event_id(record),
        occurred_at=datetime.fromtimestamp(end or start or datetime.now(UTC).timestamp(), UTC),
        key_hash=_key_hash(metadata, kwargs),
        key_alias=_text(metadata.get("user_api_key_alias")),
        user_id=_text(metadata.get("user_api_key_user_id")),
        team_id=_text(metadata.get("user_api_key_team_id")),
        org_id=_text(metadata.get("user_api_key_org_id")),
        end_user=_end_user(record, metadata, kwargs),
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
        agent_id=agent_of(_call_metadata(kwargs)),
        session_id=_session(record, kwargs),
    )


def _call_metadata(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    params = kwargs.get("litellm_params") or {}
    metadata = params.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _session(record: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str | None:
    """See `agent_session.py`; LiteLLM's logged `session_id` (set only with
    `litellm.request_correlation_in_logs`) last."""
    params = kwargs.get("litellm_params") or {}
    litellm_metadata = params.get("litellm_metadata")
    found = session_of(
        _call_metadata(kwargs),
        litellm_metadata if isinstance(litellm_metadata, Mapping) else None,
        litellm_session_id=params.get("litellm_session_id"),
    )
    return found or (str(record["session_id"]) if record.get("session_id") else None)


def _event_id(record: Mapping[str, Any]) -> str:
    """Stable for one callback of one call (so a repeated callback is dropped as a duplicate),
    but not choosable by a client: the proxy takes `litellm_call_id` from the request's
    `x-litellm-call-id` header, so it is combined with the response id and the call's times."""
    parts = [record.get("litellm_call_id"), record.get("id"), record.get("startTime"), record.get("endTime")]
    if not any(parts[:2]):
        return str(uuid.uuid4())
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16]))


def key_hash_of(key: object) -> str | None:
    """A key's hash as LiteLLM's proxy stores it; a value that already is one is kept."""
    if not isinstance(key, str) or not key:
        return None
    return key if SHA256_HEX.match(key) else hash_api_key(key)


def _key_hash(metadata: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str | None:
    hashed = metadata.get("user_api_key_hash")
    if isinstance(hashed, str) and SHA256_HEX.match(hashed):
        return hashed
    params = kwargs.get("litellm_params") or {}
    return key_hash_of((params.get("metadata") or {}).get("user_api_key"))


def _end_user(record: Mapping[str, Any], metadata: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str | None:
    """The request's `user` field: the proxy resolves it into the record; the SDK leaves it in
    the call's parameters."""
    optional = kwargs.get("optional_params") or {}
    for candidate in (
        record.get("end_user"),
        metadata.get("user_api_key_end_user_id"),
        kwargs.get("user"),
        optional.get("user"),
    ):
        if candidate:
            return str(candidate)
    return None


def _error_class(record: Mapping[str, Any]) -> str | None:
    info = record.get("error_information") or {}
    return _text(info.get("error_class")) if record.get("status") == "failure" else None


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _as_float(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, int | float) else 0.0
