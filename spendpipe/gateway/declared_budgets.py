"""The gateway's side of declared budgets (`contracts/declared_budgets.py`): the budgets each
virtual key's object carries for the key, its team, user, organisation and end customer, as the
proxy hands the key to `async_pre_call_hook`, published once per change to
`spend.budgets.declared`, so the enforcer enforces them fleet-wide with no second declaration.

On the request path `observe_proxy_request()` reads the `budget_duration` of the teams, users,
organisations and end customers LiteLLM may reset (`entity_durations.py`), and `observe()`
compares the fields it reads (`FIELDS_READ`) and those durations with what the key's object had
last time: a tuple comparison when nothing changed, the common case. Otherwise it builds the
budgets and compares their bytes with what each key declared last. A change is queued (newest per
scope wins) for a background loop that publishes it signed with the gateway's writer key. Every
gateway that sees a scope publishes its budget once: the same bytes under the same key, so the
enforcer applies it once.

**Many keys, one team.** Every key of a team carries the team's budget. A scope's budget is
republished only when one key's own declaration for it changes (its first sighting included), and
then to what that key now declares: keys that disagree (one read from a stale LiteLLM cache)
publish once each, never back and forth on every request, and the scope converges when the stale
key's cache refreshes and it declares the new value. A key that stops declaring a scope's budget
withdraws it (a tombstone) only when no other key this gateway saw still declares one; otherwise
the latest of those stands. What a key declares that is no valid budget is logged once per scope
and not published; so are the fields spendpipe does not enforce (`Declaration.left_out`).

Publishing needs a writer key on the gateway (`SPENDPIPE_SIGNING__PRIVATE_KEY_FILE`) when
signatures are required; without one, declared budgets are not published, and that is logged once,
at the first proxy request with a key (an SDK gateway has no key objects: nothing to say there).
"""

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

from spendpipe.contracts.declared_budgets import FIELDS_READ, MESSAGE_TYPE, Declaration, declarations_of
from spendpipe.contracts.scopes import ScopeType
from spendpipe.gateway.entity_durations import EntityDurations
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.labels import label_of
from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import RecordSigner, SigningSettings

log = logging.getLogger(__name__)

_RETRY_S = 1.0


