"""The caps and limits LiteLLM's key object carries for the key's team, user, organisation and end
customer: read under the scope names the request's spend is counted under, lifetime caps where
LiteLLM does not reset them, over the row's duration where it does (nothing declared for the scope
until its row is read);
published once per change however many keys
carry them; accepted by the enforcer for those scopes only, each under its own record key."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from litellm.proxy._types import UserAPIKeyAuth
from litellm.proxy.common_utils.user_api_key_cache import UserApiKeyCache
from litellm.types.proxy.carried_budget_state import TeamBudgetSnapshot, UserBudgetSnapshot

from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.declared_budgets import FIELDS_READ, Declaration, declarations_of, rows_to_read
from spendpipe.contracts.scopes import ScopeType, scopes_of
from spendpipe.enforcer.app import _declared_budget
from spendpipe.gateway import entity_durations
from spendpipe.gateway.declared_budgets import DeclaredBudgets
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import RecordSigner

KEY_A, KEY_B = "a" * 64, "b" * 64


def key_object(key_hash: str = KEY_A, **fields: object) -> UserAPIKeyAuth:
    return UserAPIKeyAuth(api_key=key_hash, user_id="alice", team_id="search", org_id="acme", **fields)


def scope_ids(key: UserAPIKeyAuth) -> dict[ScopeType, str | None]:
    who = RequestIdentity.of_proxy_request(key, {})
    return {
        ScopeType.KEY: who.key_hash,
        ScopeType.TEAM: who.team_id,
        ScopeType.USER: who.user_id,
        ScopeType.ORG: who.org_id,
        ScopeType.END_USER: key.end_user_id,
    }


def by_scope(declarations: list[Declaration]) -> dict[str, Declaration]:
    return {d.scope: d for d in declarations}


def test_each_entitys_caps_and_limits_become_its_scopes_budget() -> None:
    key = key_object(
        end_user_id="customer-7",
        team_max_budget=0.1 + 0.2,
        team_soft_budget=0.25,
        team_rpm_limit=600,
        team_tpm_limit=100_000,
        team_model_max_budget={"gpt-4o": {"max_budget": 0.05, "budget_duration": "1d"}},
        user_max_budget=2.0,
        user_rpm_limit=60,
        user_model_max_budget={"gpt-4o": {"max_budget": 1.0}},
        organization_max_budget=100.0,
        end_user_max_budget=0.5,
        end_user_rpm_limit=2,
        end_user_tpm_limit=5_000,
        end_user_model_max_budget={"gpt-4o-mini": {"max_budget": 0.1, "budget_duration": "1h"}},
    )

    declared = by_scope(declarations_of(key, scope_ids(key)))

    # then every scope is named as the request's spend is counted and its blocks are looked up
    who = RequestIdentity.of_proxy_request(key, {"user": "customer-7"})
    counted = scopes_of(who.key_hash, who.user_id, who.team_id, who.org_id, who.end_user)
    declaring = {scope for scope, d in declared.items() if d.budget is not None}
    assert declaring == {"team:search", "user:alice", "org:acme", "end_user:customer-7"}
    assert declaring <= {str(scope) for scope in counted}
    team = declared["team:search"].budget
    assert team is not None
    # a cap without a duration is a lifetime cap, LiteLLM's meaning; floats read without their noise
    assert (team.max_budget, team.budget_duration, team.soft_budget) == (Decimal("0.3"), None, Decimal("0.25"))
    assert [cap.duration for cap in team.hard_caps()] == [None]
    assert (team.rpm_limit, team.tpm_limit) == (600, 100_000)
    assert team.model_max_budget["gpt-4o"].max_budget == Decimal("0.05")
    assert team.model_max_budget["gpt-4o"].budget_duration == "1d"
    user = declared["user:alice"].budget
    assert user is not None
    assert (user.max_budget, user.rpm_limit, user.tpm_limit) == (Decimal(2), 60, None)
    assert user.model_max_budget["gpt-4o"].budget_duration is None
    org = declared["org:acme"].budget
    assert org == Budget(scope="org:acme", max_budget=Decimal(100))
    end_user = declared["end_user:customer-7"].budget
    assert end_user is not None
    assert (end_user.max_budget, end_user.rpm_limit, end_user.tpm_limit) == (Decimal("0.5"), 2, 5_000)
    assert end_user.model_max_budget["gpt-4o-mini"].budget_duration == "1h"
    assert all(d.problem is None and d.left_out == () for d in declared.values())


def test_the_keys_own_budget_is_not_its_teams() -> None:
    key = key_object(team_max_budget=99.0, max_budget=1.0)

    declared = by_scope(declarations_of(key, scope_ids(key)))

    assert declared[f"key:{KEY_A}"].budget == Budget(scope=f"key:{KEY_A}", max_budget=Decimal(1))
    assert declared["team:search"].budget == Budget(scope="team:search", max_budget=Decimal(99))
    assert declared["user:alice"].budget is None  # nothing declared for the user
    assert declared["org:acme"].budget is None


def test_an_entity_litellm_resets_keeps_its_limits_but_not_its_caps_without_its_duration() -> None:
    reset_at = datetime(2026, 12, 3, tzinfo=UTC)
    key = key_object(
        team_max_budget=5.0,
        team_soft_budget=4.0,
        team_rpm_limit=10,
        team_budget_snapshot=TeamBudgetSnapshot(budget_reset_at=reset_at, max_budget=5.0),
        user_budget_snapshot=UserBudgetSnapshot(budget_reset_at=None, max_budget=3.0, user_alias=None),
        user_max_budget=7.0,  # the key view's copy: LiteLLM enforces the user row's, the snapshot
    )

    declared = by_scope(declarations_of(key, scope_ids(key)))

    team = declared["team:search"]
    assert team.budget == Budget(scope="team:search", rpm_limit=10)
    assert [line.split(":")[0] for line in team.left_out] == ["max_budget", "soft_budget"]
    assert "2026-12-03" in team.left_out[0]
    # a snapshot without a reset: a lifetime cap, at the row's value
    assert declared["user:alice"].budget == Budget(scope="user:alice", max_budget=Decimal(3))


RESET_AT = datetime(2026, 12, 3, tzinfo=UTC)


def resetting_team_and_user() -> UserAPIKeyAuth:
    return key_object(
        team_max_budget=5.0,
        team_soft_budget=4.0,
        team_rpm_limit=10,
        team_budget_snapshot=TeamBudgetSnapshot(budget_reset_at=RESET_AT, max_budget=5.0),
        user_budget_snapshot=UserBudgetSnapshot(budget_reset_at=RESET_AT, max_budget=3.0, user_alias=None),
    )


def test_an_entity_litellm_resets_counts_its_caps_over_its_rows_duration() -> None:
    key = resetting_team_and_user()
    assert rows_to_read(key) == ((ScopeType.TEAM, "search"), (ScopeType.USER, "alice"))

    declared = by_scope(declarations_of(key, scope_ids(key), {ScopeType.TEAM: "30d", ScopeType.USER: "daily"}))

    # then the caps count over the duration, read as a key's own `budget_duration` is
    team = declared["team:search"]
    assert team.budget == Budget(
        scope="team:search",
        max_budget=Decimal(5),
        soft_budget=Decimal(4),
        budget_duration="30d",
        rpm_limit=10,
    )
    assert [cap.duration.text if cap.duration else None for cap in team.budget.hard_caps()] == ["30d"]
    assert team.left_out == ()
    user = declared["user:alice"]
    assert user.budget == Budget(scope="user:alice", max_budget=Decimal(3), budget_duration="24h")
    assert user.left_out == ()


def test_a_duration_is_given_only_to_an_entity_litellm_resets_and_only_to_its_caps() -> None:
    unreset = key_object(
        team_max_budget=5.0, team_budget_snapshot=TeamBudgetSnapshot(budget_reset_at=None, max_budget=5.0)
    )
    limits_only = key_object(
        team_rpm_limit=10, team_budget_snapshot=TeamBudgetSnapshot(budget_reset_at=RESET_AT, max_budget=None)
    )

    assert rows_to_read(unreset) == ()
    lifetime = by_scope(declarations_of(unreset, scope_ids(unreset), {ScopeType.TEAM: "1d"}))["team:search"]
    assert lifetime.budget == Budget(scope="team:search", max_budget=Decimal(5))
    limited = by_scope(declarations_of(limits_only, scope_ids(limits_only), {ScopeType.TEAM: "1d"}))["team:search"]
    assert limited.budget == Budget(scope="team:search", rpm_limit=10)


def test_an_organisation_or_end_customer_cap_counts_over_its_budget_rows_duration() -> None:
    # the key object shows no reset for them: every one it carries a cap for has its row read
    key = key_object(
        end_user_id="customer-7", organization_max_budget=100.0, end_user_max_budget=0.5, end_user_rpm_limit=2
    )
    assert rows_to_read(key) == ((ScopeType.ORG, "acme"), (ScopeType.END_USER, "customer-7"))
    assert rows_to_read(key_object(end_user_id="customer-7", end_user_rpm_limit=2)) == ()

    declared = by_scope(declarations_of(key, scope_ids(key), {ScopeType.ORG: "30d", ScopeType.END_USER: "1d"}))

    assert declared["org:acme"].budget == Budget(scope="org:acme", max_budget=Decimal(100), budget_duration="30d")
    assert declared["end_user:customer-7"].budget == Budget(
        scope="end_user:customer-7", max_budget=Decimal("0.5"), budget_duration="1d", rpm_limit=2
    )
    # no row, or one without a duration (absent): LiteLLM resets nothing, a lifetime cap
    lifetime = by_scope(declarations_of(key, scope_ids(key), {ScopeType.END_USER: "1d"}))["org:acme"]
    assert lifetime.budget == Budget(scope="org:acme", max_budget=Decimal(100))
    # a row never read (None): nothing is declared for the scope, not even its rate limit, since a
    # declaration without the cap would withdraw it fleet-wide
    unread = by_scope(declarations_of(key, scope_ids(key), {ScopeType.ORG: None, ScopeType.END_USER: None}))
    assert set(unread) == {"key:" + KEY_A, "team:search", "user:alice"}


def test_a_duration_spendpipe_does_not_take_leaves_the_caps_out_and_the_rate_limits_stand() -> None:
    key = resetting_team_and_user()

    declared = by_scope(declarations_of(key, scope_ids(key), {ScopeType.TEAM: "30s", ScopeType.USER: "1d"}))

    team = declared["team:search"]
    assert team.budget == Budget(scope="team:search", rpm_limit=10)
    assert [line.split(":")[0] for line in team.left_out] == ["max_budget", "soft_budget"]
    assert "'30s', which spendpipe does not take" in team.left_out[0]
    assert declared["user:alice"].budget is not None  # the other scopes of the object stand


def test_a_soft_budget_without_a_max_budget_is_left_out_over_a_duration_and_the_rate_limits_stand() -> None:
    key = key_object(
        team_soft_budget=4.0,
        team_rpm_limit=10,
        team_budget_snapshot=TeamBudgetSnapshot(budget_reset_at=RESET_AT, max_budget=None),
    )

    declared = by_scope(declarations_of(key, scope_ids(key), {ScopeType.TEAM: "30d"}))

    team = declared["team:search"]
    assert team.budget == Budget(scope="team:search", rpm_limit=10)
    assert [line.split(":")[0] for line in team.left_out] == ["soft_budget"]


def test_a_duration_read_late_is_seen_on_an_unchanged_key_object() -> None:
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=RecordSigner(None))
    key = resetting_team_and_user()
    who = RequestIdentity.of_proxy_request(key, {})
    declared.observe(who, key, {ScopeType.TEAM: None, ScopeType.USER: None})  # the rows not read yet
    assert "team:search" not in declared.queued()
    published(declared)

    declared.observe(who, key, {ScopeType.TEAM: "30d"})

    team = Budget.model_validate_json(declared.queued()["team:search"] or b"")
    assert (team.max_budget, team.budget_duration) == (Decimal(5), "30d")


def test_what_spendpipe_does_not_enforce_is_said_and_what_is_invalid_refused_by_field() -> None:
    key = key_object(
        team_member_rpm_limit=5, organization_tpm_limit=1000, end_user_id="c", end_user_tpd_limit=9, user_rpm_limit=0
    )

    declared = by_scope(declarations_of(key, scope_ids(key)))

    assert declared["team:search"].left_out == (
        "team_member_rpm_limit: spendpipe has no rate limits on a team membership",
    )
    assert declared["org:acme"].left_out == ("organization_tpm_limit: spendpipe has no rate limits on an organisation",)
    assert declared["end_user:c"].left_out == ("end_user_tpd_limit: spendpipe has no tokens-per-day limit",)
    user = declared["user:alice"]
    assert user.budget is None
    assert user.problem is not None
    assert user.problem.problems[0].startswith("rpm_limit:")


class BrokenDatabase:
    """LiteLLM's database client at a gateway's cold start against a database that fails."""

    def __getattr__(self, name: str) -> object:
        raise ConnectionError("database down")


async def test_a_gateway_starting_cold_publishes_nothing_for_a_scope_whose_row_it_could_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a team's, a user's and an organisation's caps LiteLLM resets, which other gateways
    # already enforce over their rows' durations
    monkeypatch.setattr(entity_durations, "_prisma_client", BrokenDatabase)
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=RecordSigner(None))
    key = resetting_team_and_user()
    key.organization_max_budget = 100.0
    who = RequestIdentity.of_proxy_request(key, {})

    # when this gateway's first read of their rows fails (a cold cache, the database down)
    await declared.observe_proxy_request(who, key, UserApiKeyCache())

    # then it publishes nothing for them: a declaration without the caps would withdraw them
    assert declared.queued() == {}
    # and once the rows are read, the caps are published over their durations
    declared.observe(who, key, {ScopeType.TEAM: "30d", ScopeType.USER: "1d", ScopeType.ORG: "30d"})
    queued = {scope: Budget.model_validate_json(value or b"") for scope, value in declared.queued().items()}
    assert queued == {
        "team:search": Budget(
            scope="team:search", max_budget=Decimal(5), soft_budget=Decimal(4), budget_duration="30d", rpm_limit=10
        ),
        "user:alice": Budget(scope="user:alice", max_budget=Decimal(3), budget_duration="1d"),
        "org:acme": Budget(scope="org:acme", max_budget=Decimal(100), budget_duration="30d"),
    }


def published(declared: DeclaredBudgets) -> None:
    """What the background loop does once it has sent the queue."""
    with declared._lock:
        declared._published.update(declared._queued)
        declared._queued.clear()


def observe(declared: DeclaredBudgets, key: UserAPIKeyAuth) -> None:
    declared.observe(RequestIdentity.of_proxy_request(key, {}), key)


def test_many_keys_of_one_team_publish_its_budget_once() -> None:
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=RecordSigner(None))

    observe(declared, key_object(KEY_A, team_max_budget=5.0))
    first = declared.queued()["team:search"]
    published(declared)
    observe(declared, key_object(KEY_B, team_max_budget=5.0))
    observe(declared, key_object(KEY_A, team_max_budget=5.0))

    assert first == Budget(scope="team:search", max_budget=Decimal(5)).model_dump_json(exclude_none=True).encode()
    assert declared.queued() == {}


def test_keys_that_disagree_publish_once_each_not_back_and_forth() -> None:
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=RecordSigner(None))
    fresh, stale = key_object(KEY_A, team_max_budget=5.0), key_object(KEY_B, team_max_budget=9.0)

    observe(declared, fresh)
    published(declared)
    observe(declared, stale)  # a key read from a stale cache: its first sighting is published
    assert Budget.model_validate_json(declared.queued()["team:search"] or b"").max_budget == Decimal(9)
    published(declared)
    for _ in range(3):  # requests alternating between the two keys change nothing
        observe(declared, fresh)
        observe(declared, stale)
    assert declared.queued() == {}

    observe(declared, key_object(KEY_B, team_max_budget=5.0))  # its cache refreshed: they agree again
    assert Budget.model_validate_json(declared.queued()["team:search"] or b"").max_budget == Decimal(5)


def test_a_team_budget_is_withdrawn_only_when_no_key_declares_it() -> None:
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=RecordSigner(None))
    observe(declared, key_object(KEY_A, team_max_budget=5.0))
    observe(declared, key_object(KEY_B, team_max_budget=5.0))
    published(declared)

    observe(declared, key_object(KEY_A))  # one key no longer carries it: the other's stands
    assert declared.queued() == {}
    observe(declared, key_object(KEY_B))
    assert declared.queued() == {"team:search": None}


@pytest.mark.parametrize("scope", ["team:search", "user:alice", "org:acme", "end_user:customer-7", f"key:{KEY_A}"])
def test_the_enforcer_takes_a_declared_budget_of_every_scope_a_key_object_declares(scope: str) -> None:
    budget = Budget(scope=scope, max_budget=Decimal(1))

    assert _declared_budget(scope, budget.model_dump_json().encode()) == budget


@pytest.mark.parametrize(
    ("record_key", "scope"),
    [
        ("team:other", "team:search"),  # a budget of one team under another's key
        ("global", "global"),  # never a key object's to declare
        ("tag:batch", "tag:batch"),
        ("provider:openai", "provider:openai"),
        ("team_member:search/alice", "team_member:search/alice"),
    ],
)
def test_the_enforcer_ignores_a_declared_budget_of_another_scope(record_key: str, scope: str) -> None:
    value = Budget(scope=scope, max_budget=Decimal(1)).model_dump_json().encode()

    assert _declared_budget(record_key, value) is None


def test_the_gateway_compares_every_field_the_mapping_reads() -> None:
    """`observe` skips a key object whose `FIELDS_READ` are unchanged: a field read but not
    compared would hide its changes."""
    read: set[str] = set()

    class Recording:
        def __getattr__(self, name: str) -> object:
            read.add(name)
            return None

    declarations_of(Recording(), dict.fromkeys(ScopeType, "x"))

    assert read <= set(FIELDS_READ)
    assert "team_budget_snapshot" in read


def test_a_changed_reset_on_an_unchanged_cap_is_seen() -> None:
    declared = DeclaredBudgets(kafka=KafkaSettings(), topic="declared", signer=RecordSigner(None))
    observe(declared, key_object(team_max_budget=5.0))
    published(declared)

    reset = TeamBudgetSnapshot(budget_reset_at=datetime(2026, 12, 3, tzinfo=UTC), max_budget=5.0)
    observe(declared, key_object(team_max_budget=5.0, team_budget_snapshot=reset))

    assert declared.queued() == {"team:search": None}  # LiteLLM resets it: no longer enforced here
