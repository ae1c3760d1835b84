"""LiteLLM's BudgetManager, switched to spendpipe's, against the real pipeline (broker, aggregator,
enforcer, chDB): LiteLLM's own test scenarios and docs examples rewritten (the scenario bodies
call only LiteLLM's API; `BudgetManager` is the drop-in bound to this test's pipeline), each
called from inside the test's running event loop, plus read-your-writes, resets and the async
twins.

Every async test here calls the sync methods directly on the running loop: that they work at
all is the "inside a running event loop" check (LiteLLM FastAPI handlers, Jupyter).
"""

import concurrent.futures
import functools
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import litellm
import pytest

from spendpipe.budget_manager import BudgetManager as SpendpipeBudgetManager
from spendpipe.budget_manager import BudgetManagerSettings
from spendpipe.contracts.money import cost_from_float
from spendpipe.contracts.scopes import ScopeType
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.store.sql_endpoint.client import DirectSource
from spendpipe.store.totals import SpendQuery, SpendTotals
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.gateway import sdk_plugin
from tests.support.pipeline import running_pipeline
from tests.support.waiting import eventually

MakeManager = Callable[..., SpendpipeBudgetManager]
DAY_S = 24 * 60 * 60


class Pipeline:
    def __init__(self, make: MakeManager, sql: DirectSource, kafka: str, topics: Any, spool: Path) -> None:
        self.BudgetManager = make
        self.totals = SpendTotals(sql=sql)
        self.kafka = kafka
        self.topics = topics
        self.spool = spool


@pytest.fixture
async def pipeline(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    topics = await make_topics(kafka_broker)
    settings = BudgetManagerSettings(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker),
        topics=topics,
        clickhouse=clickhouse_settings,
        spool_dir=str(tmp_path / "spool"),
    )
    sql = DirectSource(settings=clickhouse_settings)
    made: list[SpendpipeBudgetManager] = []

    def make(project_name: str, client_type: str = "local", **overrides: Any) -> SpendpipeBudgetManager:
        own = settings.model_copy(update=overrides)
        manager = SpendpipeBudgetManager(project_name, client_type, settings=own, sql=sql)
        made.append(manager)
        return manager

    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    async with running_pipeline(aggregator, enforcer, clickhouse, time.time):
        yield Pipeline(make, sql, kafka_broker, topics, tmp_path)
    for manager in made:
        manager.close()


def completion(text: str = "Hey, how's it going?") -> litellm.ModelResponse:
    response = litellm.completion(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": text}], mock_response="Doing well, thanks."
    )
    return cast(litellm.ModelResponse, response)


def cost_of(response: litellm.ModelResponse) -> Decimal:
    return cost_from_float(litellm.completion_cost(completion_response=response))


async def confirmed(manager: SpendpipeBudgetManager, user: str) -> None:
    """Wait until the pipeline counted every event this manager recorded for `user` (a read
    of the user's totals is what confirms them)."""

    def unconfirmed() -> int:
        manager.get_current_cost(user)
        return manager.unconfirmed_events

    await eventually(unconfirmed, lambda n: n == 0, within=30, what="the pipeline confirms")


# LiteLLM's upstream scenarios (tests/local_testing/test_budget_manager.py), rewritten


async def test_a_user_with_budget_left_makes_the_call(pipeline: Pipeline) -> None:
    budget_manager = pipeline.BudgetManager(project_name="test_project", client_type="hosted")
    user = "1234"
    created = budget_manager.create_budget(total_budget=10, user=user, duration="daily")
    assert created["total_budget"] == 10
    assert created["duration"] == 1
    assert created["created_at"] == created["last_updated_at"]

    response = None
    if budget_manager.get_current_cost(user=user) <= budget_manager.get_total_budget(user):
        response = completion()
        updated = budget_manager.update_cost(completion_obj=response, user=user)
        assert updated["user"]["current_cost"] == float(cost_of(response))
        assert updated["user"]["model_cost"] == {"gpt-3.5-turbo": float(cost_of(response))}
        assert updated["user"]["total_budget"] == 10
    assert response is not None


