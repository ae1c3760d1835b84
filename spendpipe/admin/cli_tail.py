"""`spendpipe alerts tail`, `spendpipe dlq tail` and `spendpipe dlq replay`: the soft-budget
alerts and the dead letters as people read them, and a chosen letter sent back to spend.events
after its cause is fixed.

Every value comes from a record anyone with write access chose, so tables print it `plain()`
and JSON ASCII-escaped (`formats`). A replay republishes the letter's original key and value
exactly; a letter that carries only an excerpt (`spendpipe-truncated`) cannot be replayed, and
a replay that names one publishes nothing.
"""

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaProducer

from spendpipe.admin.errors import CliError
from spendpipe.admin.formats import FormatOption, OutputFormat, csv_text, emit, json_value
from spendpipe.admin.render import console, message, result_table
from spendpipe.admin.settings import AdminSettings
from spendpipe.aggregator import dead_letters
from spendpipe.contracts.topics import header_text, message_type
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.settings import load_settings
from spendpipe.platform.topic_tail import TopicTail

alerts_app = typer.Typer(help="Soft-budget and burn-rate alerts (spend.alerts).", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters (spend.events.dlq): records the aggregator could not count.", no_args_is_help=True
)

LimitOption = Annotated[int, typer.Option(min=1, max=10_000, help="how many of the last records to show")]
FollowOption = Annotated[
    bool, typer.Option("--follow/--no-follow", help="keep printing records as they arrive, until Ctrl-C")
]
EXCERPT_CHARS = 80

ALERT_COLUMNS = ["position", "type", "alerted_at", "scope", "model", "window", "spend", "threshold"]
"""`threshold`: a soft-budget alert's soft budget, a burn-rate alert's cap (types as the type header names them)."""
LETTER_COLUMNS = ["position", "reason", "source", "value_size", "truncated", "key", "value"]
Row = Callable[[TopicRecord], dict[str, Any]]


def _position(record: TopicRecord) -> str:
    return f"{record.partition}:{record.offset}"


def _alert_row(record: TopicRecord) -> dict[str, Any]:
    """Any type of alert: its fields read from the JSON as they are (strings stay strings)."""
    kind = message_type(record.headers).removeprefix("spendpipe.")
    try:
        fields = json.loads(record.value or b"")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        fields = None
    if not isinstance(fields, dict):
        return {"position": _position(record), "type": kind, "scope": "(not JSON)"}
    threshold = fields.get("soft_budget", fields.get("cap"))
    row = {name: fields.get(name) for name in ALERT_COLUMNS if name in fields}
    return {**row, "position": _position(record), "type": kind, "threshold": threshold}


def _letter_row(record: TopicRecord) -> dict[str, Any]:
    headers = {name: header_text(value) for name, value in record.headers or ()}
    source = "/".join(headers.get(h, "?") for h in (dead_letters.SOURCE_TOPIC, dead_letters.SOURCE_PARTITION))
    return {
        "position": _position(record),
        "reason": headers.get(dead_letters.DEAD_LETTER_REASON, ""),
        "source": f"{source}@{headers.get(dead_letters.SOURCE_OFFSET, '?')}",
        "value_size": headers.get(dead_letters.SOURCE_VALUE_SIZE, ""),
        "truncated": headers.get(dead_letters.TRUNCATED, ""),
        "key": (record.key or b"").decode(errors="replace"),
        "value": (record.value or b"").decode(errors="replace"),
    }


def _tail(
    settings: AdminSettings,
    topic: str,
    columns: list[str],
    row: Row,
    *,
    limit: int,
    follow: bool,
    fmt: OutputFormat,
    what: str,
) -> None:

    async def read() -> None:
        async with TopicTail(kafka=settings.kafka, topic=topic) as tail:
            rows = [row(record) for record in await tail.last(limit)]
            if not follow:
                _listing(rows, columns, fmt, empty=f"no {what} on {topic}")
                return
            if fmt is OutputFormat.CSV:
                print(csv_text(columns, []), end="", flush=True)  # the header, once
            _lines(rows, columns, fmt)
            async for record in tail.follow():
                _lines([row(record)], columns, fmt)

    try:
        asyncio.run(read())
    except KeyboardInterrupt:
        return
    except RuntimeError as error:
        raise CliError(str(error)) from None


