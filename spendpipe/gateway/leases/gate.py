"""Admitting calls against headroom leases (docs/leases.md): which of a request's targets lease,
the call's estimate, the reservation on every leased target at once, and the answer when the
chains cannot cover it (wait for a grant, refuse, or follow the unsynced policy).

The plugin calls `admit` (proxy, async) or `admit_now` (SDK `check()`, blocking) with the same
reservation id it marks on the request for its rate-limit slot, and `settle` / `release` from
the logging hooks with that id. A request with no leased target costs one dictionary lookup per
budget key.
"""

import asyncio
import concurrent.futures
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter

from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.leases import GRANT_MESSAGE_TYPE, LeaseSettings, target_key
from spendpipe.contracts.scopes import ScopeType, scope_name, team_member_id
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.leases.book import LeaseBook, Verdict
from spendpipe.gateway.leases.estimate import CallEstimator
from spendpipe.gateway.leases.lease_log import LeaseLog
from spendpipe.gateway.rate_limits.leases import lease_in, mark_lease
from spendpipe.gateway.recording.event_builder import CallOutcome
from spendpipe.gateway.settings import GatewaySettings

Needs = dict[str, tuple[str, str, Decimal]]
RETRY_S = 0.25
"""A waiting call tries to reserve again at least this often (the book's ask and wait timers)."""


