"""Ed25519 key material: PEM (`spendpipe keys generate`, `openssl genpkey -algorithm ed25519`) or
the raw 32-byte key in base64, from a file or a value; new key pairs; key ids
(`spendpipe.contracts.signatures.key_id`). Loaders report a problem per key, naming the
`SPENDPIPE_SIGNING__*` variable it came from, instead of raising."""

import base64
import binascii
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from spendpipe.contracts.signatures import key_id

PREFIX = "SPENDPIPE_SIGNING__"
K = TypeVar("K")


def generate_key_pair(private_path: Path, public_path: Path) -> str:
    """Write a new private key (PKCS#8 PEM, readable by its owner only) and its public key (PEM);
    return the key id. Refuses to overwrite an existing private key."""
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(private_pem)
    public_path.write_bytes(public_pem)
    return key_id(raw(private.public_key()))


def read_key_id(private_path: Path) -> str:
    """The key id of a private key file."""
    return key_id(raw(load_private_key(private_path.read_text(encoding="utf-8")).public_key()))


def raw_key_pair() -> tuple[str, str]:
    """A fresh (private, public) pair as raw base64 values, for settings given as values."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(seed).decode(), base64.b64encode(raw(private.public_key())).decode()


def raw(public: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of a public key, what its key id is the hash of."""
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_private_key(text: str) -> Ed25519PrivateKey:
    if text.lstrip().startswith("-----BEGIN"):
        loaded = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 key")
        return loaded
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text.strip(), validate=True))


def load_public_key(text: str) -> Ed25519PublicKey:
    if text.lstrip().startswith("-----BEGIN"):
        loaded = serialization.load_pem_public_key(text.encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return loaded
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))


def parse(loader: Callable[[str], K], text: str, where: str, problems: list[str]) -> K | None:
    """`loader(text)`, or None with a line in `problems` naming `where`."""
    try:
        return loader(text)
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm) as error:
        problems.append(f"{PREFIX}{where}: not an Ed25519 key in PEM or raw base64 ({type(error).__name__})")
        return None


def read(path: Path, where: str, problems: list[str]) -> str | None:
    """The file's text, or None with a line in `problems` naming `where`."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        problems.append(f"{PREFIX}{where}: cannot read {path} ({error.strerror or error})")
        return None


def public_key_files(directory: Path | None, problems: list[str]) -> list[tuple[str, Path, str]]:
    """(where, path, text) of every `*.pub` file in `directory`."""
    if directory is None:
        return []
    if not directory.is_dir():
        problems.append(f"{PREFIX}PUBLIC_KEYS_DIR: {directory} is not a directory")
        return []
    files = sorted(directory.glob("*.pub"))
    if not files:
        problems.append(f"{PREFIX}PUBLIC_KEYS_DIR: no *.pub file in {directory}")
    where = "PUBLIC_KEYS_DIR"
    return [(f"{where} {path.name}", path, text) for path in files if (text := read(path, where, problems)) is not None]
