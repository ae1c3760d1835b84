"""`make schemas` (`python -m dev.schemas`): write `schemas/`, the contracts other teams read.

    schemas/README.md                    the index: topic, key, headers, message type, schema file
    schemas/asyncapi.yaml                the AsyncAPI document (`spendpipe.admin.asyncapi`)
    schemas/json/<type>.schema.json      each message's JSON Schema as it is on the wire
    schemas/clickhouse/tables/<t>.sql    each table as it is after every migration
    schemas/clickhouse/views/<v>.sql     each view for analysts, likewise
    schemas/clickhouse/migrations/*.sql  copies of the migrations the services apply
    schemas/clickhouse/cluster/*.sql     the same, as they run on a cluster (`store.cluster`)

Everything there is generated: the topics' side from the contracts (`spendpipe.admin.asyncapi`
holds the catalogue of messages and the schema generator), the tables by applying every
migration to a fresh embedded ClickHouse (chDB, in a temporary directory: chDB allows one per
process) and asking it for each table. `--check` writes nothing and exits 1, listing what is
stale; the unit tests check the topics' side, an integration test the tables.
"""

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from spendpipe.admin.asyncapi import MESSAGES, TopicMessage, build_document, payload_schema
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, Cluster, connect_clickhouse
from spendpipe.platform.kafka_topics import topic_specs
from spendpipe.store.cluster import on_cluster
from spendpipe.store.migrate import LEDGER, bundled_migrations, migrate

ROOT = Path(__file__).resolve().parents[1] / "schemas"
JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
TABLES = "clickhouse/tables/"
VIEWS = "clickhouse/views/"
MIGRATIONS = "clickhouse/migrations/"
CLUSTER_MIGRATIONS = "clickhouse/cluster/"
EXAMPLE_CLUSTER = Cluster("spendpipe")

Files = dict[str, str]
"""Path relative to `schemas/` -> the file's text."""


def contract_files() -> Files:
    """Everything but the tables' DDL: no database needed."""
    files = {"README.md": readme(), "asyncapi.yaml": build_document()}
    for message in MESSAGES:
        files[f"json/{message.schema_file}"] = _json(json_schema(message))
    for migration in sorted(resources.files("spendpipe.store").joinpath("migrations").iterdir(), key=lambda e: e.name):
        if migration.name.endswith(".sql"):
            files[MIGRATIONS + migration.name] = migration.read_text(encoding="utf-8")
    return files | cluster_files()


def cluster_files() -> Files:
    """The ledger and each migration as `migrate` runs them on a cluster named `spendpipe`."""
    files = {f"{CLUSTER_MIGRATIONS}0000_schema_migrations.sql": _on_cluster("the ledger of migrations", (LEDGER,))}
    for m in bundled_migrations():
        name = f"{m.version:04d}_{m.name}.sql"
        files[CLUSTER_MIGRATIONS + name] = _on_cluster(f"{MIGRATIONS}{name}", m.statements)
    return files


def _on_cluster(what: str, statements: tuple[str, ...]) -> str:
    head = f"-- {what}, run with SPENDPIPE_CLICKHOUSE__CLUSTER={EXAMPLE_CLUSTER.name} (spendpipe/store/cluster.py)\n"
    return head + "".join(f"{on_cluster(s, EXAMPLE_CLUSTER).strip()};\n\n" for s in statements).removesuffix("\n")


def json_schema(message: TopicMessage) -> dict[str, Any]:
    schema = payload_schema(message)
    if not schema.get("description"):
        raise ValueError(f"{schema['title']} needs a docstring: it is the description consumers read")
    head = {
        "$schema": JSON_SCHEMA,
        "$id": f"urn:spendpipe:schema:{message.schema_file.removesuffix('.schema.json')}",
        "title": schema.pop("title"),
        "description": schema.pop("description"),
    }
    return head | schema


def table_files(store: ClickhouseStore) -> Files:
    """`SHOW CREATE TABLE` of every table and view in the store's database (views under
    `VIEWS`), without the database's name."""
    database = store.settings.database
    qualified = re.compile(rf"(?<![\w.`]){re.escape(database)}\.|`{re.escape(database)}`\.")
    files = {}
    for table, engine in store.rows(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    ):
        (statement,) = store.column(f"SHOW CREATE TABLE `{table}`")
        folder = VIEWS if engine == "View" else TABLES
        files[f"{folder}{table}.sql"] = qualified.sub("", str(statement)) + ";\n"
    return files


