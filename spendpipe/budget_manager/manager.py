"""`BudgetManager`: LiteLLM's API over the pipeline (see the package docstring for the rules)."""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.budget_manager.budget_book import UserBudgets
from spendpipe.budget_manager.ledger import Pending, SpendLedger
from spendpipe.budget_manager.pricing import price_call, prompt_cost
from spendpipe.budget_manager.sender import EventSender
from spendpipe.budget_manager.user_spend import UserSpend
from spendpipe.contracts.budgets import MESSAGE_TYPE, Budget, SpendReset, validate_budget
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.money import cost_from_float
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.gateway.labels import label_of, model_label
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.settings import PipelineSettings, load_settings, require_keys
from spendpipe.platform.signing import uncollected_rejections
from spendpipe.store.sql_endpoint.client import SqlSource, sql_source
from spendpipe.store.sql_endpoint.settings import DEFAULT_URL, EndpointUrl

log = logging.getLogger(__name__)

Duration = Literal["daily", "weekly", "monthly", "yearly"]
DURATIONS: dict[str, str] = {"daily": "1d", "weekly": "7d", "monthly": "1mo", "yearly": "365d"}


class BudgetManagerSettings(PipelineSettings):
    sql_endpoint_url: EndpointUrl = DEFAULT_URL
    spool_dir: str = ".data/budget-manager-spool"
    totals_max_age_s: float = 1.0
    """How long a user's confirmed totals are reused: other processes' spend shows after at
    most this (plus the pipeline's delay); this process's own spend shows at once."""
    sync_wait_s: float = 10.0
    """How long the first lookup waits for the budgets topic to be read to its end."""
    delivery_timeout_s: float = 5.0
    """How long `update_cost` waits for Kafka before handing the event to the spool."""


