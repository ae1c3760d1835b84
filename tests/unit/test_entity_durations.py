"""The `budget_duration` of a team or user LiteLLM resets, and of an organisation's or end
customer's budget row, read through LiteLLM's own lookups and the proxy's `user_api_key_cache`
(LiteLLM's in-memory cache here, as a proxy has it): kept for a while, never failing the request,
each failure logged once; no organisation or end-customer row is a lifetime cap."""

import logging
from datetime import UTC, datetime

import pytest
from litellm.models.team import LiteLLM_TeamTableCachedObj
from litellm.proxy._types import (
    LiteLLM_BudgetTable,
    LiteLLM_EndUserTable,
    LiteLLM_OrganizationTable,
    LiteLLM_UserTable,
    UserAPIKeyAuth,
)
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


async def test_a_failed_read_after_a_good_one_keeps_what_was_read(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    durations = EntityDurations(clock=clock)
    caplog.set_level(logging.WARNING, logger=entity_durations.__name__)
    cache = UserApiKeyCache()
    await cache_rows(cache, "30d", "1d")
    assert await durations.of(resetting_key(), cache) == {ScopeType.TEAM: "30d", ScopeType.USER: "1d"}

    # the rows gone from the cache and no database: the durations read before stand, no withdrawal
    clock.now += entity_durations._FRESH_S
    assert await durations.of(resetting_key(), UserApiKeyCache()) == {ScopeType.TEAM: "30d", ScopeType.USER: "1d"}
    assert "what was read before stands" in caplog.text

    # and once the rows can be read again, what they say now
    await cache_rows(cache, "7d", "1d")
    clock.now += entity_durations._RETRY_S
    assert await durations.of(resetting_key(), cache) == {ScopeType.TEAM: "7d", ScopeType.USER: "1d"}


async def test_what_is_kept_is_bounded_whatever_end_customer_ids_clients_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entity_durations, "MOST_KEPT", 3)
    durations = EntityDurations(clock=Clock())
    cache = UserApiKeyCache()
    for n in range(10):  # ten end customers a client made up, each with the key's default budget
        key = UserAPIKeyAuth(api_key="a" * 64, end_user_id=f"made-up-{n}", end_user_max_budget=1.0)
        await durations.of(key, cache)

    assert [row_id for _, row_id in durations._read] == ["made-up-7", "made-up-8", "made-up-9"]


async def test_only_entities_litellm_resets_are_read() -> None:
    cache = UserApiKeyCache()
    await cache_rows(cache, "30d", "1d")
    key = resetting_key()
    key.user_budget_snapshot = UserBudgetSnapshot(budget_reset_at=None, max_budget=3.0, user_alias=None)
    key.team_budget_snapshot = None

    assert await EntityDurations().of(key, cache) == {}


async def test_a_row_that_cannot_be_read_is_none_logs_once_and_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, clock = UserApiKeyCache(), Clock()
    durations = EntityDurations(clock=clock)
    caplog.set_level(logging.WARNING, logger=entity_durations.__name__)

    # not in the cache, and no database: nothing read, said once per entity
    unread = {ScopeType.TEAM: None, ScopeType.USER: None}
    assert await durations.of(resetting_key(), cache) == unread
    clock.now += entity_durations._RETRY_S
    assert await durations.of(resetting_key(), cache) == unread
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert "team search" in said[0]
    assert "user alice" in said[1]

    # once LiteLLM's auth has cached the rows, they are read at the next try
    await cache_rows(cache, "30d", "1d")
    assert await durations.of(resetting_key(), cache) == unread  # the failure stands until the retry
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
    unread = {ScopeType.TEAM: None, ScopeType.USER: None}
    assert await EntityDurations().of(resetting_key("support", "bob"), cache) == unread


def capped_org_and_customer() -> UserAPIKeyAuth:
    """A key object as LiteLLM's auth leaves it: the organisation's and end customer's caps, no reset."""
    return UserAPIKeyAuth(
        api_key="a" * 64,
        org_id="acme",
        end_user_id="customer-7",
        organization_max_budget=100.0,
        end_user_max_budget=2.0,
    )


