"""A drop-in for LiteLLM's `BudgetManager`, backed by the pipeline, so code written for it is
correct across many processes:

    # from litellm import BudgetManager
    from spendpipe.budget_manager import BudgetManager

    budget_manager = BudgetManager(project_name="my-app")
    if not budget_manager.is_valid_user(user):
        budget_manager.create_budget(total_budget=10, user=user, duration="monthly")
    if budget_manager.get_current_cost(user=user) <= budget_manager.get_total_budget(user):
        response = litellm.completion(...)
        budget_manager.update_cost(completion_obj=response, user=user)

Budgets go to the `spend.budgets` topic (scope `user:<user>`), costs are published as spend
events, and current cost is read from ClickHouse: every process sees the same numbers, and the
enforcer blocks the user when the budget is reached. Windows reset on calendar boundaries by
themselves (`daily` at midnight UTC, `weekly` on Sunday, `monthly` on the 1st; `yearly` is 365
days aligned to the epoch), so `reset_on_duration` has nothing to do. Use `update_cost` or the
gateway plugin for a call, not both: each counts the call once.

Settings come from the environment (`SPENDPIPE_*`), or pass `settings=`.
"""

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.budgets import Budget, Cap
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.money import cost_from_float
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.gateway.labels import label_of, model_label
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.settings import PipelineSettings, load_settings
from spendpipe.store.sql_endpoint.client import SqlSource, sql_source
from spendpipe.store.sql_endpoint.settings import DEFAULT_URL, EndpointUrl
from spendpipe.store.totals import SpendTotals

Duration = Literal["daily", "weekly", "monthly", "yearly"]
DURATIONS: dict[str, str] = {"daily": "1d", "weekly": "7d", "monthly": "1mo", "yearly": "365d"}


class BudgetManagerSettings(PipelineSettings):
    sql_endpoint_url: EndpointUrl = DEFAULT_URL
    spool_dir: str = ".data/budget-manager-spool"


class BudgetManager:
    def __init__(
        self,
        project_name: str,
        client_type: str = "local",
        api_base: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        settings: BudgetManagerSettings | None = None,
        sql: SqlSource | None = None,
    ) -> None:
        self.project_name = project_name
        self.client_type = client_type  # accepted for compatibility: the pipeline is the store
        self._settings = settings or load_settings(BudgetManagerSettings)
        self._admin = BudgetAdmin(
            kafka=self._settings.kafka, topics=self._settings.topics, signing=self._settings.signing
        )
        self._totals = SpendTotals(sql=sql or sql_source(self._settings.clickhouse, self._settings.sql_endpoint_url))
        self._publisher = EventPublisher(
            kafka=self._settings.kafka,
            topic=self._settings.topics.events,
            spool=DiskSpool(directory=Path(self._settings.spool_dir), max_bytes=256 << 20),
            metrics=GatewayMetrics(registry=CollectorRegistry()),
            options=PublisherOptions(),
        )

    def create_budget(
        self, total_budget: float, user: str, duration: Duration | None = None, created_at: float | None = None
    ) -> dict[str, Any]:
        document: dict[str, object] = {"scope": _scope(user), "max_budget": str(total_budget)}
        if duration is not None:
            if duration not in DURATIONS:
                raise ValueError('duration needs to be one of ["daily", "weekly", "monthly", "yearly"]')
            document["budget_duration"] = DURATIONS[duration]
        self._admin.set(document)
        return {"total_budget": total_budget, "duration": duration, "created_at": created_at or time.time()}

    def get_total_budget(self, user: str) -> float:
        return float(self._budget(user).max_budget or 0)

    def is_valid_user(self, user: str) -> bool:
        return any(b.scope == _scope(user) for b in self._admin.current())

    def get_users(self) -> list[str]:
        return [Scope.parse(b.scope).id for b in self._admin.current() if b.scope.startswith("user:")]

    def get_current_cost(self, user: str) -> float:
        return float(self.current_cost(user))

    def current_cost(self, user: str) -> Decimal:
        """The exact spend in the budget's current window (what `get_current_cost` rounds to a float)."""
        return sum(self._spend_by_model(user).values(), Decimal(0))

    def get_model_cost(self, user: str) -> dict[str, float]:
        return {model: float(cost) for model, cost in self._spend_by_model(user).items()}

    def update_cost(
        self,
        user: str,
        completion_obj: Any = None,
        model: str | None = None,
        input_text: str | None = None,
        output_text: str | None = None,
    ) -> dict[str, Any]:
        import litellm  # noqa: PLC0415 - LiteLLM's own pricing, only when asked

        prompt_tokens = completion_tokens = 0
        if model and input_text and output_text:
            prompt_tokens = litellm.token_counter(model=model, messages=[{"role": "user", "content": input_text}])
            completion_tokens = litellm.token_counter(model=model, messages=[{"role": "user", "content": output_text}])
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
            cost = prompt_cost + completion_cost
        elif completion_obj is not None:
            cost = litellm.completion_cost(completion_response=completion_obj)
            model = completion_obj["model"]
            usage = getattr(completion_obj, "usage", None)
            prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
            completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        else:
            raise ValueError("Either a chat completion object or the text response needs to be passed in.")
        self._publisher.publish(
            SpendEvent(
                event_id=str(uuid.uuid4()),
                occurred_at=datetime.now(UTC),
                user_id=_user_scope(user).id,
                model=model_label(model),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
                cost=cost_from_float(cost),
                gateway_id=f"budget-manager:{self.project_name}",
            )
        )
        return {"user": {"current_cost_added": cost, "model": model}}

    def projected_cost(self, model: str, messages: list[dict[str, Any]], user: str) -> float:
        import litellm  # noqa: PLC0415

        text = "".join(str(message["content"]) for message in messages)
        prompt_tokens = litellm.token_counter(model=model, text=text)
        prompt_cost, _ = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=0)
        return float(prompt_cost) + self.get_current_cost(user)

    def reset_on_duration(self, user: str) -> None:
        """Nothing to do: the pipeline's windows reset on their calendar boundaries by themselves."""

    def update_budget_all_users(self) -> None:
        """Nothing to do, as for `reset_on_duration`."""

    def save_data(self) -> dict[str, str]:
        """Deliver the costs recorded so far (LiteLLM's BudgetManager saves its file here)."""
        self._publisher.wait_idle(30)
        return {"status": "success"}

    def close(self) -> None:
        self._publisher.close()

    def _budget(self, user: str) -> Budget:
        for budget in self._admin.current():
            if budget.scope == _scope(user):
                return budget
        raise KeyError(f"no budget for user {user!r}: create_budget first")

    def _spend_by_model(self, user: str) -> dict[str, Decimal]:
        budget = self._budget(user)
        duration = parse_duration(budget.budget_duration) if budget.budget_duration else None
        return self._totals.by_model(_user_scope(user), Cap(duration, Decimal(0)), int(time.time()))


def _scope(user: str) -> str:
    return str(_user_scope(user))


def _user_scope(user: object) -> Scope:
    """The user's scope, its id the user's label as the gateway names it (`gateway/labels.py`):
    a user of any length or type is budgeted and counted under one bounded id."""
    label = label_of(user)
    if label is None:
        raise ValueError(f"a user needs an id, not {user!r}")
    return Scope(ScopeType.USER, label)
