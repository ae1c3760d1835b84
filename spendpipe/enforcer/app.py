"""The enforcer's wiring: budgets and past decisions read back from their compacted topics,
flush announcements from the aggregator, a tick for window resets, decisions out.

Rate limits are judged with the budgets: after each flush for the scopes it touched, and on the
tick for blocks that expired (the sliding minute admits again) or whose budget changed. Agents
are not in the flush announcements (the aggregator keeps no rollup per agent), so every agent
with a rate limit is judged after every flush: one query per agent limit.

Start-up order matters: budgets first (what to enforce: the operators', then those LiteLLM key
objects declare, which apply where an operator set none), then the decisions topic (so versions
continue where they were and no block is forgotten), then one evaluation of every budget, and
only then flush announcements and the tick. `not_ready()` (for /readyz) says which step it is
on until that is done; after that, it says so while the last tick failed or a followed topic is
being read again after a failure.

Bad input never stops it: a record that cannot be used (not a scope, not a budget or decision
this version reads) is skipped, logged and counted in `records_rejected` (`unreadable`); each
step of the tick runs even when one before it failed, and a follower whose reconnect fails
tries again with a growing backoff until the service stops. No decision the enforcer holds goes
unsent: one whose send failed, and one a judgement decided before a later query of it failed, are
published on the tick (`_reassert`); judged again they would change nothing, so nothing else would.

A failed start ends the process, and what it put aside ends with it: nothing calls `start()` again
in the same process (`runner.serve` runs it as the app's after-startup hook; its exception ends
`app.run()`, the services started before it stop (`runner.run_to_the_end`), and `spendpipe run`
exits 1, for the orchestrator to start a new process). A start can fail after deciding:
`evaluate_all_budgets` or `reconcile` raising after decisions of theirs (kept for `take_unsent`), a
send that failed (kept in `_unconfirmed`), a step after what is published again at start was taken
from the read-back (`_published_again_at_start`); all wait for a tick that never comes. None of
these reached Kafka (a send that timed out may have: then the next start reads it back as the
decision in force), and the next start decides each of them again: it reads back the same decisions
topic, so each key's last decision is the one this start judged against, and judging the same
budgets on the spend in the store (which only grows within a window) reaches the same decision, or
a later one the spend now calls for; the last records that called for publishing again are read
back as such again. A retry of `start()` within the process would have to publish what the failed
one put aside (`test_failed_judgement.py` holds both to this).

Every decision goes out signed with the enforcer's key; budgets (tombstones too) and decisions
read back count only when an accepted writer key signed them (`platform/signing`): a forged
decision read back cannot push the versions the enforcer continues from. A key's last record on
the compacted decisions topic is what compaction keeps for readers that start later, so the
enforcer makes it the decision it holds for the key, with one rule (`_as_held`): at start, for
every key whose last record read back is not that decision as readers should keep it (a record
that fails verification or that this version cannot read, an older decision written again, a
block another key signed: after a key rotation, readers that no longer accept the old key keep
the blocks in force), it publishes the decision again, same version, signed with its current key
(`_published_again_at_start`). It keeps following its decisions topic, and the same rule holds
while it runs: when such a record lands on the key after where the decision last landed
(`DecisionPositions`: Kafka's acknowledgement of each send says where), the tick publishes the
decision again; a record before it is the enforcer's own history read late. What it publishes
is only ever a decision it holds, never anything from the record: a key it holds no decision for
is left as it is (logged at start), since readers drop that record too.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final, Literal

from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from spendpipe.contracts.alerts import BURN_RATE_MESSAGE_TYPE, BurnRateAlert, SoftBudgetAlert
from spendpipe.contracts.alerts import MESSAGE_TYPE as ALERT_TYPE
from spendpipe.contracts.budgets import MESSAGE_TYPE as BUDGET_TYPE
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import MESSAGE_TYPE, Decision
from spendpipe.contracts.declared_budgets import DECLARABLE_SCOPES
from spendpipe.contracts.declared_budgets import MESSAGE_TYPE as DECLARED_TYPE
from spendpipe.contracts.flushes import ScopesFlushed
from spendpipe.contracts.scopes import Scope, ScopeType, scope_name
from spendpipe.contracts.topics import TYPE_HEADER
from spendpipe.enforcer.budget_gauges import BudgetGauges
from spendpipe.enforcer.decision_positions import DecisionPositions
from spendpipe.enforcer.enforcer import Enforcer
from spendpipe.enforcer.lease_service import LeaseService
from spendpipe.enforcer.metrics import TICK_STEPS, EnforcerMetrics
from spendpipe.enforcer.rate_reader import RateReader
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.enforcer.targets import BudgetBook
from spendpipe.platform.budget_topic import BudgetTopic
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.platform.compacted import CompactedTopicReader, OnRecord, TopicRecord, read_to_end
from spendpipe.platform.first_logged import FirstLogged
from spendpipe.platform.raw_batches import records, text_headers_only, undecoded
from spendpipe.platform.signing.records import writer_of
from spendpipe.store.calendar import check_calendar
from spendpipe.store.totals import SpendTotals

log = logging.getLogger(__name__)

FLUSHES_PER_JUDGEMENT = 500
"""Most flush announcements judged together (all of them while the enforcer is behind)."""
FOLLOW_RETRY_S = (1.0, 30.0)
"""A failed follower's first wait before reading its topic again, and the most it grows to."""
MOST_UNREADABLE_LOGGED = 100
"""Unreadable announcements logged; the rest are only counted (`records_rejected`)."""
KEYS_SHOWN = 10
"""Keys named in one log line about decisions read back (whoever writes the topic chooses them)."""
DELETED: Final = "deleted"
"""What `_on_decision` returns for an accepted writer's tombstone."""


