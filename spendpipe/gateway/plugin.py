"""`SpendpipeLogger`: the LiteLLM `CustomLogger` that records every call as a `SpendEvent`
(`recording/`), refuses calls the enforcer has blocked (`blocks/`), and enforces rate limits
(`rate_limits/`) and agent session caps (`sessions/`). It reads who a request is once per hook
(`identity.py`) and refuses as LiteLLM does (`refusals.py`); the hooks only put those together.

SDK mode:   `spendpipe.install()` (`sdk.py`). LiteLLM runs one hook before an SDK call that can
            refuse it, `async_pre_call_deployment_hook`, and only for `acompletion` and the
            other async calls: there the plugin refuses a blocked call as `check()` does. Sync
            calls have no such hook: `guard(litellm.completion)` checks before each call, or
            call `check(...)` yourself (it raises `litellm.BudgetExceededError`; a fresh
            process's first checks wait, a bounded time, for the block list). Installed, it also
            keeps `litellm.max_budget` working (`process_budget.py`). `close()` first waits, a
            bounded time, for LiteLLM to log the calls already made: it logs them after
            `completion()` returns.
Proxy mode: `litellm_settings: {callbacks: spendpipe.gateway.proxy.handler}`; the
            proxy runs `async_pre_call_hook` before every call. There the plugin also counts
            rate limits per replica (refusing with LiteLLM's 429) and answers successful calls
            with `x-ratelimit-remaining-requests` / `-tokens` headers, and admits the calls of
            capped agent sessions.

Recording never raises into LiteLLM and never waits on Kafka. Attribution values are normalised
(`labels.py`), so what a client puts in them cannot stop an event; a call whose event still cannot
be built is counted in `spendpipe_gateway_event_build_errors_total` and
`spendpipe_gateway_events_lost_total{reason="unbuildable"}`, logged, and its cost is charged to
its key, user, team and organisation by a fallback event (`uncharged` when even that fails).

With `SPENDPIPE_OPS__ENABLED=true` the plugin serves /healthz, /readyz (200 once the block list
has caught up with the decisions topic) and /metrics on its own port (9465 by default) from
`start()` until `close()`; a port it cannot bind is logged and does not stop the host process.
"""

import asyncio
import atexit
import functools
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from litellm.integrations.custom_logger import CustomLogger
from prometheus_client import CollectorRegistry

from spendpipe.contracts.budgets import MESSAGE_TYPE as BUDGET_TYPE
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.durations import Duration, parse_duration
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.money import cost_from_float
from spendpipe.contracts.scopes import ScopeType, scope_name
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.blocks.decision_follower import DecisionFollower
from spendpipe.gateway.declared_budgets import DeclaredBudgets, declared_budgets
from spendpipe.gateway.identity import RequestIdentity, mark_agent
from spendpipe.gateway.key_spend import KeySpend
from spendpipe.gateway.leases.gate import LeaseGate
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.process_budget import ProcessBudget
from spendpipe.gateway.providers import provider_override
from spendpipe.gateway.rate_limits.gate import RateGate
from spendpipe.gateway.rate_limits.leases import lease_in, mark_lease, new_lease_id, usage_of_log, usage_of_response
from spendpipe.gateway.rate_limits.limit_follower import LimitFollower
from spendpipe.gateway.recording.attempts import ChargedAttempts
from spendpipe.gateway.recording.event_builder import Recorded, call_outcome, event_or_fallback
from spendpipe.gateway.recording.logged_call import copy_logged_call
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.publisher_process import ProcessPublisher
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.gateway.recording.unlogged_calls import UnloggedCalls
from spendpipe.gateway.refusals import (
    LIMITS_NOT_IN_SYNC,
    NOT_IN_SYNC,
    key_spend_headers,
    proxy_bad_request,
    proxy_budget_exceeded,
    proxy_rate_limit_error,
    proxy_refusal,
    proxy_session_refused,
    sdk_refusal,
)
from spendpipe.gateway.sessions.caps import SessionCaps
from spendpipe.gateway.sessions.gate import SessionGate
from spendpipe.gateway.sessions.ledger import SessionLedger
from spendpipe.gateway.sessions.session_log import SessionLog
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.gateway.text_streams import keep_chunks
from spendpipe.platform.ops_server import OpsServer, OpsSettings, Readiness

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


