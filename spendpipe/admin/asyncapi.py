"""The topics as other teams read them: which message each topic carries, with its Kafka key and
headers (`MESSAGES`); each message's JSON Schema as it is on the wire (`wire_schema`); and the
AsyncAPI document of every topic (`build_document`).

The document's channels come from the services' own wiring: `Aggregator` and `EnforcerService`
registered on one broker, as `spendpipe run all` does, never started. The gateway plugin, the
budget admin, the enforcer's budget follower and the aggregator's intake use plain aiokafka
clients; their channels are declared on the same broker for the document only. Payloads are the contracts in
`spendpipe.contracts`, as `wire_schema` gives them (what a consumer reads: money as decimal
strings), and each message names its headers. Topic names are the defaults (`SPENDPIPE_TOPICS__*`).

`spendpipe asyncapi` prints the document (or writes it with `--output`). In a checkout,
`make schemas` (`python -m dev.schemas`) writes it with the rest of `schemas/`, and a unit test
fails while the checked-in files differ from what this module generates.
"""

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, NoReturn
from urllib.parse import unquote

import yaml
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from faststream.specification import AsyncAPI
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema

from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.dead_letters import (
    DEAD_LETTER_REASON,
    EXCERPT_BYTES,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    SOURCE_VALUE_SIZE,
    TRUNCATED,
)
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts import alerts, budgets, decisions, declared_budgets, events, flushes, leases, sessions
from spendpipe.contracts.alerts import BurnRateAlert, SoftBudgetAlert
from spendpipe.contracts.budgets import Budget, BudgetRecord
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.flushes import ScopesFlushed
from spendpipe.contracts.leases import LeaseGrant, LeaseRequest
from spendpipe.contracts.sessions import SessionRecord
from spendpipe.contracts.signatures import KEY_ID_HEADER, SIGNATURE_HEADER
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings


