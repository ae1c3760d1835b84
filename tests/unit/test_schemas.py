"""`schemas/`: current with the code, a JSON Schema for every topic's message that accepts what the
producers write, and the AsyncAPI document covering every topic with its contract and headers.

The tables' DDL needs the ClickHouse engine: `tests/integration/test_schemas_tables.py`."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from pkgutil import iter_modules
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import unquote

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, create_model
from pydantic_core import to_jsonable_python
from typer.testing import CliRunner

import spendpipe.contracts
from dev import schemas
from dev.schemas import MIGRATIONS, ROOT, TABLES, VIEWS, contract_files, json_schema, stale, write
from spendpipe.admin import asyncapi
from spendpipe.admin.asyncapi import MESSAGES, build_document
from spendpipe.admin.cli import app
from spendpipe.contracts.alerts import BURN_RATE_MESSAGE_TYPE, BurnRateAlert, SoftBudgetAlert
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.declared_budgets import declared_key_budget
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.flushes import ScopeRef, ScopesFlushed
from spendpipe.contracts.leases import LeaseGrant, LeaseRequest
from spendpipe.contracts.sessions import SessionRecord
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.store.migrate import bundled_migrations

CONTRACTS = {
    "SpendEvent",
    "ScopesFlushed",
    "Decision",
    "Budget",
    "BudgetRecord",
    "BudgetDeletion",
    "SoftBudgetAlert",
    "BurnRateAlert",
    "SessionRecord",
    "LeaseRequest",
    "LeaseGrant",
}
NOW = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
KEY = "a" * 64


def not_a_table(name: str) -> bool:
    return not name.startswith((TABLES, VIEWS))


def generated() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(build_document())
    return document


def test_the_checked_in_schemas_are_current() -> None:
    found = stale(ROOT, contract_files(), not_a_table)

    assert found == [], f"schemas/ is out of date with the code ({', '.join(found)}): run `make schemas` and commit"


def test_a_changed_contract_makes_its_schema_and_the_document_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, contract_files())
    changed = create_model("SpendEvent", __base__=SpendEvent, __doc__=SpendEvent.__doc__, region=(str, "eu"))
    messages = tuple(replace(m, model=changed) if m.model is SpendEvent else m for m in MESSAGES)
    monkeypatch.setattr(asyncapi, "MESSAGES", messages)
    monkeypatch.setattr(schemas, "MESSAGES", messages)

    assert stale(tmp_path, contract_files()) == ["asyncapi.yaml", "json/spendpipe.spend_event.v1.schema.json"]


def test_every_topic_has_a_message_and_each_message_its_own_schema_file() -> None:
    files = contract_files()

    assert {m.topic for m in MESSAGES} == set(Topics.model_fields)
    assert sorted(m.topic for m in MESSAGES if m.topic != "alerts") == sorted(set(Topics.model_fields) - {"alerts"})
    assert len({m.schema_file for m in MESSAGES}) == len(MESSAGES)
    assert {name for name in files if name.startswith("json/")} == {f"json/{m.schema_file}" for m in MESSAGES}
    for message in MESSAGES:
        assert f"`{message.topic_name}`" in files["README.md"]
        assert f"(json/{message.schema_file})" in files["README.md"]


def test_every_versioned_message_type_has_a_schema() -> None:
    package = spendpipe.contracts
    declared = {
        getattr(module, name)
        for module in (import_module(f"{package.__name__}.{m.name}") for m in iter_modules(package.__path__))
        for name in dir(module)
        if name.endswith("MESSAGE_TYPE")
    }

    assert declared == {m.message_type for m in MESSAGES if m.message_type}
    assert {f"{t}.schema.json" for t in declared} <= {m.schema_file for m in MESSAGES}


def test_the_migrations_are_copied_byte_for_byte() -> None:
    files = contract_files()
    copies = {name.removeprefix(MIGRATIONS) for name in files if name.startswith(MIGRATIONS)}
    source = Path(spendpipe.__file__).parent / "store" / "migrations"

    assert copies == {f"{m.version:04d}_{m.name}.sql" for m in bundled_migrations()}
    for name in copies:
        assert (ROOT / MIGRATIONS / name).read_bytes() == (source / name).read_bytes()


def wire(model: BaseModel, *, exclude_none: bool) -> Any:
    """What the producers write: `model_dump_json` (gateways, budget admin) or FastStream's encoder."""
    if exclude_none:
        return json.loads(model.model_dump_json(exclude_none=True))
    return json.loads(json.dumps(to_jsonable_python(model)))


