"""`SpendpipeLogger`: the LiteLLM `CustomLogger` that records every call as a `SpendEvent`,
refuses calls the enforcer has blocked, and enforces rate limits (`rate_gate.py`).

SDK mode:   `litellm.callbacks = [SpendpipeLogger.from_settings(settings)]`; pre-call hooks do
            not run in the SDK, so call `check(...)` before a call (it raises
            `litellm.BudgetExceededError`).
Proxy mode: `litellm_settings: {callbacks: spendpipe.gateway.proxy.handler}`; the
            proxy runs `async_pre_call_hook` before every call. There the plugin also counts
            rate limits per replica (refusing with LiteLLM's 429) and answers successful calls
            with `x-ratelimit-remaining-requests` / `-tokens` headers, and admits the calls of
            capped agent sessions (`session_gate.py`).

Recording never raises into LiteLLM and never waits on Kafka: a call that cannot be turned
into an event is counted in `spendpipe_gateway_event_build_errors_total` and logged.

With `SPENDPIPE_OPS__ENABLED=true` the plugin serves /healthz, /readyz (200 once the block list
has caught up with the decisions topic) and /metrics on its own port (9465 by default) from
`start()` until `close()`; a port it cannot bind is logged and does not stop the host process.
"""

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litellm import BudgetExceededError
from litellm.integrations.custom_logger import CustomLogger
from prometheus_client import CollectorRegistry

from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.blocks.blocklist import BlockList, limited_scopes, rate_limit_keys, request_keys
from spendpipe.gateway.blocks.decision_follower import DecisionFollower
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.rate_limits.limit_follower import LimitFollower
from spendpipe.gateway.rate_limits.rate_gate import RateGate
from spendpipe.gateway.recording.event_builder import build_spend_event, key_hash_of
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.gateway.refusals.rate_refusals import RateLimited, proxy_rate_limit_error, sdk_rate_limit_error
from spendpipe.gateway.sessions.agent_session import agent_of, session_of
from spendpipe.gateway.sessions.session_caps import SessionCaps
from spendpipe.gateway.sessions.session_gate import SessionGate
from spendpipe.gateway.sessions.session_ledger import SessionLedger
from spendpipe.gateway.sessions.session_log import SessionLog
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.ops_server import OpsServer, OpsSettings, Readiness

log = logging.getLogger(__name__)

LEASE_FIELD = "spendpipe_lease"
"""Set in the request's metadata at admission: which call a success or failure hook ends (an id
of the plugin's own, so a client-chosen call id cannot end another request's lease)."""


