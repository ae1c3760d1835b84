"""`ScopesFlushed`: the aggregator's announcement, once ClickHouse holds a flush, of which
scopes' totals changed. The enforcer re-evaluates exactly those scopes.

A flush whose scopes and models would not fit in one Kafka record (a record holds at most
1 MiB, and whoever writes `spend.events` chooses how long tags and labels are and how many) is
announced in pieces (`announcement_records`), each under `PIECE_BYTES`, with the same
`flush_id`; its `events` are counted in the first piece.
"""

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

MESSAGE_TYPE = "spendpipe.scopes_flushed.v1"


class ScopeRef(BaseModel):
    """One scope: its type (`key`, `user`, `team`, `team_member`, `org`, `end_user`, `tag`,
    `provider`, `global`) and its id (empty for `global`)."""

    model_config = ConfigDict(frozen=True)

    type: str
    id: str


class ScopesFlushed(BaseModel):
    """Which scopes' totals changed in one flush, announced once ClickHouse holds it. The enforcer
    re-evaluates exactly these scopes. Best effort: the totals are in ClickHouse either way."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    flush_id: str
    flushed_at: AwareDatetime
    events: int
    """Events newly counted by this flush."""
    scopes: tuple[ScopeRef, ...]
    models: tuple[str, ...]
    """Models whose per-model totals changed."""
    latest_occurred_at: datetime | None = None


PIECE_BYTES = 512 << 10
"""Most bytes of one announcement's record value: half the broker's default record limit,
leaving room for the rest of the record and its headers."""


def announcement_records(announcement: ScopesFlushed, piece_bytes: int = PIECE_BYTES) -> list[bytes]:
    """`announcement` as record values of at most `piece_bytes` each: itself, nearly always; else
    its scopes and models in pieces, each piece split again while it is too large (a lone scope
    or model too large for one is sent as it is), `events` counted in the first."""
    record = announcement.model_dump_json().encode()
    items: list[ScopeRef | str] = [*announcement.scopes, *announcement.models]
    if len(record) <= piece_bytes or len(items) <= 1:
        return [record]
    parts = -(-len(record) // piece_bytes) + 1  # one more than the bytes need: each piece has its own fields
    size = -(-len(items) // parts)
    records: list[bytes] = []
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        piece = announcement.model_copy(
            update={
                "events": announcement.events if start == 0 else 0,
                "scopes": tuple(item for item in chunk if isinstance(item, ScopeRef)),
                "models": tuple(item for item in chunk if isinstance(item, str)),
            }
        )
        records += announcement_records(piece, piece_bytes)
    return records