async def test_a_user_without_budget_left_is_refused(pipeline: Pipeline) -> None:
    budget_manager = pipeline.BudgetManager(project_name="test_project")
    user = "12345"
    budget_manager.create_budget(total_budget=0, user=user, duration="daily")
    if budget_manager.get_current_cost(user=user) < budget_manager.get_total_budget(user=user):
        raise AssertionError("a user with a budget of 0 was let through")
    assert budget_manager.get_model_cost(user) == 0  # LiteLLM: 0 before any cost


async def test_save_data_reports_success_and_get_users_lists_them(pipeline: Pipeline) -> None:
    budget_manager = pipeline.BudgetManager(project_name="test_project")
    for user in ("ann", "bob"):
        budget_manager.create_budget(total_budget=5, user=user)
    assert budget_manager.save_data() == {"status": "success"}
    assert budget_manager.get_users() == ["ann", "bob"]
    other = pipeline.BudgetManager(project_name="test_project")  # another process
    assert other.get_users() == ["ann", "bob"]
    assert other.is_valid_user("ann")
    assert not other.is_valid_user("carol")


async def test_reset_on_duration_after_a_day(pipeline: Pipeline) -> None:
    budget_manager = pipeline.BudgetManager(project_name="test_project")
    user = "123456"
    budget_manager.create_budget(total_budget=10, user=user, duration="daily")
    if budget_manager.get_current_cost(user=user) <= budget_manager.get_total_budget(user=user):
        budget_manager.update_cost(completion_obj=completion("Hello!"), user=user)
    assert budget_manager.get_current_cost(user) > 0  # at once, before the pipeline counted it

    budget_manager.user_dict[user]["last_updated_at"] -= DAY_S
    budget_manager.update_budget_all_users()
    assert budget_manager.get_current_cost(user) == 0
    await confirmed(budget_manager, user)
    assert budget_manager.get_current_cost(user) == 0  # and the pipeline agrees


async def test_cost_from_the_texts(pipeline: Pipeline) -> None:
    budget_manager = pipeline.BudgetManager(project_name="test_project")
    user = "12345"
    budget_manager.create_budget(total_budget=10, user=user, duration="daily")
    budget_manager.update_cost(
        user=user, model="gpt-3.5-turbo", input_text="hello world", output_text="it's a sunny day in san francisco"
    )
    assert budget_manager.get_current_cost(user) > 0
    with pytest.raises(ValueError, match="Either a chat completion object or the text response"):
        budget_manager.update_cost(user=user)


async def test_created_at_is_the_time_of_each_call_unless_given(pipeline: Pipeline) -> None:
    budget_manager = pipeline.BudgetManager(project_name="test_project", client_type="local")
    before = time.time()
    first = budget_manager.create_budget(total_budget=100.0, user="user1", duration="daily")
    second = budget_manager.create_budget(total_budget=100.0, user="user2", duration="daily")
    assert before <= first["created_at"] <= second["created_at"] <= time.time()
    custom = budget_manager.create_budget(
        total_budget=100.0, user="user_custom", duration="daily", created_at=1234567890.0
    )
    assert custom["created_at"] == 1234567890.0
    with pytest.raises(ValueError, match="duration needs to be one of"):
        budget_manager.create_budget(total_budget=1, user="u", duration="hourly")  # type: ignore[arg-type]


async def test_unknown_users_raise_key_error_as_in_litellm(pipeline: Pipeline) -> None:
    budget_manager = pipeline.BudgetManager(project_name="test_project")
    for call in (
        budget_manager.get_total_budget,
        budget_manager.get_current_cost,
        budget_manager.get_model_cost,
        budget_manager.reset_cost,
    ):
        with pytest.raises(KeyError):
            call("nobody")
    with pytest.raises(KeyError):
        budget_manager.update_cost(completion_obj=completion(), user="nobody")
    assert budget_manager.unconfirmed_events == 0  # nothing recorded for an unknown user


