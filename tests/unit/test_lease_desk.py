"""The enforcer's lease desk (docs/leases.md): never lends more than the headroom, counts spent
leases once, frees a slice only by a genuine return or after the chain lapsed, revokes on a cap
change, and lends nothing while a predecessor's chains may be out."""

import secrets
from collections.abc import Sequence
from decimal import Decimal

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.leases import LeaseGrant, LeaseRequest, LeaseSettings, commitment_of
from spendpipe.enforcer.leases import LeaseDesk
from spendpipe.enforcer.targets import BudgetBook, Target
from spendpipe.store.totals import Measurement

SETTINGS = LeaseSettings(ttl_s=10, settle_grace_s=5)
START = 1_800_000_000.0
SCOPE = "team:search"


class World:
    """A budget, a clock, the pipeline's totals and what it counted per gateway."""

    def __init__(self, cap: str = "1", *, leases: bool = True) -> None:
        self.now = START
        self.spend = Decimal(0)
        self.calls: list[tuple[str, float, Decimal]] = []
        """(gateway, when it ended, cost) of every call the pipeline counted."""
        self.reads: list[str] = []
        """The desk's store reads, in order."""
        self.book = BudgetBook()
        self.set_cap(cap, leases=leases)
        self.desk = LeaseDesk(
            book=self.book, measure=self.measure, counted=self.count, settings=SETTINGS, clock=lambda: self.now
        )
        self.now += SETTINGS.ttl_s + SETTINGS.settle_grace_s  # past the start-up wait

    def set_cap(self, cap: str, *, leases: bool = True) -> None:
        self.book.put(validate_budget({"scope": SCOPE, "max_budget": cap, "headroom_leases": leases}))

    def measure(self, target: Target, now: int) -> list[Measurement]:
        self.reads.append("measure")
        return [Measurement(cap, self.spend, None) for cap in target.caps]

    def count(self, target: Target, chains: Sequence[tuple[str, float, float | None]]) -> list[Decimal]:
        """As `ChainSpend.counted`: each chain's gateway's calls that ended from its start until its end."""
        self.reads.append("counted")
        return [
            sum(
                (c for g, at, c in self.calls if g == gateway and start <= at and (end is None or at < end)), Decimal(0)
            )
            for gateway, start, end in chains
        ]

    def charge(self, gateway: str, cost: str) -> None:
        """The pipeline counted a call of `gateway` that ended now."""
        self.spend += Decimal(cost)
        self.calls.append((gateway, self.now, Decimal(cost)))


class Gateway:
    def __init__(self, name: str) -> None:
        self.name = name
        self.chain = secrets.token_hex(16)
        self.secret = secrets.token_hex(32)

    def ask(self, want: str, need: str = "0") -> LeaseRequest:
        return LeaseRequest(
            kind="request",
            gateway_id=self.name,
            chain=self.chain,
            scope=SCOPE,
            want=Decimal(want),
            need=Decimal(need),
            commitment=commitment_of(self.secret),
        )

    def release(self, released: str, secret: str | None = None) -> LeaseRequest:
        """Hand part of the chain back and keep it: reveal the secret, commit to the next one."""
        revealed, self.secret = secret or self.secret, secrets.token_hex(32)
        return LeaseRequest(
            kind="release",
            gateway_id=self.name,
            chain=self.chain,
            scope=SCOPE,
            secret=revealed,
            commitment=commitment_of(self.secret),
            released=Decimal(released),
        )

    def give_back(self, used: str, secret: str | None = None, reserved: str = "0") -> LeaseRequest:
        """Return the chain; with calls in flight, commit to the secret its settle reveals."""
        revealed = secret or self.secret
        if secret is None:
            self.secret = secrets.token_hex(32)
        return LeaseRequest(
            kind="return",
            gateway_id=self.name,
            chain=self.chain,
            scope=SCOPE,
            secret=revealed,
            commitment=commitment_of(self.secret) if Decimal(reserved) > 0 else None,
            used=Decimal(used),
            reserved=Decimal(reserved),
        )

    def settle(self, cost: str, secret: str | None = None) -> LeaseRequest:
        """The calls in flight at the return have ended and cost `cost`."""
        return LeaseRequest(
            kind="settle",
            gateway_id=self.name,
            chain=self.chain,
            scope=SCOPE,
            secret=secret or self.secret,
            used=Decimal(cost),
        )


