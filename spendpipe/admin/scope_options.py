"""`--scope` or `--key`: how a command names the scope it works on.

`--key sk-...` takes a raw API key and hashes it here, as LiteLLM's proxy hashes its keys
(`contracts.scopes.hash_api_key`), to the key scope `key:<SHA-256 hex>`: only that hash is
published, queried or printed. The raw key is not echoed in any error either.
"""

from typing import Annotated

import typer

from spendpipe.contracts.scopes import SHA256_HEX, Scope, key_scope

KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="a raw API key (sk-...), instead of --scope key:<hash>: hashed here, never sent or printed",
        show_default=False,
    ),
]


def scope_or_key(scope: str | None, key: str | None) -> Scope:
    """The scope `--scope` names, or the key scope of `--key`: exactly one of the two."""
    if scope is not None and key is not None:
        raise typer.BadParameter("give --scope or --key, not both", param_hint="--key")
    if key is not None:
        if not key.strip():
            raise typer.BadParameter("the key is empty", param_hint="--key")
        if SHA256_HEX.match(key):
            raise typer.BadParameter("that is a key's hash already: use --scope key:<hash>", param_hint="--key")
        return key_scope(key)
    if scope is None:
        raise typer.BadParameter("give --scope (or --key for a key's scope)", param_hint="--scope")
    try:
        return Scope.parse(scope)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--scope") from None
