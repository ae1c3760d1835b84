"""The `budget_duration` of the entities whose caps LiteLLM may reset, read from their rows the way
LiteLLM's own auth reads them, for `contracts/declared_budgets.py` (its `durations`).

LiteLLM's auth pins a team's or user's `budget_reset_at` on the key object, never its
`budget_duration`, and nothing of an organisation's or end customer's budget row but its
`max_budget`. The rows hold the durations, and LiteLLM's public lookups in
`litellm/proxy/auth/auth_checks.py` read them from the proxy's `user_api_key_cache` first and its
database after: auth has just read the same rows, so the read is normally a cache hit.

* Team: `get_team_object`; user: `get_user_object` (`budget_duration` on the row). Not found is a
  failed read: the key object says LiteLLM resets the entity.
* Organisation: `get_org_object` with its budget row, as auth reads it (cached under
  `org_id:<id>:with_budget`); end customer: `get_end_user_object` with the key's default end-user
  budget, as auth reads it (cached under `end_user_cache_key`). The duration is the budget row's
  (`litellm_budget_table`). No row, or no budget row, is a lifetime cap: LiteLLM resets nothing.

`get_team_object`, `get_org_object` and `get_end_user_object` refuse without a database before
looking in the cache, so on a proxy without one the row is read from the cache under the key they
use (`get_team_object_from_cache` for a team, the cache read the others start with).

Which rows are read is `rows_to_read`: a team or user whose snapshot carries a `budget_reset_at`,
an organisation or end customer the key object carries a cap for (no reset is shown for them, so
every capped one is read). What is read is kept `_FRESH_S` here, so a request costs a dict look-up.
The request path is never failed by a read: one that raises or outlasts `_WAIT_S` is logged once
per entity and tried again after `_RETRY_S`; meanwhile what an earlier read gave stands, and an
entity never read is given None, for which nothing is declared (a declaration without its caps
would withdraw them fleet-wide).
"""

import asyncio
import collections
import enum
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from spendpipe.contracts.declared_budgets import rows_to_read
from spendpipe.contracts.scopes import ScopeType

log = logging.getLogger(__name__)

_FRESH_S = 60.0
"""How long a row's duration is used before it is read again (LiteLLM caches rows for 60 s too)."""
_RETRY_S = 10.0
_WAIT_S = 1.0
"""The longest a request waits for a row that is not in LiteLLM's cache."""
MOST_KEPT = 10_000
"""Entities whose reads are kept at most (the least recently read go first): an end customer's id
is the request's `user`, which a client chooses, so what is kept must be bounded."""


class _Outcome(enum.Enum):
    FAILED = "the row could not be read"
    LIFETIME = "no row, or none with a duration"


_FAILED, _LIFETIME = _Outcome.FAILED, _Outcome.LIFETIME
_Read = str | _Outcome
"""A row's `budget_duration`, or why there is none."""


class EntityDurations:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._read: collections.OrderedDict[tuple[ScopeType, str], tuple[_Read, float]] = collections.OrderedDict()
        """Per entity, what its row gave and until when it stands; the latest read last."""
        self._failed: set[tuple[ScopeType, str]] = set()

    async def of(self, key: Any, cache: Any) -> dict[ScopeType, str | None]:
        """The durations of the rows `rows_to_read(key)` names, read through the proxy's
        `user_api_key_cache` (`cache`): a scope maps to its row's `budget_duration`, or to None when
        the row could not be read; a scope whose row has none (or has no row) is absent. Never raises."""
        durations: dict[ScopeType, str | None] = {}
        for scope_type, row_id in rows_to_read(key):
            read = await self._duration(scope_type, row_id, key, cache)
            if read is not _LIFETIME:
                durations[scope_type] = None if read is _FAILED else str(read)
        return durations

    async def _duration(self, scope_type: ScopeType, row_id: str, key: Any, cache: Any) -> _Read:
        entity = (scope_type, row_id)
        now = self._clock()
        known = self._read.get(entity)
        if known is not None and now < known[1]:
            return known[0]
        try:
            row = await asyncio.wait_for(_LOOKUPS[scope_type](row_id, key, cache, _prisma_client()), _WAIT_S)
            duration = getattr(row, "budget_duration", None)
        except Exception as error:  # any failure of the read: the request goes on
            # what an earlier read gave stands (a glitch must not withdraw a cap and publish it
            # again); never read, nothing is declared for the scope
            kept = known[0] if known is not None else _FAILED
            self._keep(entity, kept, now + _RETRY_S)
            if entity not in self._failed:
                self._failed.add(entity)
                log.warning(
                    "spendpipe: could not read the budget_duration of LiteLLM's %s %s (%r): %s",
                    scope_type.value,
                    row_id,
                    error,
                    "nothing is published for it until it can be read"
                    if kept is _FAILED
                    else "what was read before stands until it can be read again",
                )
            return kept
        self._failed.discard(entity)
        read: _Read = duration if isinstance(duration, str) and duration else _LIFETIME
        self._keep(entity, read, now + _FRESH_S)
        return read

    def _keep(self, entity: tuple[ScopeType, str], read: _Read, until: float) -> None:
        self._read[entity] = (read, until)
        self._read.move_to_end(entity)
        while len(self._read) > MOST_KEPT:
            forgotten, _ = self._read.popitem(last=False)
            self._failed.discard(forgotten)