class Table:
    """One table of LiteLLM's database, as its prisma client answers."""

    def __init__(self, id_field: str, *rows: LiteLLM_OrganizationTable | LiteLLM_EndUserTable) -> None:
        self.id_field = id_field
        self.rows = list(rows)
        self.reads = 0

    async def find_unique(self, where: dict[str, str], **_: object) -> object:
        self.reads += 1
        (wanted,) = where.values()
        return next((row for row in self.rows if getattr(row, self.id_field) == wanted), None)

    async def find_many(self, **_: object) -> list[object]:
        return self.rows


class Database:
    """LiteLLM's database holding an organisation and an end customer with budget rows."""

    def __init__(self, org_duration: str | None, end_user_duration: str | None) -> None:
        org = LiteLLM_OrganizationTable(
            organization_id="acme",
            budget_id="acme-budget",
            created_by="admin",
            updated_by="admin",
            litellm_budget_table=LiteLLM_BudgetTable(max_budget=100.0, budget_duration=org_duration),
        )
        end_user = LiteLLM_EndUserTable(
            user_id="customer-7",
            blocked=False,
            budget_id="customer-budget",
            litellm_budget_table=LiteLLM_BudgetTable(max_budget=2.0, budget_duration=end_user_duration),
        )
        self.db = type("Tables", (), {})()
        self.db.litellm_organizationtable = Table("organization_id", org)
        self.db.litellm_endusertable = Table("user_id", end_user)


async def test_an_organisations_and_end_customers_budget_row_durations_are_read_and_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database, cache, clock = Database("30d", "1d"), UserApiKeyCache(), Clock()
    monkeypatch.setattr(entity_durations, "_prisma_client", lambda: database)
    durations = EntityDurations(clock=clock)

    # with LiteLLM's database: read with LiteLLM's lookups, which cache the rows as auth does
    assert await durations.of(capped_org_and_customer(), cache) == {ScopeType.ORG: "30d", ScopeType.END_USER: "1d"}
    reads = database.db.litellm_organizationtable.reads
    clock.now += entity_durations._FRESH_S - 1
    assert await durations.of(capped_org_and_customer(), cache) == {ScopeType.ORG: "30d", ScopeType.END_USER: "1d"}
    assert database.db.litellm_organizationtable.reads == reads  # kept: a dict look-up per request

    # a proxy without a database (custom_auth) reads the rows where LiteLLM's auth cached them
    monkeypatch.setattr(entity_durations, "_prisma_client", lambda: None)
    assert await EntityDurations().of(capped_org_and_customer(), cache) == {
        ScopeType.ORG: "30d",
        ScopeType.END_USER: "1d",
    }


async def test_no_organisation_or_end_customer_row_or_none_with_a_duration_is_a_lifetime_cap(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=entity_durations.__name__)
    # a proxy without LiteLLM's database, whose cache holds no rows: LiteLLM resets nothing
    assert await EntityDurations().of(capped_org_and_customer(), UserApiKeyCache()) == {}
    # budget rows without a duration
    monkeypatch.setattr(entity_durations, "_prisma_client", lambda: Database(None, None))
    assert await EntityDurations().of(capped_org_and_customer(), UserApiKeyCache()) == {}
    # an end customer the database does not hold (an organisation it does not hold is LiteLLM's
    # OrganizationNotFoundError, whose handling needs the prisma package this environment lacks)
    key = capped_org_and_customer()
    key.org_id, key.end_user_id = None, "gone"
    assert await EntityDurations().of(key, UserApiKeyCache()) == {}
    assert caplog.records == []  # none of these is a failure


async def test_an_organisation_row_that_cannot_be_read_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(entity_durations, "_prisma_client", BrokenDatabase)

    assert (await EntityDurations().of(capped_org_and_customer(), UserApiKeyCache()))[ScopeType.ORG] is None