def granted(grant: LeaseGrant | None) -> Decimal:
    assert grant is not None
    return grant.granted


def test_never_lends_more_than_the_headroom() -> None:
    world = World("1")
    a, b, c = Gateway("a"), Gateway("b"), Gateway("c")
    total = Decimal(0)
    for _ in range(20):
        total = sum((granted(world.desk.handle(g.ask("0.3"))) for g in (a, b, c)), Decimal(0))
        assert total <= Decimal(1)
    assert total > Decimal("0.99")  # and lends nearly all of it when asked often enough


def test_spend_counted_by_the_pipeline_is_not_counted_twice() -> None:
    world = World("1")
    a, b = Gateway("a"), Gateway("b")
    assert granted(world.desk.handle(a.ask("0.4"))) == Decimal("0.4")
    world.charge("a", "0.4")  # a spent its slice; the totals hold it now
    grant = world.desk.handle(b.ask("0.6"))
    assert grant is not None
    assert grant.granted + grant.free == Decimal("0.6")  # 1 - 0.4 spent - 0 outstanding


def test_spend_not_yet_counted_stays_lent() -> None:
    world = World("1")
    a, b = Gateway("a"), Gateway("b")
    world.desk.handle(a.ask("0.5"))  # a may have spent it already: the pipeline has not counted it
    grant = world.desk.handle(b.ask("1", need="0.6"))
    assert grant is not None
    assert grant.granted + grant.free == Decimal("0.5")
    assert grant.granted < Decimal("0.6")  # a call needing 0.6 cannot be covered


def test_a_return_needs_the_chains_secret() -> None:
    world = World("1")
    a, b = Gateway("a"), Gateway("b")
    world.desk.handle(a.ask("1"))
    assert world.desk.handle(a.give_back("0", secret=secrets.token_hex(32))) is None
    assert world.desk.rejected == 1
    assert granted(world.desk.handle(b.ask("1"))) == 0  # nothing freed by the forged return
    world.desk.handle(a.give_back("0.25"))
    assert granted(world.desk.handle(b.ask("1"))) == Decimal("0.75")


def test_an_event_dated_ahead_of_the_desk_frees_nothing_it_lent() -> None:
    """Whoever writes `spend.events` may date an event up to the future allowance ahead, past the
    window's end, under a leasing gateway's id: no total of this window holds it, so counting it
    as that gateway's spend would lend the same headroom again."""
    world = World("1")
    a, b = Gateway("a"), Gateway("b")
    assert granted(world.desk.handle(a.ask("1"))) == 1
    world.calls.append(("a", world.now + 60, Decimal(1)))  # dated a minute ahead, in no total yet

    world.now += 1
    assert granted(world.desk.handle(b.ask("1"))) == 0


def test_a_request_spelling_a_chains_target_another_way_is_dropped_not_answered_with_a_revocation() -> None:
    """`team:search|gpt-4o` is the key of the model target (`team:search`, `gpt-4o`), and also of a
    scope of that text with no model, for which no budget leases. The chain and gateway ids are
    read on the topic: without this check the forged request closed the genuine chain."""
    world = World("1")
    world.book.put(
        validate_budget({"scope": SCOPE, "model_max_budget": {"gpt-4o": {"max_budget": "10"}}, "headroom_leases": True})
    )
    a = Gateway("a")
    genuine = a.ask("1").model_copy(update={"model": "gpt-4o"})
    forged = a.ask("1").model_copy(update={"scope": f"{SCOPE}|gpt-4o", "model": ""})
    assert forged.key == genuine.key
    assert granted(world.desk.handle(genuine)) == 1

    assert world.desk.handle(forged) is None

    assert world.desk.rejected == 1
    again = world.desk.handle(genuine.model_copy(update={"want": Decimal("0.5")}))
    assert again is not None
    assert not again.revoked