def _prisma_client() -> Any:
    """The proxy's database client, None without one (or outside a proxy). Read per call: the proxy
    sets it at start."""
    return getattr(sys.modules.get("litellm.proxy.proxy_server"), "prisma_client", None)


async def _team_row(team_id: str, key: Any, cache: Any, prisma_client: Any) -> object:
    from litellm.proxy.auth.auth_checks import get_team_object, get_team_object_from_cache  # noqa: PLC0415 - proxy only

    if prisma_client is None:
        cache_key = f"team_id:{team_id}"  # get_team_object's
        row = await get_team_object_from_cache(key=cache_key, user_api_key_cache=cache, parent_otel_span=None)
    else:
        row = await get_team_object(team_id=team_id, prisma_client=prisma_client, user_api_key_cache=cache)
    return _found(row)


async def _user_row(user_id: str, key: Any, cache: Any, prisma_client: Any) -> object:
    from litellm.proxy.auth.auth_checks import get_user_object  # noqa: PLC0415 - proxy only

    return _found(
        await get_user_object(
            user_id=user_id, prisma_client=prisma_client, user_api_key_cache=cache, user_id_upsert=False
        )
    )


def _found(row: object) -> object:
    if row is None:
        raise LookupError("not in the proxy's cache, and the proxy has no database")
    return row


async def _org_budget_row(org_id: str, key: Any, cache: Any, prisma_client: Any) -> object:
    """The organisation's budget row; None without one (or without the organisation)."""
    from litellm.proxy._types import LiteLLM_OrganizationTable  # noqa: PLC0415 - proxy only
    from litellm.proxy.auth.auth_checks import OrganizationNotFoundError, get_org_object  # noqa: PLC0415

    if prisma_client is None:
        cache_key = f"org_id:{org_id}:with_budget"  # get_org_object's, with the budget row, as auth reads it
        org = await cache.async_get_cache(key=cache_key, model_type=LiteLLM_OrganizationTable)
    else:
        try:
            org = await get_org_object(
                org_id=org_id, prisma_client=prisma_client, user_api_key_cache=cache, include_budget_table=True
            )
        except OrganizationNotFoundError:
            return None
    return getattr(org, "litellm_budget_table", None)


async def _end_user_budget_row(end_user_id: str, key: Any, cache: Any, prisma_client: Any) -> object:
    """The end customer's budget row (its own, else the key's or the proxy's default, as auth
    resolves it); None without one (or without the end customer)."""
    from litellm.proxy._types import LiteLLM_EndUserTable  # noqa: PLC0415 - proxy only
    from litellm.proxy.auth.auth_checks import get_end_user_object, get_key_end_user_budget_id  # noqa: PLC0415
    from litellm.proxy.common_utils.user_api_key_cache import end_user_cache_key  # noqa: PLC0415

    if prisma_client is None:
        end_user = await cache.async_get_cache(key=end_user_cache_key(end_user_id), model_type=LiteLLM_EndUserTable)
    else:
        metadata = getattr(key, "metadata", None)
        end_user = await get_end_user_object(
            end_user_id=end_user_id,
            prisma_client=prisma_client,
            user_api_key_cache=cache,
            token_end_user_max_budget=getattr(key, "end_user_max_budget", None),
            key_end_user_budget_id=get_key_end_user_budget_id(metadata if isinstance(metadata, dict) else None),
        )
    return getattr(end_user, "litellm_budget_table", None)


_LOOKUPS: dict[ScopeType, Callable[[str, Any, Any, Any], Awaitable[object]]] = {
    ScopeType.TEAM: _team_row,
    ScopeType.USER: _user_row,
    ScopeType.ORG: _org_budget_row,
    ScopeType.END_USER: _end_user_budget_row,
}
"""Per scope, the row holding its `budget_duration` (`rows_to_read` names no other scope)."""
