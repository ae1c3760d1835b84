"""The gateway's side of headroom leases (docs/leases.md): reservations within a chain, the
refusal once the enforcer says nothing is free, waiting while other chains hold unspent headroom,
releasing what a chain holds beyond its need, asking ahead, revocation, the unsynced policy when
the enforcer does not answer, returns, and the estimate rule."""

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.leases import GRANT_MESSAGE_TYPE, LeaseGrant, LeaseRequest, LeaseSettings, commitment_of
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.leases.book import LeaseBook, Verdict
from spendpipe.gateway.leases.estimate import CallEstimator
from spendpipe.gateway.leases.gate import LeaseGate
from spendpipe.gateway.leases.lease_log import LeaseLog
from spendpipe.platform.kafka import KafkaSettings
from tests.support.signing import WriterKey, reader_settings
from tests.support.waiting import eventually

SETTINGS = LeaseSettings(ttl_s=10, wait_s=2, idle_return_s=1, prefetch_s=0.5)
KEY = "team:search"
NEEDS = {KEY: ("team:search", "", Decimal("0.1"))}


def grant_for(
    ask: LeaseRequest,
    granted: str,
    free: str,
    *,
    gateway: str = "gw",
    revoked: bool = False,
    headroom: str | None = None,
) -> LeaseGrant:
    now = datetime.now(UTC)
    return LeaseGrant(
        gateway_id=gateway,
        chain=ask.chain,
        scope=ask.scope,
        model=ask.model,
        version=GRANTS.next(),
        granted=Decimal(granted),
        free=Decimal(free),
        headroom=None if headroom is None else Decimal(headroom),
        ttl_s=10,
        expires_at=now,
        revoked=revoked,
        issued_at=now,
    )


class _Versions:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


GRANTS = _Versions()


def held_chain(book: LeaseBook, granted: str, free: str = "1", now: float = 0.0) -> LeaseRequest:
    verdict, (ask,) = book.reserve("first", NEEDS, "m", now)
    assert verdict is Verdict.WAIT
    assert ask.commitment is not None  # a chain's first ask commits to its secret
    book.apply(grant_for(ask, granted, free), now)
    return ask


def test_a_call_reserves_within_its_chain_and_settles_exactly() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    held_chain(book, "1")
    verdict, _ = book.reserve("first", NEEDS, "m", 0.0)
    assert verdict is Verdict.RESERVED
    chain = book.holding(KEY)
    assert chain is not None
    assert chain.available == Decimal("0.9")
    book.settle("first", Decimal("0.07"))
    assert chain.available == Decimal("0.93")


def test_refused_at_once_when_the_enforcer_says_nothing_is_free() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    held_chain(book, "0.15", free="0")
    assert book.reserve("1", NEEDS, "m", 0.1)[0] is Verdict.RESERVED
    verdict, _ = book.reserve("2", NEEDS, "m", 0.2)
    assert verdict is Verdict.REFUSE


def test_another_gateways_grant_tells_every_gateway_the_budget_is_spent() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    other = LeaseBook(gateway_id="other", settings=SETTINGS)
    _, (ask,) = other.reserve("x", NEEDS, "m", 0.0)
    book.apply(grant_for(ask, "0.1", "0", gateway="other"), 0.0)
    verdict, _ = book.reserve("1", NEEDS, "m", 0.0)
    assert verdict is Verdict.REFUSE


def test_an_older_grant_replayed_does_not_say_the_budget_is_spent_again() -> None:
    """The topic keeps grants for an hour: one from when the budget was spent, written again
    after a newer grant said headroom is free (the budget was raised), changes nothing."""
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    other = LeaseBook(gateway_id="other", settings=SETTINGS)
    _, (ask,) = other.reserve("x", NEEDS, "m", 0.0)
    spent = grant_for(ask, "0.1", "0", gateway="other")
    spent = spent.model_copy(update={"issued_at": spent.issued_at - timedelta(minutes=50)})
    book.apply(grant_for(ask, "0.1", "50", gateway="other", headroom="50"), 0.0)

    book.apply(spent, 1.0)

    assert book.reserve("1", NEEDS, "m", 1.0)[0] is not Verdict.REFUSE