class EnforcerService:
    def __init__(
        self,
        *,
        settings: EnforcerSettings,
        broker: KafkaBroker,
        clickhouse: ClickhouseStore,
        clock: Callable[[], float] = time.time,
        metrics: EnforcerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._unreadable_flushes = FirstLogged(log, MOST_UNREADABLE_LOGGED)
        self.metrics = metrics or EnforcerMetrics(registry=CollectorRegistry())
        self._stage = "starting"
        self._clickhouse = clickhouse
        self.enforcer = Enforcer(
            book=BudgetBook(),
            reader=SpendTotals(sql=clickhouse, calendar=settings.calendar),
            rates=RateReader(clickhouse=clickhouse),
            clock=clock,
            burn_rate_lookback_minutes=settings.burn_rate.lookback_minutes,
            calendar=settings.calendar,
        )
        self.budget_gauges = BudgetGauges(enforcer=self.enforcer, settings=settings.budget_metrics, clock=clock)
        self.metrics.watch(self.budget_gauges)
        self._pending_scopes: set[str] = set()
        self._deleted_scopes: set[str] = set()
        self._trouble: dict[str, str] = {}
        """Once started, what keeps it from being ready, by part: `tick`, or a followed topic."""
        self._budgets = CompactedTopicReader(
            kafka=settings.kafka, topic=settings.topics.budgets, on_record=self._on_budget
        )
        self._declared = CompactedTopicReader(
            kafka=settings.kafka, topic=settings.topics.declared_budgets, on_record=self._on_declared
        )
        self._declared_verifier = settings.signing.verifier(
            message_type=DECLARED_TYPE, topic=settings.topics.declared_budgets, rejected=self.metrics.records_rejected
        )
        self._decisions_read = CompactedTopicReader(
            kafka=settings.kafka, topic=settings.topics.decisions, on_record=self._on_decision_read
        )
        self._last_read: dict[str, tuple[int, bool] | None] = {}
        """While reading back at start, per key, its last record: the version of the decision it
        holds and whether the enforcer's current key signed it (also when nothing is signed), or
        None for a record not taken (failed verification, unreadable): `_published_again_at_start`."""
        self._overwritten: set[str] = set()
        """Once started, keys whose last record is not their decision (`_on_decision_read`): it is
        published again on the tick (`_reassert`)."""
        self._positions = DecisionPositions()
        """Where each key's decision last landed: a record read back that is not the decision and
        sits after it is the key's last record (`_on_decision_read`)."""
        self._unconfirmed: set[str] = set()
        """Keys whose last decision's send failed: Kafka may hold it or not, so it stays the one in
        force and is published again on the tick."""
        self._sending = asyncio.Lock()
        """Held from a decision's send to Kafka's acknowledgement: one send at a time."""
        self._signer = settings.signing.signer()
        self._budget_records = BudgetTopic(
            settings.signing.verifier(
                message_type=BUDGET_TYPE, topic=settings.topics.budgets, rejected=self.metrics.records_rejected
            )
        )
        self._decision_verifier = settings.signing.verifier(
            message_type=MESSAGE_TYPE, topic=settings.topics.decisions, rejected=self.metrics.records_rejected
        )
        self._decisions = broker.publisher(
            settings.topics.decisions,
            title="spend.decisions",
            description="Decision v1: block/unblock per scope, versioned; compacted, keyed by scope.",
            schema=Decision,
        )
        self._alerts = broker.publisher(
            settings.topics.alerts,
            title="spend.alerts",
            description="SoftBudgetAlert v1: a scope reached its soft budget, once per window.",
            schema=SoftBudgetAlert,
        )
        self._burn_rate_alerts = broker.publisher(
            settings.topics.alerts,
            title="spend.alerts (burn rate)",
            description="BurnRateAlert v1: a cap will be reached before its window resets, once per window per cap.",
            schema=BurnRateAlert,
        )
        broker.subscriber(
            settings.topics.flushes,
            group_id=settings.enforcer_group_id,
            auto_offset_reset="latest",
            batch=True,
            max_records=FLUSHES_PER_JUDGEMENT,
            parser=text_headers_only,
            decoder=undecoded,
            no_reply=True,  # FastStream would publish to the topic a record's `reply_to` header names
            title="spend.flushes (enforcer)",
            description="ScopesFlushed: the enforcer judges the scopes of every announcement waiting, at once.",
        )(self.on_flushes)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.leases = LeaseService(
            settings=settings,
            broker=broker,
            clickhouse=clickhouse,
            enforcer=self.enforcer,
            metrics=self.metrics,
            clock=clock,
            ready=self.ready,
        )

    def not_ready(self) -> str | None:
        """The start-up step it is on; once started, None unless its last tick failed or a
        topic it follows is being read again after a failure (read from the ops server's thread)."""
        if not self.ready.is_set():
            return self._stage
        return "; ".join(sorted(self._trouble.values())) or None

    async def start(self) -> None:
        self._stage = "checking the store's calendar"
        await self._clickhouse.run(check_calendar, self._clickhouse, self._settings.calendar)  # CalendarMismatchError
        self._stage = f"reading {self._settings.topics.budgets} to its end"
        await self._budgets.start()
        await self._budgets.catch_up()
        await self._declared.start()
        await self._declared.catch_up()
        self._stage = f"reading back {self._settings.topics.decisions} and {self._settings.topics.alerts}"
        await self._decisions_read.start()
        await self._decisions_read.catch_up()
        again = self._published_again_at_start()
        await self._read_back(self._settings.topics.alerts, self._on_alert)
        await self._read_back(self._settings.topics.leases, self.leases.on_past_grant)
        self.leases.resume()
        self._pending_scopes.clear()
        topics = self._settings.topics
        self._stage = "evaluating every budget"
        await self._publish(await self._clickhouse.run(self.enforcer.evaluate_all_budgets))
        await self._publish(await self._clickhouse.run(self.enforcer.reconcile))
        await self._publish(again)  # those decided again since are not sent (`_send`)
        self._tasks = [
            asyncio.create_task(self._follow(self._budgets, topics.budgets), name="enforcer-budgets"),
            asyncio.create_task(
                self._follow(self._declared, topics.declared_budgets), name="enforcer-declared-budgets"
            ),
            asyncio.create_task(self._follow(self._decisions_read, topics.decisions), name="enforcer-decisions"),
            asyncio.create_task(self._tick(), name="enforcer-tick"),
            asyncio.create_task(self._refresh_budget_gauges(), name="enforcer-budget-gauges"),
        ]
        self.ready.set()
        log.info("enforcer ready: %d blocks in force", len(self.enforcer.blocks()))

    async def _follow(self, reader: CompactedTopicReader, topic: str) -> None:
        """Follow budgets or decisions for as long as the service runs; after a failure, read the
        topic again from the beginning (applying a budget or a decision twice changes nothing).
        Reading it again is retried, with a backoff that grows up to `FOLLOW_RETRY_S`, until it
        succeeds: a broker still down when the first retry comes never ends the follower."""
        backoff = FOLLOW_RETRY_S[0]
        started = True  # `start()` read it to its end
        while True:
            try:
                if not started:
                    await reader.start()
                    await reader.catch_up()
                    started, backoff = True, FOLLOW_RETRY_S[0]
                    self._trouble.pop(topic, None)
                    log.info("reading %s again: caught up", topic)
                await reader.follow()
            except Exception as error:
                log.exception("reading %s failed; reading it again from the beginning in %gs", topic, backoff)
                self.metrics.follow_failures.labels(topic).inc()
                self._trouble[topic] = f"reading {topic} again after a failure: {error!r}"
                started = False
                await _stop_quietly(reader, topic)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, FOLLOW_RETRY_S[1])

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._budgets.stop()
        await self._declared.stop()
        await self._decisions_read.stop()

    async def on_flushes(self, message: KafkaMessage) -> None:
        """Judge the scopes of every announcement waiting, once: an enforcer that fell behind
        catches up in one step instead of one per flush. Each announcement is read on its own,
        and each scope: one that does not parse is counted and skipped, never the batch."""
        announcements = []
        for record in records(message):
            try:
                announcements.append(ScopesFlushed.model_validate_json(record.value or b""))
            except ValidationError as error:
                self._unreadable_flush(record.offset, error.errors(include_input=False)[:3])
        await self.judge_flushes(announcements)

    async def judge_flushes(self, announcements: list[ScopesFlushed]) -> None:
        """Only scopes a budget may apply to: most of a busy flush's scopes (keys, users, tags
        without a budget) have nothing to decide."""
        await self.ready.wait()
        book = self.enforcer.book
        refs = {(ref.type, ref.id) for announcement in announcements for ref in announcement.scopes}
        scopes = []
        for kind, scope_id in sorted(ref for ref in refs if book.may_apply(*ref)):
            try:
                scopes.append(Scope.parse(scope_name(ScopeType(kind), scope_id)))
            except ValueError as error:
                self._unreadable_flush(None, str(error))
        await self._judge(scopes + self.enforcer.book.limited_agents())

    def _unreadable_flush(self, offset: int | None, why: object) -> None:
        self.metrics.records_rejected.labels(topic=self._settings.topics.flushes, reason="unreadable").inc()
        where = f" at offset {offset}" if offset is not None else ""
        self._unreadable_flushes.error("ignoring an unreadable announcement%s: %s", where, why)

    async def _judge(self, scopes: list[Scope]) -> None:
        """Decide, publish, and only then alert: the alerts reuse the decision's measurements."""
        with self.metrics.judge_seconds.time():
            judged = await self._clickhouse.run(self.enforcer.judge_scopes, scopes)
        with self.metrics.publish_seconds.time():
            await self._publish(judged.decisions)
        soft_alerts, burn_rate_alerts = await self._clickhouse.run(self.enforcer.alerts_after, judged)
        for alert in soft_alerts:
            log.info("soft budget reached: %s spent %s of %s", alert.scope, alert.spend, alert.soft_budget)
            await self._alerts.publish(alert, key=alert.key.encode(), headers={TYPE_HEADER: ALERT_TYPE})
            self.metrics.alerts_published.inc()
        for warning in burn_rate_alerts:
            log.info("burn rate: %s reaches %s at %s", warning.scope, warning.cap, warning.projected_exhaustion_at)
            headers = {TYPE_HEADER: BURN_RATE_MESSAGE_TYPE}
            await self._burn_rate_alerts.publish(warning, key=warning.key.encode(), headers=headers)
            self.metrics.burn_rate_alerts_published.inc()

    def _on_budget(self, record: TopicRecord) -> None:
        change = self._budget_records.read(record)
        if change is None:
            return
        if change.budget is None:
            self.enforcer.book.delete(change.scope)
            self._deleted_scopes.add(change.scope)
            return
        self.enforcer.book.put(change.budget)
        self._pending_scopes.add(change.scope)

    def _on_declared(self, record: TopicRecord) -> None:
        """A budget a LiteLLM key object declares, published by a gateway: applied as a `budgets
        set` of its scope where no operator's budget is set (`BudgetBook`). Only the scopes a key
        object can declare, each under its own record key."""
        if not self._declared_verifier.accepts(record):
            return
        scope = _scope_key(record)
        if scope is None:  # nothing was ever declared under it: there is nothing to withdraw
            self._declared_verifier.refuse("unreadable", record)
            return
        budget = _declared_budget(scope, record.value)
        if budget is None and record.value is not None:
            self._declared_verifier.refuse("unreadable", record)
        if budget is None:
            self.enforcer.book.undeclare(scope)
        else:
            self.enforcer.book.declare(budget)
        self._pending_scopes.add(scope)

    def _on_decision(self, record: TopicRecord) -> Decision | Literal["deleted"] | None:
        """Take a decision read back (the highest version wins) and return it. None for a record
        not taken, counted: one that fails verification, and one this version cannot read (another
        schema, a scope type it does not know: it could never be judged again), logged.
        `DELETED` for an accepted writer's tombstone, which takes nothing and refuses nothing."""
        if not self._decision_verifier.accepts(record):
            return None
        if record.value is None:
            return DELETED
        try:
            decision = Decision.model_validate_json(record.value)
            Scope.parse(decision.scope)
        except ValueError as error:  # pydantic's ValidationError is one
            log.error("ignoring an unreadable decision under %r: %s", record.key, error)
            self._decision_verifier.refuse("unreadable", record)
            return None
        self.enforcer.remember(decision)
        return decision

    def _on_alert(self, record: TopicRecord) -> None:
        try:
            key = (record.key or b"").decode()
        except UnicodeDecodeError as error:  # not an alert's key: no alert is ever sent under it
            log.error("ignoring an alert read back under the key %r: %s", record.key, error)
            return
        self.enforcer.remember_alert(key)

    async def _read_back(self, topic: str, on_record: OnRecord) -> None:
        """Read a topic to its end once: what this enforcer (or its predecessor) already said."""
        await read_to_end(kafka=self._settings.kafka, topic=topic, on_record=on_record)

    async def _tick(self) -> None:
        """Every step runs on every tick: one that fails (logged, counted in `tick_failures`,
        tried again on the next tick) does not keep the others, such as the unblock at a window
        reset, from running. A tick that fails leaves the service not ready until one succeeds."""
        interval = self._settings.tick_interval_ms / 1000
        while True:
            steps = (self._apply_budget_changes, self.leases.after_budget_changes, self._window_resets, self._reassert)
            failed = []
            for name, step in zip(TICK_STEPS, steps, strict=True):
                try:
                    await step()
                except Exception as error:
                    log.exception("enforcer tick: %s failed; tried again on the next tick", name)
                    self.metrics.tick_failures.labels(name).inc()
                    failed.append(f"{name}: {error!r}")
            if failed:
                self._trouble["tick"] = f"the last tick failed ({'; '.join(failed)})"
            else:
                self._trouble.pop("tick", None)
                self.metrics.last_tick.set_to_current_time()
            await asyncio.sleep(interval)

    async def _window_resets(self) -> None:
        """Re-judge the blocks whose window has reset: the unblock needs no traffic."""
        await self._publish(await self._clickhouse.run(self.enforcer.evaluate_due))

    async def _refresh_budget_gauges(self) -> None:
        while True:
            try:
                await self._clickhouse.run(self.budget_gauges.refresh)
            except Exception:
                log.exception("reading the budgets' spend for /metrics failed; retrying")
            await asyncio.sleep(self._settings.budget_metrics.refresh_interval_s)

    async def _apply_budget_changes(self) -> None:
        if not (self._pending_scopes or self._deleted_scopes):
            return
        # taken before the first await: a change that arrives while these are judged stays
        # pending for the next tick (subtracting afterwards dropped it, and a budget lowered
        # right after being raised could stay unblocked)
        pending, self._pending_scopes = self._pending_scopes, set()
        deleted, self._deleted_scopes = self._deleted_scopes, set()
        scopes = _parsed(pending)  # one that is no scope is dropped (logged), not kept failing
        pending = {str(scope) for scope in scopes}
        try:
            await self._judge(scopes)
            await self._publish(await self._clickhouse.run(self.enforcer.reconcile))
        except BaseException:
            # the next tick tries these again
            self._pending_scopes |= pending
            self._deleted_scopes |= deleted
            raise

    async def _reassert(self) -> None:
        """Publish again, with its own version, the decision of every key a record that is not it
        came after (`_on_decision_read`: failed verification, unreadable, an older decision
        replayed, its block signed by another key), once per tick however many such records came,
        and the decision of every key whose last send failed; publish the decisions that a
        judgement decided and then failed before sending (`Enforcer.take_unsent`). A key this
        enforcer never decided has nothing to restore (`_published_again_at_start` says why)."""
        keys, self._overwritten = self._overwritten, set()
        unconfirmed, self._unconfirmed = self._unconfirmed, set()
        unsent = self.enforcer.take_unsent()
        overwritten = [d for d in map(self.enforcer.last, sorted(keys)) if d is not None]
        for decision in overwritten:
            log.warning(
                "decision %s v%d published again after a record that is not it (failed verification,"
                " unreadable, an older decision replayed, or its block signed by another key)",
                decision.key,
                decision.version,
            )
        retried = [d for d in map(self.enforcer.last, sorted((unconfirmed | unsent) - keys)) if d is not None]
        for decision in retried:
            why = "its last send failed" if decision.key in unconfirmed else "its judgement failed before sending it"
            log.warning("decision %s v%d published on the tick: %s", decision.key, decision.version, why)
        self.metrics.decisions_reasserted.inc(len(overwritten))
        await self._publish(overwritten + retried)

    async def _send(self, decision: Decision) -> bool:
        """Send `decision` and wait for Kafka's acknowledgement, one send at a time, unless a newer
        decision of its key replaced it since it was decided (False: not sent). Decisions are
        decided on the store thread and published by whichever task decided them (a flush's
        judgement, the tick); without this a flush still sending earlier decisions of its batch
        could send a key's older decision after the tick sent the newer one, and compaction (last
        record per key wins) would hand the older one to gateways that start later. Versions only
        grow, so what each send carries is its key's newest decision: per key the topic's order is
        the version order, and the newest is sent by the task that decided it (or, after its send
        failed, by the tick)."""
        async with self._sending:
            newest = self.enforcer.last(decision.key)
            if newest is not None and newest.version > decision.version:
                log.info("decision %s v%d not sent: v%d replaced it", decision.key, decision.version, newest.version)
                return False
            log.info("decision %s v%d: %s", decision.key, decision.version, decision.reason)
            key, value = decision.key.encode(), decision.model_dump_json().encode()
            headers = {name: text.decode() for name, text in self._signer.headers(MESSAGE_TYPE, key, value)}
            self._positions.sending(decision.key)
            landed = await self._decisions.publish(value, key=key, headers=headers)
            if self._positions.sent(decision.key, (landed.partition, landed.offset)):
                self._overwritten.add(decision.key)  # a record read back before the acknowledgement came after it
            return True

    async def _publish(self, decisions: list[Decision]) -> None:
        """Publish in order. A send that fails leaves unknown whether Kafka holds the decision (a
        request that timed out may have been stored, read back, applied by gateways): it is not
        taken back but stays the one in force, and it and the rest of the batch are published
        again on the tick until Kafka acknowledges them. Taking it back could forget a block
        gateways hold: the enforcer would then see nothing to lift when the cap is raised."""
        for n, decision in enumerate(decisions):
            try:
                sent = await self._send(decision)
            except Exception:
                self.metrics.decision_failures.inc(len(decisions) - n)
                self._unconfirmed.update(unsent.key for unsent in decisions[n:])
                raise
            if sent:
                self.metrics.decisions_published.labels("block" if decision.blocked else "unblock").inc()

    def _on_decision_read(self, record: TopicRecord) -> None:
        """Take a decision read back, and note what each key's last record is: at start in
        `_last_read` (`_published_again_at_start`); once started, a record that is not the decision
        held for its key as readers should keep it (`_as_held`) puts the key in `_overwritten` when
        it sits after where that decision last landed (`DecisionPositions`); one before it is the
        enforcer's own history read late (the follower behind, or reading the topic again after a
        failure), which the decision already follows. A replay can come at any time, so this holds
        for as long as the enforcer runs."""
        key = (record.key or b"").decode(errors="replace")
        read = self._on_decision(record)
        if read == DELETED:
            self._last_read.pop(key, None)
            return
        version = read.version if isinstance(read, Decision) else None
        # an unsigned record is no other key's: taken only where signatures are not required, it
        # is never signed again (the enforcer signs only what a key it trusts signed)
        own = self._signer.key_id is None or writer_of(record) in ("", self._signer.key_id)
        held, position = self.enforcer.last(key), (record.partition, record.offset)
        if held is not None and _as_held(held, version, own):
            self._positions.holds(key, position)
        elif held is not None and self.ready.is_set() and self._positions.overwritten(key, position):
            self._overwritten.add(key)
        if not self.ready.is_set():
            self._last_read[key] = None if version is None else (version, own)

    def _published_again_at_start(self) -> list[Decision]:
        """The decision the enforcer holds for each key whose last record read back is not that
        decision as readers should keep it, to publish at start signed with the current key (same
        version: a no-op for readers that hold it), so that it is the key's last record, which
        compaction keeps for readers that start later (`_as_held`, the rule the running enforcer
        applies to what it reads after its decisions, `_on_decision_read`):
        - a record not taken: it failed verification, or this version cannot read it;
        - an older decision of the key written again (a replay);
        - a block another key signed: after the enforcer's key was rotated, readers that no longer
          accept the old key drop it. Nothing else re-signs a block in force: it is decided again
          only when it changes. (An unblock another key signed is left.)
        A key the enforcer holds no decision for (it never decided it, or compaction left only the
        record not taken) is left as it is, logged: what the enforcer would publish there is a
        decision it never made, under a key whoever wrote the record chose. Readers drop that
        record as the enforcer does, so for them too the key holds no decision: not blocked, as
        the enforcer has it; should its judgement block the scope, that block overwrites the key."""
        last_read, self._last_read = self._last_read, {}
        again, replaced, left = [], [], []
        for key, read in sorted(last_read.items()):
            held = self.enforcer.last(key)
            version, own = (None, True) if read is None else read
            if held is None:
                left.append(key)  # a decision read and taken is held: this key's last record was not taken
            elif not _as_held(held, version, own):
                again.append(held)
                if version != held.version:  # not a block signed again after a rotation
                    replaced.append(key)
        if replaced:
            log.warning(
                "publishing again the decisions of %d keys whose last record read back was not their decision"
                " (failed verification, unreadable or replayed), e.g. %s",
                len(replaced),
                replaced[:KEYS_SHOWN],
            )
            self.metrics.decisions_reasserted.inc(len(replaced))
        if left:
            log.warning(
                "leaving %d keys whose last record read back failed verification or could not be read, and"
                " that the enforcer holds no decision for (readers drop those records too), e.g. %s",
                len(left),
                left[:KEYS_SHOWN],
            )
        return again


