"""`spendpipe keys generate`: Ed25519 key pairs for the writers of decisions and budgets.

The private key (`<name>.key`) goes to that writer only (the enforcer, the machine that runs
`spendpipe budgets`, a gateway that publishes its keys' budgets); the public key (`<name>.pub`) to
every reader: gateways, the enforcer and the CLI point `SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR` at a
directory of them. The name's first word is the writer's role (`enforcer`, `admin`, `gateway`;
`contracts/signatures.py` says what each may sign); a name without one makes a key readers accept
for everything, which the command says. An existing key is kept, so the command can run at every
start (compose's one-shot `keys` job does).
"""

from pathlib import Path
from typing import Annotated

import typer

from spendpipe.admin.render import console, message
from spendpipe.contracts.signatures import ROLES, role_of
from spendpipe.platform.signing import generate_key_pair, read_key_id

keys_app = typer.Typer(help="Signing keys for decisions and budgets.", no_args_is_help=True)
out = console()


@keys_app.command("generate")
def keys_generate(
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False, help="directory for the <name>.key files")],
    name: Annotated[
        list[str] | None,
        typer.Option(help="a writer, named for its role: enforcer, admin, gateway, gateway-eu1 ... (repeatable)"),
    ] = None,
    public_out: Annotated[
        Path | None, typer.Option(file_okay=False, help="directory for the <name>.pub files (default: --out)")
    ] = None,
) -> None:
    """Write a key pair per writer name; an existing <name>.key is kept, never overwritten."""
    for writer in name or ["enforcer"]:
        private, public = out_dir / f"{writer}.key", (public_out or out_dir) / f"{writer}.pub"
        if private.exists():
            out.print(message("kept ", str(private), f" (key {read_key_id(private)})"))
            continue
        key_id = generate_key_pair(private, public)
        out.print(message(f"key {key_id}: private ", str(private), ", public ", str(public)))
        if role_of(writer) is None:
            out.print(
                message(
                    "note: ",
                    writer,
                    f" names no writer role ({', '.join(ROLES)}): readers accept its key for every message type",
                )
            )