def fresh_table_files() -> Files:
    """The tables after every migration, from a fresh chDB database in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="spendpipe-schemas-") as directory:
        store = connect_clickhouse(ClickhouseSettings(dsn=f"chdb://{directory}", database="spendpipe"))
        try:
            migrate(store)
            return table_files(store)
        finally:
            store.close()


def stale(root: Path, expected: Files, covers: Callable[[str], bool] = lambda _: True) -> list[str]:
    """The files under `root` that differ from `expected`, are missing, or are not generated
    (among the paths `covers`)."""
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()
    wrong = [name for name, text in expected.items() if name not in present or _read(root / name) != text]
    extra = [name for name in present - expected.keys() if covers(name)]
    return sorted(wrong + extra)


def write(root: Path, files: Files) -> list[str]:
    """Make `root` hold exactly `files`. Returns what changed."""
    changed = stale(root, files)
    for name in changed:
        path = root / name
        if name in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[name], encoding="utf-8")
        else:
            path.unlink()
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return changed


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def readme() -> str:
    topics = Topics()
    configs = {spec.name: spec.topic_configs for spec in topic_specs(topics, partitions=1, replication=1)}
    rows = "\n".join(_row(message, configs[message.topic_name]) for message in MESSAGES)
    return _README.format(
        type_header=TYPE_HEADER,
        rows=rows,
        tables=TABLES,
        views=VIEWS,
        migrations=MIGRATIONS,
        cluster=CLUSTER_MIGRATIONS,
    )


def _row(message: TopicMessage, config: dict[str, str]) -> str:
    headers = "<br>".join(f"`{name}`: {text}" for name, text in message.header_descriptions().items())
    kind = f"`{message.message_type}`" if message.message_type else "none (the original bytes)"
    topic_config = "<br>".join(f"`{name}={value}`" for name, value in config.items()) or "defaults"
    link = f"[json/{message.schema_file}](json/{message.schema_file})"
    cells = (f"`{message.topic_name}`", topic_config, message.key, headers or "none", kind, link)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"  # a | would end the cell


_README = """\
# schemas

The contracts of spendpipe's Kafka topics and ClickHouse tables, for consumers in any language.
Everything here is generated from the code by `make schemas` (`python -m dev.schemas`): do not
edit it by hand; a test fails while any file differs from what the code generates.

| Path | What it is |
| --- | --- |
| `json/<message type>.schema.json` | one JSON Schema (draft 2020-12) per message: the payload as it is on the wire |
| `asyncapi.yaml` | AsyncAPI 3.0: every topic, who sends and who receives, payloads and headers |
| `{tables}<table>.sql` | each ClickHouse table as it is after every migration (`SHOW CREATE TABLE`) |
| `{views}<view>.sql` | each view for analysts, as the migrations create it |
| `{migrations}` | the migrations the services apply at start, in order |
| `{cluster}` | the same on a cluster (`SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe`): `ON CLUSTER`, replicated tables |

## Kafka topics

| Topic | Topic config | Key | Headers | Message type | Payload schema |
| --- | --- | --- | --- | --- | --- |
{rows}

These are the default topic names; a deployment may rename them (`SPENDPIPE_TOPICS__EVENTS`,
`__EVENTS_DEAD_LETTER`, `__FLUSHES`, `__DECISIONS`, `__BUDGETS`, `__ALERTS`, `__SESSIONS`). Keys
and header values are UTF-8 strings; the payloads are UTF-8 JSON objects, except the dead letters.

Reading the payloads:

- **Versions.** Every payload carries `schema_version` (1), and its message type names the
  version (`spendpipe.spend_event.v1`). A consumer that meets a version it does not know should
  stop or set the message aside, not guess. Where a topic lists the `{type_header}` header, every
  message on it carries it (the budgets' tombstones too).
- **Money** (`cost`, `spend`, `cap`, `max_budget`, `soft_budget`...) is an exact decimal string
  in US dollars, such as `"0.000125"`, never a JSON number. Parse it into a decimal type (Java
  `BigDecimal`, Go `github.com/shopspring/decimal` or `math/big`), not a float. Every amount
  fits ClickHouse's `Decimal(38, 24)`.
- **Times** are RFC 3339 date-times; spendpipe writes them in UTC.
- **Nulls.** An optional field may be `null` or absent (some producers leave nulls out): read
  both the same. A payload has only the fields its schema lists (`additionalProperties: false`).
- **Compacted topics** (`cleanup.policy=compact`) hold state: read them from the beginning and
  keep the newest value per key. On `spend.budgets` and `spend.decisions` that is the highest
  `version` per key, not the last offset: an older record read late, or written again by a
  replay, never overrides a newer one. A budget is deleted by a record of its own
  (`"deleted": true`, versioned); a null value (a tombstone) deletes one only while the key has
  no versioned record (topics written before versions). A block lifts by itself at its
  `expires_at`.
- **Rules beyond the shape.** Some rules live in spendpipe's code, not in the schemas: a
  budget's `scope` must parse (`team:<id>`, `key:<SHA-256 hex>`, `global`...), its durations
  must be known (`15m`, `24h`, `7d`, `1mo`...), `budget_duration` needs `max_budget`, and so on.
  Write budgets with `spendpipe budgets set` / `apply` or `BudgetAdmin`, which check them all.
- **Dead letters.** `spend.events.dlq` holds the records of `spend.events` the aggregator could
  not count, with their own key, byte for byte up to 64 KiB of value and of key (a longer one is
  cut, and `spendpipe-truncated` names it), with the reason, where they were read and the
  value's size in the headers. One letter per record; a crash before the commit can repeat one,
  so deduplicate by the source coordinates.
- Messages sent by the aggregator and the enforcer also carry FastStream's `content-type` and
  `correlation_id` headers; they are not part of the contract.

## ClickHouse tables

`events` holds every counted event once; `spend_totals` the exact totals per window, scope and
model (read it with `sum()` and `GROUP BY`: rows of one key are summed by background merges;
rows with `window = 'watermark'` are the aggregator's bookkeeping, not spend);
`schema_migrations` the migrations applied. The comments in `{migrations}` say what each
column means. The DDL leaves out the database's name (`SPENDPIPE_CLICKHOUSE__DATABASE`,
`spendpipe` by default).

## ClickHouse views

Query these rather than the tables: they sum at read time and hide the bookkeeping rows, and
`spend` is exact (`Decimal(76, 24)`). `window` is `minute`, `hour`, `day`, `week` (from Sunday)
or `month`, and `window_start` its start in UTC; `scope_type` is `key` (the key's SHA-256),
`user`, `team`, `team_member` (`<team>/<user>`), `org`, `end_user`, `tag` (one row per distinct tag
of an event), `provider` or `global` (`scope_id` '').

- `spend_by_scope`: one row per window and scope, all models together: `window`, `window_start`,
  `scope_type`, `scope_id`, `spend`, `requests`, `failures`, `cache_hits`, `prompt_tokens`,
  `completion_tokens`, `total_tokens`.
- `spend_by_model`: the same per model (`model`: the model group the client asked for, else the
  model).
- `spend_by_tag`: per request tag and hour (UTC) of the call, from `events`: `tag`, `hour`,
  `spend`, `requests`, `failures`, `prompt_tokens`, `completion_tokens`, `total_tokens`. A call
  with two tags counts under each and one without under none, so tags do not add up to a total.
- `spend_by_session`: per agent session, from `events`: `agent_id`, `session_id`, `first_call`,
  `last_call`, `spend`, `requests`, `failures`, `total_tokens`.
- `top_spenders`: every scope in the window that contains now, ranked by spend within its
  window kind and scope type: `window`, `window_start`, `scope_type`, `rank` (1 spent most),
  `scope_id`, `spend`, `requests`.

```sql
SELECT scope_id AS team, spend FROM spend_by_scope
WHERE window = 'day' AND scope_type = 'team' AND window_start >= now() - INTERVAL 7 DAY
ORDER BY window_start, spend DESC;
SELECT scope_id, spend FROM top_spenders WHERE window = 'month' AND scope_type = 'key' AND rank <= 10;
```

Blocks and budget caps are not in ClickHouse: they live on `spend.decisions` and `spend.budgets`
(`spendpipe blocks list`, `spendpipe budgets list`), so there is no view of blocks history or of
budget utilisation yet. [docs/analysts.md](../docs/analysts.md) has more examples.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.schemas", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing the stale files")
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder to write (default: schemas/)")
    args = parser.parse_args(argv)
    files = contract_files() | fresh_table_files()
    if args.check:
        out_of_date = stale(args.root, files)
        for name in out_of_date:
            print(f"stale: {args.root / name}", file=sys.stderr)
        if out_of_date:
            print("run `make schemas` and commit the result", file=sys.stderr)
        return 1 if out_of_date else 0
    changed = write(args.root, files)
    print(f"{args.root}: {len(files)} files, {len(changed)} changed" + "".join(f"\n  {n}" for n in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