def test_waits_while_other_chains_hold_unspent_headroom_then_gives_up() -> None:
    """Lent is not spent: another gateway's chain holding the headroom does not refuse a call at
    once (the two-proxy phantom refusal); only the wait's end does, if it still is not free."""
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    other = LeaseBook(gateway_id="other", settings=SETTINGS)
    _, (ask,) = other.reserve("x", NEEDS, "m", 0.0)
    book.apply(grant_for(ask, "1", "0", gateway="other", headroom="1"), 0.0)
    verdict, (mine,) = book.reserve("1", NEEDS, "m", 0.0)
    assert verdict is Verdict.WAIT
    book.apply(grant_for(mine, "0", "0", headroom="1"), 0.1)  # nothing free for it yet
    assert book.reserve("1", NEEDS, "m", 0.2)[0] is Verdict.WAIT
    assert book.reserve("1", NEEDS, "m", 0.3, give_up=True)[0] is Verdict.REFUSE


def test_refused_at_once_when_the_unspent_headroom_is_less_than_the_call() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    other = LeaseBook(gateway_id="other", settings=SETTINGS)
    _, (ask,) = other.reserve("x", NEEDS, "m", 0.0)
    book.apply(grant_for(ask, "1", "0", gateway="other", headroom="0.09"), 0.0)
    assert book.reserve("1", NEEDS, "m", 0.0)[0] is Verdict.REFUSE


def test_a_busy_chain_releases_what_it_holds_beyond_one_ask_while_little_is_free() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    ask = held_chain(book, "5")
    secret = book.holding(KEY).secret  # type: ignore[union-attr]
    assert book.reserve("1", NEEDS, "m", 0.0)[0] is Verdict.RESERVED
    book.settle("1", Decimal("0.1"))
    assert book.to_return(0.1) == []  # plenty free: it keeps its slice
    other = LeaseBook(gateway_id="other", settings=SETTINGS)
    _, (theirs,) = other.reserve("x", NEEDS, "m", 0.0)
    book.apply(grant_for(theirs, "0", "0", gateway="other", headroom="4.9"), 0.2)
    (release,) = book.to_return(0.3)
    chain = book.holding(KEY)
    assert chain is not None
    assert release.kind == "release"
    assert release.chain == ask.chain
    assert release.secret == secret  # reveals the secret the chain committed to ...
    assert release.commitment == commitment_of(chain.secret) != ask.commitment  # ... and commits to a new one
    assert release.released == Decimal("4.9") - Decimal("0.8")  # keeps one ask: 8 calls of 0.1
    assert chain.available == Decimal("0.8")
    assert book.to_return(0.4) == []  # nothing more to hand back


def test_a_chain_short_of_a_call_releases_its_remainder_when_it_asks() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    held_chain(book, "0.15")
    verdict, (ahead,) = book.reserve("1", NEEDS, "m", 0.0)
    assert verdict is Verdict.RESERVED
    book.settle("1", Decimal("0.1"))
    book.apply(grant_for(ahead, "0.15", "0.02", headroom="1"), 0.1)  # the ask ahead got nothing
    verdict, (release, ask) = book.reserve("2", NEEDS, "m", 0.2)
    assert verdict is Verdict.WAIT
    assert (release.kind, release.released) == ("release", Decimal("0.05"))
    assert ask.kind == "request"


def test_a_waiting_call_on_an_event_loop_is_admitted_when_a_grant_comes() -> None:
    gate = LeaseGate.without_kafka("gw", fail_closed=True)

    async def run() -> None:
        admitting = asyncio.create_task(gate.admit("1", NEEDS, "m"))
        chain = await eventually(lambda: gate.book.holding(KEY), bool, within=5, what="the call's chain")
        assert not admitting.done()  # it waits, on the loop
        ask = LeaseRequest(kind="request", gateway_id="gw", chain=chain.chain, scope=KEY)
        await asyncio.to_thread(gate.book.apply, grant_for(ask, "1", "1"), time.monotonic())
        assert await asyncio.wait_for(admitting, 5) is None

    asyncio.run(run())


def test_waits_while_headroom_may_come_then_follows_the_policy() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    assert book.reserve("1", NEEDS, "m", 0.0)[0] is Verdict.WAIT
    assert book.reserve("1", NEEDS, "m", 1.0)[0] is Verdict.WAIT
    assert book.reserve("1", NEEDS, "m", SETTINGS.wait_s)[0] is Verdict.UNANSWERED


