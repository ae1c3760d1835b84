"""The aggregator's reads and writes in ClickHouse: raw records, parsed events, totals and
their watermarks.

A large batch goes in as it came from Kafka: `load_raw` inserts the records' partition, offset
and value bytes, as Arrow columns built in C (the cheapest way in measured), into the
session's `RAW_TABLE`: a load no record can make fail. `parse_canonical`
fills `PARSED_TABLE` with the `events` columns of the records in the gateways' canonical form
(`parse.CANONICAL_SQL`), `unparsed` names the rest, and `parse` checks the rest in full, with
each row's problems (`parse.PARSE_SQL`). Events pydantic decoded (see `BatchWriter`) go
straight into `PARSED_TABLE` with `load_decoded`. Everything after reads `PARSED_TABLE`: the
ids and origins dedup needs, the dead rows, the rollup, the copy into `events` and the scopes
to announce.

The two inserts that count carry an `insert_deduplication_token` naming the records they write
(`insert_token`): on replicated tables, which deduplicate inserts, a retried flush is dropped as
a duplicate and two different flushes never are (docs/exactly-once.md, "Replicated tables").
On a cluster the watermarks are read after `SYSTEM SYNC REPLICA ... LIGHTWEIGHT`, so they include
every insert any replica took, and the inserts that count carry `insert_quorum`
(`store/cluster.py`).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from spendpipe.aggregator.dedup import ORIGIN_SQL
from spendpipe.aggregator.ownership import Fence, fence_sql
from spendpipe.aggregator.parse import (
    CANONICAL_SQL,
    EVENT_COLUMNS,
    PARSE_SETTINGS,
    PARSE_SQL,
    PARSED_TABLE,
    RAW_TABLE,
    REASON_SQL,
    sql_text,
)
from spendpipe.aggregator.rollup import rollup_sql, rows_after, scopes_sql
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.money import COST_PRECISION, COST_SCALE
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.store.calendar import settle_calendar
from spendpipe.store.cluster import quorum_settings, sync_replica
from spendpipe.store.totals import INGEST_SCOPE_TYPE, WATERMARK_WINDOW

RAW_COLUMNS = ("kafka_partition", "kafka_offset", "value")
RAW_BLOCK_ROWS = 20_000
"""Rows per block of the raw table: the parse reads the blocks on as many threads as ClickHouse
has (`max_threads`), where one block would be parsed on one. Each block is one insert: 200,000
records loaded in 0.21 s of CPU in blocks of 20,000 against 0.27 s in blocks of 10,000
(2026-12-03, docs/performance.md)."""

EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("ingested_at", pa.timestamp("ms", tz="UTC")),
        ("key_hash", pa.string()),
        ("key_alias", pa.string()),
        ("user_id", pa.string()),
        ("team_id", pa.string()),
        ("org_id", pa.string()),
        ("end_user", pa.string()),
        ("model", pa.string()),
        ("model_group", pa.string()),
        ("billed_model", pa.string()),
        ("provider", pa.string()),
        ("call_type", pa.string()),
        ("prompt_tokens", pa.uint64()),
        ("completion_tokens", pa.uint64()),
        ("total_tokens", pa.uint64()),
        ("cost", pa.decimal128(COST_PRECISION, COST_SCALE)),
        ("cache_hit", pa.bool_()),
        ("status", pa.string()),
        ("error_class", pa.string()),
        ("latency_ms", pa.float64()),
        ("request_tags", pa.list_(pa.string())),
        ("gateway_id", pa.string()),
        ("schema_version", pa.uint8()),
        ("kafka_topic", pa.string()),
        ("kafka_partition", pa.uint32()),
        ("kafka_offset", pa.int64()),
        ("agent_id", pa.string()),
        ("session_id", pa.string()),
    ]
)
"""`EVENT_COLUMNS` as Arrow types, for decoded events. Absent labels travel as nulls and land as
'' (ClickHouse's `input_format_null_as_default`); decimals convert exactly; the id's text
becomes the `UUID` column."""

_FROM_THE_EVENT = [name for name in EVENT_SCHEMA.names if name in SpendEvent.model_fields]
_read_fields = attrgetter(*_FROM_THE_EVENT)

EXCLUDED_TABLE = "spendpipe_excluded"
"""(partition, offset) of the parsed rows a batch must not write: duplicates and conflicts."""

_NO_LIMIT = 2**64 - 1
ONE_PART = (
    f" SETTINGS max_insert_threads = 1, min_insert_block_size_rows = {_NO_LIMIT}, "
    f"min_insert_block_size_bytes = {_NO_LIMIT}"
)
"""An `INSERT … SELECT` writes one part only if its whole result is squashed into one block, in
one thread: by default ClickHouse cuts blocks at about 1M rows or 256 MiB, and a server may
insert with several threads. A flush's inserts are all-or-nothing only as one part."""

SUMMED_ON_INSERT = ", optimize_on_insert = 1"
"""The totals insert sums rows of one key as it sorts its block, as a merge would (`rollup`:
its SELECT leaves that to the insert). ClickHouse's default, named so that a server profile
that turns it off cannot leave a flush's part with several rows per key (still exact, read
with sum(), but more rows for every read until a merge)."""
NOTHING_TO_SUM = ", optimize_on_insert = 0"
"""For a batch within one minute, whose fanned-out rows all have keys of their own: the pass
that would sum them costs a 3,000-event flush of thousands of scopes about 15 ms (2026-12-02)."""


class KafkaRecord(Protocol):
    """A record of `spend.events` as the writer reads it: aiokafka's own `ConsumerRecord`, which
    the intake hands over as it came (a copy per record cost the event loop about 1.3 µs), or a
    `SourceRecord`."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def key(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A `KafkaRecord` made by hand (tests, tools)."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class ParsedIds:
    """The rows of `PARSED_TABLE` without problems, column by column: those the totals hold
    already first, then the others, each part in offset order per partition."""

    ids: list[bytes]
    """16-byte UUIDs."""
    origins: list[bytes]
    """`ORIGIN_SQL`: partition, offset and content digest, packed."""
    oldest: datetime | None
    """The earliest `occurred_at` among them."""
    newest: datetime | None = None
    """The latest `occurred_at` among them."""

    @property
    def one_minute(self) -> bool:
        """Whether every one of them falls in one minute (UTC), as the rollup cuts minutes."""
        return (
            self.oldest is not None
            and self.newest is not None
            and self.oldest.replace(second=0, microsecond=0) == self.newest.replace(second=0, microsecond=0)
        )


@dataclass(frozen=True, slots=True)
class DeadRow:
    partition: int
    offset: int
    reason: str


@dataclass(frozen=True, slots=True)
class Written:
    """What the rows a batch has in the totals (new or replayed) touch, for the announcement."""

    scopes: set[Scope]
    models: list[str]
    latest_occurred_at: datetime | None
    new: int
    """How many of them the writer counts now: those this attempt added to the totals, and
    those an earlier attempt of this writer added without counting them."""
    owned: bool = True
    """Whether the flush's fence still held after its inserts (`ownership`)."""
    replayed: int = 0
    """How many of them the totals held before this attempt wrote."""


def source_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


_USABLE = "empty(problems)"
_NOT_EXCLUDED = (
    f" AND (kafka_partition, kafka_offset) NOT IN (SELECT kafka_partition, kafka_offset FROM {EXCLUDED_TABLE})"
)
"""Rows that are in the totals once the batch is written: parsed without problems, and not a
copy of an event counted from another record (`SpendStore._usable`)."""


class SpendStore:
    """Blocking calls; the aggregator runs them on the ClickHouse thread (`store.run`)."""

    def __init__(
        self, *, clickhouse: ClickhouseStore, calendar: Calendar = UTC_SUNDAY, write_timeout_s: int = 30
    ) -> None:
        """`write_timeout_s`: the `max_execution_time` of every insert that counts; an insert has
        landed or failed this long after it started (`ownership`, the settle wait)."""
        self._clickhouse = clickhouse
        replication = clickhouse.settings.replication
        self._replicated = replication is not None
        quorum = quorum_settings(replication, write_timeout_s)
        self._write_settings = f"{ONE_PART}, max_execution_time = {int(write_timeout_s)}{quorum}"
        self._tables_made = False
        self._filled = {RAW_TABLE, PARSED_TABLE, EXCLUDED_TABLE}
        """Stage tables that may hold rows: a small flush truncates only those (each statement
        costs a flush milliseconds)."""
        self._calendar = calendar
        self._rollup = rollup_sql(calendar)
        self._calendar_settled = False

    def _session_tables(self) -> None:
        """The session's private stage tables (temporary: no other client sees them)."""
        if self._tables_made:
            return
        run = self._clickhouse.command
        run(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {RAW_TABLE} "
            "(kafka_partition UInt32, kafka_offset Int64, value String) ENGINE = Memory"
        )
        run(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {PARSED_TABLE} ENGINE = Memory AS "
            "SELECT *, [tuple('', '', '')] AS problems FROM events LIMIT 0"
        )
        run(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {EXCLUDED_TABLE} "
            "(kafka_partition UInt32, kafka_offset Int64) ENGINE = Memory"
        )
        self._tables_made = True

    def forget_session(self) -> None:
        """After a failure the session may be gone (a server restarted): make the tables again."""
        self._tables_made = False
        self._filled = {RAW_TABLE, PARSED_TABLE, EXCLUDED_TABLE}

    def _usable(self) -> str:
        """`_USABLE`, with the excluded rows left out when there may be any: the usual batch
        excludes none, and the set a `NOT IN` builds costs each of a flush's four statements
        that read the usable rows a few milliseconds (2026-12-02)."""
        return _USABLE + (_NOT_EXCLUDED if EXCLUDED_TABLE in self._filled else "")

    def _caught_up(self, table: str) -> None:
        """On a cluster, wait until this replica has every part another one took: a watermark
        read on a replica that lags would replay what is already counted."""
        if self._replicated:
            self._clickhouse.command(sync_replica(table))

    def totals_watermarks(self, topic: str) -> dict[int, int]:
        self._caught_up("spend_totals")
        rows = self._clickhouse.rows(
            "SELECT scope_id, max(ingest_offset) FROM spend_totals "
            "WHERE scope_type = {scope_type:String} AND window = {window:String} "
            "AND startsWith(scope_id, {prefix:String}) GROUP BY scope_id",
            {"scope_type": INGEST_SCOPE_TYPE, "window": WATERMARK_WINDOW, "prefix": f"{topic}:"},
        )
        return {int(scope_id.rsplit(":", 1)[1]): int(offset) for scope_id, offset in rows}

    def events_watermarks(self, topic: str) -> dict[int, int]:
        self._caught_up("events")
        rows = self._clickhouse.rows(
            "SELECT kafka_partition, max(kafka_offset) FROM events "
            "WHERE kafka_topic = {topic:String} GROUP BY kafka_partition",
            {"topic": topic},
        )
        return {int(partition): int(offset) for partition, offset in rows}

    def ids_ingested_since(self, since: datetime) -> tuple[list[bytes], list[bytes], datetime | None]:
        """(ids, origins, latest ingested_at) of the events counted since `since`."""
        table = self._clickhouse.arrow(
            f"SELECT UUIDToNum(event_id) AS id, {ORIGIN_SQL} AS origin, ingested_at "
            "FROM events WHERE ingested_at >= {since:DateTime64(3)}",
            {"since": since},
        )
        latest = table.column("ingested_at").to_pylist() if table.num_rows else []
        return _fixed_bytes(table.column("id")), _fixed_bytes(table.column("origin")), max(latest, default=None)

    def first_counts(self, older_than: datetime) -> dict[bytes, bytes]:
        """For each parsed row dated before `older_than` whose id is in `events`: the id and the
        origin of its first count."""
        table = self._clickhouse.arrow(
            f"SELECT UUIDToNum(event_id) AS id, argMin({ORIGIN_SQL}, ingested_at) AS origin "
            "FROM events WHERE event_id IN ("
            f"SELECT event_id FROM {PARSED_TABLE} WHERE empty(problems) AND occurred_at < {{older:DateTime64(6)}}"
            ") GROUP BY event_id",
            {"older": older_than},
        )
        return dict(zip(_fixed_bytes(table.column("id")), _fixed_bytes(table.column("origin")), strict=True))

    def _clear(self) -> None:
        self._session_tables()
        for table in (RAW_TABLE, PARSED_TABLE, EXCLUDED_TABLE):
            if table in self._filled:
                self._clickhouse.command(f"TRUNCATE TABLE {table}")
        self._filled = set()

    def load_raw(self, records: Sequence[KafkaRecord]) -> None:
        """Replace the raw stage with `records`, for `parse`. As Arrow columns, built in C from
        the records' own values (per 100,000 records about two thirds of the CPU and a third of
        the wall time of clickhouse-connect's native encoder, 2026-12-02), read by chDB where
        they are (`insert_arrow_in_place`). Without the records' keys: no statement reads them
        (a dead letter takes its key from the record itself)."""
        self._clear()
        self._filled.add(RAW_TABLE)
        for start in range(0, len(records), RAW_BLOCK_ROWS):  # blocks ClickHouse parses in parallel
            block = records[start : start + RAW_BLOCK_ROWS]
            columns = [
                pa.array([r.partition for r in block], pa.uint32()),
                pa.array([r.offset for r in block], pa.int64()),
                pa.array([r.value or b"" for r in block], pa.binary()),
            ]
            self._clickhouse.insert_arrow_in_place(RAW_TABLE, pa.Table.from_arrays(columns, names=list(RAW_COLUMNS)))

    def load_decoded(
        self, events: Sequence[tuple[SpendEvent, int, int]], *, topic: str, ingested_at: datetime, add: bool = False
    ) -> None:
        """Replace the parsed stage (or, with `add`, add to it) with `(event, partition, offset)`
        triples pydantic decoded, without problems: what `load_raw` and `parse` give for the same
        valid records."""
        if not add:
            self._clear()
        if events:
            self._filled.add(PARSED_TABLE)
            self._clickhouse.insert_arrow(PARSED_TABLE, _event_table(events, topic, ingested_at))

    def parse_canonical(self, *, topic: str, ingested_at: datetime, latest: datetime) -> None:
        """Parse the raw records in the gateways' canonical form dated up to `latest` (`CANONICAL_SQL`)."""
        self._filled.add(PARSED_TABLE)
        self._clickhouse.command(CANONICAL_SQL, {"topic": topic, "ingested_at": ingested_at, "latest": latest})

    def unparsed(self) -> list[tuple[int, int]]:
        """(partition, offset) of the raw records not in the parsed stage, in order. Two counts
        first: when the canonical form took every record, as it does for the gateways' traffic,
        they say so in 0.005 s of CPU a flush of 200,000, where the anti-join took 0.028 s
        (2026-12-03, docs/performance.md)."""
        raw, parsed = self._clickhouse.rows(
            f"SELECT (SELECT count() FROM {RAW_TABLE}), (SELECT count() FROM {PARSED_TABLE})"
        )[0]
        if int(raw) == int(parsed):  # the stage holds only rows of the raw table (`_clear`)
            return []
        rows = self._clickhouse.rows(
            f"SELECT kafka_partition, kafka_offset FROM {RAW_TABLE} WHERE (kafka_partition, kafka_offset) NOT IN "
            f"(SELECT kafka_partition, kafka_offset FROM {PARSED_TABLE}) ORDER BY kafka_partition, kafka_offset"
        )
        return [(int(partition), int(offset)) for partition, offset in rows]

    def parse(self, *, topic: str, ingested_at: datetime, latest: datetime, allowance_s: float = 0.0) -> None:
        """Parse and check the raw records not in the parsed stage yet (`PARSE_SQL`). `latest`:
        the latest `occurred_at` accepted (the clock plus `allowance_s`)."""
        self._filled.add(PARSED_TABLE)
        self._clickhouse.command(
            PARSE_SQL,
            {"topic": topic, "ingested_at": ingested_at, "latest": latest, "allowance": f"{allowance_s:g}"},
            settings=PARSE_SETTINGS,
        )

    def parsed_ids(self, in_totals: dict[int, int] | None = None) -> ParsedIds:
        """`in_totals`: the totals' watermark of each partition of the batch. The rows at or below
        it, which the totals hold already (an earlier attempt counted them, whatever `events`
        holds), come first, so that the first copy of an id is the one the totals counted."""
        counted_first = f"{rows_after(in_totals)}, " if in_totals else ""
        table = self._clickhouse.arrow(
            f"SELECT UUIDToNum(event_id) AS id, {ORIGIN_SQL} AS origin, occurred_at "
            f"FROM {PARSED_TABLE} WHERE empty(problems) ORDER BY {counted_first}kafka_partition, kafka_offset"
        )
        if not table.num_rows:
            return ParsedIds([], [], None)
        span = pc.min_max(table.column("occurred_at")).as_py()
        return ParsedIds(
            _fixed_bytes(table.column("id")), _fixed_bytes(table.column("origin")), span["min"], span["max"]
        )

    def dead_rows(self) -> list[DeadRow]:
        rows = self._clickhouse.rows(
            f"SELECT kafka_partition, kafka_offset, {REASON_SQL} FROM {PARSED_TABLE} "
            "WHERE NOT empty(problems) ORDER BY kafka_partition, kafka_offset"
        )
        return [DeadRow(int(p), int(o), str(reason)) for p, o, reason in rows]

    def exclude(self, sources: Iterable[tuple[int, int]]) -> None:
        rows = list(sources)
        if rows:
            self._filled.add(EXCLUDED_TABLE)
            self._clickhouse.insert_columns(
                EXCLUDED_TABLE, [[p for p, _ in rows], [o for _, o in rows]], ["kafka_partition", "kafka_offset"]
            )

    def insert_totals(
        self,
        *,
        after: dict[int, int],
        watermarks: dict[str, int],
        fence: Fence | None = None,
        one_minute: bool = False,
    ) -> None:
        """Totals of the usable parsed rows past `after` (per partition), with the watermark rows,
        in one insert; nothing when `fence` no longer holds for the partitions of `after`.
        `one_minute`: every parsed row falls in one minute (`ParsedIds.one_minute`), so no two
        rows of the insert share a key and it need not sum them."""
        if not self._calendar_settled:  # before the first totals: never roll up on another calendar
            settle_calendar(self._clickhouse, self._calendar)
            self._calendar_settled = True
        sources = sorted(watermarks)
        condition, parameters = fence_sql(fence, after)
        new_rows = f"{self._usable()} AND {rows_after(after)}"
        self._clickhouse.command(
            self._rollup.replace("{new_rows}", new_rows).replace("{fence}", condition)
            + self._write_settings
            + (NOTHING_TO_SUM if one_minute else SUMMED_ON_INSERT)
            + more_settings(insert_token("spend_totals", after, watermarks)),
            {"sources": sources, "offsets": [watermarks[source] for source in sources], **parameters},
        )

    def insert_events(
        self,
        *,
        after: dict[int, int],
        fence: Fence | None = None,
        watermarks: dict[str, int] | None = None,
        up_to: dict[int, int] | None = None,
    ) -> None:
        """The usable parsed rows past `after` (per partition; with `up_to`, at or below its
        offsets) into `events`, as one part; nothing when `fence` no longer holds for the
        partitions of `after`. `watermarks`: the highest offset of each `<topic>:<partition>`
        the insert advances, which names it for deduplication (`insert_token`)."""
        columns = ", ".join(EVENT_COLUMNS)
        condition, parameters = fence_sql(fence, after)
        self._clickhouse.command(
            f"INSERT INTO events ({columns}) SELECT {columns} FROM {PARSED_TABLE} "
            f"WHERE {self._usable()} AND {rows_after(after, up_to)} AND {condition}{self._write_settings}"
            + more_settings(insert_token("events", after, watermarks or {})),
            parameters,
        )

    def owns(self, fence: Fence | None, partitions: Iterable[int]) -> bool:
        """Whether `fence` still holds for `partitions` (then it held for every insert before it:
        claims only rise). Always, unfenced."""
        if fence is None:
            return True
        condition, parameters = fence_sql(fence, partitions)
        return bool(self._clickhouse.rows(f"SELECT {condition}", parameters)[0][0])

    def written(
        self,
        *,
        new_after: dict[int, int],
        in_totals: dict[int, int] | None = None,
        fence: Fence | None = None,
        partitions: Iterable[int] = (),
    ) -> Written:
        """The scopes, models and latest time of every usable row of the batch, how many of them
        are past `new_after` (per partition: what the writer has not counted yet), how many are
        at or below `in_totals` (per partition of the batch: the totals' watermarks before this
        attempt wrote), and whether `fence` still holds for `partitions` (then it held for every
        insert before: claims only rise). The scopes come from ClickHouse, by the rollup's
        fan-out, as two Arrow columns: a batch's attributions read into Python and fanned out
        there cost about twice the time, most of it holding the GIL (2026-12-02)."""
        condition, parameters = fence_sql(fence, partitions)
        there_before = f"NOT {rows_after(in_totals)}" if in_totals else "0"
        rows = self._clickhouse.rows(
            f"SELECT groupUniqArray(billed_model), max(occurred_at), count(), countIf({rows_after(new_after)}), "
            f"countIf({there_before}), {condition} FROM {PARSED_TABLE} WHERE {self._usable()}",
            parameters,
        )
        models, latest, count, new, replayed, owned = rows[0]
        scopes = self._clickhouse.arrow(scopes_sql(self._usable())) if count and owned else None
        return Written(
            set() if scopes is None else set(map(_scope, scopes.column(0).to_pylist(), scopes.column(1).to_pylist())),
            list(models),
            latest if count else None,
            int(new),
            bool(owned),
            int(replayed),
        )


_SCOPE_TYPES = {scope_type.value: scope_type for scope_type in ScopeType}


def _scope(scope_type: str, scope_id: str) -> Scope:
    return Scope(_SCOPE_TYPES[scope_type], scope_id)


def insert_token(table: str, after: dict[int, int], watermarks: dict[str, int]) -> dict[str, str] | None:
    """The `insert_deduplication_token` of a flush's insert into `table`: the records it writes,
    `(after, watermark]` of each `<topic>:<partition>` it advances. A retry of that insert (the
    same records, whoever writes them) has the same token, so a replicated table drops it; two
    flushes of different records never share one. No owner epoch in it: records are counted once
    whichever owner writes them, and a fenced insert writes no block, so leaves no token behind.
    None (no token) for an insert that advances no watermark (tests, tools)."""
    if not watermarks:
        return None
    spans = [f"{source}({after.get(_partition(source), -1)},{offset}]" for source, offset in sorted(watermarks.items())]
    return {"insert_deduplication_token": f"spendpipe/{table}/" + " ".join(spans)}


def more_settings(settings: dict[str, str] | None) -> str:
    """`settings` as more of a statement's SETTINGS clause (which `ONE_PART` opens). Not passed
    per call: clickhouse-connect's chDB backend applies per-call settings by reading them from
    `system.settings`, then `SET` before and after the statement, which cost a flush about 6 ms
    an insert on this machine kind (2026-12-02); a server reads them from the query either way."""
    return "".join(f", {name} = {sql_text(value)}" for name, value in (settings or {}).items())


def _partition(source: str) -> int:
    """`source_name`'s partition."""
    return int(source.rsplit(":", 1)[1])


def _fixed_bytes(column: pa.ChunkedArray) -> list[bytes]:
    """A `FixedString` column's values as bytes, sliced from its one data buffer: a third of the
    time `to_pylist` takes (about 8 ms per 100,000 ids against 33)."""
    array = column.combine_chunks()
    if not len(array):
        return []  # an empty array may have no data buffer
    width = array.type.byte_width
    data = array.buffers()[1].to_pybytes()[array.offset * width : (array.offset + len(array)) * width]
    return [data[start : start + width] for start in range(0, len(data), width)]


def _event_table(events: Sequence[tuple[SpendEvent, int, int]], topic: str, ingested_at: datetime) -> pa.Table:
    """Column by column: one attribute read per field and event, the rest in C (zip, Arrow)."""
    fields = dict(zip(_FROM_THE_EVENT, zip(*(_read_fields(event) for event, _, _ in events), strict=True), strict=True))
    count = len(events)
    columns: dict[str, Sequence[object]] = {
        **fields,
        "ingested_at": [ingested_at] * count,
        "billed_model": [group or model for group, model in zip(fields["model_group"], fields["model"], strict=True)],
        "request_tags": [list(tags) for tags in fields["request_tags"]],
        "kafka_topic": [topic] * count,
        "kafka_partition": [partition for _, partition, _ in events],
        "kafka_offset": [offset for _, _, offset in events],
    }
    return pa.Table.from_arrays(
        [pa.array(columns[field.name], type=field.type) for field in EVENT_SCHEMA], schema=EVENT_SCHEMA
    )
