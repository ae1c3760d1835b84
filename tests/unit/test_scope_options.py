"""`--key sk-...`: hashed here, as LiteLLM's proxy hashes a virtual key, to the key scope; the
raw key appears in no scope and no error."""

import pytest
import typer
from litellm.proxy._types import hash_token

from spendpipe.admin.scope_options import scope_or_key
from spendpipe.contracts.scopes import Scope, ScopeType, hash_api_key

RAW_KEY = "sk-live-Zt9[bold]x\u00e9"


def test_a_raw_key_becomes_the_key_scope_litellm_would_name() -> None:
    scope = scope_or_key(None, RAW_KEY)

    assert scope == Scope(ScopeType.KEY, hash_token(RAW_KEY)) == Scope.parse(f"key:{hash_api_key(RAW_KEY)}")
    assert RAW_KEY not in str(scope)


def test_a_scope_is_parsed_as_written() -> None:
    assert scope_or_key("team:eng", None) == Scope(ScopeType.TEAM, "eng")


@pytest.mark.parametrize(
    ("scope", "key", "problem"),
    [
        ("team:eng", RAW_KEY, "give --scope or --key, not both"),
        (None, None, "give --scope (or --key for a key's scope)"),
        (None, "  ", "the key is empty"),
        (None, hash_api_key(RAW_KEY), "that is a key's hash already: use --scope key:<hash>"),
        (f"key:{RAW_KEY}", None, "a key scope takes the key's SHA-256 hex"),
    ],
)
def test_a_wrong_pair_is_refused_without_echoing_the_key(scope: str | None, key: str | None, problem: str) -> None:
    with pytest.raises(typer.BadParameter) as refused:
        scope_or_key(scope, key)

    assert problem in refused.value.format_message()
    assert RAW_KEY not in refused.value.format_message()
