"""The AsyncAPI document of every spendpipe topic, generated from the FastStream apps.

The aggregator's and the enforcer's channels come from their own wiring: `Aggregator` and
`EnforcerService` registered on one broker, as `spendpipe run all` does, never started. The
gateway plugin, the budget admin and the enforcer's budget follower use plain aiokafka clients;
their channels are declared on the same broker for the document only. Payloads are the
pydantic contracts in `spendpipe.contracts`. Topic names are the defaults (`SPENDPIPE_TOPICS__*`).

`spendpipe asyncapi` (`make asyncapi`) rewrites `schemas/asyncapi.yaml`; a unit test
fails while the checked-in file differs from what this module generates.
"""

import warnings
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import unquote

import typer
import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import CollectorRegistry

from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.sessions import SessionRecord
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings

DOCUMENT = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi.yaml"

_RAW_BATCH_MESSAGE = "spend.events:SubscribeMessage"
"""The aggregator's handler takes the raw batch (it dead-letters what does not parse), so
FastStream sees no payload type there; the document names the contract it validates against."""


class _NoClickhouse:
    """The apps are only wired, never run: nothing may reach a database."""

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(f"the AsyncAPI document is built without ClickHouse (called {name})")


def build_document() -> str:
    """The document as YAML. Defaults only: the environment and `.env` are not read."""
    kafka = KafkaSettings()
    broker = KafkaBroker(
        kafka.servers,
        description=f"The pipeline's Kafka cluster (SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS). Every message carries "
        f"its versioned type (spendpipe.<thing>.v1) in the `{TYPE_HEADER}` header.",
    )
    _wire_services(broker)
    _declare_plain_clients(broker, Topics())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # two channels under one name: fail, don't overwrite
        specification = AsyncAPI(
            broker,
            title="spendpipe",
            version=metadata.version("spendpipe"),
            description="Exact LLM spend and budgets for LiteLLM gateways: every Kafka topic of the pipeline.",
        ).to_specification()
    document = specification.to_jsonable()
    _name_the_raw_batch_payload(document)
    _one_record_per_message(document)
    _in_stable_order(document)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def _wire_services(broker: KafkaBroker) -> None:
    clickhouse = ClickhouseStore(client=_NoClickhouse(), settings=ClickhouseSettings())
    Aggregator(
        settings=AggregatorSettings.model_construct(),
        broker=broker,
        clickhouse=clickhouse,
        metrics=AggregatorMetrics(registry=CollectorRegistry()),
    )
    EnforcerService(settings=EnforcerSettings.model_construct(), broker=broker, clickhouse=clickhouse)


def _declare_plain_clients(broker: KafkaBroker, topics: Topics) -> None:
    """Channels of the clients that are not FastStream apps (see the module's docstring)."""
    broker.publisher(
        topics.events,
        title="spend.events (gateway)",
        description="SpendEvent v1 JSON keyed by key hash, from the LiteLLM plugin's idempotent producer.",
        schema=SpendEvent,
    )
    broker.publisher(
        topics.budgets,
        title="spend.budgets",
        description="Budget v1 JSON keyed by scope (compacted; a null value deletes the scope's budget). "
        "Written by `spendpipe budgets`, BudgetAdmin and BudgetManager.",
        schema=Budget,
    )

    broker.publisher(
        topics.sessions,
        title="spend.sessions",
        description="SessionRecord v1 JSON keyed by <agent>|<session>: reservations and ends of the calls "
        "of capped agent sessions, written by every gateway (broker-stamped times, a week's retention).",
        schema=SessionRecord,
    )

    @broker.subscriber(
        topics.sessions,
        title="spend.sessions (gateway)",
        description="Every gateway reads every partition from the beginning and replays the same session ledger.",
    )
    async def gateway_session_ledger(record: SessionRecord) -> None: ...

    @broker.subscriber(
        topics.decisions,
        title="spend.decisions (gateway)",
        description="Every gateway reads the decisions from the beginning at start, then follows them.",
    )
    async def gateway_block_list(decision: Decision) -> None: ...

    @broker.subscriber(
        topics.budgets,
        title="spend.budgets (enforcer)",
        description="The enforcer reads every budget from the beginning at start, then follows changes.",
    )
    async def enforcer_budget_book(budget: Budget) -> None: ...


def _name_the_raw_batch_payload(document: dict[str, Any]) -> None:
    schemas_ = document["components"]["schemas"]
    message = document["components"]["messages"][_RAW_BATCH_MESSAGE]
    if message["payload"] != {"$ref": "#/components/schemas/EmptyPayload"} or "SpendEvent" not in schemas_:
        raise RuntimeError(f"{_RAW_BATCH_MESSAGE} changed shape: {message['payload']}; revisit this patch")
    message["payload"] = {"$ref": "#/components/schemas/SpendEvent"}
    del schemas_["EmptyPayload"]


def _one_record_per_message(document: dict[str, Any]) -> None:
    """A batch subscriber's payload is an array of records; each Kafka message is one of them."""
    schemas_ = document["components"]["schemas"]
    for message in document["components"]["messages"].values():
        name = unquote(message.get("payload", {}).get("$ref", "").removeprefix("#/components/schemas/"))
        schema = schemas_.get(name, {})
        if schema.get("type") == "array" and "$ref" in schema.get("items", {}):
            message["payload"] = schema["items"]
            del schemas_[name]


def _in_stable_order(document: dict[str, Any]) -> None:
    """FastStream keeps endpoints in a WeakSet, so their order changes from run to run: sort
    the named collections, or the checked-in file would never be current."""
    for section in (document, document["components"]):
        for name in ("channels", "operations", "messages", "schemas"):
            if name in section:
                section[name] = dict(sorted(section[name].items()))


def asyncapi(
    out: Annotated[Path, typer.Option(help="Where to write the document.")] = DOCUMENT,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if the file is not current.")] = False,
) -> None:
    """Generate the AsyncAPI document of every topic from the FastStream apps."""
    document = build_document()
    if check:
        if not out.exists() or out.read_text(encoding="utf-8") != document:
            typer.echo(f"{out} is not current: run `make asyncapi` (spendpipe asyncapi) and commit it", err=True)
            raise typer.Exit(1)
        return
    out.write_text(document, encoding="utf-8")
    typer.echo(f"wrote {out}")