@dataclass(frozen=True)
class TopicMessage:
    """What a consumer of one topic needs besides the payload's schema: the key and the headers."""

    topic: str
    """The `Topics` field naming the topic."""
    model: type[BaseModel] | None
    """The payload's contract; None for the dead letters, which are the original bytes."""
    message_type: str | None
    """The versioned type (`spendpipe.<thing>.v1`); None where there is no contract."""
    key: str
    """What the Kafka key holds (Markdown)."""
    typed: bool = True
    """Whether producers put `message_type` in the `TYPE_HEADER` header."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """The other headers spendpipe sets, and what each holds."""

    @property
    def topic_name(self) -> str:
        return str(getattr(Topics(), self.topic))

    @property
    def schema_file(self) -> str:
        """The JSON Schema's file name: the versioned type, or the topic's name without one."""
        return f"{self.message_type or self.topic_name}.schema.json"

    def header_descriptions(self) -> dict[str, str]:
        typed = {TYPE_HEADER: f"`{self.message_type}`"} if self.typed else {}
        return typed | dict(self.headers)


SIGNATURE_HEADERS = {
    KEY_ID_HEADER: "the writer key that signed the record: the first 16 hex digits of the SHA-256 of its raw "
    "Ed25519 public key",
    SIGNATURE_HEADER: "base64 Ed25519 signature of the type, the key and the value bytes (a tombstone too), each "
    "length-prefixed (`spendpipe.contracts.signatures.signed_bytes`); readers drop a record without a valid "
    "signature by an accepted key",
}

MESSAGES = (
    TopicMessage(
        "events",
        SpendEvent,
        events.MESSAGE_TYPE,
        key="`key_hash` (SHA-256 hex of the API key); none when the call had no key",
        typed=False,  # the gateway's producer sets no headers
    ),
    TopicMessage(
        "events_dead_letter",
        None,
        None,
        key=f"the record's own key (at most its first {EXCERPT_BYTES} bytes); none when it had none",
        typed=False,
        headers={
            DEAD_LETTER_REASON: "why the aggregator could not count the record",
            SOURCE_TOPIC: "the topic the record was read from",
            SOURCE_PARTITION: "its partition, in decimal",
            SOURCE_OFFSET: "its offset, in decimal",
            SOURCE_VALUE_SIZE: "the size of its value in bytes, in decimal",
            TRUNCATED: f"what the letter carries only the first {EXCERPT_BYTES} bytes of: `value`, `key`, "
            "`key,value`, or empty when it carries the record whole",
        },
    ),
    TopicMessage("flushes", ScopesFlushed, flushes.MESSAGE_TYPE, key="none"),
    TopicMessage(
        "decisions",
        Decision,
        decisions.MESSAGE_TYPE,
        key="`<scope>` or `<scope>|<model>` for a budget verdict, `rate_limit|<scope>` or "
        "`rate_limit|<scope>|<model>` for a rate-limit verdict",
        headers=SIGNATURE_HEADERS,
    ),
    TopicMessage(
        "budgets",
        BudgetRecord,
        budgets.MESSAGE_TYPE,
        key="the scope (`team:eng`, `key:<SHA-256 hex>`, `global`...), the same as the payload's `scope`",
        headers=SIGNATURE_HEADERS,
    ),
    TopicMessage(
        "declared_budgets",
        Budget,
        declared_budgets.MESSAGE_TYPE,
        key="the scope the budget is declared for (`key:<SHA-256 hex>`, `team:<id>`, `user:<id>`, `org:<id>`, "
        "`end_user:<id>`), the same as the payload's `scope`; a null value (tombstone) withdraws it",
        headers=SIGNATURE_HEADERS,
    ),
    TopicMessage(
        "alerts",
        SoftBudgetAlert,
        alerts.MESSAGE_TYPE,
        key="`<scope>@<window start, ISO 8601>`, or `<scope>@lifetime`",
    ),
    TopicMessage(
        "alerts",
        BurnRateAlert,
        alerts.BURN_RATE_MESSAGE_TYPE,
        key="`burn_rate|<scope>|<model>|<window>@<window start, ISO 8601>` (model empty for all models)",
    ),
    TopicMessage(
        "sessions",
        SessionRecord,
        sessions.MESSAGE_TYPE,
        key="`<agent_id>|<session_id>`: a session's records share a partition, in order",
    ),
    TopicMessage(
        "lease_requests",
        LeaseRequest,
        leases.REQUEST_MESSAGE_TYPE,
        key="the target: `<scope>` or `<scope>|<model>` (a target's requests share a partition, in order)",
    ),
    TopicMessage(
        "leases",
        LeaseGrant,
        leases.GRANT_MESSAGE_TYPE,
        key="the target: `<scope>` or `<scope>|<model>`",
        headers=SIGNATURE_HEADERS,
    ),
)
"""Every topic's messages, in the order data flows; a topic with several types (`alerts`) lists
each, and readers tell them apart by `TYPE_HEADER`."""

DECIMAL_STRING: dict[str, Any] = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}
"""A `Cost` on the wire: an exact decimal string (US dollars), never a JSON number."""

DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "title": "DeadLetter",
    "description": "The value of a spend.events record the aggregator could not count, byte for byte (at most "
    f"its first {EXCERPT_BYTES} bytes): not necessarily JSON, and empty when the record had none. Why, where it "
    "was read, its size and whether it was cut are in its headers.",
}


class WireSchema(GenerateJsonSchema):
    """JSON Schema of the serialised form, what a consumer reads: costs are decimal strings; fields
    carry their descriptions but no titles (code generators would name types after them)."""

    def generate_inner(self, schema: Any) -> JsonSchemaValue:  # a pydantic-core schema (a TypedDict)
        as_string = schema.get("serialization", {}).get("return_schema") == {"type": "str"}
        if self.mode == "serialization" and schema["type"] == "decimal" and as_string:
            return dict(DECIMAL_STRING)
        return super().generate_inner(schema)

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def wire_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema as it is on the wire, with its nested models under `$defs`."""
    schema: dict[str, Any] = _unwrapped(model.model_json_schema(mode="serialization", schema_generator=WireSchema))
    return schema


