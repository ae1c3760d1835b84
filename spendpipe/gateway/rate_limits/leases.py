"""How the hooks that see a proxy request end find the lease its admission took, and the tokens
it used.

The pre-call hook marks the lease (an id of the plugin's own, so a client-chosen call id cannot
end another request's lease) where the proxy keeps its own metadata of a request:
`litellm_metadata` when the request has it (LiteLLM sets it on its `LITELLM_METADATA_ROUTES`:
/v1/messages, /responses, batches, files..., where `metadata` is the client's and goes on to the
provider), else `metadata`. LiteLLM hands both on to the logging callbacks' `litellm_params`.
The same slot carries the request's agent as admission read it (`identity.mark_agent`).
"""

import os
from collections.abc import Mapping
from typing import Any

LEASE_FIELD = "spendpipe_lease"

_IDS_PER_READ = 256


class LeaseIds:
    """Lease ids as random as `uuid.uuid4().hex` (128 bits from `os.urandom`), read 256 at a time.
    `os.urandom` gives up the GIL for its system call, and in a proxy whose plugin threads (the
    publisher, the topic readers) are waiting for it, the event loop then waits for them: one read
    per request cost a proxy call about as much as the rest of the pre-call hook (py-spy,
    docs/performance.md). Safe across threads: a `list.pop` is atomic, and two threads that find
    the list empty at once each read a fresh one. A forked child starts with none of its parent's."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._ids = []

    def __call__(self) -> str:
        try:
            return self._ids.pop()
        except IndexError:
            pool = os.urandom(16 * _IDS_PER_READ).hex()
            ids = [pool[at : at + 32] for at in range(0, len(pool), 32)]
            lease = ids.pop()
            self._ids = ids
            return lease


new_lease_id = LeaseIds()
"""A fresh lease id (32 hex digits)."""

Usage = tuple[int, int, int]
"""(input, output, total) tokens."""


def proxy_slot(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dict where the proxy keeps its own metadata of a request, where the plugin marks what
    it decided at admission (module docstring): the one rule for marking and reading a mark."""
    litellm_metadata = data.get("litellm_metadata")
    slot = litellm_metadata if isinstance(litellm_metadata, dict) else data.get("metadata")
    return slot if isinstance(slot, dict) else None


def mark(data: dict[str, Any], field: str, value: str) -> None:
    """Mark `field` in the request's `proxy_slot` (an empty `metadata` made if it has none)."""
    if data.get("metadata") is None and not isinstance(data.get("litellm_metadata"), dict):
        data["metadata"] = {}
    slot = proxy_slot(data)
    if slot is not None:
        slot[field] = value


def marked(data: Mapping[str, Any], field: str) -> str | None:
    """What `mark` left in `field`; looked for only there (a client's `metadata` may carry it)."""
    slot = proxy_slot(data)
    value = slot.get(field) if slot is not None else None
    return value if isinstance(value, str) else None


def mark_lease(data: dict[str, Any], lease: str) -> None:
    mark(data, LEASE_FIELD, lease)


def lease_in(data: Mapping[str, Any]) -> str:
    """The lease `mark_lease` left, or ""."""
    return marked(data, LEASE_FIELD) or ""


def usage_of_response(response: Any) -> Usage | None:
    """A non-streaming response's usage, as the proxy's success hook sees it."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    prompt, completion = getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
    return int(prompt), int(completion), int(getattr(usage, "total_tokens", 0) or prompt + completion)


def usage_of_log(kwargs: dict[str, Any]) -> Usage | None:
    """A logged call's usage (a stream's, once it ended)."""
    logged = kwargs.get("standard_logging_object")
    if not isinstance(logged, dict):
        return None
    prompt, completion = int(logged.get("prompt_tokens") or 0), int(logged.get("completion_tokens") or 0)
    return prompt, completion, int(logged.get("total_tokens") or prompt + completion)