async def test_the_same_calls_return_what_litellms_own_class_returns(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # LiteLLM's local client saves user_cost.json here
    theirs, ours = litellm.BudgetManager(project_name="p"), pipeline.BudgetManager(project_name="p")
    response = completion()
    for manager in (theirs, ours):
        for n, duration in enumerate(("daily", "weekly", "monthly", "yearly", None)):
            manager.create_budget(total_budget=5, user=f"u{n}", duration=duration, created_at=1.0)  # type: ignore[arg-type]
    assert ours.user_dict == theirs.user_dict
    assert ours.update_cost(completion_obj=response, user="u4") == theirs.update_cost(
        completion_obj=response, user="u4"
    )
    for method in ("get_current_cost", "get_model_cost", "get_total_budget", "is_valid_user"):
        for user in ("u0", "u4"):
            assert getattr(ours, method)(user) == getattr(theirs, method)(user), (method, user)
    assert ours.reset_cost("u4") == theirs.reset_cost("u4")
    assert sorted(ours.get_users()) == sorted(theirs.get_users())


# LiteLLM's docs examples (docs/my-website/docs/budget_manager.md), rewritten


async def test_docs_example_check_then_call_then_record(pipeline: Pipeline) -> None:
    budget_manager = pipeline.BudgetManager(project_name="test_project")
    user = "1234"
    if not budget_manager.is_valid_user(user):
        budget_manager.create_budget(total_budget=10, user=user)
    messages = [{"role": "user", "content": "Hey, how's it going?"}]
    if budget_manager.projected_cost(model="gpt-3.5-turbo", messages=messages, user=user) <= (
        budget_manager.get_total_budget(user)
    ):
        response = completion()
        budget_manager.update_cost(completion_obj=response, user=user)
    budget_manager.update_budget_all_users()  # a budget without duration: nothing to reset
    assert budget_manager.get_current_cost(user) == float(cost_of(response))
    budget_manager.load_data()
    assert budget_manager.user_dict[user]["current_cost"] == float(cost_of(response))


# read-your-writes, never twice


async def test_the_writer_reads_its_cost_at_once_and_once_after_the_pipeline(pipeline: Pipeline) -> None:
    writer = pipeline.BudgetManager(project_name="app", totals_max_age_s=0)  # every read takes fresh totals
    reader = pipeline.BudgetManager(project_name="app")  # another process: no ledger of alice's spend
    writer.create_budget(total_budget=10, user="alice", duration="monthly")
    spent = Decimal(0)
    for n in range(5):
        response = completion(f"call {n}")
        spent += cost_of(response)
        writer.update_cost(completion_obj=response, user="alice")
        assert writer.current_cost("alice") == spent  # at once, every time

    await eventually(
        functools.partial(reader.current_cost, "alice"), lambda c: c == spent, within=30, what="the pipeline counted"
    )
    assert writer.current_cost("alice") == spent  # the totals hold it now: not twice
    assert writer.unconfirmed_events == 0
    assert writer.get_model_cost("alice") == {"gpt-3.5-turbo": float(spent)}


async def test_a_spooled_event_counts_once_too(pipeline: Pipeline) -> None:
    """Kafka's acknowledgement never came (the event went through the spool): the ledger finds
    where the pipeline counted it in `events`, and still counts it once."""
    writer = pipeline.BudgetManager(project_name="app", totals_max_age_s=0)
    reader = pipeline.BudgetManager(project_name="app", totals_max_age_s=0)
    writer.create_budget(total_budget=10, user="hana", duration="daily")

    def no_ack(event: object) -> "concurrent.futures.Future[tuple[int, int]]":
        failed: concurrent.futures.Future[tuple[int, int]] = concurrent.futures.Future()
        failed.set_exception(TimeoutError("no acknowledgement"))
        return failed

    writer._sender.send = no_ack  # type: ignore[method-assign]
    response = completion()
    writer.update_cost(completion_obj=response, user="hana")
    assert writer.current_cost("hana") == cost_of(response)
    assert writer.save_data() == {"status": "success"}  # the spool delivered it

    await confirmed(writer, "hana")  # found in `events`, then covered by the totals' watermark
    assert writer.current_cost("hana") == cost_of(response)
    assert reader.current_cost("hana") == cost_of(response)


# resets keep the history


async def test_reset_cost_starts_afresh_and_keeps_the_history(pipeline: Pipeline) -> None:
    manager = pipeline.BudgetManager(project_name="app")
    other = pipeline.BudgetManager(project_name="app")
    manager.create_budget(total_budget=10, user="dana", duration="daily")
    first = completion("one")
    manager.update_cost(completion_obj=first, user="dana")

    reset = manager.reset_cost("dana")
    assert reset == {"user": manager.user_dict["dana"]}
    assert reset["user"]["current_cost"] == 0
    assert reset["user"]["model_cost"] == {}
    assert manager.get_current_cost("dana") == 0
    await confirmed(manager, "dana")
    assert manager.get_current_cost("dana") == 0  # the counted event stays before the reset
    await eventually(functools.partial(other.current_cost, "dana"), lambda c: c == 0, within=30, what="reset seen")

    second = completion("two")
    manager.update_cost(completion_obj=second, user="dana")
    assert manager.current_cost("dana") == cost_of(second)
    await confirmed(manager, "dana")
    assert manager.current_cost("dana") == cost_of(second)
    history = await _day_spend(pipeline, "dana")
    assert history == cost_of(first) + cost_of(second)  # nothing was deleted


async def test_create_budget_again_starts_the_spend_afresh(pipeline: Pipeline) -> None:
    manager = pipeline.BudgetManager(project_name="app")
    manager.create_budget(total_budget=10, user="erin", duration="daily")
    manager.update_cost(completion_obj=completion(), user="erin")
    await confirmed(manager, "erin")
    assert manager.get_current_cost("erin") > 0

    again = manager.create_budget(total_budget=20, user="erin", duration="weekly")
    assert again["total_budget"] == 20
    assert again["duration"] == 7
    assert manager.get_current_cost("erin") == 0
    assert manager.get_total_budget("erin") == 20


async def test_the_enforcer_honours_a_reset(pipeline: Pipeline) -> None:
    manager = pipeline.BudgetManager(project_name="app")
    response = completion()
    manager.create_budget(total_budget=float(cost_of(response)) / 2, user="frank", duration="daily")
    manager.update_cost(completion_obj=response, user="frank")
    with sdk_plugin(pipeline.kafka, pipeline.topics, pipeline.spool / "plugin-spool") as plugin:

        def refused() -> bool:
            try:
                plugin.check(model="gpt-3.5-turbo", metadata={"user_api_key_user_id": "frank"})
            except litellm.BudgetExceededError:
                return True
            return False

        await eventually(refused, bool, within=30, what="frank blocked")
        manager.reset_cost("frank")
        await eventually(refused, lambda r: not r, within=30, what="frank served again after the reset")


# the async twins


async def test_the_async_twins(pipeline: Pipeline) -> None:
    manager = pipeline.BudgetManager(project_name="app")
    assert not await manager.ais_valid_user("gina")
    created = await manager.acreate_budget(total_budget=3, user="gina", duration="yearly")
    assert created["duration"] == 365
    response = completion()
    updated = await manager.aupdate_cost(completion_obj=response, user="gina")
    assert updated["user"]["current_cost"] == float(cost_of(response))
    assert await manager.aget_current_cost("gina") == float(cost_of(response))
    assert await manager.aget_total_budget("gina") == 3
    assert await manager.aget_model_cost("gina") == {"gpt-3.5-turbo": float(cost_of(response))}
    assert await manager.aget_users() == ["gina"]
    messages = [{"role": "user", "content": "hi"}]
    assert await manager.aprojected_cost("gpt-3.5-turbo", messages, "gina") > float(cost_of(response))
    assert await manager.asave_data() == {"status": "success"}
    await manager.aload_data()
    assert (await manager.areset_cost("gina"))["user"]["current_cost"] == 0
    await manager.areset_on_duration("gina")
    await manager.aupdate_budget_all_users()
    assert await manager.aget_current_cost("gina") == 0


async def _day_spend(pipeline: Pipeline, user: str) -> Decimal:
    query = SpendQuery(ScopeType.USER, user, Window.DAY, datetime.now(UTC))
    _, rows = pipeline.totals.in_window(query)
    return sum((Decimal(str(row[2])) for row in rows), Decimal(0))