class BudgetManager:
    """Every method of LiteLLM's `BudgetManager`, same arguments, results and exceptions (a
    KeyError for a user without a budget), safe from sync code and inside a running event loop;
    each has an async twin (`acreate_budget`, ...) that runs it off the loop."""

    def __init__(
        self,
        project_name: str,
        client_type: str = "local",
        api_base: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        settings: BudgetManagerSettings | None = None,
        sql: SqlSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.project_name = project_name
        self.client_type = client_type  # accepted for compatibility: the pipeline is the store
        self.api_base = api_base
        self.headers = headers or {"Content-Type": "application/json"}
        self.user_dict: dict[str, dict[str, Any]] = {}
        """LiteLLM's per-user view, refreshed by each call that names the user (and by
        `load_data` for all): editing it changes only what `reset_on_duration` reads."""
        settings = settings or load_settings(BudgetManagerSettings)
        self._settings = settings
        self._clock = clock
        require_keys(settings.signing, writes=False, reads=True)
        verifier = settings.signing.verifier(
            message_type=MESSAGE_TYPE, topic=settings.topics.budgets, rejected=uncollected_rejections()
        )
        self._budgets = UserBudgets(
            kafka=settings.kafka, topic=settings.topics.budgets, verifier=verifier, sync_wait_s=settings.sync_wait_s
        )
        self._admin = BudgetAdmin(kafka=settings.kafka, topics=settings.topics, signing=settings.signing)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spendpipe-budget-writer")
        self._ledger = SpendLedger()
        self._spend = UserSpend(
            sql=sql or sql_source(settings.clickhouse, settings.sql_endpoint_url),
            ledger=self._ledger,
            events_topic=settings.topics.events,
            max_age_s=settings.totals_max_age_s,
            clock=clock,
            calendar=settings.calendar,
        )
        self._sender = EventSender(
            kafka=settings.kafka, topic=settings.topics.events, timeout_s=settings.delivery_timeout_s
        )
        self._spool = EventPublisher(
            kafka=settings.kafka,
            topic=settings.topics.events,
            spool=DiskSpool(directory=Path(settings.spool_dir), max_bytes=256 << 20),
            metrics=GatewayMetrics(registry=CollectorRegistry()),
            options=PublisherOptions(),
        )

    # LiteLLM's API

    def print_verbose(self, print_statement: Any) -> None:
        import litellm  # noqa: PLC0415

        if litellm.set_verbose:
            log.info(print_statement)

    def load_data(self) -> None:
        """Refresh `user_dict` from the pipeline: every user's budget and current cost."""
        for user in self.get_users():
            self.get_current_cost(user)

    def create_budget(
        self, total_budget: float, user: str, duration: Duration | None = None, created_at: float | None = None
    ) -> dict[str, Any]:
        """Set the user's budget; an existing user's spend starts afresh, as in LiteLLM."""
        document: dict[str, object] = {"scope": _scope(user), "max_budget": str(Decimal(str(total_budget)))}
        if duration is not None:
            if duration not in DURATIONS:
                raise ValueError('duration needs to be one of ["daily", "weekly", "monthly", "yearly"]')
            document["budget_duration"] = DURATIONS[duration]
        now = self._clock()
        document["spend_reset"] = self._reset_at(_id(user), now)
        self._write(validate_budget(document))
        entry: dict[str, Any] = {"total_budget": total_budget}
        if duration is not None:
            at = now if created_at is None else created_at
            entry |= {"duration": _days(DURATIONS[duration]), "created_at": at, "last_updated_at": at}
        self.user_dict[_id(user)] = entry
        return entry

    def projected_cost(self, model: str, messages: list[dict[str, Any]], user: str) -> float:
        return prompt_cost(model, messages) + self.get_current_cost(user)

    def get_total_budget(self, user: str) -> float:
        return float(self._budget(user).max_budget or 0)

    def update_cost(
        self,
        user: str,
        completion_obj: Any = None,
        model: str | None = None,
        input_text: str | None = None,
        output_text: str | None = None,
    ) -> dict[str, Any]:
        """Record the call's cost; returns `{"user": <user_dict entry>}` with the new cost."""
        priced = price_call(completion_obj, model, input_text, output_text)
        self._budget(user)  # a KeyError for an unknown user, as LiteLLM's; nothing recorded
        self._record(_id(user), priced.model, cost_from_float(priced.cost), priced)
        self.get_current_cost(user)
        return {"user": self.user_dict[_id(user)]}

    def get_current_cost(self, user: str) -> float:
        return float(self.current_cost(user))

    def current_cost(self, user: str) -> Decimal:
        """The exact spend in the budget's current window (what `get_current_cost` rounds)."""
        return sum(self._model_spend(user).values(), Decimal(0))

    def get_model_cost(self, user: str) -> dict[str, float] | int:
        """Spend per model; 0 before any (LiteLLM's `.get("model_cost", 0)`)."""
        self._model_spend(user)
        model_cost: dict[str, float] | int = self.user_dict[_id(user)].get("model_cost", 0)
        return model_cost

    def is_valid_user(self, user: str) -> bool:
        return self._budgets.get(_id(user)) is not None

    def get_users(self) -> list[str]:
        users = self._budgets.users()
        for user in users:
            self._entry(user)
        return users

    def reset_cost(self, user: str) -> dict[str, Any]:
        """Start the user's spend afresh; its history stays (a reset marker on the budget)."""
        budget = self._budget(user)
        self._write(budget.model_copy(update={"spend_reset": self._reset_at(_id(user), self._clock())}))
        entry = self._entry(_id(user))
        entry["current_cost"], entry["model_cost"] = 0, {}
        return {"user": entry}

    def reset_on_duration(self, user: str) -> None:
        """LiteLLM's rolling reset: once `duration` days passed since `last_updated_at`, reset."""
        self._budget(user)
        entry = self._entry(_id(user))  # a KeyError below without a duration, as LiteLLM's
        now = self._clock()
        if now - entry["last_updated_at"] >= entry["duration"] * 86_400:
            self.reset_cost(user)
            self.user_dict[_id(user)]["last_updated_at"] = now

    def update_budget_all_users(self) -> None:
        for user in self.get_users():
            if "duration" in self.user_dict[user]:
                self.reset_on_duration(user)

    def save_data(self) -> dict[str, str]:
        """Deliver what went to the spool (LiteLLM saves its file here)."""
        self._spool.wait_idle(30)
        return {"status": "success"}

    @property
    def unconfirmed_events(self) -> int:
        """How many events this process recorded that the last totals read did not include."""
        return len(self._ledger)

    def close(self) -> None:
        self._sender.close()
        self._spool.close()
        self._budgets.stop()
        self._writer.shutdown(wait=True)

    def __enter__(self) -> "BudgetManager":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # the async twins: each runs its sync method on a worker thread, never blocking the loop

    async def acreate_budget(
        self, total_budget: float, user: str, duration: Duration | None = None, created_at: float | None = None
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self.create_budget, total_budget, user, duration, created_at)

    async def aprojected_cost(self, model: str, messages: list[dict[str, Any]], user: str) -> float:
        return await asyncio.to_thread(self.projected_cost, model, messages, user)

    async def aget_total_budget(self, user: str) -> float:
        return await asyncio.to_thread(self.get_total_budget, user)

    async def aupdate_cost(
        self,
        user: str,
        completion_obj: Any = None,
        model: str | None = None,
        input_text: str | None = None,
        output_text: str | None = None,
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self.update_cost, user, completion_obj, model, input_text, output_text)

    async def aget_current_cost(self, user: str) -> float:
        return await asyncio.to_thread(self.get_current_cost, user)

    async def acurrent_cost(self, user: str) -> Decimal:
        return await asyncio.to_thread(self.current_cost, user)

    async def aget_model_cost(self, user: str) -> dict[str, float] | int:
        return await asyncio.to_thread(self.get_model_cost, user)

    async def ais_valid_user(self, user: str) -> bool:
        return await asyncio.to_thread(self.is_valid_user, user)

    async def aget_users(self) -> list[str]:
        return await asyncio.to_thread(self.get_users)

    async def areset_cost(self, user: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.reset_cost, user)

    async def areset_on_duration(self, user: str) -> None:
        await asyncio.to_thread(self.reset_on_duration, user)

    async def aupdate_budget_all_users(self) -> None:
        await asyncio.to_thread(self.update_budget_all_users)

    async def asave_data(self) -> dict[str, str]:
        return await asyncio.to_thread(self.save_data)

    async def aload_data(self) -> None:
        await asyncio.to_thread(self.load_data)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # the pipeline behind it

    def _budget(self, user: str) -> Budget:
        budget = self._budgets.get(_id(user))
        if budget is None:
            raise KeyError(user)
        return budget

    def _entry(self, user_id: str) -> dict[str, Any]:
        """The user's `user_dict` entry, its budget fields brought up to date."""
        budget = self._budgets.get(user_id)
        entry = self.user_dict.setdefault(user_id, {})
        if budget is None:
            return entry
        entry["total_budget"] = float(budget.max_budget or 0)
        days = _days(budget.budget_duration)
        if days is None:
            for key in ("duration", "created_at", "last_updated_at"):
                entry.pop(key, None)
            return entry
        since = float(budget.spend_reset.at) if budget.spend_reset else self._clock()
        entry["duration"] = days
        entry.setdefault("created_at", since)
        entry.setdefault("last_updated_at", since)
        return entry

    def _model_spend(self, user: str) -> dict[str, Decimal]:
        spend = self._spend.by_model(_id(user), self._budget(user))
        entry = self._entry(_id(user))
        entry["current_cost"] = float(sum(spend.values(), Decimal(0)))
        if spend or "model_cost" in entry:
            entry["model_cost"] = {model: float(cost) for model, cost in spend.items()}
        return spend

    def _reset_at(self, user_id: str, now: float) -> SpendReset:
        """A reset at `now`: from its minute on, less what the minute already held."""
        minute = int(now) - int(now) % 60
        before = self._spend.in_minute(user_id, minute)
        return SpendReset(at=minute, spent_before=sum(before.values(), Decimal(0)), model_spent_before=before)

    def _write(self, budget: Budget) -> None:
        """Publish (signed) on a worker thread, so this works inside a running loop too."""
        self._budgets.wrote(self._writer.submit(self._admin.set, budget).result())

    def _record(self, user_id: str, model: str, cost: Decimal, priced: Any) -> None:
        """Into the ledger first (visible at once), then to Kafka; the spool if Kafka fails."""
        event = SpendEvent(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.fromtimestamp(self._clock(), UTC),
            user_id=user_id,
            model=model_label(model),
            prompt_tokens=priced.prompt_tokens,
            completion_tokens=priced.completion_tokens,
            total_tokens=priced.prompt_tokens + priced.completion_tokens,
            cost=cost,
            gateway_id=f"budget-manager:{self.project_name}",
        )
        occurred = int(event.occurred_at.timestamp())
        self._ledger.add(Pending(event.event_id, user_id, event.billed_model, cost, occurred))
        try:
            partition, offset = self._sender.send(event).result()
        except Exception as error:
            log.warning("spendpipe budget manager: Kafka did not take an event, spooling it: %r", error)
            self._spool.publish(event)
            return
        self._ledger.place(event.event_id, partition, offset)


def _days(budget_duration: str | None) -> int | None:
    """LiteLLM's `duration` in days (its DAYS_IN_A_* constants) for a duration this API writes."""
    from litellm.constants import DAYS_IN_A_MONTH, DAYS_IN_A_WEEK, DAYS_IN_A_YEAR  # noqa: PLC0415

    return {"1d": 1, "7d": DAYS_IN_A_WEEK, "1mo": DAYS_IN_A_MONTH, "365d": DAYS_IN_A_YEAR}.get(budget_duration or "")


def _id(user: object) -> str:
    """The user's scope id: its label as the gateway names it (`gateway/labels.py`), so a user
    of any length or type is budgeted and counted under one bounded id."""
    label = label_of(user)
    if label is None:
        raise ValueError(f"a user needs an id, not {user!r}")
    return label


def _scope(user: object) -> str:
    return str(Scope(ScopeType.USER, _id(user)))