def test_asks_ahead_before_the_chain_runs_out() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    held_chain(book, "0.35")
    assert book.reserve("1", NEEDS, "m", 0.1) == (Verdict.RESERVED, [])  # 0.25 left
    verdict, asks = book.reserve("2", NEEDS, "m", 0.2)  # 0.15 left: under two calls
    assert verdict is Verdict.RESERVED
    (ask,) = asks
    assert ask.need == 0
    assert ask.want >= Decimal("0.1")


def test_a_revoked_chain_admits_nothing_more() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    ask = held_chain(book, "1")
    book.apply(grant_for(ask, "1", "0", revoked=True), 0.1)
    verdict, asks = book.reserve("1", NEEDS, "m", 0.2)
    assert verdict is Verdict.WAIT  # a new chain, asked for afresh
    assert asks[0].chain != ask.chain


def test_an_idle_chain_is_returned_with_its_secret_and_use() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    ask = held_chain(book, "1")
    book.reserve("1", NEEDS, "m", 0.0)
    book.settle("1", Decimal("0.04"))
    assert book.to_return(0.5) == []
    (back,) = book.to_return(1.5)
    assert back.kind == "return"
    assert back.chain == ask.chain
    assert back.secret is not None
    assert commitment_of(back.secret) == ask.commitment
    assert back.used == Decimal("0.04")


def test_a_chain_handed_back_with_calls_in_flight_settles_them_once_they_all_ended() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    held_chain(book, "1")
    book.reserve("1", NEEDS, "m", 0.0)
    book.reserve("2", NEEDS, "m", 0.0)
    (back,) = book.to_return(SETTINGS.ttl_s + 0.1)  # lapsed with both calls in flight
    assert (back.kind, back.reserved) == ("return", Decimal("0.2"))
    assert back.commitment is not None  # to the secret of the settle that follows
    book.settle("1", Decimal("0.03"))
    assert book.to_return(SETTINGS.ttl_s + 0.2) == []  # a call is still in flight
    book.settle("2", None)  # it failed, and cost nothing
    (settle,) = book.to_return(SETTINGS.ttl_s + 0.3)
    assert (settle.kind, settle.chain, settle.used) == ("settle", back.chain, Decimal("0.03"))
    assert settle.secret is not None
    assert commitment_of(settle.secret) == back.commitment
    assert book.to_return(SETTINGS.ttl_s + 0.4) == []  # settled once


def test_a_chain_handed_back_with_nothing_in_flight_commits_to_no_settle() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    held_chain(book, "1")
    book.reserve("1", NEEDS, "m", 0.0)
    book.settle("1", Decimal("0.05"))
    (back,) = book.to_return(1.5)
    assert (back.reserved, back.commitment) == (Decimal(0), None)
    assert book.to_return(1.6) == []


def test_a_revoked_chain_is_handed_back_with_its_use_and_settled() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    ask = held_chain(book, "1")
    book.reserve("1", NEEDS, "m", 0.0)
    book.reserve("2", NEEDS, "m", 0.0)
    book.settle("1", Decimal("0.08"))
    book.apply(grant_for(ask, "1", "0", revoked=True), 0.1)
    (back,) = book.to_return(0.2)
    assert (back.kind, back.chain, back.used, back.reserved) == ("return", ask.chain, Decimal("0.08"), Decimal("0.1"))
    book.settle("2", Decimal("0.02"))
    (settle,) = book.to_return(0.3)
    assert (settle.kind, settle.used) == ("settle", Decimal("0.02"))


def test_a_chain_is_not_used_after_its_ttl() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    held_chain(book, "1", now=0.0)
    assert book.reserve("1", NEEDS, "m", SETTINGS.ttl_s + 0.01)[0] is not Verdict.RESERVED


def test_all_targets_or_none() -> None:
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    held_chain(book, "1")
    both = {**NEEDS, "key:x": ("key:x", "", Decimal("0.1"))}
    assert book.reserve("1", both, "m", 0.0)[0] is Verdict.WAIT
    chain = book.holding(KEY)
    assert chain is not None
    assert chain.reserved == 0