def _as_held(held: Decision, version: int | None, own: bool) -> bool:
    """Whether a record read back on `held`'s key is the decision held as readers should keep it,
    from the version of the decision taken from it (None: a record not taken, which failed
    verification or cannot be read) and whether the enforcer's current key signed it (`own`). Not
    when it was not taken, nor when it is an older decision (a replay, or the key's history), nor
    when it is the block held but another key signed it: after the enforcer's key was rotated,
    readers that no longer accept the old key drop it. An unblock another key signed is held: a
    reader that drops it holds no decision for the key, which means the same."""
    return version == held.version and (own or not held.blocked)


async def _stop_quietly(reader: CompactedTopicReader, topic: str) -> None:
    """Close a failed reader; a failure closing it is logged, and its next `start()` opens anew."""
    try:
        await reader.stop()
    except Exception:
        log.exception("closing the failed reader of %s failed", topic)


def _parsed(scopes: set[str]) -> list[Scope]:
    """The scopes `scopes` names; one that is no scope is left out, logged."""
    parsed = []
    for text in scopes:
        try:
            parsed.append(Scope.parse(text))
        except ValueError as error:
            log.error("dropping the budget change of %r: %s", text, error)
    return parsed


def _scope_key(record: TopicRecord) -> str | None:
    """The scope a record's key names, as a budget writes it (`team:eng`, `global`); None (logged)
    for a key that is not one: no budget can be declared or withdrawn under it."""
    key = (record.key or b"").decode(errors="replace")
    try:
        scope = str(Scope.parse(key))
    except ValueError as error:
        log.error("ignoring a declared budget under the key %r: %s", key, error)
        return None
    if scope != key:
        log.error("ignoring a declared budget under the key %r: the scope is written %r", key, scope)
        return None
    return scope


def _declared_budget(scope: str, value: bytes | None) -> Budget | None:
    """The budget a declared-budgets record holds; None for a tombstone, or for what is not a
    valid budget of a scope a key object can declare (`DECLARABLE_SCOPES`: the key, its team,
    user, organisation, end customer) under its own scope as record key (logged), which withdraws
    whatever was declared for the record key."""
    if value is None:
        return None
    try:
        budget = Budget.model_validate_json(value)
    except ValidationError as error:
        log.error("ignoring an invalid declared budget for %r: %s", scope, error)
        return None
    if budget.scope != scope or Scope.parse(scope).type not in DECLARABLE_SCOPES:
        log.error(
            "ignoring a declared budget for %r under the record key %r: a key object declares budgets of"
            " its key, team, user, organisation and end customer, each under its own scope",
            budget.scope,
            scope,
        )
        return None
    return budget