def _unwrapped(schema: Any) -> Any:
    """Descriptions come from docstrings wrapped for the source's width: one line per paragraph."""
    if isinstance(schema, list):
        return [_unwrapped(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        name: re.sub(r"(?<!\n)\n(?!\n)", " ", value)
        if name == "description" and isinstance(value, str)
        else _unwrapped(value)
        for name, value in schema.items()
    }


def payload_schema(message: TopicMessage) -> dict[str, Any]:
    return wire_schema(message.model) if message.model else dict(DEAD_LETTER_SCHEMA)


def headers_schema(message: TopicMessage) -> dict[str, Any] | None:
    properties: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in message.headers.items()
    }
    if message.typed:
        properties = {TYPE_HEADER: {"type": "string", "const": message.message_type}} | properties
    return {"type": "object", "properties": properties, "required": list(properties)} if properties else None


_RAW_BATCH_MESSAGES = {
    "spend.events:SubscribeMessage": "SpendEvent",
    "spend.lease_requests (enforcer):SubscribeMessage": "LeaseRequest",
    "spend.flushes (enforcer):SubscribeMessage": "ScopesFlushed",
}
"""The aggregator's, the lease desk's and the enforcer's flush handlers take the raw batch (each
record is validated on its own), so FastStream sees no payload type there; the document names
the contract each validates against."""
_DEAD_LETTER_PAYLOAD = "spend.events.dlq:Message:Payload"
"""FastStream's empty schema for the dead letters' bytes; the document describes them instead."""


class _NoClickhouse:
    """The apps are only wired, never run: nothing may reach a database."""

    def __getattr__(self, name: str) -> NoReturn:
        raise RuntimeError(f"the AsyncAPI document is built without ClickHouse (called {name})")