def test_a_release_frees_part_of_an_open_chain_only_with_its_current_secret() -> None:
    world = World("1")
    a, b, c = Gateway("a"), Gateway("b"), Gateway("c")
    world.desk.handle(a.ask("1"))
    forger = Gateway("a")
    forger.chain = a.chain  # knows the chain, not its secret
    assert world.desk.handle(forger.release("0.9")) is None
    assert world.desk.rejected == 1
    assert granted(world.desk.handle(b.ask("1", need="0.5"))) == 0  # nothing freed by the forgery
    release = a.release("0.6")
    grant = world.desk.handle(release)
    assert grant is not None
    assert not grant.revoked  # the chain goes on
    assert (grant.granted, grant.free, grant.headroom) == (Decimal(1), Decimal("0.6"), Decimal(1))
    assert world.desk.handle(release) is None  # a replay: its secret is spent
    assert world.desk.rejected == 2
    assert granted(world.desk.handle(b.ask("1", need="0.6"))) == Decimal("0.6")
    world.desk.handle(a.give_back("0.1"))  # the return reveals the secret the release committed to
    assert granted(world.desk.handle(c.ask("1", need="0.3"))) == Decimal("0.3")  # 1 - 0.1 - 0.6


def test_calls_of_an_ended_chain_that_end_in_the_next_one_are_not_lent_again() -> None:
    """A gateway's calls in flight when its chain ended (returned, lapsed) end after its next
    chain began, and count for that one: the next chain carries what the ended one was lent and
    not counted, so those calls never make room for a second loan."""
    world = World("1")
    first, b = Gateway("a"), Gateway("b")
    world.desk.handle(first.ask("0.5"))
    world.charge("a", "0.1")
    world.now += 1
    world.desk.handle(first.give_back("0.1", reserved="0.4"))  # calls worth 0.4 still in flight
    world.now += 1
    second = Gateway("a")
    assert granted(world.desk.handle(second.ask("0.2"))) == Decimal("0.2")
    world.now += 1
    world.charge("a", "0.4")  # the first chain's calls end, in the second chain's time
    world.now += SETTINGS.settle_grace_s  # the first chain leaves the account
    grant = world.desk.handle(b.ask("1", need="0.3"))
    assert grant is not None
    assert grant.granted + grant.free == Decimal("0.3")  # 1 - 0.5 spent - 0.2 the second chain holds


def test_a_dead_gateways_slice_returns_after_ttl_and_grace() -> None:
    world = World("1")
    dead, alive = Gateway("dead"), Gateway("alive")
    world.desk.handle(dead.ask("1"))
    world.now += SETTINGS.ttl_s + SETTINGS.settle_grace_s - 0.01
    assert granted(world.desk.handle(alive.ask("1"))) == 0
    world.now += 0.02
    assert granted(world.desk.handle(alive.ask("1"))) == Decimal(1)


def test_a_lowered_cap_revokes_and_nothing_more_is_lent() -> None:
    world = World("1")
    a = Gateway("a")
    world.desk.handle(a.ask("0.8"))
    world.set_cap("0.5")
    (revoked,) = world.desk.revoke_changed()
    assert revoked.revoked
    assert revoked.chain == a.chain
    fresh = Gateway("a")  # the gateway starts a new chain
    assert granted(world.desk.handle(fresh.ask("0.1", need="0.1"))) == 0


def test_an_unchanged_budget_revokes_nothing() -> None:
    world = World("1")
    world.desk.handle(Gateway("a").ask("0.5"))
    world.set_cap("1")
    assert world.desk.revoke_changed() == []


def test_a_budget_without_leases_gets_a_revocation() -> None:
    world = World("1", leases=False)
    grant = world.desk.handle(Gateway("a").ask("0.5"))
    assert grant is not None
    assert grant.revoked
    assert grant.granted == 0


def test_a_fresh_desk_lends_nothing_until_old_chains_lapsed() -> None:
    world = World("1")
    world.desk = LeaseDesk(
        book=world.book, measure=world.measure, counted=world.count, settings=SETTINGS, clock=lambda: world.now
    )
    assert world.desk.handle(Gateway("a").ask("0.5")) is None


def test_a_desk_with_no_grant_on_its_topic_lends_at_once() -> None:
    world = World("1")
    world.desk = LeaseDesk(
        book=world.book, measure=world.measure, counted=world.count, settings=SETTINGS, clock=lambda: world.now
    )
    world.desk.resume(None)
    assert granted(world.desk.handle(Gateway("a").ask("0.5"))) == Decimal("0.5")