class SpendpipeLogger(CustomLogger):  # type: ignore[misc]  # litellm is not type-checked here
    def __init__(
        self,
        *,
        publisher: EventPublisher,
        metrics: GatewayMetrics,
        gateway_id: str,
        blocklist: BlockList,
        follower: DecisionFollower,
        unsynced_policy: str = "fail_open",
        ops: OpsServer | None = None,
        gate: RateGate | None = None,
        limit_follower: LimitFollower | None = None,
        sessions: SessionGate | None = None,
    ) -> None:
        super().__init__()
        self.publisher = publisher
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
        self._started = False
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
            self.ops.start()
            self.publisher.start()
            self._follower.start()
            if self._limit_follower is not None:
                self._limit_follower.start()
            self.sessions.start()

    def _blocklist_not_ready(self) -> str | None:
        return None if self.blocklist.in_sync.is_set() else "reading the decisions topic to its end"

    def _limits_not_ready(self) -> str | None:
        if self._limit_follower is None or self._limit_follower.in_sync.is_set():
            return None
        return "reading the rate limits (the budgets topic) to its end"

    def blocking_decision(
        self,
        *,
        key_hash: str | None = None,
        user_id: str | None = None,
        team_id: str | None = None,
        org_id: str | None = None,
        end_user: str | None = None,
        model: str | None = None,
        agent_id: str | None = None,
    ) -> Decision | None:
        """The decision that refuses a request with these attributes, or None to serve it: a
        budget block, else a pipeline-wide rate-limit block (`kind == "rate_limit"`)."""
        self.start()
        if not self.blocklist.in_sync.is_set() and self._fail_closed:
            return NOT_IN_SYNC
        keys = request_keys(
            key_hash=key_hash, user_id=user_id, team_id=team_id, org_id=org_id, end_user=end_user, model=model
        )
        scopes = limited_scopes(
            key_hash=key_hash, user_id=user_id, team_id=team_id, end_user=end_user, agent_id=agent_id
        )
        return self.blocklist.blocking(keys) or self.blocklist.blocking(rate_limit_keys(scopes, model))

    def check(
        self,
        *,
        model: str | None = None,
        user: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """SDK mode: raise `litellm.BudgetExceededError` if a call with these arguments (the same
        `model`, `user` and `metadata` you pass to `litellm.completion`) is blocked, or
        `litellm.RateLimitError` if the enforcer holds one of its scopes at a rate limit."""
        metadata = metadata or {}
        decision = self.blocking_decision(
            key_hash=key_hash_of(metadata.get("user_api_key_hash") or metadata.get("user_api_key")),
            user_id=metadata.get("user_api_key_user_id"),
            team_id=metadata.get("user_api_key_team_id"),
            org_id=metadata.get("user_api_key_org_id"),
            end_user=user,
            model=model,
            agent_id=agent_of(metadata),
        )
        if decision is not None and decision.kind == "rate_limit":
            raise sdk_rate_limit_error(RateLimited.of_decision(decision), model)
        if decision is not None:
            raise budget_exceeded(decision)

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        """Proxy mode: refuse a blocked request the way LiteLLM refuses an exceeded budget, a
        rate-limited one the way LiteLLM's limiter does; count an admitted one."""
        key_hash = key_hash_of(getattr(user_api_key_dict, "api_key", None))
        user_id = getattr(user_api_key_dict, "user_id", None)
        team_id = getattr(user_api_key_dict, "team_id", None)
        end_user = data.get("user") or getattr(user_api_key_dict, "end_user_id", None)
        model = data.get("model")
        metadata = data.get("metadata")
        agent_id = agent_of(
            metadata if isinstance(metadata, dict) else None, getattr(user_api_key_dict, "agent_id", None)
        )
        decision = self.blocking_decision(
            key_hash=key_hash,
            user_id=user_id,
            team_id=team_id,
            org_id=getattr(user_api_key_dict, "org_id", None),
            end_user=end_user,
            model=model,
            agent_id=agent_id,
        )
        if decision is not None and decision.kind == "rate_limit":
            raise proxy_rate_limit_error(RateLimited.of_decision(decision), model)
        if decision is not None:
            raise proxy_budget_exceeded(decision)
        if self._fail_closed and self._limits_not_ready() is not None:
            raise proxy_budget_exceeded(LIMITS_NOT_IN_SYNC)
        scopes = limited_scopes(
            key_hash=key_hash, user_id=user_id, team_id=team_id, end_user=end_user, agent_id=agent_id
        )
        lease = uuid.uuid4().hex
        refusal = self.gate.admit(lease, scopes, model or "")
        if refusal is not None:
            raise proxy_rate_limit_error(RateLimited.of_refusal(refusal), model)
        if (slot := _lease_slot(data)) is not None:
            slot[LEASE_FIELD] = lease
        await self._admit_session(agent_id, data, lease, model)
        return data

    async def _admit_session(self, agent_id: str | None, data: dict[str, Any], lease: str, model: Any) -> None:
        metadata, litellm_metadata = data.get("metadata"), data.get("litellm_metadata")
        session_id = session_of(
            metadata if isinstance(metadata, dict) else None,
            litellm_metadata if isinstance(litellm_metadata, dict) else None,
            litellm_session_id=data.get("litellm_session_id"),
        )
        verdict = await self.sessions.admit(agent_id, session_id, metadata)
        if verdict is not None and not verdict.granted:
            self.gate.finish(lease, None)
            raise proxy_session_refused(verdict.message, verdict.cap_kind, model)

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> None:
        """A non-streaming call ended: count its tokens before the client can send the next one.
        (A stream ends later, in `async_log_success_event`.)"""
        usage = _usage_of_response(response)
        if usage is not None:
            self.gate.finish(_lease_in(data), usage)

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: Any = None,
    ) -> None:
        """Any failure after admission (the call, or a later hook refusing it) frees its slot."""
        self.gate.finish(_lease_in(request_data), None)
        self.sessions.release(request_data)

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        """LiteLLM's remaining-capacity headers on a successful response, as this gateway counts."""
        if response is None:
            return None
        scopes = limited_scopes(
            key_hash=key_hash_of(getattr(user_api_key_dict, "api_key", None)),
            user_id=getattr(user_api_key_dict, "user_id", None),
            team_id=getattr(user_api_key_dict, "team_id", None),
            end_user=data.get("user") or getattr(user_api_key_dict, "end_user_id", None),
        )
        left = self.gate.remaining(scopes, data.get("model") or "")
        headers = {
            "x-ratelimit-remaining-requests": left.requests,
            "x-ratelimit-limit-requests": left.request_limit,
            "x-ratelimit-remaining-tokens": left.tokens,
            "x-ratelimit-limit-tokens": left.token_limit,
        }
        return {name: str(value) for name, value in headers.items() if value is not None} or None

    @classmethod
    def from_settings(
        cls, settings: GatewaySettings, *, registry: CollectorRegistry | None = None
    ) -> "SpendpipeLogger":
        registry = registry or CollectorRegistry()
        metrics = GatewayMetrics(registry=registry)
        publisher = EventPublisher(
            kafka=settings.kafka,
            topic=settings.topics.events,
            spool=DiskSpool(directory=Path(settings.spool_dir), max_bytes=settings.spool_max_bytes),
            metrics=metrics,
            options=PublisherOptions(
                queue_size=settings.queue_size,
                delivery_timeout_s=settings.delivery_timeout_s,
                retry_backoff_s=settings.retry_backoff_s,
            ),
        )
        blocklist = BlockList()
        follower = DecisionFollower(kafka=settings.kafka, topic=settings.topics.decisions, blocklist=blocklist)
        gate = RateGate(lease_s=settings.parallel_lease_s)
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
            limit_follower=LimitFollower(kafka=settings.kafka, topic=settings.topics.budgets, gate=gate, sessions=caps),
            sessions=sessions,
        )

    def record(self, kwargs: dict[str, Any]) -> SpendEvent | None:
        """Build the call's event and hand it to the publisher (the request path: microseconds)."""
        try:
            event = build_spend_event(kwargs, gateway_id=self.gateway_id)
        except Exception:
            self.metrics.build_errors.inc()
            log.exception("spendpipe could not build a spend event for call %s", _call_id(kwargs))
            return None
        if event is None:
            self.metrics.build_errors.inc()
            log.warning("spendpipe: call %s has no standard_logging_object", _call_id(kwargs))
            return None
        self.metrics.recorded.inc()
        self.publisher.publish(event)
        return event

    def close(self, timeout: float = 30.0) -> bool:
        """Deliver (or spool) what is queued, stop the publisher and the decisions reader.
        True if the publisher finished in time."""
        self._follower.stop()
        if self._limit_follower is not None:
            self._limit_follower.stop()
        self.sessions.stop()
        self.ops.stop()
        return self.publisher.close(timeout)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.record(kwargs)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.record(kwargs)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        event = self.record(kwargs)
        self.gate.finish(_lease_in(_litellm_params(kwargs)), _usage_of_log(kwargs))
        if event is not None:
            self.sessions.settle(_litellm_params(kwargs), event.cost)
        else:
            self.sessions.release(_litellm_params(kwargs))

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Records the attempt. It ends neither the request's lease nor its session reservation:
        LiteLLM logs every failed attempt of a request its router retries or falls back from
        (`utils.py` `wrapper_async`), so a later attempt may still run and cost;
        `async_post_call_failure_hook` sees the request end."""
        self.record(kwargs)


NOT_IN_SYNC = Decision(
    scope="global",
    version=0,
    blocked=True,
    reason="spendpipe has not read the block list yet and is configured to fail closed",
    decided_at=datetime(1970, 1, 1, tzinfo=UTC),
)
LIMITS_NOT_IN_SYNC = NOT_IN_SYNC.model_copy(
    update={"reason": "spendpipe has not read the rate limits yet and is configured to fail closed"}
)


def budget_exceeded(decision: Decision) -> BudgetExceededError:
    """The error LiteLLM raises for an exceeded budget; its proxy answers it with HTTP 400 and
    `"type": "budget_exceeded"`."""
    error = BudgetExceededError(
        current_cost=float(decision.spend or 0),
        max_budget=float(decision.cap or 0),
        message=decision.reason,
    )
    error.entity_type, error.entity_id = decision.scope.partition(":")[0], decision.scope.partition(":")[2]
    return error


def proxy_budget_exceeded(decision: Decision) -> Exception:
    """What LiteLLM's proxy raises for an exceeded budget: a `ProxyException` of type
    `budget_exceeded` with `litellm.budget_exceeded_status_code` (named as spendpipe's own:
    `contracts/refusals.py`), answered as `{"error": {"message", "type", "param", "code"}}`."""
    from litellm.proxy._types import ProxyErrorTypes  # noqa: PLC0415 - proxy-only module

    from spendpipe.gateway.refusals.refusal_errors import SpendpipeBudgetExceededError  # noqa: PLC0415

    error = budget_exceeded(decision)
    return SpendpipeBudgetExceededError(
        message=error.message, type=ProxyErrorTypes.budget_exceeded, param=None, code=error.status_code
    )


def proxy_session_refused(message: str, cap_kind: str | None, model: Any) -> Exception:
    """What LiteLLM's own session limiters raise (`max_iterations_limiter`,
    `max_budget_per_session_limiter`): a 429 `ProxyRateLimitError` of type `max_iterations` or `budget`."""
    from litellm.exceptions import RateLimitType  # noqa: PLC0415 - proxy-only

    from spendpipe.gateway.refusals.refusal_errors import SpendpipeRateLimitError  # noqa: PLC0415

    kind = RateLimitType.MAX_ITERATIONS if cap_kind == "max_iterations" else RateLimitType.BUDGET
    return SpendpipeRateLimitError(
        detail=message, headers={"rate_limit_type": kind.value}, rate_limit_type=kind, model=model or None
    )


def _call_id(kwargs: dict[str, Any]) -> str:
    return str(kwargs.get("litellm_call_id", "?"))


def _litellm_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    params = kwargs.get("litellm_params")
    return params if isinstance(params, dict) else {}


def _lease_slot(data: dict[str, Any]) -> dict[str, Any] | None:
    """Where the proxy keeps its own metadata of a request: `litellm_metadata` when the request
    has it (LiteLLM sets it on its `LITELLM_METADATA_ROUTES`: /v1/messages, /responses, batches,
    files..., where `metadata` is the client's and goes on to the provider), else `metadata`.
    LiteLLM hands both on to the logging callbacks' `litellm_params`."""
    litellm_metadata = data.get("litellm_metadata")
    if isinstance(litellm_metadata, dict):
        return litellm_metadata
    if data.get("metadata") is None:
        data["metadata"] = {}
    metadata = data["metadata"]
    return metadata if isinstance(metadata, dict) else None


def _lease_in(data: dict[str, Any]) -> str:
    """The lease `_lease_slot` holds; only there (a client's `metadata` may carry the field)."""
    litellm_metadata = data.get("litellm_metadata")
    slot = litellm_metadata if isinstance(litellm_metadata, dict) else data.get("metadata")
    lease = slot.get(LEASE_FIELD) if isinstance(slot, dict) else None
    return lease if isinstance(lease, str) else ""


def _usage_of_response(response: Any) -> tuple[int, int, int] | None:
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    prompt, completion = getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
    return int(prompt), int(completion), int(getattr(usage, "total_tokens", 0) or prompt + completion)


def _usage_of_log(kwargs: dict[str, Any]) -> tuple[int, int, int] | None:
    logged = kwargs.get("standard_logging_object")
    if not isinstance(logged, dict):
        return None
    prompt, completion = int(logged.get("prompt_tokens") or 0), int(logged.get("completion_tokens") or 0)
    return prompt, completion, int(logged.get("total_tokens") or prompt + completion)
