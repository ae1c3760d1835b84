"""The AsyncAPI document: current with the apps, and covering every topic with its contract."""

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from typer.testing import CliRunner

from spendpipe.admin.asyncapi import DOCUMENT, build_document
from spendpipe.admin.cli import app
from spendpipe.contracts.topics import Topics

CONTRACTS = {"SpendEvent", "ScopesFlushed", "Decision", "Budget", "SoftBudgetAlert", "SessionRecord"}


def generated() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(build_document())
    return document


def test_the_checked_in_document_is_current() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == build_document(), (
        f"{DOCUMENT} is out of date with the FastStream apps: run `make asyncapi` "
        "(or `.venv/bin/spendpipe asyncapi`) and commit the file"
    )


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
        ("spend.alerts", "send"),  # enforcer
        ("spend.sessions", "send"),  # gateways
        ("spend.sessions", "receive"),  # gateways
    }


def test_payloads_are_the_contracts() -> None:
    components = generated()["components"]
    payloads = {name: message["payload"]["$ref"].rsplit("/", 1)[1] for name, message in components["messages"].items()}

    assert set(components["schemas"]) >= CONTRACTS
    assert "EmptyPayload" not in components["schemas"]
    assert payloads["spend.events:SubscribeMessage"] == "SpendEvent"
    assert payloads["spend.events (gateway):Message"] == "SpendEvent"
    assert payloads["spend.decisions (gateway):SubscribeMessage"] == "Decision"
    assert payloads["spend.budgets (enforcer):SubscribeMessage"] == "Budget"
    assert set(payloads.values()) - CONTRACTS == {"spend.events.dlq:Message:Payload"}  # the original bytes


def test_check_fails_on_a_stale_file_and_write_makes_it_current(tmp_path: Path) -> None:
    target = tmp_path / "asyncapi.yaml"
    target.write_text("asyncapi: 3.0.0\n", encoding="utf-8")
    runner = CliRunner()

    stale = runner.invoke(app, ["asyncapi", "--check", "--out", str(target)])
    written = runner.invoke(app, ["asyncapi", "--out", str(target)])
    current = runner.invoke(app, ["asyncapi", "--check", "--out", str(target)])

    assert stale.exit_code == 1
    assert "make asyncapi" in stale.output
    assert written.exit_code == 0
    assert current.exit_code == 0
    assert target.read_text(encoding="utf-8") == build_document()
