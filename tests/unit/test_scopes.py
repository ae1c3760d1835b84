"""Scopes: parsing what an operator types, and which scopes an event counts towards."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendpipe.contracts.scopes import MAX_TAGS, OVERFLOW_TAG, Scope, ScopeType, attributed_tags, scopes_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("team:eng", Scope(ScopeType.TEAM, "eng")),
        ("team_member:eng/alice", Scope(ScopeType.TEAM_MEMBER, "eng/alice")),
        ("key:" + "a" * 64, Scope(ScopeType.KEY, "a" * 64)),
        ("end_user:customer:42", Scope(ScopeType.END_USER, "customer:42")),
        ("global", Scope(ScopeType.GLOBAL, "")),
    ],
)
def test_parse_accepts(text: str, expected: Scope) -> None:
    assert Scope.parse(text) == expected


def test_parse_rejects_unknown_type_and_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown scope type 'tem'") as raised:
        Scope.parse("tem:eng")

    for known in ("key", "user", "team", "team_member", "org", "end_user", "global"):
        assert known in str(raised.value)


@pytest.mark.parametrize("text", ["team", "team:", "user:"])
def test_parse_rejects_missing_id_with_an_example(text: str) -> None:
    kind = text.rstrip(":")
    with pytest.raises(ValueError, match=rf"needs an id, as in {kind}:<id>"):
        Scope.parse(text)


def test_str_of_global_has_no_id() -> None:
    assert str(Scope(ScopeType.GLOBAL, "")) == "global"
    assert str(Scope(ScopeType.TEAM, "eng")) == "team:eng"


@given(
    st.sampled_from([t for t in ScopeType if t not in (ScopeType.GLOBAL, ScopeType.KEY)]),
    st.text(min_size=1, max_size=40),
)
def test_str_and_parse_round_trip(scope_type: ScopeType, scope_id: str) -> None:
    scope = Scope(scope_type, scope_id)

    assert Scope.parse(str(scope)) == scope


@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_key_scopes_round_trip_with_a_key_hash(key_hash: str) -> None:
    assert Scope.parse(f"key:{key_hash}") == Scope(ScopeType.KEY, key_hash)


@pytest.mark.parametrize("raw", ["sk-1234567890", "abc", "A" * 64])
def test_a_key_scope_refuses_anything_but_a_key_hash(raw: str) -> None:
    with pytest.raises(ValueError, match="SHA-256 hex"):
        Scope.parse(f"key:{raw}")


def test_scopes_with_every_attribute() -> None:
    scopes = scopes_of("h" * 64, "alice", "eng", "acme", "customer-7")

    assert [str(s) for s in scopes] == [
        "global",
        "key:" + "h" * 64,
        "user:alice",
        "team:eng",
        "team_member:eng/alice",
        "org:acme",
        "end_user:customer-7",
    ]


def test_no_attributes_count_only_towards_global() -> None:
    assert scopes_of(None, None, None, None, None) == (Scope(ScopeType.GLOBAL, ""),)


def test_empty_strings_count_as_absent() -> None:
    assert scopes_of("", "", "", "", "") == (Scope(ScopeType.GLOBAL, ""),)


@pytest.mark.parametrize(("user", "team"), [("alice", None), (None, "eng")])
def test_team_member_needs_both_team_and_user(user: str | None, team: str | None) -> None:
    types = {s.type for s in scopes_of(None, user, team, None, None)}

    assert ScopeType.TEAM_MEMBER not in types
    assert (ScopeType.USER in types) == (user is not None)
    assert (ScopeType.TEAM in types) == (team is not None)


def test_an_event_counts_once_towards_each_distinct_tag_and_its_provider() -> None:
    scopes = scopes_of(None, None, None, None, None, tags=["b", "a", "b", "", "<+7 more>", "a"], provider="openai")

    assert [str(s) for s in scopes] == ["global", "tag:b", "tag:a", "provider:openai"]


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ((), ()),
        (("", ""), ()),
        (("<+3 more>",), ()),
        (("<+x more>", "<+3 more> ", "< +3 more>"), ("<+x more>", "<+3 more> ", "< +3 more>")),  # not the marker
        (("a:b|c", "tag:x", "é\u202e"), ("a:b|c", "tag:x", "é\u202e")),  # kept as given: labels are normalised earlier
        (tuple(f"t{n % 50}" for n in range(200)), tuple(f"t{n}" for n in range(MAX_TAGS))),
    ],
)
def test_attributed_tags(tags: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert attributed_tags(tags) == expected


@given(st.lists(st.text(max_size=6), max_size=80))
def test_attributed_tags_are_distinct_bounded_and_in_first_order(tags: list[str]) -> None:
    kept = attributed_tags(tags)

    assert len(kept) == len(set(kept)) <= MAX_TAGS
    assert "" not in kept
    assert list(kept) == [t for t in dict.fromkeys(tags) if t and not OVERFLOW_TAG.match(t)][:MAX_TAGS]
    assert attributed_tags(kept) == kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tag:product:chat-bot", Scope(ScopeType.TAG, "product:chat-bot")),
        ("provider:openai", Scope(ScopeType.PROVIDER, "openai")),
    ],
)
def test_tag_and_provider_scopes_parse(text: str, expected: Scope) -> None:
    assert Scope.parse(text) == expected
    assert str(expected) == text
