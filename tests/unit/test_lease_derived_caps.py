"""Headroom leases of the caps a budget derives for other scopes (docs/leases.md): a leasing team
budget's `max_budget_in_team` is a leased target per member, a leasing global budget's
`max_end_user_budget` one per end customer, each only for a scope without a budget of its own;
a call is admitted only when every leased target it counts towards covers it."""

import os
import secrets
import time
from collections.abc import Sequence
from decimal import Decimal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.leases import LeaseGrant, LeaseRequest, LeaseSettings, commitment_of
from spendpipe.contracts.scopes import Scope
from spendpipe.enforcer.leases import LeaseDesk
from spendpipe.enforcer.targets import BudgetBook, Target
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.leases.book import LeaseBook, Verdict
from spendpipe.gateway.leases.gate import LeaseGate
from spendpipe.store.totals import Measurement
from tests.unit.test_lease_gate import grant_for

SETTINGS = LeaseSettings(ttl_s=10, settle_grace_s=5, wait_s=2)
TEAM = {"scope": "team:eng", "max_budget": "10", "max_budget_in_team": "1", "headroom_leases": True}
GLOBAL = {"scope": "global", "max_budget": "100", "max_end_user_budget": "0.5", "headroom_leases": True}
ALICE, BOB = Scope.parse("team_member:eng/alice"), Scope.parse("team_member:eng/bob")
REQUEST = {"messages": [{"role": "user", "content": "hi"}]}


def book_of(*budgets: dict[str, object]) -> BudgetBook:
    book = BudgetBook()
    for budget in budgets:
        book.put(validate_budget(budget))
    return book


def test_a_leasing_team_budget_leases_each_members_derived_cap() -> None:
    book = book_of(TEAM)
    (target,) = book.leased_targets(ALICE)
    assert (target.scope, target.model) == (ALICE, "")
    assert [cap.limit for cap in target.caps] == [Decimal(1)]
    assert book.leased_targets(BOB)[0].scope == BOB


def test_a_leasing_global_budget_leases_each_end_customers_default_cap() -> None:
    (target,) = book_of(GLOBAL).leased_targets(Scope.parse("end_user:acme"))
    assert [cap.limit for cap in target.caps] == [Decimal("0.5")]


def test_derived_caps_are_not_leased_without_leases_or_over_a_scopes_own_budget() -> None:
    plain = book_of(TEAM | {"headroom_leases": False})
    assert plain.leased_targets(ALICE) == []
    assert plain.targets_for(ALICE)  # still a pipeline-lag target
    own = book_of(TEAM, {"scope": "team_member:eng/alice", "max_budget": "5"})
    assert own.leased_targets(ALICE) == []  # its own budget governs it, and does not lease
    assert own.leased_targets(BOB)


def test_a_derived_cap_alone_may_lease() -> None:
    validate_budget({"scope": "team:eng", "max_budget_in_team": "1", "headroom_leases": True})
    validate_budget({"scope": "global", "max_end_user_budget": "1", "headroom_leases": True})


class Members:
    """The pipeline's totals per member of team eng, for the desk."""

    def __init__(self) -> None:
        self.spend: dict[str, Decimal] = {}

    def measure(self, target: Target, now: int) -> list[Measurement]:
        return [Measurement(cap, self.spend.get(str(target.scope), Decimal(0)), None) for cap in target.caps]

    def count(self, target: Target, chains: Sequence[tuple[str, float, float | None]]) -> list[Decimal]:
        return [Decimal(0) for _ in chains]


def ask(scope: str, want: str, gateway: str = "gw") -> LeaseRequest:
    return LeaseRequest(
        kind="request",
        gateway_id=gateway,
        chain=secrets.token_hex(16),
        scope=scope,
        want=Decimal(want),
        commitment=commitment_of(secrets.token_hex(32)),
    )


def test_the_desk_lends_a_members_derived_headroom_per_member() -> None:
    now = [1_800_000_000.0]
    members = Members()
    book = book_of(TEAM)
    desk = LeaseDesk(book=book, measure=members.measure, counted=members.count, settings=SETTINGS, clock=lambda: now[0])
    now[0] += SETTINGS.ttl_s + SETTINGS.settle_grace_s
    members.spend[str(ALICE)] = Decimal("0.75")
    alice = desk.handle(ask(str(ALICE), "5"))
    bob = desk.handle(ask(str(BOB), "5"))
    assert isinstance(alice, LeaseGrant)
    assert isinstance(bob, LeaseGrant)
    assert (alice.granted, alice.headroom) == (Decimal("0.25"), Decimal("0.25"))  # 1 - what alice spent
    assert bob.granted == Decimal(1)
    book.put(validate_budget(TEAM | {"max_budget_in_team": "2"}))
    revoked = desk.revoke_changed()
    assert {g.scope for g in revoked} == {str(ALICE), str(BOB)}  # a changed member cap revokes
    assert all(g.revoked for g in revoked)


