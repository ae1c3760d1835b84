"""The `budget_duration` of the teams and users whose caps LiteLLM resets, read from their rows the
way LiteLLM's own auth reads them, for `contracts/declared_budgets.py` (its `durations`).

LiteLLM's auth pins a team's or user's `budget_reset_at` on the key object, never its
`budget_duration`. The row holds it, and LiteLLM's public lookups (`get_team_object`,
`get_user_object` in `litellm/proxy/auth/auth_checks.py`) read it from the proxy's
`user_api_key_cache` first and its database after: auth has just read the same row, so the read is
normally a cache hit. `get_team_object` refuses without a database before looking in the cache,
so on a proxy without one the team is read with `get_team_object_from_cache`, the cache read it
starts with. What is read is kept `_FRESH_S` here, so a request costs a dict look-up.

Only an entity whose snapshot carries a `budget_reset_at` is read (`resetting_scopes`): the other
caps are lifetime caps and need no duration. The request path is never failed by a read: one that
raises or outlasts `_WAIT_S` leaves the entity's caps out, as before durations were read, is
logged once per entity and tried again after `_RETRY_S`.
"""

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from spendpipe.contracts.declared_budgets import resetting_scopes
from spendpipe.contracts.scopes import ScopeType

log = logging.getLogger(__name__)

_FRESH_S = 60.0
"""How long a row's duration is used before it is read again (LiteLLM caches rows for 60 s too)."""
_RETRY_S = 10.0
_WAIT_S = 1.0
"""The longest a request waits for a row that is not in LiteLLM's cache."""


class EntityDurations:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._read: dict[tuple[ScopeType, str], tuple[str | None, float]] = {}
        """Per entity, its duration (None: none could be read) and until when it stands."""
        self._failed: set[tuple[ScopeType, str]] = set()

    async def of(self, key: Any, cache: Any) -> dict[ScopeType, str]:
        """The durations of the entities LiteLLM resets that `key` belongs to, read through the
        proxy's `user_api_key_cache` (`cache`). Never raises."""
        durations: dict[ScopeType, str] = {}
        for scope_type in resetting_scopes(key):
            entity_id = getattr(key, _ID_FIELDS.get(scope_type, ""), None)
            if scope_type not in _LOOKUPS or not isinstance(entity_id, str) or not entity_id:
                continue
            duration = await self._duration(scope_type, entity_id, cache)
            if duration is not None:
                durations[scope_type] = duration
        return durations

    async def _duration(self, scope_type: ScopeType, entity_id: str, cache: Any) -> str | None:
        entity = (scope_type, entity_id)
        now = self._clock()
        known = self._read.get(entity)
        if known is not None and now < known[1]:
            return known[0]
        try:
            row = await asyncio.wait_for(_LOOKUPS[scope_type](entity_id, cache, _prisma_client()), _WAIT_S)
            if row is None:
                raise LookupError("not in the proxy's cache, and the proxy has no database")
            duration = getattr(row, "budget_duration", None)
        except Exception as error:  # any failure of the read: the caps stay out, the request goes on
            self._read[entity] = (None, now + _RETRY_S)
            if entity not in self._failed:
                self._failed.add(entity)
                log.warning(
                    "spendpipe: could not read the budget_duration of LiteLLM's %s %s (%r): its max_budget and"
                    " soft_budget are not enforced until it can be read",
                    scope_type.value,
                    entity_id,
                    error,
                )
            return None
        self._failed.discard(entity)
        self._read[entity] = (duration if isinstance(duration, str) else None, now + _FRESH_S)
        return self._read[entity][0]


def _prisma_client() -> Any:
    """The proxy's database client, None without one (or outside a proxy). Read per call: the proxy
    sets it at start."""
    return getattr(sys.modules.get("litellm.proxy.proxy_server"), "prisma_client", None)


async def _team_row(team_id: str, cache: Any, prisma_client: Any) -> object:
    from litellm.proxy.auth.auth_checks import get_team_object, get_team_object_from_cache  # noqa: PLC0415 - proxy only

    if prisma_client is None:
        key = f"team_id:{team_id}"  # get_team_object's
        return await get_team_object_from_cache(key=key, user_api_key_cache=cache, parent_otel_span=None)
    return await get_team_object(team_id=team_id, prisma_client=prisma_client, user_api_key_cache=cache)


async def _user_row(user_id: str, cache: Any, prisma_client: Any) -> object:
    from litellm.proxy.auth.auth_checks import get_user_object  # noqa: PLC0415 - proxy only

    return await get_user_object(
        user_id=user_id, prisma_client=prisma_client, user_api_key_cache=cache, user_id_upsert=False
    )


_ID_FIELDS = {ScopeType.TEAM: "team_id", ScopeType.USER: "user_id"}
_LOOKUPS: dict[ScopeType, Callable[[str, Any, Any], Awaitable[object]]] = {
    ScopeType.TEAM: _team_row,
    ScopeType.USER: _user_row,
}
