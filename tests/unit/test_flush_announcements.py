"""A flush's announcement in pieces that each fit a Kafka record, whatever the scopes hold."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from spendpipe.contracts.flushes import ScopeRef, announcements

NOW = datetime(2026, 12, 4, tzinfo=UTC)
refs = st.builds(ScopeRef, type=st.sampled_from(["key", "tag", "end_user"]), id=st.text(max_size=3000))


@given(st.lists(refs, max_size=60), st.lists(st.text(max_size=500), max_size=20), st.integers(1, 5))
def test_every_scope_and_model_is_announced_once_in_pieces_under_the_bound(
    scopes: list[ScopeRef], models: list[str], kib: int
) -> None:
    piece_bytes = kib << 10
    pieces = announcements(
        flush_id="f",
        flushed_at=NOW,
        events=7,
        scopes=scopes,
        models=models,
        latest_occurred_at=NOW,
        piece_bytes=piece_bytes,
    )

    assert [ref for piece in pieces for ref in piece.scopes] == scopes
    assert [model for piece in pieces for model in piece.models] == models
    assert [piece.events for piece in pieces] == [7] + [0] * (len(pieces) - 1)
    assert {piece.flush_id for piece in pieces} == {"f"}
    for piece in pieces:
        listed = len(piece.model_dump_json(include={"scopes", "models"}).encode())
        assert listed <= piece_bytes + 64 or len(piece.scopes) + len(piece.models) == 1  # one item may be larger


def test_a_flush_with_few_scopes_is_one_announcement() -> None:
    scopes = [ScopeRef(type="key", id="a" * 64), ScopeRef(type="global", id="")]

    (only,) = announcements(
        flush_id="f", flushed_at=NOW, events=2, scopes=scopes, models=["m"], latest_occurred_at=None
    )

    assert only.scopes == tuple(scopes)
    assert only.models == ("m",)


def test_a_flush_that_changed_nothing_is_announced_once() -> None:
    (only,) = announcements(flush_id="f", flushed_at=NOW, events=0, scopes=[], models=[], latest_occurred_at=NOW)

    assert (only.scopes, only.models, only.latest_occurred_at) == ((), (), NOW)
