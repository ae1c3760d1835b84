"""The `budget_duration` of a team or user LiteLLM resets, read from the row through LiteLLM's own
lookups and the proxy's `user_api_key_cache` (LiteLLM's in-memory cache here, as a proxy has it):
kept for a while, never failing the request, each failure logged once."""

import logging
from datetime import UTC, datetime

import pytest
from litellm.models.team import LiteLLM_TeamTableCachedObj
from litellm.proxy._types import LiteLLM_UserTable, UserAPIKeyAuth
from litellm.proxy.auth.auth_checks import cache_team_object
from litellm.proxy.common_utils.user_api_key_cache import UserApiKeyCache
from litellm.types.proxy.carried_budget_state import TeamBudgetSnapshot, UserBudgetSnapshot

from spendpipe.contracts.scopes import ScopeType
from spendpipe.gateway import entity_durations
from spendpipe.gateway.entity_durations import EntityDurations

RESET_AT = datetime(2026, 12, 3, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resetting_key(team_id: str = "search", user_id: str = "alice") -> UserAPIKeyAuth:
    return UserAPIKeyAuth(
        api_key="a" * 64,
        team_id=team_id,
        user_id=user_id,
        team_budget_snapshot=TeamBudgetSnapshot(budget_reset_at=RESET_AT, max_budget=5.0),
        user_budget_snapshot=UserBudgetSnapshot(budget_reset_at=RESET_AT, max_budget=3.0, user_alias=None),
    )


async def cache_rows(cache: UserApiKeyCache, team_duration: str | None, user_duration: str | None) -> None:
    """As LiteLLM's auth leaves them after reading the rows from its database."""
    team = LiteLLM_TeamTableCachedObj(team_id="search", max_budget=5.0, budget_duration=team_duration)
    await cache_team_object(team_id="search", team_table=team, user_api_key_cache=cache, proxy_logging_obj=None)
    user = LiteLLM_UserTable(user_id="alice", max_budget=3.0, budget_duration=user_duration)
    await cache.async_set_cache(key="alice", value=user, model_type=LiteLLM_UserTable)


async def test_the_rows_durations_are_read_from_the_proxys_cache_and_kept() -> None:
    cache, clock = UserApiKeyCache(), Clock()
    durations = EntityDurations(clock=clock)
    await cache_rows(cache, "30d", "1d")

    assert await durations.of(resetting_key(), cache) == {ScopeType.TEAM: "30d", ScopeType.USER: "1d"}

    # a row changed in LiteLLM is read again once what was read has aged, not on every request
    await cache_rows(cache, "7d", None)
    assert await durations.of(resetting_key(), cache) == {ScopeType.TEAM: "30d", ScopeType.USER: "1d"}
    clock.now += entity_durations._FRESH_S
    assert await durations.of(resetting_key(), cache) == {ScopeType.TEAM: "7d"}


async def test_only_entities_litellm_resets_are_read() -> None:
    cache = UserApiKeyCache()
    await cache_rows(cache, "30d", "1d")
    key = resetting_key()
    key.user_budget_snapshot = UserBudgetSnapshot(budget_reset_at=None, max_budget=3.0, user_alias=None)
    key.team_budget_snapshot = None

    assert await EntityDurations().of(key, cache) == {}


async def test_a_row_that_cannot_be_read_leaves_the_caps_out_logs_once_and_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, clock = UserApiKeyCache(), Clock()
    durations = EntityDurations(clock=clock)
    caplog.set_level(logging.WARNING, logger=entity_durations.__name__)

    # not in the cache, and no database: nothing read, said once per entity
    assert await durations.of(resetting_key(), cache) == {}
    clock.now += entity_durations._RETRY_S
    assert await durations.of(resetting_key(), cache) == {}
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert "team search" in said[0]
    assert "user alice" in said[1]

    # once LiteLLM's auth has cached the rows, they are read at the next try
    await cache_rows(cache, "30d", "1d")
    assert await durations.of(resetting_key(), cache) == {}  # the failure stands until the retry
    clock.now += entity_durations._RETRY_S
    assert await durations.of(resetting_key(), cache) == {ScopeType.TEAM: "30d", ScopeType.USER: "1d"}


class BrokenDatabase:
    """A database client whose every use fails, as one that is down."""

    def __getattr__(self, name: str) -> object:
        raise ConnectionError("database down")


async def test_with_a_database_the_cache_is_read_first_and_a_failing_database_fails_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(entity_durations, "_prisma_client", BrokenDatabase)
    cache = UserApiKeyCache()
    await cache_rows(cache, "30d", "1d")

    assert await EntityDurations().of(resetting_key(), cache) == {ScopeType.TEAM: "30d", ScopeType.USER: "1d"}
    # a team and a user not in the cache go to the database, which fails: nothing read, nothing raised
    assert await EntityDurations().of(resetting_key("support", "bob"), cache) == {}