class SpendpipeLogger(CustomLogger):  # type: ignore[misc]  # litellm is not type-checked here
    def __init__(
        self,
        *,
        publisher: EventPublisher | ProcessPublisher,
        metrics: GatewayMetrics,
        gateway_id: str,
        blocklist: BlockList,
        follower: DecisionFollower,
        unsynced_policy: str = "fail_open",
        ops: OpsServer | None = None,
        gate: RateGate | None = None,
        limit_follower: LimitFollower | None = None,
        sessions: SessionGate | None = None,
        sync_wait_s: float = 5.0,
        close_wait_s: float = 5.0,
        process_budget: ProcessBudget | None = None,
        declared: DeclaredBudgets | None = None,
        leases: LeaseGate | None = None,
        key_spend: KeySpend | None = None,
    ) -> None:
        super().__init__()
        self.publisher = publisher
        if isinstance(publisher, ProcessPublisher):
            publisher.account = self.account  # the child builds; this process accounts what it built
            publisher.account_sum = self.account_sum
        self.metrics = metrics
        self.gateway_id = gateway_id
        self.blocklist = blocklist
        self._follower = follower
        self.gate = gate or RateGate()
        """Rate limits counted by this replica; without a `limit_follower` it holds none."""
        self._limit_follower = limit_follower
        self.sessions = sessions or SessionGate(caps=SessionCaps(), sessions=None, gateway_id=gateway_id, wait_s=1)
        """Agent session caps; without a session log no session is capped."""
        self._fail_closed = unsynced_policy == "fail_closed"
        self.leases = leases or LeaseGate.without_kafka(gateway_id, fail_closed=self._fail_closed)
        """Headroom leases (docs/leases.md); without a lease log no budget leases."""
        self._sync_wait_s = sync_wait_s
        self._sync_deadline = 0.0
        self._close_wait_s = close_wait_s
        self._unlogged = UnloggedCalls()
        self._attempts = ChargedAttempts()
        self._started = False
        self.process_budget = process_budget
        self.refuses_sdk_calls = False
        """Set by `spendpipe.install()`: refuse blocked async SDK calls before they run."""
        self.declared = declared
        """Publishes the budgets LiteLLM's keys declare (proxy mode); None: not published."""
        self.key_spend = key_spend or KeySpend()
        """This gateway's recorded cost per key: the `x-litellm-key-spend` of successful responses."""
        """Set by `spendpipe.install()`: this process's spend, for `litellm.max_budget`."""
        self.ops = ops or OpsServer(
            settings=OpsSettings(enabled=False), registry=CollectorRegistry(), readiness=Readiness()
        )
        self.ops.readiness.add("blocklist", self._blocklist_not_ready)
        if limit_follower is not None:
            self.ops.readiness.add("limits", self._limits_not_ready)
        metrics.watch(blocklist)
        metrics.sessions_live.set_function(self.sessions.live_sessions)

    def start(self) -> None:
        """Connect to Kafka and start following decisions now (the proxy entry point calls it;
        otherwise the first call or check does)."""
        if not self._started:  # on the request path: one attribute read once started
            self._started = True
            self._sync_deadline = time.monotonic() + self._sync_wait_s
            self.ops.start()
            self.publisher.start()
            atexit.register(self.close)  # after the publisher's own: exit runs this one first
            self._follower.start()
            if self._limit_follower is not None:
                self._limit_follower.start()
            self.sessions.start()
            if self.declared is not None:
                self.declared.start()

    def _blocklist_not_ready(self) -> str | None:
        return None if self.blocklist.in_sync.is_set() else "reading the decisions topic to its end"

    def _limits_not_ready(self) -> str | None:
        if self._limit_follower is None or self._limit_follower.in_sync.is_set():
            return None
        return "reading the rate limits (the budgets topic) to its end"

    def _nothing_refuses(self, *, reserve: bool = False) -> bool:
        """True when no call can be refused now, whoever makes it: in sync (or failing open), no
        block in force, and, with `reserve`, no budget leasing headroom. The request path then
        reads no identity at all (the common case: every call)."""
        self.start()
        return (
            (self.blocklist.in_sync.is_set() or not self._fail_closed)
            and not self.blocklist.may_block()
            and not (reserve and self.leases.leasing)
        )

    def blocking_decision(self, who: RequestIdentity, model: str | None = None) -> Decision | None:
        """The decision that refuses a request by `who` for `model`, or None to serve it: a budget
        block, else a pipeline-wide rate-limit block (`kind == "rate_limit"`)."""
        self.start()
        if not self.blocklist.in_sync.is_set() and self._fail_closed:
            return NOT_IN_SYNC
        if self._nothing_refuses():
            return None
        return self.blocklist.blocking(who.checked_keys(model))

    def check(
        self,
        *,
        model: str | None = None,
        user: str | None = None,
        metadata: dict[str, Any] | None = None,
        messages: list[Any] | None = None,
        max_tokens: int | None = None,
    ) -> None:
        """SDK mode: raise `litellm.BudgetExceededError` if a call with these arguments (the same
        `model`, `user` and `metadata` you pass to `litellm.completion`) is blocked, or
        `litellm.RateLimitError` if the enforcer holds one of its scopes at a rate limit.

        Until the block list has read the decisions topic to its end, a check waits for it, at
        most until `sync_wait_s` after `start()`; then `unsynced_policy` answers. Once in sync, a
        check never waits.

        A budget with headroom leases also reserves the call's estimate (from `messages` and
        `max_tokens`) here; pass the same `metadata` dict to the call, which carries the
        reservation to the logging callback that settles it (docs/leases.md)."""
        self.start()
        if not self.blocklist.in_sync.is_set():
            self._await_sync()
        self._refuse_if_blocked(model, {"user": user, "metadata": metadata}, messages, max_tokens)

    async def acheck(
        self,
        *,
        model: str | None = None,
        user: str | None = None,
        metadata: dict[str, Any] | None = None,
        messages: list[Any] | None = None,
        max_tokens: int | None = None,
    ) -> None:
        """`check()` for async code: a wait for the block list or for a headroom grant does not
        hold up the event loop (where LiteLLM settles the calls already made)."""
        self.start()
        if not self.blocklist.in_sync.is_set():
            await asyncio.to_thread(self._await_sync)
        if self._nothing_refuses(reserve=metadata is not None):
            return
        who = RequestIdentity.of_sdk_call(user=user, metadata=metadata, model=model)
        decision = self.blocking_decision(who, model)
        if decision is None and metadata is not None:
            decision = await self.leases.aadmit_sdk_call(who, model, metadata, messages=messages, max_tokens=max_tokens)
        if decision is not None:
            raise sdk_refusal(decision, model)

    def _refuse_if_blocked(
        self,
        model: object,
        call: dict[str, Any],
        messages: list[Any] | None = None,
        max_tokens: int | None = None,
        *,
        reserve: bool = True,
    ) -> None:
        """Raise the SDK refusal for a call with these arguments (`user`, `metadata`) if blocked,
        or, with `reserve`, if a budget with headroom leases has none left for it (else its
        estimate is reserved and marked in the call's `metadata`)."""
        if self._nothing_refuses(reserve=reserve):
            return
        who = RequestIdentity.of_sdk_call(user=call.get("user"), metadata=call.get("metadata"), model=model)
        name = model if isinstance(model, str) else None
        decision = self.blocking_decision(who, name)
        metadata = call.get("metadata")
        if reserve and decision is None and isinstance(metadata, dict):
            decision = self.leases.admit_sdk_call(who, name, metadata, messages=messages, max_tokens=max_tokens)
        if decision is not None:
            raise sdk_refusal(decision, name)

    def guard(self, call: Callable[_P, _R]) -> Callable[_P, _R]:
        """SDK mode, sync calls: `completion = spend.guard(litellm.completion)` runs `check()`
        with the call's own `model`, `user` and `metadata` before each call. (LiteLLM runs no hook
        before a sync call that could refuse it; async calls need no guard.)"""

        @functools.wraps(call)
        def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            messages, max_tokens = kwargs.get("messages"), kwargs.get("max_tokens")
            self._refuse_if_blocked(
                kwargs.get("model", args[0] if args else None),
                kwargs,
                messages if isinstance(messages, list) else None,
                max_tokens if isinstance(max_tokens, int) else None,
            )
            return call(*args, **kwargs)

        return guarded

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any] | None:
        """LiteLLM runs this before it sends `acompletion` (and the other async calls) to a
        deployment, once per attempt: the first, each router retry and each fallback. A raise here
        refuses the attempt.

        SDK mode: the refusal is `check()`'s, without blocking the event loop while a fresh process
        reads the block list. Only a plugin `spendpipe.install()` set up refuses blocked calls
        here: the proxy judges its requests in `async_pre_call_hook`, and its own calls (health
        checks) are not the clients'.

        Both modes: an attempt after a failed one (a router retry or fallback) of a call with a
        headroom reservation (the proxy's pre-call hook, or `check()` / `acheck()` with the call's
        `metadata`) reserves its estimate on the call's leased targets again
        (`LeaseGate.admit_attempt`)."""
        if self.refuses_sdk_calls:
            self.start()
            if not self.blocklist.in_sync.is_set() and self._sync_deadline > time.monotonic():
                await asyncio.to_thread(self._await_sync)
            # blocks only: a headroom reservation is made by `acheck()`, which marks the call's metadata
            self._refuse_if_blocked(attempt_model(kwargs), kwargs, reserve=False)
        reservation = lease_in(kwargs)
        if reservation:
            group = model_group_of(kwargs)
            decision = await self.leases.admit_attempt(reservation, group, kwargs)
            if decision is not None:
                raise sdk_refusal(decision, group)
        return None

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        """Proxy mode: refuse a blocked request the way LiteLLM refuses an exceeded budget, a
        rate-limited one the way LiteLLM's limiter does; count an admitted one."""
        who = RequestIdentity.of_proxy_request(user_api_key_dict, data)
        mark_agent(data, who.agent_id)  # the logged call is charged to the agent checked here
        self.sessions.unmark(data)  # a client's metadata may carry the mark: only admission sets it
        if self.declared is not None:
            await self.declared.observe_proxy_request(who, user_api_key_dict, cache)
        model = data.get("model")
        if (override := provider_override(model, data.get("custom_llm_provider"))) is not None:
            raise proxy_bad_request(override, "custom_llm_provider")
        decision = self.blocking_decision(who, model)
        if decision is not None:
            raise proxy_refusal(decision, model)
        if self._fail_closed and self._limits_not_ready() is not None:
            raise proxy_budget_exceeded(LIMITS_NOT_IN_SYNC)
        lease = new_lease_id()
        refusal = self.gate.admit(lease, who.rate_limit_scopes(), model or "")
        if refusal is not None:
            raise proxy_rate_limit_error(refusal, model)
        mark_lease(data, lease)
        headroom = await self.leases.admit_request(lease, who, model, data)
        if headroom is not None:
            self.gate.finish(lease, None)
            raise proxy_refusal(headroom, model)
        verdict = await self.sessions.admit(who.agent_id, who.session_id, data)
        if verdict is not None and not verdict.granted:
            self.gate.finish(lease, None)
            self.leases.release(lease)
            raise proxy_session_refused(verdict.message, verdict.cap_kind, model)
        return data

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> None:
        """A non-streaming call ended: count its tokens before the client can send the next one.
        (A stream ends later, in `async_log_success_event`.)"""
        usage = usage_of_response(response)
        if usage is not None:
            self.gate.finish(lease_in(data), usage)

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: Any = None,
    ) -> None:
        """Any failure after admission (the call, or a later hook refusing it) frees its slot."""
        self.gate.finish(lease_in(request_data), None)
        self.sessions.release(request_data)
        self.leases.release(lease_in(request_data))

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        """LiteLLM's remaining-capacity headers on a successful response, as this gateway counts,
        and its key spend headers with spendpipe's estimate of the key's spend (`key_spend.py`);
        on a response refused for the key's own budget, the key spend headers with the enforcer's
        figures (`key_spend_headers`). The one hook handed a stream before it is served: a
        `/completions` stream keeps its chunks there, to be charged if its client hangs up."""
        keep_chunks(response, data)
        who = RequestIdentity.of_proxy_key(user_api_key_dict, data)  # no agent: see below
        key = scope_name(ScopeType.KEY, who.key_hash) if who.key_hash else None
        spend = key_spend_headers(self.blocklist.blocking([key])) if key else None
        if response is None:
            return spend
        if spend is None and key and who.key_hash:
            duration = _duration_or_none(getattr(user_api_key_dict, "budget_duration", None))
            this_call = (data.get("litellm_call_id"), _response_cost(response))
            latest = self.blocklist.latest(key)
            spend = self.key_spend.figure(who.key_hash, duration, latest, call=this_call).headers()
        # these headers have never counted the agent's limits (admission does); unchanged here
        remaining = self.gate.remaining(who.rate_limit_scopes(), data.get("model") or "").headers()
        return (remaining or {}) | spend if spend else remaining

    @classmethod
    def from_settings(
        cls,
        settings: GatewaySettings,
        *,
        registry: CollectorRegistry | None = None,
        sdk: bool = False,
        auto_child: bool = False,
    ) -> "SpendpipeLogger":
        """`sdk`: for `spendpipe.install()`. `publisher="auto"` is the subprocess with `sdk` or
        `auto_child` (the proxy's `handler`), else the thread (a logger built by hand)."""
        registry = registry or CollectorRegistry()
        metrics = GatewayMetrics(registry=registry)
        options = PublisherOptions(
            queue_size=settings.queue_size,
            delivery_timeout_s=settings.delivery_timeout_s,
            retry_backoff_s=settings.retry_backoff_s,
            linger_s=settings.publish_linger_s,
        )

        def in_thread() -> EventPublisher:
            return EventPublisher(
                kafka=settings.kafka,
                topic=settings.topics.events,
                spool=DiskSpool(directory=Path(settings.spool_dir), max_bytes=settings.spool_max_bytes),
                metrics=metrics,
                options=options,
            )

        publisher: EventPublisher | ProcessPublisher
        if settings.publisher == "subprocess" or (settings.publisher == "auto" and (sdk or auto_child)):
            publisher = ProcessPublisher(
                kafka=settings.kafka,
                topic=settings.topics.events,
                spool_dir=Path(settings.spool_dir),
                spool_max_bytes=settings.spool_max_bytes,
                gateway_id=settings.gateway_id,
                metrics=metrics,
                options=options,
                fallback=in_thread if settings.publisher == "auto" else None,  # no child can start: a thread
                each_call=not sdk,  # only the proxy's key spend headers need each event's figures
            )
        else:
            publisher = in_thread()
        blocklist = BlockList()
        decisions, budgets = settings.topics.decisions, settings.topics.budgets
        follower = DecisionFollower(
            kafka=settings.kafka,
            topic=decisions,
            blocklist=blocklist,
            verifier=settings.signing.verifier(
                message_type=DECISION_TYPE, topic=decisions, rejected=metrics.records_rejected
            ),
        )
        gate = RateGate(lease_s=settings.parallel_lease_s)
        leases = LeaseGate.from_settings(settings, rejected=metrics.records_rejected)
        caps = SessionCaps()
        ledger = SessionLedger(idle_s=settings.session_idle_s, lease_s=settings.parallel_lease_s)
        sessions = SessionGate(
            caps=caps,
            sessions=SessionLog(kafka=settings.kafka, topic=settings.topics.sessions, ledger=ledger),
            gateway_id=settings.gateway_id,
            wait_s=settings.session_wait_s,
        )
        return cls(
            publisher=publisher,
            metrics=metrics,
            gateway_id=settings.gateway_id,
            blocklist=blocklist,
            follower=follower,
            unsynced_policy=settings.unsynced_policy,
            ops=OpsServer(settings=settings.ops, registry=registry, readiness=Readiness()),
            gate=gate,
            limit_follower=LimitFollower(
                kafka=settings.kafka,
                topic=budgets,
                gate=gate,
                sessions=caps,
                leases=leases,
                verifier=settings.signing.verifier(
                    message_type=BUDGET_TYPE, topic=budgets, rejected=metrics.records_rejected
                ),
            ),
            sessions=sessions,
            sync_wait_s=settings.sync_wait_s,
            close_wait_s=settings.close_wait_s,
            declared=declared_budgets(settings.kafka, settings.topics.declared_budgets, settings.signing),
            leases=leases,
            key_spend=KeySpend(calendar=settings.calendar),
        )

    def record(self, kwargs: dict[str, Any]) -> None:
        """Hand the call's event to the publisher (the request path: a few microseconds). What the
        event is built from is copied here (the raw key hashed, nothing LiteLLM may still change
        kept): pickled for the subprocess publisher (`wire.snapshot`), which builds it in its child;
        else copied (`copy_logged_call`), and built on the publisher's thread by `_event_of`. A
        hang-up success of a stream already charged as much by its failure is not handed over
        (`attempts`)."""
        if self._attempts.repeats(kwargs):
            self.metrics.repeated.inc()
            self._unlogged.logged(kwargs.get("litellm_call_id"))
            return
        publisher = self.publisher
        if isinstance(publisher, ProcessPublisher):
            publisher.record(kwargs)
        else:
            publisher.publish_deferred(functools.partial(self._event_of, copy_logged_call(kwargs)))
        self._unlogged.logged(kwargs.get("litellm_call_id"))  # after the hand-over: close() waits for this

    def _event_of(self, call: dict[str, Any]) -> SpendEvent | None:
        """The call's event, built on the publisher's thread (`event_or_fallback`), accounted."""
        event = event_or_fallback(call, gateway_id=self.gateway_id, metrics=self.metrics)
        if event is not None:
            self.account(Recorded.of(event, call))
        return event

    def account(self, recorded: Recorded) -> None:
        """What this process keeps of each event it recorded: the count, the key's spend (the
        proxy's key spend headers) and the process's spend (`litellm.max_budget`). Called on the
        publisher's thread, or, with the subprocess publisher, once the child has handled it."""
        self.metrics.recorded.inc()
        self.key_spend.add(recorded.key_hash, recorded.cost, recorded.occurred_at, recorded.call_id)
        if self.process_budget is not None:  # locked: several threads may record
            self.process_budget.add(recorded.cost)

    def account_sum(self, count: int, cost: Decimal) -> None:
        """SDK mode with the subprocess publisher: `account` for `count` events at once, whose
        costs sum to `cost`, without the key spend (which only the proxy's responses carry)."""
        self.metrics.recorded.inc(count)
        if self.process_budget is not None:
            self.process_budget.add(cost)

    def close(self, timeout: float = 30.0) -> bool:
        """Wait up to `close_wait_s` for LiteLLM to log the calls already made (`UnloggedCalls`),
        then deliver (or spool) what is queued and stop the publisher and the topic readers. Also
        runs at exit once started. True if the publisher finished in time.

        LiteLLM logs `acompletion` calls on the caller's event loop, which this blocking wait
        would hold up: called on a running loop it does not wait; use `await aclose()` there."""
        atexit.unregister(self.close)
        self._await_logged()
        self._follower.stop()
        if self._limit_follower is not None:
            self._limit_follower.stop()
        self.sessions.stop()
        if self.declared is not None:
            self.declared.stop()
        self.leases.close()
        self.ops.stop()
        return self.publisher.close(timeout)

    async def aclose(self) -> bool:
        """`close()` for async code: the loop keeps running LiteLLM's logging while it waits."""
        return await asyncio.to_thread(self.close)

    def _await_sync(self) -> None:
        remaining = self._sync_deadline - time.monotonic()
        if remaining > 0:
            self.blocklist.in_sync.wait(remaining)

    def _await_logged(self) -> None:
        if not self._unlogged:
            return
        if _on_event_loop():
            log.warning("spendpipe: close() on an event loop does not wait for LiteLLM's logging; use aclose()")
            return
        unlogged = self._unlogged.wait_logged(self._close_wait_s)
        if unlogged:
            log.warning(
                "spendpipe: LiteLLM had not logged %d call(s) after %s s; what it logs after close is lost",
                unlogged,
                self._close_wait_s,
            )

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """LiteLLM is about to call the provider: `close()` waits for this call's log."""
        self._unlogged.started(kwargs.get("litellm_call_id"))

    def _settles(self, params: dict[str, Any]) -> bool:
        """A logged call has something to settle: a lease or headroom reservation (both marked by
        `mark_lease`), a granted session call, or budgets leasing headroom (whose estimator learns
        from every call). Else (an SDK call without leases: the common case) the log only records."""
        return bool(lease_in(params)) or self.leases.leasing or self.sessions.marked(params)

    def _settle_logged(self, kwargs: Any) -> None:
        params = _litellm_params(kwargs)
        if self._settles(params):
            self.leases.settle_logged(params, call_outcome(kwargs))

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.record(kwargs)
        self._settle_logged(kwargs)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.record(kwargs)
        self._settle_logged(kwargs)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.record(kwargs)
        params = _litellm_params(kwargs)
        if not self._settles(params):
            return
        outcome = call_outcome(kwargs)  # what the call's event charges (built later, on the publisher's thread)
        self.leases.settle_logged(params, outcome)
        self.gate.finish(lease_in(params), usage_of_log(kwargs))
        if outcome is not None:
            self.sessions.settle(params, outcome.cost)
        else:
            self.sessions.release(params)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Records the attempt. It ends neither the request's lease nor its session reservation:
        a router retry or fallback may still run and cost; `async_post_call_failure_hook` sees
        the request end. The attempt's headroom reservation is settled with its cost; the next
        attempt reserves again (`async_pre_call_deployment_hook`)."""
        self.record(kwargs)
        self._settle_logged(kwargs)


def _response_cost(response: Any) -> Decimal:
    """The cost LiteLLM priced the response at (its `x-litellm-response-cost`); 0 if none."""
    hidden = getattr(response, "_hidden_params", None)
    cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
    try:
        return cost_from_float(float(cost)) if cost is not None and float(cost) > 0 else Decimal(0)
    except (TypeError, ValueError, OverflowError):
        return Decimal(0)


def _duration_or_none(text: object) -> Duration | None:
    """The key's LiteLLM `budget_duration`, or None if it has none or none spendpipe reads."""
    try:
        return parse_duration(text) if isinstance(text, str) and text else None
    except ValueError:
        return None


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def model_group_of(kwargs: dict[str, Any]) -> str:
    """The model group a deployment attempt is sent to (the router's `model_group`, which the
    attempt's event is counted under), else the attempt's model."""
    for name in ("litellm_metadata", "metadata"):
        metadata = kwargs.get(name)
        group = metadata.get("model_group") if isinstance(metadata, dict) else None
        if isinstance(group, str) and group:
            return group
    model = attempt_model(kwargs)
    return model if isinstance(model, str) else ""


def attempt_model(kwargs: dict[str, Any]) -> object:
    """The model of a deployment attempt: its `model` argument, or, for a call that passed the
    model positionally (`acompletion("openai/gpt-4o", messages)`, which LiteLLM does not hand
    this hook), the one its logging object was made for."""
    model = kwargs.get("model")
    if model is None:
        model = getattr(kwargs.get("litellm_logging_obj"), "model", None)
    return model


def _litellm_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    params = kwargs.get("litellm_params")
    return params if isinstance(params, dict) else {}