class DeclaredBudgets:
    def __init__(self, *, kafka: KafkaSettings, topic: str, signer: RecordSigner | None) -> None:
        """`signer` None: publishing is off (no writer key where one is required)."""
        self._kafka = kafka
        self._topic = topic
        self._signer = signer
        self._lock = threading.Lock()
        self._published: dict[str, bytes | None] = {}
        """Per scope, what this gateway published last (None: a tombstone)."""
        self._queued: dict[str, bytes | None] = {}
        self._declared_by: dict[str, dict[str, bytes | None]] = {}
        """Per scope, what each key declared for it last (None: nothing), the latest change last."""
        self._seen: dict[str, tuple[object, ...]] = {}
        """Per key, the scope ids and the fields read of its object last time."""
        self._wake = threading.Event()
        self._logged: set[tuple[str, str]] = set()
        self._said_unsigned = False
        """Whether a proxy request was seen without a writer key to publish its key's budgets (logged once)."""
        self._durations = EntityDurations()
        self._loop = BackgroundLoop(name="spendpipe-declared-budgets", main=self._run)

    def start(self) -> None:
        if self._signer is not None:
            self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop(timeout)

    async def observe_proxy_request(self, who: RequestIdentity, key: Any, cache: Any) -> None:
        """`observe`, with the durations of the entities LiteLLM may reset read from their rows
        through the proxy's `user_api_key_cache` (`cache`): `gateway/entity_durations.py`."""
        if who.key_hash is None:
            return
        if self._signer is None:
            if not self._said_unsigned:
                self._said_unsigned = True
                log.warning(
                    "spendpipe: budgets LiteLLM's key objects declare are not published: no writer key "
                    "(SPENDPIPE_SIGNING__PRIVATE_KEY_FILE)"
                )
            return
        self.observe(who, key, await self._durations.of(key, cache))

    def observe(self, who: RequestIdentity, key: Any, durations: Mapping[ScopeType, str | None] | None = None) -> None:
        """The request path: queue each budget the key object declares that changed since this
        gateway last published it. `who` names the scopes as the request's spend is counted;
        `durations` are the `budget_duration`s of their rows (`declarations_of`)."""
        if who.key_hash is None or self._signer is None:
            return
        scope_ids = {
            ScopeType.KEY: who.key_hash,
            ScopeType.TEAM: who.team_id,
            ScopeType.USER: who.user_id,
            ScopeType.ORG: who.org_id,
            ScopeType.END_USER: label_of(getattr(key, "end_user_id", None)),  # whose caps the key object holds
        }
        durations = durations or {}
        seen = (*scope_ids.values(), *(getattr(key, name, None) for name in FIELDS_READ), *sorted(durations.items()))
        if self._seen.get(who.key_hash) == seen:
            return
        self._seen[who.key_hash] = seen
        changed = False
        for declaration in declarations_of(key, scope_ids, durations):
            self._log_once(declaration)
            if declaration.problem is None:
                changed |= self._declare(who.key_hash, declaration)
        if changed:
            self._wake.set()

    def _declare(self, key_hash: str, declaration: Declaration) -> bool:
        scope, budget = declaration.scope, declaration.budget
        value = budget.model_dump_json(exclude_none=True).encode() if budget is not None else None
        with self._lock:
            sources = self._declared_by.setdefault(scope, {})
            if key_hash in sources and sources[key_hash] == value:
                return False  # this key repeats itself: the common case
            sources.pop(key_hash, None)
            sources[key_hash] = value
            if value is None:  # withdrawn by this key: the latest other key's declaration stands
                value = next((v for v in reversed(sources.values()) if v is not None), None)
            if value == self._queued.get(scope, self._published.get(scope)):
                return False
            self._queued[scope] = value
        return True

    def _log_once(self, declaration: Declaration) -> None:
        scope = declaration.scope
        if declaration.problem is not None and (scope, "invalid") not in self._logged:
            self._logged.add((scope, "invalid"))
            log.error(
                "spendpipe: the budget a LiteLLM key object declares for %s is not valid: %s",
                scope,
                declaration.problem,
            )
        if declaration.left_out and (scope, "left out") not in self._logged:
            self._logged.add((scope, "left out"))
            log.warning("spendpipe: not enforced for %s: %s", scope, "; ".join(declaration.left_out))

    def queued(self) -> dict[str, bytes | None]:
        """What waits to be published, per scope (None: a deletion)."""
        with self._lock:
            return dict(self._queued)

    async def _run(self) -> None:
        assert self._signer is not None
        producer: AIOKafkaProducer | None = None
        try:
            while True:
                if not await asyncio.to_thread(self._wake.wait, _RETRY_S):  # bounded: stop() is not held up
                    continue
                self._wake.clear()
                with self._lock:
                    batch, self._queued = self._queued, {}
                try:
                    if producer is None:
                        kwargs = self._kafka.aiokafka_kwargs()
                        producer = AIOKafkaProducer(**kwargs, enable_idempotence=True, acks="all")
                        await producer.start()
                    for scope, value in batch.items():
                        headers = self._signer.headers(MESSAGE_TYPE, scope.encode(), value)
                        await producer.send_and_wait(self._topic, key=scope.encode(), value=value, headers=headers)
                except Exception:
                    log.exception("spendpipe: publishing %d declared budget(s) failed; retrying", len(batch))
                    with self._lock:
                        self._queued = batch | self._queued
                    await asyncio.sleep(_RETRY_S)
                    self._wake.set()
                    continue
                with self._lock:
                    self._published.update(batch)
        finally:
            if producer is not None:
                await producer.stop()


def declared_budgets(kafka: KafkaSettings, topic: str, signing: SigningSettings) -> DeclaredBudgets:
    """Publishing is on when this gateway can sign, or signatures are not required."""
    can_sign = not signing.required or signing.private_key is not None or signing.private_key_file is not None
    return DeclaredBudgets(kafka=kafka, topic=topic, signer=signing.signer() if can_sign else None)
