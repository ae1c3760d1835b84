"""A copy of what the event builder reads from one logged call, taken on the request path.

Building a `SpendEvent` (labels, event id, pydantic validation) costs about a hundred
microseconds; the publisher's thread does it instead of the callback (`EventPublisher.publish_deferred`).
The callback's kwargs cannot be handed over as they are: LiteLLM and other callbacks keep using
and changing them after this callback returns, and they hold the raw API key in SDK mode. So the
callback copies, in a few microseconds, exactly the fields `build_spend_event`,
`fallback_spend_event` and `RequestIdentity.of_logged_call` read (`_READ`), in the same shape, and
nothing else: the builder runs unchanged on the copy. The raw key is hashed on the way (one that
cannot be encoded to hash is dropped), and a `user_api_key_hash` that is not a hash is not
copied, so no raw key leaves the request path.
Scalars are immutable and kept; anything else (a client's object in `user`, the tag list) is
copied deeply, or, when it cannot be, replaced by its label, which the builder reads the same
(`labels.label_of` is idempotent).

`tests/unit/test_logged_call.py` holds the copy to the builder: an event built from the copy is
the event built from the call, for every record the builder's tests use and for hostile values.
"""

import copy
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from spendpipe.contracts.scopes import SHA256_HEX
from spendpipe.gateway.identity import AGENT_FIELD, ASSIGNED_TAGS_FROM, SDK_NAMES, key_hash_of
from spendpipe.gateway.labels import label_of

log = logging.getLogger(__name__)

Leaf = Callable[[object], object]
Shape = dict[str, "Leaf | Shape"]

_SCALARS = (str, int, float, bool, datetime, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
"""The exact types, looked up first: on every call."""


def _kept(value: object) -> object:
    if type(value) in _SCALAR_TYPES or isinstance(value, _SCALARS):
        return value
    if type(value) is list and all(type(item) in _SCALAR_TYPES for item in value):  # the tags
        return list(value)
    try:
        return copy.deepcopy(value)
    except Exception:  # an object that cannot be copied is read as its label anyway
        return label_of(value)


def _present(value: object) -> object:
    """Only whether it is there (a proxy request: the plain attribution names are not read)."""
    return True


def _hash_only(value: object) -> object:
    return value if isinstance(value, str) and SHA256_HEX.match(value) else None


def _hashed(value: object) -> object:
    try:
        return key_hash_of(value)
    except UnicodeError:  # not UTF-8 (a lone surrogate): no key LiteLLM could have stored
        return None


_RECORD_SCALARS = (
    "id", "litellm_call_id", "startTime", "endTime", "model", "model_group", "custom_llm_provider",
    "call_type", "prompt_tokens", "completion_tokens", "total_tokens", "response_cost", "cache_hit",
    "status", "end_user", "session_id",
)  # fmt: skip


def read_shape(keep: Leaf, tags: Leaf | None = None) -> Shape:
    """The fields the builder reads, each with the rule that takes its value: `keep` for plain
    values, `tags` (default `keep`) for the logged request tags, the key's rules for keys. The
    wire record of the subprocess publisher (`wire.py`) takes the same fields by other rules."""
    # the tags the call's key and team assign, which the proxy puts in the call's metadata
    # (`identity.attributed_request_tags`)
    assigned_tags: Shape = {owner: {"tags": tags or keep} for owner in ASSIGNED_TAGS_FROM}
    return {
        "litellm_call_id": keep,
        "user": keep,
        "optional_params": {"user": keep},
        "litellm_params": {
            "proxy_server_request": _present,
            "metadata": {
                **{name: keep for names in SDK_NAMES.values() for name in names},  # SDK attribution
                "user_api_key_hash": _hash_only,
                "user_api_key": _hashed,
                "key": _hashed,
                "session_id": keep,
                "trace_id": keep,
                "agent_id": keep,
                "agent_name": keep,
                AGENT_FIELD: keep,
                **assigned_tags,
            },
            "litellm_metadata": {"session_id": keep, "trace_id": keep, AGENT_FIELD: keep, **assigned_tags},
            "litellm_session_id": keep,
        },
        "standard_logging_object": {
            **dict.fromkeys(_RECORD_SCALARS, keep),
            "request_tags": tags or keep,
            "error_information": {"error_class": keep},
            "metadata": {
                "user_api_key_hash": _hash_only,
                "user_api_key_alias": keep,
                "user_api_key_user_id": keep,
                "user_api_key_team_id": keep,
                "user_api_key_org_id": keep,
                "user_api_key_end_user_id": keep,
            },
        },
    }


_READ = read_shape(_kept)


def copy_logged_call(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the builder reads from a callback's kwargs, copied; never raises."""
    return copy_shaped(kwargs, _READ)


def copy_shaped(source: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """The fields of `shape` in `source`, each taken by its rule; never raises."""
    copied: dict[str, Any] = {}
    for name, inner in shape.items():
        try:
            value = source.get(name)
        except Exception as error:  # a hostile Mapping: its field is read as absent
            log.warning("spendpipe could not read %r of a logged call: %r", name, error)
            continue
        if value is None:
            continue
        if type(inner) is not dict:
            if (kept := inner(value)) is not None:  # type: ignore[operator]
                copied[name] = kept
        elif isinstance(value, Mapping):  # the builder reads a container that is not one as empty
            copied[name] = copy_shaped(value, inner)
    return copied
