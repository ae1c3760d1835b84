"""A flush's announcement in pieces that each fit a Kafka record, whatever the scopes hold."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from spendpipe.contracts.flushes import ScopeRef, ScopesFlushed, announcement_records

NOW = datetime(2026, 12, 4, tzinfo=UTC)
refs = st.builds(ScopeRef, type=st.sampled_from(["key", "tag", "end_user"]), id=st.text(max_size=3000))


def announcement(scopes: list[ScopeRef], models: list[str], events: int = 7) -> ScopesFlushed:
    return ScopesFlushed(
        flush_id="f", flushed_at=NOW, events=events, scopes=tuple(scopes), models=tuple(models), latest_occurred_at=NOW
    )


@given(st.lists(refs, max_size=60), st.lists(st.text(max_size=500), max_size=20), st.integers(1, 5))
def test_every_scope_and_model_is_announced_once_in_pieces_under_the_bound(
    scopes: list[ScopeRef], models: list[str], kib: int
) -> None:
    piece_bytes = kib << 10
    records = announcement_records(announcement(scopes, models), piece_bytes)
    pieces = [ScopesFlushed.model_validate_json(record) for record in records]

    assert [ref for piece in pieces for ref in piece.scopes] == scopes
    assert [model for piece in pieces for model in piece.models] == models
    assert [piece.events for piece in pieces] == [7] + [0] * (len(pieces) - 1)
    assert {(piece.flush_id, piece.latest_occurred_at) for piece in pieces} == {("f", NOW)}
    for record, piece in zip(records, pieces, strict=True):
        assert len(record) <= piece_bytes or len(piece.scopes) + len(piece.models) == 1  # one item may be larger


def test_a_flush_with_few_scopes_is_one_announcement() -> None:
    scopes = [ScopeRef(type="key", id="a" * 64), ScopeRef(type="global", id="")]

    (only,) = announcement_records(announcement(scopes, ["m"], events=2))

    assert ScopesFlushed.model_validate_json(only) == announcement(scopes, ["m"], events=2)


def test_a_flush_that_changed_nothing_is_announced_once() -> None:
    (only,) = announcement_records(announcement([], [], events=0))

    assert ScopesFlushed.model_validate_json(only) == announcement([], [], events=0)