def _listing(rows: list[dict[str, Any]], columns: list[str], fmt: OutputFormat, *, empty: str) -> None:
    """The table cuts long values; JSON and CSV carry them whole."""
    whole = [[document.get(c) for c in columns] for document in rows]
    cut = [[_shown(value, c) for value, c in zip(line, columns, strict=True)] for line in whole]
    emit(fmt, table=result_table("", columns, cut), columns=columns, rows=whole, empty=empty)


def _lines(rows: list[dict[str, Any]], columns: list[str], fmt: OutputFormat) -> None:
    """--follow: one line per record, as it arrives: JSON Lines, CSV rows, or `name=value` text."""
    out = console()
    for document in rows:
        line = [document.get(c) for c in columns]
        if fmt is OutputFormat.JSON:
            print(json.dumps(json_value(dict(zip(columns, line, strict=True))), ensure_ascii=True), flush=True)
        elif fmt is OutputFormat.CSV:
            print(csv_text(columns, [line]).split("\r\n", 1)[1], end="", flush=True)
        else:
            out.print(message(*_spaced({c: _shown(v, c) for c, v in zip(columns, line, strict=True)})))


def _spaced(row: Mapping[str, Any]) -> list[object]:
    parts: list[object] = []
    for name, value in row.items():
        parts += [(f"{name}=", "dim"), "" if value is None else value, " "]
    return parts


def _shown(value: Any, column: str) -> Any:
    if column == "value" and isinstance(value, str) and len(value) > EXCERPT_CHARS:
        return value[:EXCERPT_CHARS] + "…"
    return value


@alerts_app.command("tail")
def alerts_tail(limit: LimitOption = 20, follow: FollowOption = False, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """The last alerts (soft budget, burn rate), oldest first; --follow keeps printing new ones."""
    settings = load_settings(AdminSettings)
    _tail(
        settings, settings.topics.alerts, ALERT_COLUMNS, _alert_row, limit=limit, follow=follow, fmt=fmt, what="alerts"
    )


@dlq_app.command("tail")
def dlq_tail(limit: LimitOption = 20, follow: FollowOption = False, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """The last dead letters, oldest first, with their reason and source; the value is cut to
    80 characters in the table, whole in json/csv."""
    settings = load_settings(AdminSettings)
    topic = settings.topics.events_dead_letter
    _tail(settings, topic, LETTER_COLUMNS, _letter_row, limit=limit, follow=follow, fmt=fmt, what="dead letters")


def _coordinates(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise typer.BadParameter(f"{text!r} is not PARTITION:OFFSET (as dlq tail shows it)", param_hint="--offset")
    return int(partition), int(offset)


@dlq_app.command("replay")
def dlq_replay(
    offset: Annotated[
        list[str], typer.Option(help="a letter's PARTITION:OFFSET on the dead-letter topic (dlq tail), repeatable")
    ],
) -> None:
    """Publish chosen letters' original key and value to spend.events again (after fixing what
    refused them). A truncated letter is refused, and then nothing is published."""
    chosen = [_coordinates(text) for text in offset]
    settings = load_settings(AdminSettings)
    topics = settings.topics
    records = asyncio.run(_letters(settings, chosen))
    refused = [
        _refusal(p, o, record, topics.events_dead_letter) for (p, o), record in zip(chosen, records, strict=True)
    ]
    refused = [reason for reason in refused if reason]
    if refused:
        raise CliError("nothing replayed: " + "; ".join(refused))
    asyncio.run(_publish(settings, [r for r in records if r is not None]))
    out = console()
    for p, o in chosen:
        out.print(message("replayed ", (f"{p}:{o}", "bold"), f" to {topics.events}"))


def _refusal(partition: int, offset: int, record: TopicRecord | None, topic: str) -> str:
    """Why this letter cannot be replayed, or "" if it can."""
    if record is None:
        return f"no letter at {partition}:{offset} on {topic}"
    truncated = _letter_row(record)["truncated"]
    if truncated:
        return f"letter {partition}:{offset} holds only an excerpt of the record's {truncated} (truncated)"
    return ""


async def _letters(settings: AdminSettings, chosen: list[tuple[int, int]]) -> list[TopicRecord | None]:
    async with TopicTail(kafka=settings.kafka, topic=settings.topics.events_dead_letter) as tail:
        return [await tail.record_at(partition, offset) for partition, offset in chosen]


async def _publish(settings: AdminSettings, letters: list[TopicRecord]) -> None:
    producer = AIOKafkaProducer(**settings.kafka.aiokafka_kwargs(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for letter in letters:
            await (await producer.send(settings.topics.events, key=letter.key, value=letter.value))
    finally:
        await producer.stop()