WRITTEN = {
    "events": wire(
        SpendEvent(
            event_id="00000000-0000-4000-8000-000000000001",
            occurred_at=NOW,
            key_hash=KEY,
            model="gpt-4o",
            cost=Decimal("0.000125"),
            gateway_id="g",
        ),
        exclude_none=True,
    ),
    "flushes": wire(
        ScopesFlushed(
            flush_id="f", flushed_at=NOW, events=2, scopes=(ScopeRef(type="team", id="eng"),), models=("gpt-4o",)
        ),
        exclude_none=False,
    ),
    "decisions": wire(
        Decision(
            scope="team:eng",
            version=3,
            blocked=True,
            reason="over",
            window="24h",
            spend=Decimal("10.5"),
            cap=Decimal(10),
            expires_at=NOW,
            decided_at=NOW,
        ),
        exclude_none=False,
    ),
    "budgets": wire(
        Budget(
            scope="team:eng",
            version=1_796_000_000_000_000,
            max_budget=Decimal(100),
            budget_duration="1mo",
            rpm_limit=60,
        ),
        exclude_none=True,
    ),
    "declared_budgets": wire(
        cast(Budget, declared_key_budget("a" * 64, SimpleNamespace(max_budget=0.002, budget_duration="24h"))),
        exclude_none=True,
    ),
    "alerts": wire(
        SoftBudgetAlert(
            scope="team:eng",
            soft_budget=Decimal(5),
            spend=Decimal("5.01"),
            window="lifetime",
            window_start=None,
            window_end=None,
            alerted_at=NOW,
        ),
        exclude_none=False,
    ),
    BURN_RATE_MESSAGE_TYPE: wire(
        BurnRateAlert(
            scope="team:eng",
            model="",
            cap=Decimal(10),
            spend=Decimal("4.5"),
            rate_per_second=Decimal("0.001") / 3,
            lookback_start=NOW,
            projected_exhaustion_at=NOW,
            window="1d",
            window_start=NOW,
            window_end=NOW,
            alerted_at=NOW,
        ),
        exclude_none=False,
    ),
    "sessions": wire(
        SessionRecord(kind="settle", agent_id="a", session_id="s", call_id="c", cost=Decimal("0.2")), exclude_none=True
    ),
    "lease_requests": wire(
        LeaseRequest(
            kind="request",
            gateway_id="gw-1",
            chain="0" * 32,
            scope="team:eng",
            want=Decimal("0.5"),
            need=Decimal("0.01"),
            rate=Decimal("0.000333"),
            commitment="a" * 64,
        ),
        exclude_none=True,
    ),
    "leases": wire(
        LeaseGrant(
            gateway_id="gw-1",
            chain="0" * 32,
            scope="team:eng",
            model="gpt-4o",
            version=3,
            granted=Decimal("0.5"),
            free=Decimal("1.25"),
            ttl_s=10,
            expires_at=NOW,
            issued_at=NOW,
        ),
        exclude_none=False,
    ),
}


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.topic_name)
def test_each_schema_is_draft_2020_12_and_accepts_what_producers_write(message: asyncapi.TopicMessage) -> None:
    schema = json.loads((ROOT / "json" / message.schema_file).read_text(encoding="utf-8"))

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:spendpipe:schema:")
    assert schema["title"]
    assert schema["description"]
    if message.model is not None:
        Draft202012Validator(schema).validate(WRITTEN.get(message.message_type or "") or WRITTEN[message.topic])
        variants = (
            [schema["$defs"][v["$ref"].rsplit("/", 1)[1]] for v in schema["anyOf"]] if "anyOf" in schema else [schema]
        )
        assert all(variant["properties"]["schema_version"]["const"] == 1 for variant in variants)


def test_a_budget_record_is_a_budget_or_a_versioned_deletion() -> None:
    budgets = next(m for m in MESSAGES if m.topic == "budgets")
    validator = Draft202012Validator(json_schema(budgets))

    assert validator.is_valid(WRITTEN["budgets"])
    assert validator.is_valid({"schema_version": 1, "scope": "team:eng", "version": 7, "deleted": True})
    assert not validator.is_valid({"schema_version": 1, "scope": "team:eng", "deleted": True})
    assert not validator.is_valid({"schema_version": 1, "scope": "team:eng", "version": 7, "deleted": False})


def test_money_is_a_decimal_string_on_the_wire() -> None:
    events = next(m for m in MESSAGES if m.model is SpendEvent)
    validator = Draft202012Validator(json_schema(events))

    assert validator.is_valid({**WRITTEN["events"], "cost": "0.000125"})
    assert not validator.is_valid({**WRITTEN["events"], "cost": 0.000125})
    assert not validator.is_valid({**WRITTEN["events"], "cost": "1e-4"})
    assert not validator.is_valid({**WRITTEN["events"], "unknown": 1})


