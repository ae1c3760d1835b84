"""The `.env` the demo writes so that `spendpipe` commands in another shell reach it.

Every spendpipe process reads `.env` in its working directory (`platform.settings`), and so does
Docker Compose, for its own variables. A `.env` someone else wrote is never overwritten, and the
demo's own is removed when the demo stops: left behind, it would point later commands (and
compose) at a broker that is gone, and sign budgets with the demo's key.
"""

from pathlib import Path

from spendpipe.admin.errors import CliError

MARKER = "# written by `spendpipe demo`; removed when it stops. Variables set in the shell win over these."


def is_ours(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as text:
            return text.readline().rstrip("\n") == MARKER
    except FileNotFoundError:
        return False


def claim(path: Path) -> None:
    """Check that `path` is free for the demo's settings (absent, or a stale one of the demo's,
    which is removed now so that nothing started meanwhile reads it)."""
    if is_ours(path):
        path.unlink()
    elif path.exists():
        raise CliError(
            f"{path} exists and was not written by `spendpipe demo`: move it, or pass --env-file elsewhere",
            exit_code=2,
        )


def write(path: Path, values: dict[str, str]) -> str:
    """Write the settings (owner-only: it names the admin's signing key) and return the text."""
    lines = [MARKER]
    for name, value in values.items():
        if "'" in value or "\n" in value:
            raise CliError(f"{name}: a value with a quote or a line break cannot go in {path}: {value!r}")
        lines.append(f"{name}='{value}'")
    text = "\n".join(lines) + "\n"
    claim(path)
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")
    return text


def remove(path: Path, text: str) -> None:
    """Remove the demo's `.env`, unless someone changed it meanwhile."""
    try:
        if path.read_text(encoding="utf-8") == text:
            path.unlink()
    except FileNotFoundError:
        pass
