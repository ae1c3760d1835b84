"""Which agent and which session a call belongs to, read the same way in the proxy's pre-call
hook and in the logged call, in SDK and proxy mode.

Session, first found of:
1. `metadata["session_id"]` (LiteLLM's own session limiters read this; the proxy copies the
   `x-litellm-session-id` / `x-litellm-trace-id` headers into it),
2. `litellm_metadata["session_id"]` (the proxy's metadata field on /thread, /assistant... routes),
3. `litellm_session_id` (a top-level request field or SDK argument; the proxy also sets it from
   session headers such as `x-<vendor>-session-id` and W3C baggage),
4. `metadata["trace_id"]` (LiteLLM chains calls that share a trace id into one session).
LiteLLM's generated per-call trace id (`litellm_trace_id` when the caller gave none) is not read:
it would make every call a session of its own.

Agent: `metadata["agent_id"]` (the proxy sets it from the key's agent, the `x-litellm-agent-id`
header or the body's metadata), else the key's `agent_id`, else `metadata["agent_name"]`.
"""

from collections.abc import Mapping
from typing import Any


def session_of(*containers: Mapping[str, Any] | None, litellm_session_id: object = None) -> str | None:
    """The session id; `containers` are the request's metadata dicts in order of preference."""
    for metadata in containers:
        value = _text(metadata.get("session_id")) if metadata else None
        if value:
            return value
    if _text(litellm_session_id):
        return _text(litellm_session_id)
    for metadata in containers:
        value = _text(metadata.get("trace_id")) if metadata else None
        if value:
            return value
    return None


def agent_of(metadata: Mapping[str, Any] | None, key_agent_id: object = None) -> str | None:
    metadata = metadata or {}
    return _text(metadata.get("agent_id")) or _text(key_agent_id) or _text(metadata.get("agent_name"))


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    return text if len(text) <= 256 else None
