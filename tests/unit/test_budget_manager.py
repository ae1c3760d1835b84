"""LiteLLM's BudgetManager API names a user as the gateway does: any `user` is budgeted, counted
and read under its bounded label (spendpipe/gateway/labels.py)."""

from pathlib import Path
from typing import Any

import litellm
import pytest

from spendpipe.budget_manager import BudgetManager, BudgetManagerSettings, _scope
from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.labels import label_of

LONG_USER = "user-" + "u" * 400


class NoSql:
    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        raise AssertionError("not read here")


def test_a_long_users_cost_is_recorded_under_its_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = BudgetManager("app", settings=BudgetManagerSettings(spool_dir=str(tmp_path)), sql=NoSql())
    published: list[SpendEvent] = []
    monkeypatch.setattr(manager._publisher, "publish", published.append)

    response = litellm.ModelResponse(model="gpt-4o", usage={"prompt_tokens": 5, "completion_tokens": 3})

    manager.update_cost(user=LONG_USER, completion_obj=response)

    (event,) = published
    assert event.user_id == label_of(LONG_USER)
    assert event.cost > 0
    assert _scope(LONG_USER) == f"user:{label_of(LONG_USER)}"


def test_a_user_without_an_id_is_refused() -> None:
    with pytest.raises(ValueError, match="a user needs an id"):
        _scope("  ")