def build_document() -> str:
    """The document as YAML. Defaults only: the environment and `.env` are not read."""
    kafka = KafkaSettings()
    broker = KafkaBroker(
        kafka.servers,
        description=f"The pipeline's Kafka cluster (SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS). Messages name their "
        f"versioned type (spendpipe.<thing>.v1) in the `{TYPE_HEADER}` header, except spend.events and the dead "
        "letters (see each message's headers); every payload of a contract carries its `schema_version`.",
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
    _payloads_as_on_the_wire(document)
    _headers_of_each_message(document)
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

    @broker.subscriber(
        topics.events,
        batch=True,
        decoder=_each_record_on_its_own,
        title="spend.events",
        description="SpendEvent v1 JSON from gateways.",
    )
    async def aggregator_intake(batch: KafkaMessage) -> None:
        """The aggregator reads batches with its own consumer (`spendpipe.aggregator.intake`)."""

    broker.publisher(
        topics.events,
        title="spend.events (gateway)",
        description="SpendEvent v1 JSON keyed by key hash, from the LiteLLM plugin's idempotent producer.",
        schema=SpendEvent,
    )
    broker.publisher(
        topics.budgets,
        title="spend.budgets",
        description="Budget v1 JSON keyed by scope (compacted), versioned; a deletion is a versioned record "
        "of its own. Written by `spendpipe budgets`, BudgetAdmin and BudgetManager.",
        schema=BudgetRecord,
    )
    broker.publisher(
        topics.declared_budgets,
        title="spend.budgets.declared (gateway)",
        description="Budget v1 JSON keyed by scope (compacted): the budgets a LiteLLM virtual key's object declares "
        "for the key, its team, user, organisation and end customer, published by the gateways that see it, once "
        "per change; a null value withdraws one.",
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

    broker.publisher(
        topics.lease_requests,
        title="spend.lease_requests (gateway)",
        description="LeaseRequest v1 keyed by target: a gateway asks for a slice of a leased budget's headroom, "
        "or returns its chain with the chain's secret (docs/leases.md).",
        schema=LeaseRequest,
    )

    @broker.subscriber(
        topics.leases,
        title="spend.leases (gateway)",
        description="Every gateway follows the grants from the topic's end: its own chains' grants, and every "
        "target's headroom left free.",
    )
    async def gateway_lease_book(grant: LeaseGrant) -> None: ...

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
    async def enforcer_budget_book(budget: BudgetRecord) -> None: ...

    @broker.subscriber(
        topics.declared_budgets,
        title="spend.budgets.declared (enforcer)",
        description="The enforcer applies a declared budget where no operator's budget for its scope is set.",
    )
    async def enforcer_declared_budgets(budget: Budget) -> None: ...


async def _each_record_on_its_own(message: StreamMessage[Any]) -> None:
    """The aggregator parses and checks each record itself: no payload type for the batch."""


def _name_the_raw_batch_payload(document: dict[str, Any]) -> None:
    schemas_ = document["components"]["schemas"]
    for name, contract in _RAW_BATCH_MESSAGES.items():
        message = document["components"]["messages"][name]
        if message["payload"] != {"$ref": "#/components/schemas/EmptyPayload"} or contract not in schemas_:
            raise RuntimeError(f"{name} changed shape: {message['payload']}; revisit this patch")
        message["payload"] = {"$ref": f"#/components/schemas/{contract}"}
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


def _payloads_as_on_the_wire(document: dict[str, Any]) -> None:
    """FastStream documents what the apps accept (a cost may be a number there); a consumer
    reads what they write. Every contract's schema becomes `wire_schema`'s, the dead letters'
    empty schema the description of their bytes."""
    schemas_ = document["components"]["schemas"]
    models = [(message.model, "serialization") for message in MESSAGES if message.model]
    _, wire = models_json_schema(models, ref_template="#/components/schemas/{model}", schema_generator=WireSchema)  # type: ignore[arg-type]
    unknown = set(schemas_) - set(wire["$defs"]) - {_DEAD_LETTER_PAYLOAD}
    if unknown:
        raise RuntimeError(f"payloads that are not in MESSAGES: {sorted(unknown)}; add them there")
    schemas_.update(_unwrapped(wire["$defs"]))
    schemas_[DEAD_LETTER_SCHEMA["title"]] = dict(DEAD_LETTER_SCHEMA)
    del schemas_[_DEAD_LETTER_PAYLOAD]
    for message in document["components"]["messages"].values():
        if message["payload"] == {"$ref": f"#/components/schemas/{_DEAD_LETTER_PAYLOAD}"}:
            message["payload"] = {"$ref": f"#/components/schemas/{DEAD_LETTER_SCHEMA['title']}"}
            message["contentType"] = "application/octet-stream"


def _headers_of_each_message(document: dict[str, Any]) -> None:
    for channel in document["channels"].values():
        for reference in channel["messages"].values():
            name = unquote(reference["$ref"].removeprefix("#/components/messages/"))
            payload = document["components"]["messages"][name]["payload"]["$ref"].rsplit("/", 1)[1]
            headers = headers_schema(_message_of(channel["address"], payload))
            if headers is not None:
                document["components"]["messages"][name]["headers"] = headers


def _message_of(topic: str, payload: str) -> TopicMessage:
    """The message a channel carries: the topic's only one, or the one whose model is `payload`."""
    candidates = [message for message in MESSAGES if message.topic_name == topic]
    if len(candidates) == 1:
        return candidates[0]
    return next(message for message in candidates if message.model is not None and message.model.__name__ == payload)


def _in_stable_order(document: dict[str, Any]) -> None:
    """FastStream keeps endpoints in a WeakSet, so their order changes from run to run: sort
    the named collections, or the checked-in file would never be current."""
    for section in (document, document["components"]):
        for name in ("channels", "operations", "messages", "schemas"):
            if name in section:
                section[name] = dict(sorted(section[name].items()))