def test_the_cli_prints_the_document_or_writes_it(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "asyncapi.yaml"

    printed = runner.invoke(app, ["asyncapi"])
    written = runner.invoke(app, ["asyncapi", "--output", str(target)])

    assert printed.exit_code == 0
    assert printed.stdout == build_document()
    assert written.exit_code == 0
    assert target.read_text(encoding="utf-8") == build_document()


def test_check_lists_what_is_stale_and_write_makes_it_current(tmp_path: Path) -> None:
    files = contract_files()
    write(tmp_path, files)
    (tmp_path / "asyncapi.yaml").write_text("asyncapi: 3.0.0\n", encoding="utf-8")
    (tmp_path / "json" / "spendpipe.decision.v1.schema.json").unlink()
    (tmp_path / "json" / "spendpipe.decision.v0.schema.json").write_text("{}", encoding="utf-8")

    found = stale(tmp_path, files)
    changed = write(tmp_path, files)

    assert found == [
        "asyncapi.yaml",
        "json/spendpipe.decision.v0.schema.json",
        "json/spendpipe.decision.v1.schema.json",
    ]
    assert changed == found
    assert stale(tmp_path, files) == []


# The AsyncAPI document


def test_generating_twice_gives_the_same_text() -> None:
    assert build_document() == build_document()


def test_every_topic_is_documented() -> None:
    addresses = {channel["address"] for channel in generated()["channels"].values()}

    assert addresses == set(Topics().model_dump().values())


def test_who_sends_and_who_receives_on_each_topic() -> None:
    document = generated()
    address = {f"#/channels/{name}": c["address"] for name, c in document["channels"].items()}
    actions = {(address[unquote(op["channel"]["$ref"])], op["action"]) for op in document["operations"].values()}

    assert actions == {
        ("spend.events", "send"),  # gateway
        ("spend.events", "receive"),  # aggregator
        ("spend.events.dlq", "send"),  # aggregator
        ("spend.flushes", "send"),  # aggregator
        ("spend.flushes", "receive"),  # enforcer
        ("spend.decisions", "send"),  # enforcer
        ("spend.decisions", "receive"),  # gateway
        ("spend.budgets", "send"),  # admin
        ("spend.budgets", "receive"),  # enforcer
        ("spend.budgets.declared", "send"),  # gateways
        ("spend.budgets.declared", "receive"),  # enforcer
        ("spend.alerts", "send"),  # enforcer
        ("spend.sessions", "send"),  # gateways
        ("spend.sessions", "receive"),  # gateways
        ("spend.lease_requests", "send"),  # gateways
        ("spend.lease_requests", "receive"),  # enforcer
        ("spend.leases", "send"),  # enforcer
        ("spend.leases", "receive"),  # gateways
    }


def test_payloads_are_the_contracts_as_on_the_wire() -> None:
    components = generated()["components"]
    payloads = {name: message["payload"]["$ref"].rsplit("/", 1)[1] for name, message in components["messages"].items()}

    assert set(components["schemas"]) >= CONTRACTS
    assert "EmptyPayload" not in components["schemas"]
    assert payloads["spend.events:SubscribeMessage"] == "SpendEvent"
    assert payloads["spend.events (gateway):Message"] == "SpendEvent"
    assert payloads["spend.decisions (gateway):SubscribeMessage"] == "Decision"
    assert payloads["spend.budgets (enforcer):SubscribeMessage"] == "BudgetRecord"
    assert payloads["spend.lease_requests (enforcer):SubscribeMessage"] == "LeaseRequest"
    assert set(payloads.values()) - CONTRACTS == {"DeadLetter"}  # the original bytes
    assert components["messages"]["spend.events.dlq:Message"]["contentType"] == "application/octet-stream"
    for message in MESSAGES:
        if message.model is not None:
            in_document = json.dumps(components["schemas"][message.model.__name__], sort_keys=True)
            in_file = {k: v for k, v in json_schema(message).items() if k not in ("$schema", "$id", "$defs")}
            assert in_document == json.dumps(in_file, sort_keys=True).replace("#/$defs/", "#/components/schemas/")


def test_each_message_names_its_headers() -> None:
    document = generated()
    messages = document["components"]["messages"]
    headers = {
        channel["address"]: messages[unquote(ref["$ref"]).rsplit("/", 1)[1]].get("headers")
        for channel in document["channels"].values()
        for ref in channel["messages"].values()
    }
    header_types = {
        (channel["address"], messages[name]["payload"]["$ref"].rsplit("/", 1)[1]): messages[name]["headers"]
        for channel in document["channels"].values()
        for name in (unquote(ref["$ref"]).rsplit("/", 1)[1] for ref in channel["messages"].values())
        if messages[name].get("headers")
    }

    assert headers["spend.events"] is None  # the gateways set none
    assert headers["spend.decisions"]["properties"][TYPE_HEADER] == {"type": "string", "const": "spendpipe.decision.v1"}
    assert set(headers["spend.events.dlq"]["required"]) == {
        "spendpipe-dead-letter-reason",
        "spendpipe-source-topic",
        "spendpipe-source-partition",
        "spendpipe-source-offset",
        "spendpipe-source-value-size",
        "spendpipe-truncated",
    }
    for message in MESSAGES:
        if message.typed and message.model is not None:
            typed = header_types[(message.topic_name, message.model.__name__)]
            assert typed["properties"][TYPE_HEADER]["const"] == message.message_type