def test_the_gate_leases_only_budgets_that_ask_for_it() -> None:
    gate = LeaseGate.without_kafka("gw", fail_closed=False)
    gate.put(validate_budget({"scope": "team:search", "max_budget": 1, "headroom_leases": True}))
    gate.put(validate_budget({"scope": "team:other", "max_budget": 1}))
    request = {"messages": [{"role": "user", "content": "hi"}]}
    leased = RequestIdentity.of_sdk_call(user=None, metadata={"user_api_key_team_id": "search"})
    plain = RequestIdentity.of_sdk_call(user=None, metadata={"user_api_key_team_id": "other"})
    assert list(gate.needs(leased, "gpt-4o-mini", request)) == ["team:search"]
    assert gate.needs(plain, "gpt-4o-mini", request) == {}


def test_fail_closed_refuses_when_the_enforcer_does_not_answer() -> None:
    for fail_closed, refused in ((True, True), (False, False)):
        gate = LeaseGate.without_kafka("gw", fail_closed=fail_closed)
        gate.book.reserve("0", NEEDS, "m", -SETTINGS.wait_s)  # asked long ago, never answered
        assert (gate.admit_now("1", NEEDS, "m") is not None) is refused


def test_the_estimate_expects_recent_output_not_max_tokens() -> None:
    estimator = CallEstimator(first_output_tokens=256, unpriced_reserve=Decimal("0.01"))
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100_000}
    first = estimator.expected_output("gpt-4o-mini", request)
    estimator.observe("gpt-4o-mini", 300)
    assert first == 100_000
    assert estimator.expected_output("gpt-4o-mini", request) == 300
    assert estimator.expected_output("gpt-4o-mini", {"max_tokens": 50}) == 50
    assert estimator.estimate("no-such-model-anywhere", request) == Decimal("0.01")


def test_the_estimate_counts_the_prompt_wherever_the_request_puts_it() -> None:
    """A Responses API `input` or `instructions`, an Anthropic `system`: each reserves at least
    what the same text costs in `messages`, and `max_output_tokens` bounds the output."""
    estimator = CallEstimator(first_output_tokens=256, unpriced_reserve=Decimal("0.01"))
    text = "word " * 20_000
    chat = estimator.estimate("gpt-4o", {"messages": [{"role": "user", "content": text}], "max_tokens": 10})
    shapes = [
        {"input": text, "max_output_tokens": 10},
        {"input": [{"role": "user", "content": text}], "max_output_tokens": 10},
        {"instructions": text, "input": "hi", "max_output_tokens": 10},
        {"messages": [{"role": "user", "content": "hi"}], "system": text, "max_tokens": 10},
        {"messages": [{"role": "user", "content": "hi"}], "system": [{"type": "text", "text": text}], "max_tokens": 10},
    ]

    for request in shapes:
        assert estimator.estimate("gpt-4o", request) >= chat, request
    assert estimator.expected_output("gpt-4o", {"max_output_tokens": 10}) == 10


def test_the_lease_log_applies_only_grants_the_enforcer_signed() -> None:
    enforcer, forger = WriterKey.generate(), WriterKey.generate()
    book = LeaseBook(gateway_id="gw", settings=SETTINGS)
    _, (ask,) = book.reserve("1", NEEDS, "m", 0.0)
    rejected = Counter("rejected", "", ["topic", "reason"], registry=CollectorRegistry())
    log = LeaseLog(
        kafka=KafkaSettings(),
        requests_topic="requests",
        grants_topic="grants",
        book=book,
        verifier=reader_settings(enforcer).verifier(message_type=GRANT_MESSAGE_TYPE, topic="grants", rejected=rejected),
    )
    grant = grant_for(ask, "1", "1")
    key, value = grant.key.encode(), grant.model_dump_json().encode()

    def record(writer: WriterKey) -> ConsumerRecord[bytes, bytes]:
        headers = writer.settings().signer().headers(GRANT_MESSAGE_TYPE, key, value)
        return ConsumerRecord("grants", 0, 0, 0, 0, key, value, None, len(key), len(value), headers)

    log._apply(record(forger))
    chain = book.holding(KEY)
    assert chain is not None
    assert chain.granted == 0
    assert rejected.labels(topic="grants", reason="unknown_key")._value.get() == 1
    log._apply(record(enforcer))
    assert chain.granted == 1