def team_gate(*budgets: dict[str, object]) -> LeaseGate:
    gate = LeaseGate.without_kafka("gw", fail_closed=True)
    for budget in budgets:
        gate.put(validate_budget(budget))
    return gate


def member(user: str, team: str = "eng", end_user: str | None = None) -> RequestIdentity:
    return RequestIdentity(key_hash="k" * 64, user_id=user, team_id=team, end_user=end_user)


def test_a_members_call_reserves_on_the_team_and_on_the_members_cap() -> None:
    gate = team_gate(TEAM, GLOBAL)
    needs = gate.needs(member("alice", end_user="acme"), "gpt-4o-mini", REQUEST)
    assert sorted(needs) == ["end_user:acme", "global", "team:eng", "team_member:eng/alice"]
    assert len({estimate for _, _, estimate in needs.values()}) == 1  # one estimate, every target


def test_the_gateway_derives_nothing_for_a_scope_with_its_own_budget_or_without_leases() -> None:
    gate = team_gate(TEAM, {"scope": "team_member:eng/alice", "max_budget": "5"})
    assert sorted(gate.needs(member("alice"), "m", REQUEST)) == ["team:eng"]
    assert sorted(gate.needs(member("bob"), "m", REQUEST)) == ["team:eng", "team_member:eng/bob"]
    gate.put(validate_budget(TEAM | {"headroom_leases": False}))
    assert gate.needs(member("bob"), "m", REQUEST) == {}
    gate.put(validate_budget(TEAM))
    gate.delete("team:eng")
    assert gate.needs(member("bob"), "m", REQUEST) == {}


def test_a_member_at_their_cap_is_refused_while_the_team_has_headroom_and_another_member_goes_on() -> None:
    """Every leased target must cover the call: the team's chain covers it, alice's does not and
    the enforcer says her headroom is spent, so she is refused, naming her cap, and nothing is
    reserved on the team's chain; bob's call reserves on the team and on his own cap."""
    gate = team_gate(TEAM)
    book = gate.book
    alice = gate.needs(member("alice"), "m", REQUEST)
    bob = gate.needs(member("bob"), "m", REQUEST)
    estimate = alice["team:eng"][2]
    now = time.monotonic()  # the gate's clock
    _, asks = book.reserve("a0", alice, "m", now)
    grants = {a.key: a for a in asks}
    book.apply(grant_for(grants["team:eng"], "10", "9"), now)
    book.apply(grant_for(grants["team_member:eng/alice"], "0", "0", headroom=str(estimate / 2)), now)
    decision = gate.admit_now("a1", alice, "m")
    assert decision is not None
    assert decision.scope == "team_member:eng/alice"
    assert "team_member:eng/alice" in decision.reason
    team_chain = book.holding("team:eng")
    assert team_chain is not None
    assert team_chain.reserved == 0  # all targets or none
    verdict, (bobs,) = book.reserve("b1", bob, "m", now)
    assert verdict is Verdict.WAIT  # the team's chain covers it; bob's own chain asks first
    book.apply(grant_for(bobs, "1", "0", headroom="1"), now)
    assert book.reserve("b1", bob, "m", now)[0] is Verdict.RESERVED
    assert team_chain.reserved == estimate
    bob_chain = book.holding("team_member:eng/bob")
    assert bob_chain is not None
    assert bob_chain.reserved == estimate


def test_the_refusal_names_the_target_that_cannot_cover_the_call() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    needs = {
        "team:eng": ("team:eng", "", Decimal("0.1")),
        "team_member:eng/a": ("team_member:eng/a", "", Decimal("0.1")),
    }
    _, asks = book.reserve("0", needs, "m", 0.0)
    for request in asks:
        book.apply(grant_for(request, "1" if request.scope == "team:eng" else "0", "0"), 0.0)
    assert book.short_of(needs, 0.1) == "team_member:eng/a"


def test_the_refusal_names_the_spent_target_while_another_chain_waits_for_a_grant() -> None:
    """The team's chain is short too, but only asking (headroom free): the member's spent cap is
    what refuses the call."""
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    needs = {
        "team:eng": ("team:eng", "", Decimal("0.1")),
        "team_member:eng/a": ("team_member:eng/a", "", Decimal("0.1")),
    }
    _, asks = book.reserve("0", needs, "m", 0.0)
    (member_ask,) = [a for a in asks if a.scope == "team_member:eng/a"]
    book.apply(grant_for(member_ask, "0", "0", headroom="0.05"), 0.0)
    assert book.reserve("1", needs, "m", 0.1)[0] is Verdict.REFUSE
    assert book.short_of(needs, 0.1) == "team_member:eng/a"
