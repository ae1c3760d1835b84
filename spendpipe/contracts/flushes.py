"""`ScopesFlushed`: the aggregator's announcement, once ClickHouse holds a flush, of which
scopes' totals changed. The enforcer re-evaluates exactly those scopes.

A flush whose scopes and models would not fit in one Kafka record (a record holds at most
1 MiB, and whoever writes `spend.events` chooses how long tags and labels are and how many) is
announced in pieces (`announcements`), each under `PIECE_BYTES`, with the same `flush_id`; its
`events` are counted in the first piece.
"""

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Literal

import orjson
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
"""Most bytes of scopes and models in one announcement: half the broker's default record limit,
leaving room for the rest of the record and its headers."""
_REF_BYTES = len('{"type":"","id":""},')


def announcements(
    *,
    flush_id: str,
    flushed_at: datetime,
    events: int,
    scopes: Iterable[ScopeRef],
    models: Iterable[str],
    latest_occurred_at: datetime | None,
    piece_bytes: int = PIECE_BYTES,
) -> list[ScopesFlushed]:
    """The announcement of a flush, in as many pieces as its scopes and models need (one, nearly
    always)."""
    pieces = [
        ScopesFlushed(
            flush_id=flush_id,
            flushed_at=flushed_at,
            events=events if n == 0 else 0,
            scopes=tuple(piece_scopes),
            models=tuple(piece_models),
            latest_occurred_at=latest_occurred_at,
        )
        for n, (piece_scopes, piece_models) in enumerate(_pieces(scopes, models, piece_bytes))
    ]
    return pieces


def _pieces(
    scopes: Iterable[ScopeRef], models: Iterable[str], piece_bytes: int
) -> Iterator[tuple[list[ScopeRef], list[str]]]:
    piece_scopes: list[ScopeRef] = []
    piece_models: list[str] = []
    size = 0
    items: list[tuple[ScopeRef | str, int]] = [
        (ref, _REF_BYTES + len(orjson.dumps(ref.type)) + len(orjson.dumps(ref.id))) for ref in scopes
    ]
    items += [(model, len(orjson.dumps(model)) + 1) for model in models]
    for item, item_bytes in items:
        if size + item_bytes > piece_bytes and (piece_scopes or piece_models):
            yield piece_scopes, piece_models
            piece_scopes, piece_models, size = [], [], 0
        if isinstance(item, ScopeRef):
            piece_scopes.append(item)
        else:
            piece_models.append(item)
        size += item_bytes
    if piece_scopes or piece_models or not items:  # a flush that changed nothing is announced too
        yield piece_scopes, piece_models