def test_a_desk_lends_once_its_predecessors_last_chain_expired_and_settled() -> None:
    world = World("1")
    world.desk = LeaseDesk(
        book=world.book, measure=world.measure, counted=world.count, settings=SETTINGS, clock=lambda: world.now
    )
    started = world.now
    world.desk.resume(started + 3)  # the last grant on the topic expires 3 s from now
    gateway = Gateway("a")
    world.now = started + 3 + SETTINGS.settle_grace_s - 0.1
    assert world.desk.handle(gateway.ask("0.5")) is None
    world.now = started + 3 + SETTINGS.settle_grace_s
    assert granted(world.desk.handle(gateway.ask("0.5"))) == Decimal("0.5")


def test_a_grant_dated_far_ahead_holds_a_desk_off_no_longer_than_a_ttl_and_grace() -> None:
    world = World("1")
    world.desk = LeaseDesk(
        book=world.book, measure=world.measure, counted=world.count, settings=SETTINGS, clock=lambda: world.now
    )
    started = world.now
    world.desk.resume(started + 86_400)
    world.now = started + SETTINGS.ttl_s + SETTINGS.settle_grace_s - 0.1
    assert not world.desk.lending()
    world.now = started + SETTINGS.ttl_s + SETTINGS.settle_grace_s
    assert world.desk.lending()


def test_a_request_naming_another_gateways_chain_is_dropped() -> None:
    world = World("1")
    a = Gateway("a")
    world.desk.handle(a.ask("0.5"))
    thief = Gateway("thief")
    thief.chain = a.chain
    assert world.desk.handle(thief.ask("0.5")) is None
    assert world.desk.rejected == 1


def test_a_busy_gateway_gets_a_fair_share_beside_an_idle_one() -> None:
    world = World("1")
    idle, busy = Gateway("idle"), Gateway("busy")
    assert granted(world.desk.handle(idle.ask("0.05"))) == Decimal("0.05")
    busy_total = granted(world.desk.handle(busy.ask("10")))
    assert busy_total == Decimal("0.475")  # half of what nobody holds
    world.desk.handle(idle.give_back("0"))  # idle hands its slice back
    assert granted(world.desk.handle(busy.ask("10"))) == Decimal(1)


def test_calls_that_settled_at_less_than_their_estimate_leave_no_slack_in_the_next_chains() -> None:
    world = World("1")
    for _ in range(3):  # three chains, each ended with a call estimated at 0.1 in flight
        chain = Gateway("a")
        world.desk.handle(chain.ask("0.5"))
        world.now += 1
        world.desk.handle(chain.give_back("0", reserved="0.1"))
        world.now += 1
        world.charge("a", "0")  # the call ends in the next chain's time: it failed, and cost nothing
        world.desk.handle(chain.settle("0"))  # and the gateway says so
    current = Gateway("a")
    assert granted(world.desk.handle(current.ask("0.2"))) == Decimal("0.2")
    world.now += SETTINGS.settle_grace_s  # the three ended chains leave the account
    grant = world.desk.handle(Gateway("b").ask("1"))
    assert grant is not None
    assert grant.granted + grant.free == Decimal("0.8")  # nothing was spent; the current chain holds 0.2


def returned_with_a_call_in_flight(world: World, estimate: str) -> Gateway:
    """A chain of gateway a lent 0.5, returned with one call estimated at `estimate` in flight."""
    chain = Gateway("a")
    world.desk.handle(chain.ask("0.5"))
    world.now += 1
    world.desk.handle(chain.give_back("0", reserved=estimate))
    return chain


def unlent(world: World) -> Decimal:
    """What another gateway could be lent now (the enforcer's `free` when asked for nothing)."""
    grant = world.desk.handle(Gateway("b").ask("0"))
    assert grant is not None
    return grant.free


def test_a_settle_after_the_chain_left_the_account_lowers_the_carry_of_the_next_one() -> None:
    world = World("1")
    ended = returned_with_a_call_in_flight(world, "0.1")
    world.now += 1
    current = Gateway("a")
    assert granted(world.desk.handle(current.ask("0.2"))) == Decimal("0.2")
    world.now += SETTINGS.settle_grace_s  # the ended chain left; its 0.1 is carried by the current one
    world.charge("a", "0.03")  # the call ends: it cost 0.03 of its 0.1
    world.now += 1
    grant = world.desk.handle(ended.settle("0.03"))
    assert grant is not None
    assert grant.chain == current.chain  # answered on the chain that carried it, with what is free
    assert (grant.free, grant.headroom) == (Decimal("0.77"), Decimal("0.97"))  # 1 - 0.03 - 0.2 held
    assert unlent(world) == Decimal("0.77")


