"""The one rule for attribution labels (spendpipe/gateway/labels.py): whatever a client puts in an
attribution field becomes a label the SpendEvent contract accepts, the same every time, and
different customers stay apart."""

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from spendpipe.contracts.events import SpendEvent, decode_event
from spendpipe.contracts.scopes import MAX_TAGS
from spendpipe.gateway.labels import MAX_LABEL, PREFIX, label_of, model_label, tags_of

LABEL_FIELDS = (
    "key_alias",
    "user_id",
    "team_id",
    "org_id",
    "end_user",
    "model_group",
    "provider",
    "call_type",
    "error_class",
    "agent_id",
    "session_id",
)

any_text = st.text(st.characters(exclude_categories=()))  # lone surrogates, NUL, controls included
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
hostile = (
    json_like
    | st.text(min_size=MAX_LABEL - 2, max_size=3 * MAX_LABEL)
    | st.sampled_from(["[/]", "[bold]x[/bold]", "\x00", "a\nb", "\x1b[31mred", "\ud800", " ", "\u2028"])
    | st.binary()
    | st.builds(object)
    | st.tuples(any_text, st.integers())
)


def event_with(**fields: Any) -> SpendEvent:
    required: dict[str, Any] = {
        "event_id": "00000000-0000-4000-8000-000000000001",
        "occurred_at": datetime(2026, 12, 1, tzinfo=UTC),
        "model": "gpt-4o",
        "cost": Decimal("0.01"),
        "gateway_id": "gw",
    }
    return SpendEvent(**{**required, **fields})


@given(value=hostile)
def test_any_value_is_a_label_every_label_field_accepts(value: object) -> None:
    label = label_of(value)

    event = event_with(**dict.fromkeys(LABEL_FIELDS, label), request_tags=tags_of(value))

    assert label is None or 0 < len(label) <= MAX_LABEL
    assert decode_event(event.to_json()) == event  # valid UTF-8 on the wire, and back


@given(value=hostile)
def test_the_same_value_always_gives_the_same_label(value: object) -> None:
    label = label_of(value)

    assert label_of(copy.deepcopy(value)) == label
    assert label_of(label) == label  # a label is its own label: normalising twice changes nothing


@given(
    prefix=st.text(st.characters(categories=("L", "N")), min_size=PREFIX, max_size=2 * MAX_LABEL),
    first=st.text(st.characters(categories=("L", "N")), min_size=1),
    second=st.text(st.characters(categories=("L", "N")), min_size=1),
)
def test_long_values_sharing_a_prefix_stay_apart(prefix: str, first: str, second: str) -> None:
    if first == second:
        second += "x"

    one, other = label_of(prefix + first), label_of(prefix + second)

    assert one != other


@given(value=json_like)
def test_the_same_json_object_is_one_label_however_its_keys_are_ordered(value: object) -> None:
    as_dict = {"b": value, "a": 1}

    assert label_of(as_dict) == label_of({"a": 1, "b": value})


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("  acme ", "acme"),
        ("[bold]x[/bold]", "[bold]x[/bold]"),
        ("[/]", "[/]"),
        (7, "7"),
        (1.5, "1.5"),
        (True, "true"),
        ({"b": [1, 2], "a": "x"}, '{"a":"x","b":[1,2]}'),
        (["a", None], '["a",null]'),
        ("a\x00b", "a\\x00b"),
        ("x\ny", "x\\ny"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("bad\ud800", "bad\\ud800"),
        ("\u202eevil", "\\u202eevil"),
        ("family \U0001f468\u200d\U0001f469", "family \U0001f468\u200d\U0001f469"),
        (b"raw", "<invalid:bytes>"),
        ({1: "a", "b": 2}, "<invalid:dict>"),
        ({"a": b"x"}, "<invalid:dict>"),
    ],
)
def test_the_documented_examples(value: object, label: str | None) -> None:
    assert label_of(value) == label


def test_a_number_python_cannot_print_is_a_marker() -> None:
    assert label_of(10**5000) == "<invalid:int>"


def test_a_long_value_is_a_prefix_and_a_digest_of_the_whole() -> None:
    customer = "customer-" + "x" * 400

    label = label_of(customer)

    assert label is not None
    assert label.startswith(customer[:PREFIX] + "…#sha256:")
    assert len(label) == PREFIX + len("…#sha256:") + 16
    assert label == label_of(customer)


def test_the_cap_is_the_contracts() -> None:
    # MAX_LABEL is contracts.events.Label's max_length: a label of it fits, one longer does not
    for field in LABEL_FIELDS:
        assert getattr(event_with(**{field: "x" * MAX_LABEL}), field) == "x" * MAX_LABEL
        with pytest.raises(ValidationError):
            event_with(**{field: "x" * (MAX_LABEL + 1)})
    assert event_with(model="x" * MAX_LABEL).model == "x" * MAX_LABEL
    with pytest.raises(ValidationError):
        event_with(model="x" * (MAX_LABEL + 1))


def test_the_model_is_never_empty() -> None:
    assert [model_label(v) for v in (None, "", " ", "gpt-4o", {"m": 1})] == [
        "unknown",
        "unknown",
        "unknown",
        "gpt-4o",
        '{"m":1}',
    ]


def test_tags_are_bounded_in_number_and_length() -> None:
    tags = tags_of([f"tag-{n}-" + "y" * 300 for n in range(100)] + [None, ""])

    assert len(tags) == MAX_TAGS
    assert tags[-1] == f"<+{100 - MAX_TAGS + 1} more>"
    assert all(0 < len(tag) <= MAX_LABEL for tag in tags)
    assert tags_of("one") == ("one",)
    assert tags_of(None) == ()
    assert tags_of(["a", {"k": 1}, 3]) == ("a", '{"k":1}', "3")


def test_a_tag_given_twice_is_kept_once_and_the_marker_counts_distinct_tags() -> None:
    assert tags_of(["b", "a", " b ", "b", 7, "7"]) == ("b", "a", "7")
    tags = tags_of([f"t{n % 40}" for n in range(400)])
    assert tags[:-1] == tuple(f"t{n}" for n in range(MAX_TAGS - 1))
    assert tags[-1] == f"<+{40 - MAX_TAGS + 1} more>"