class LeaseGate:
    def __init__(
        self,
        *,
        book: LeaseBook,
        log: LeaseLog | None,
        settings: LeaseSettings,
        fail_closed: bool,
        lapse_s: float = 600.0,
    ) -> None:
        self.book = book
        self._log = log
        self._settings = settings
        self._fail_closed = fail_closed
        self._lapse_s = lapse_s
        self._changes: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self.estimator = CallEstimator(
            first_output_tokens=settings.first_output_tokens, unpriced_reserve=settings.unpriced_reserve
        )
        self._leased: dict[str, dict[str, tuple[str, str]]] = {}
        """{scope: {target key: (scope, model)}} of the budgets that lease."""
        self._keys: dict[str, tuple[str, str]] = {}
        self._budgeted: set[str] = set()
        """Every scope with a budget of its own: no cap is derived for it."""
        self._member_caps: set[str] = set()
        """The teams whose leasing budget sets `max_budget_in_team`."""
        self._end_user_caps = False
        """Whether the global budget leases and sets `max_end_user_budget`."""
        self._attempts: dict[str, Attempts] = {}
        """Per admitted call (by reservation): who it is and its deployment attempts, so a router
        retry or fallback reserves again (`admit_attempt`)."""
        if log is not None:
            log.tick = self.sweep

    @classmethod
    def from_settings(cls, settings: GatewaySettings, *, rejected: Counter) -> "LeaseGate":
        book = LeaseBook(gateway_id=settings.gateway_id, settings=settings.leases)
        log = LeaseLog(
            kafka=settings.kafka,
            requests_topic=settings.topics.lease_requests,
            grants_topic=settings.topics.leases,
            book=book,
            verifier=settings.signing.verifier(
                message_type=GRANT_MESSAGE_TYPE, topic=settings.topics.leases, rejected=rejected
            ),
        )
        return cls(
            book=book,
            log=log,
            settings=settings.leases,
            fail_closed=settings.unsynced_policy == "fail_closed",
            lapse_s=settings.parallel_lease_s,
        )

    @classmethod
    def without_kafka(cls, gateway_id: str, *, fail_closed: bool) -> "LeaseGate":
        """A gate that leases nothing: no budget reaches it."""
        settings = LeaseSettings()
        return cls(
            book=LeaseBook(gateway_id=gateway_id, settings=settings),
            log=None,
            settings=settings,
            fail_closed=fail_closed,
        )

    # budgets (from the limits follower)

    def put(self, budget: Budget) -> None:
        targets: dict[str, tuple[str, str]] = {}
        if budget.headroom_leases:
            if budget.hard_caps():
                targets[target_key(budget.scope)] = (budget.scope, "")
            for model in budget.model_max_budget:
                targets[target_key(budget.scope, model)] = (budget.scope, model)
        self._leased[budget.scope] = targets
        self._budgeted.add(budget.scope)
        self._derives(budget.scope, budget)
        self._reindex()
        if budget.headroom_leases:
            self.start()  # connect before the first leased call needs a grant

    def delete(self, scope: str) -> None:
        self._leased.pop(scope, None)
        self._budgeted.discard(scope)
        self._derives(scope, None)
        self._reindex()

    def _derives(self, scope: str, budget: Budget | None) -> None:
        """Note the caps a leasing team or global budget derives for scopes without a budget of
        their own (as the enforcer's `BudgetBook.leased_targets`)."""
        leases = budget is not None and budget.headroom_leases
        kind, _, team = scope.partition(":")
        if kind == "team":
            if leases and budget is not None and budget.max_budget_in_team is not None:
                self._member_caps.add(team)
            else:
                self._member_caps.discard(team)
        elif scope == "global":
            self._end_user_caps = leases and budget is not None and budget.max_end_user_budget is not None

    def _reindex(self) -> None:
        self._keys = {key: target for targets in self._leased.values() for key, target in targets.items()}

    # admission

    @property
    def leasing(self) -> bool:
        """Some budget leases headroom: a call may have to reserve (else `needs` is always empty)."""
        return bool(self._keys or self._member_caps or self._end_user_caps)

    def needs(self, who: RequestIdentity, model: str | None, request: Mapping[str, Any]) -> Needs:
        """What a call of `who` reserves: its estimate on every leased target it counts towards,
        its scopes' own and the caps derived for its team membership and its end customer."""
        keys = self._keys
        if not self.leasing:  # no budget leases: the common case, on every call
            return {}
        leased = [(key, keys[key]) for key in who.budget_keys(model) if key in keys]
        leased += [(scope, (scope, "")) for scope in self._derived_scopes(who)]
        if not leased:
            return {}
        estimate = self.estimator.estimate(model or "", request)
        return {key: (scope, target_model, estimate) for key, (scope, target_model) in leased}

    def _derived_scopes(self, who: RequestIdentity) -> list[str]:
        """The scopes of `who` without a budget of their own whose cap a leasing budget derives."""
        scopes = []
        if who.team_id and who.user_id and who.team_id in self._member_caps:
            scopes.append(scope_name(ScopeType.TEAM_MEMBER, team_member_id(who.team_id, who.user_id)))
        if who.end_user and self._end_user_caps:
            scopes.append(scope_name(ScopeType.END_USER, who.end_user))
        return [scope for scope in scopes if scope not in self._budgeted]

    def admit_sdk_call(
        self, who: RequestIdentity, model: str | None, metadata: dict[str, Any], **request: Any
    ) -> Decision | None:
        """SDK `check()`: reserve for the call and mark the reservation in its `metadata` (the
        dict the caller passes on to LiteLLM, which hands it to the logging callbacks and the
        deployment hook of each attempt: an async call's router retry reserves again)."""
        needs = self.needs(who, model, request)
        if not needs:
            return None
        reservation = _marked(metadata)
        decision = self.admit_now(reservation, needs, model or "", refresh=lambda: self.needs(who, model, request))
        return self._attempted(reservation, who, decision)

    async def aadmit_sdk_call(
        self, who: RequestIdentity, model: str | None, metadata: dict[str, Any], **request: Any
    ) -> Decision | None:
        """`admit_sdk_call` for SDK `acheck()`."""
        needs = self.needs(who, model, request)
        if not needs:
            return None
        reservation = _marked(metadata)
        decision = await self.admit(reservation, needs, model or "", refresh=lambda: self.needs(who, model, request))
        return self._attempted(reservation, who, decision)

    async def admit_request(
        self, reservation: str, who: RequestIdentity, model: str | None, request: Mapping[str, Any]
    ) -> Decision | None:
        """The proxy's pre-call hook: reserve for the request's first attempt, and remember who it
        is, so that each later attempt of the request reserves again (`admit_attempt`)."""
        if not self.leasing:
            return None
        decision = await self._admit_call(reservation, who, model or "", request)
        return self._attempted(reservation, who, decision)

    def _attempted(self, reservation: str, who: RequestIdentity, decision: Decision | None) -> Decision | None:
        """An admitted call's attempts reserve from now on (`admit_attempt`); its success log, the
        proxy's failure hook, or the sweep after `lapse_s` forgets it."""
        if decision is None:
            self._attempts[reservation] = Attempts(who, time.monotonic())
        return decision

    async def admit_attempt(self, reservation: str, model: str, request: Mapping[str, Any]) -> Decision | None:
        """One deployment attempt of an admitted call (LiteLLM's
        `async_pre_call_deployment_hook`, run before every attempt: the first, each router retry
        and each fallback). The first runs on the admission's reservation. A later one follows a
        failed attempt, whose log has settled that reservation with the attempt's cost: it
        reserves again, for the model group it is sent to, or is refused as the admission would
        be. Attempts run one after the other: what the previous one still holds is freed first."""
        attempt = self._attempts.get(reservation)
        if attempt is None:
            return None
        attempt.count += 1
        if attempt.count == 1:
            return None
        self.release(reservation, end=False)
        return await self._admit_call(reservation, attempt.who, model, request)

    async def _admit_call(
        self, reservation: str, who: RequestIdentity, model: str, request: Mapping[str, Any]
    ) -> Decision | None:
        return await self.admit(
            reservation, self.needs(who, model, request), model, refresh=lambda: self.needs(who, model, request)
        )

    def admit_now(
        self, reservation: str, needs: Needs, model: str, *, refresh: Callable[[], Needs] | None = None
    ) -> Decision | None:
        """Reserve, waiting (blocking) for a grant, or for headroom other chains hold to come
        back (`_try`). None: admitted; else the decision that refuses it. `refresh` gives the
        call's needs again: a waiting call is estimated again once the gateway has learned more
        of a model's output (the estimate of a model's first calls falls once one has ended)."""
        if not needs:
            return None
        self.start()
        started, learned = time.monotonic(), self.estimator.learned
        while True:
            if refresh is not None and self.estimator.learned != learned:
                learned, needs = self.estimator.learned, refresh() or needs
            done, decision = self._try(reservation, needs, model, started)
            if done:
                return decision
            with self.book.changed:
                self.book.changed.wait(0.05)

    async def admit(
        self, reservation: str, needs: Needs, model: str, *, refresh: Callable[[], Needs] | None = None
    ) -> Decision | None:
        """`admit_now` for the proxy's event loop, without leaving it: a waiting call holds no
        thread (many calls may wait at once on a busy gateway). It tries again whenever the book
        changed (a grant, a settled call), and at least every `RETRY_S` for the book's timers."""
        if not needs:
            return None
        self.start()
        started, learned = time.monotonic(), self.estimator.learned
        while True:
            changed = self._changed()  # before trying: a change while it tries wakes the wait
            if refresh is not None and self.estimator.learned != learned:
                learned, needs = self.estimator.learned, refresh() or needs
            done, decision = self._try(reservation, needs, model, started)
            if done:
                return decision
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), RETRY_S)

    def _try(self, reservation: str, needs: Needs, model: str, started: float) -> tuple[bool, Decision | None]:
        """One try to reserve: (whether the call is decided, the decision refusing it). After
        `wait_s` the call gives up: refused if the enforcer's latest word leaves less than its
        estimate free. While that word says it fits and an ask is in flight, it waits for the
        answer, until the enforcer has not answered for `wait_s` (the unsynced policy then
        decides), and never past twice `wait_s` in all."""
        now = time.monotonic()
        waited = now - started
        verdict, asks = self.book.reserve(reservation, needs, model, now, give_up=waited >= self._settings.wait_s)
        self._send(asks)
        if verdict is Verdict.WAIT and waited >= 2 * self._settings.wait_s:
            verdict = Verdict.UNANSWERED
        if verdict is Verdict.WAIT:
            return False, None
        return True, self._answer(verdict, needs)

    def _changed(self) -> asyncio.Event:
        """An event set at the book's next change, for the running loop (one listener per loop)."""
        loop = asyncio.get_running_loop()
        event = self._changes.get(loop)
        if event is None:
            event = self._changes[loop] = asyncio.Event()

            def listener() -> None:
                try:
                    loop.call_soon_threadsafe(self._pulse, loop)
                except RuntimeError:  # the loop is closed
                    self.book.listeners.remove(listener)
                    self._changes.pop(loop, None)

            self.book.listeners.append(listener)
        return event

    def _pulse(self, loop: asyncio.AbstractEventLoop) -> None:
        """On `loop`: wake what waits on the current event; later waits take a new one."""
        event = self._changes.get(loop)
        if event is not None:
            self._changes[loop] = asyncio.Event()
            event.set()

    def _answer(self, verdict: Verdict, needs: Needs) -> Decision | None:
        if verdict is Verdict.RESERVED:
            return None
        if verdict is Verdict.UNANSWERED and not self._fail_closed:
            return None  # fail open: the pipeline-lag block still applies
        short = self.book.short_of(needs, time.monotonic())
        scope, model, estimate = needs[short] if short is not None else next(iter(needs.values()))
        if verdict is Verdict.UNANSWERED:
            reason = (
                f"spendpipe could not get headroom for {scope} from the enforcer in time "
                "and is configured to fail closed"
            )
        else:
            reason = (
                f"Budget has been exceeded! {scope}" + (f" on model {model}" if model else "")
                + f": no leased headroom left for a call estimated at {estimate.normalize():f} (headroom lease)"
            )  # fmt: skip
        return Decision(
            scope=scope,
            model=model,
            version=0,
            blocked=True,
            reason=reason,
            decided_at=datetime.now(UTC),
        )

    def settle_logged(self, litellm_params: Mapping[str, Any], event: CallOutcome | None) -> None:
        """A logged call (success or failure) ends its reservation, with the event's exact cost.
        Every successful call, reserved or not, teaches the estimator its model's output."""
        if event is not None and event.status == "success" and self._keys:
            self.estimator.observe(event.billed_model, event.completion_tokens)
        reservation = lease_in(litellm_params)
        if not reservation:
            return
        if event is None:
            self.release(reservation, end=False)
        else:
            self.book.settle(reservation, event.cost)
            if event.status == "success":
                self._attempts.pop(reservation, None)  # the request is over: no attempt follows

    def release(self, reservation: str, *, end: bool = True) -> None:
        """Free a reservation's estimate (its call cost nothing, or its cost is unknown); `end`:
        the request is over, no attempt of it follows."""
        self.book.settle(reservation, None)
        if end:
            self._attempts.pop(reservation, None)

    # lifecycle

    def start(self) -> None:
        if self._log is not None:
            self._log.start()

    def sweep(self) -> None:
        """Hand back idle and lapsed chains (run by the lease log every quarter second)."""
        now = time.monotonic()
        for name in [n for n, a in list(self._attempts.items()) if now - a.at >= self._lapse_s]:
            self._attempts.pop(name, None)  # a request whose end was never seen
        self._send(self.book.to_return(now, lapse_s=self._lapse_s))

    def close(self) -> None:
        """Return every chain, then stop."""
        if self._log is None:
            return
        returns = self.book.to_return(time.monotonic(), everything=True, lapse_s=self._lapse_s)
        if returns and self._log.ready.is_set():
            concurrent.futures.wait(self._log.send(returns), timeout=5.0)
        self._log.stop()

    def _send(self, asks: list[Any]) -> None:
        if asks and self._log is not None:
            self._log.send(asks)


@dataclass
class Attempts:
    who: RequestIdentity
    at: float
    count: int = 0
    """Deployment attempts started so far."""


def _marked(metadata: dict[str, Any]) -> str:
    """A new reservation id, marked in the call's metadata where the logging hooks find it."""
    reservation = uuid.uuid4().hex
    mark_lease({"metadata": metadata}, reservation)
    return reservation