def test_a_settle_before_the_chain_left_the_account_lowers_its_grant() -> None:
    world = World("1")
    ended = returned_with_a_call_in_flight(world, "0.1")
    assert unlent(world) == Decimal("0.9")  # the call in flight may cost its estimate
    world.charge("a", "0.04")
    world.desk.handle(ended.settle("0.04"))
    assert unlent(world) == Decimal("0.96")


def test_a_settle_needs_the_secret_its_chains_return_committed_to() -> None:
    world = World("1")
    ended = Gateway("a")
    world.desk.handle(ended.ask("0.5"))
    revealed_by_the_return = ended.secret  # public once the return is on the topic
    world.desk.handle(ended.give_back("0", reserved="0.1"))
    assert world.desk.handle(ended.settle("0", secret=revealed_by_the_return)) is None
    assert world.desk.rejected == 1
    other = Gateway("b")
    other.chain = ended.chain
    assert world.desk.handle(other.settle("0", secret=ended.secret)) is None  # not gateway a's chain
    assert world.desk.rejected == 2
    assert unlent(world) == Decimal("0.9")
    world.desk.handle(ended.settle("0"))
    world.desk.handle(ended.settle("0"))  # a replay finds nothing left to settle
    assert unlent(world) == Decimal(1)


def test_a_returned_chains_secret_ends_no_second_return() -> None:
    """A return reveals the chain's secret on the topic: a second return with it must not lower
    the grant that still covers the calls in flight."""
    world = World("1")
    chain = Gateway("a")
    world.desk.handle(chain.ask("0.5"))
    revealed = chain.secret
    world.desk.handle(chain.give_back("0", reserved="0.1"))
    assert world.desk.handle(chain.give_back("0", secret=revealed)) is None
    assert world.desk.rejected == 1
    assert unlent(world) == Decimal("0.9")


def test_a_settle_frees_no_more_than_the_ended_chain_passed_on() -> None:
    """A chain whose count holds more than it was lent (here a call admitted without a
    reservation, as `fail_open` does) passes on less than its calls in flight were lent: their
    settle may not take the rest from what a later chain carries for calls still in flight."""
    world = World("1")
    oldest = returned_with_a_call_in_flight(world, "0.1")
    world.charge("a", "0.15")  # its call in flight (0.05) and an unreserved call (0.1) end in its time
    world.now += 1
    returned_with_a_call_in_flight(world, "0.2")  # the next chain's call (0.2) is still in flight
    world.now += 1
    world.desk.handle(Gateway("a").ask("0.2"))
    world.now += SETTINGS.settle_grace_s + 2  # both ended chains left: the oldest passed on nothing
    assert unlent(world) == Decimal("0.45")  # 1 - 0.15 spent - 0.2 held - 0.2 in flight
    world.desk.handle(oldest.settle("0.05"))
    assert unlent(world) == Decimal("0.45")


def test_a_batch_reads_the_totals_and_the_chains_counts_once_and_answers_as_one_by_one() -> None:
    gateways = [Gateway(f"g{n}") for n in range(4)]
    first = [g.ask("0.1") for g in gateways]
    again = [g.ask("0.2") for g in gateways] + [Gateway("new").ask("0.3")]
    answers = []
    for batched in (False, True):
        world = World("1")
        for request in first:
            world.desk.handle(request)
        world.charge("g0", "0.05")
        world.now += 1
        world.reads.clear()
        if batched:
            grants = world.desk.handle_many(again)
            assert world.reads == ["measure", "counted"]
        else:
            grants = [g for g in map(world.desk.handle, again) if g is not None]
            assert len(world.reads) == 2 * len(again)
        answers.append([(g.chain, g.granted, g.free) for g in grants])
    assert answers[0] == answers[1]
    assert sum(granted for _, granted, _ in answers[1]) + Decimal("0.05") <= Decimal(1)
