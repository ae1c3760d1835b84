"""Ed25519 signatures on the records of `spend.decisions` and `spend.budgets` (the signed bytes
and headers: `spendpipe.contracts.signatures`).

Writers (the enforcer for decisions; `spendpipe budgets`, `BudgetAdmin` and `BudgetManager` for
budgets) hold one private key; readers (gateways, the enforcer, the CLI's listings) hold only
public keys, several at once so a writer key can be rotated: add the new public key everywhere,
switch the writer, drop the old key once nothing it signed is still needed. A reader drops a
record that is unsigned, signed by a key it does not hold, or whose signature does not match,
before it is parsed: a forged decision never reaches `LatestDecisions`, whatever its version,
and a forged tombstone deletes nothing. Each drop is counted (`topic`, `reason`) and logged once
per writer key id and reason.

`required=False` turns checking off (every record is taken, as before signing existed); writers
still sign when given a key. It is logged as a warning by every reader that starts.

Key material is PEM (`spendpipe keys generate`, or `openssl genpkey -algorithm ed25519`) or the
raw 32-byte key in base64, from a file or a value.
"""

import base64
import binascii
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from spendpipe.contracts.signatures import KEY_ID_HEADER, SIGNATURE_HEADER, key_id, signed_bytes
from spendpipe.contracts.topics import TYPE_HEADER
from spendpipe.platform.compacted import TopicRecord

log = logging.getLogger(__name__)

PREFIX = "SPENDPIPE_SIGNING__"
Headers = list[tuple[str, bytes]]
K = TypeVar("K")


class SigningKeyError(ValueError):
    """Key settings that name a file that does not read or a key that does not parse."""


@dataclass(frozen=True)
class _Keys:
    private: Ed25519PrivateKey | None
    public: dict[str, Ed25519PublicKey]


class SigningSettings(BaseModel):
    """`SPENDPIPE_SIGNING__*`: the writer key (enforcer, budget writers) and the accepted public
    keys (every reader). Validation checks that what a service needs is named; the files are read
    by `--validate` (preflight) and at start-up (`signer()`, `verifier()`), with the same checks."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    required: bool = True
    """false: records are taken without checking their signatures (see docs/operations.md)."""
    private_key: SecretStr | None = None
    """This writer's private key (PEM, or raw base64), e.g. from a secret store."""
    private_key_file: Path | None = None
    """Or a file holding it (`spendpipe keys generate` writes `<name>.key`)."""
    public_keys: list[str] = Field(default_factory=list)
    """Accepted writer public keys (PEM, or raw base64), a JSON list."""
    public_keys_dir: Path | None = None
    """Or a directory: every `*.pub` file in it is an accepted public key."""

    _keys: _Keys | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_private_key(self) -> "SigningSettings":
        if self.private_key is not None and self.private_key_file is not None:
            raise ValueError("signing: set private_key or private_key_file, not both")
        return self

    def problems(self, *, writes: bool, reads: bool) -> list[str]:
        """What a service that signs (`writes`) and/or verifies (`reads`) lacks in its settings,
        one line each; no file is read."""
        if not self.required:
            return []
        lacking = []
        if writes and self.private_key is None and self.private_key_file is None:
            lacking.append(
                "SPENDPIPE_SIGNING__PRIVATE_KEY_FILE or SPENDPIPE_SIGNING__PRIVATE_KEY: this service signs "
                "what it publishes (spendpipe keys generate), or set SPENDPIPE_SIGNING__REQUIRED=false"
            )
        if reads and not self.public_keys and self.public_keys_dir is None:
            lacking.append(
                "SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR or SPENDPIPE_SIGNING__PUBLIC_KEYS: no accepted writer "
                "public key, so every decision and budget would be dropped (or set SPENDPIPE_SIGNING__REQUIRED=false)"
            )
        return lacking

    def require(self, *, writes: bool, reads: bool) -> None:
        """A service's settings validator: raise `ValueError` with `problems()`, one per line."""
        lacking = self.problems(writes=writes, reads=reads)
        if lacking:
            raise ValueError("\n".join(lacking))

    def key_problems(self, *, writes: bool, reads: bool) -> list[str]:
        """`problems()`, then whether the keys named load (reading the files), and whether a
        writer that also reads accepts its own key (its readers must hold it too)."""
        lacking = self.problems(writes=writes, reads=reads)
        if lacking or not (writes or reads):
            return lacking
        keys, broken = self._load()
        if broken:
            return broken
        if writes and reads and self.required and keys.private is not None:
            own = key_id(_raw(keys.private.public_key()))
            if own not in keys.public:
                lacking.append(f"SPENDPIPE_SIGNING__PUBLIC_KEYS(_DIR): does not hold this writer's own key {own}")
        return lacking

    def signer(self) -> "RecordSigner":
        """Raises `SigningKeyError` if the key does not load."""
        return RecordSigner(self._loaded().private)

    def verifier(self, *, message_type: str, topic: str, rejected: Counter) -> "RecordVerifier":
        """Raises `SigningKeyError` if a key does not load."""
        if not self.required:
            log.warning(
                "SIGNATURES NOT CHECKED on %s (SPENDPIPE_SIGNING__REQUIRED=false): anyone who can write "
                "the topic can lift any block and raise any cap",
                topic,
            )
            return RecordVerifier(
                public_keys={}, required=False, message_type=message_type, topic=topic, rejected=rejected
            )
        return RecordVerifier(
            public_keys=self._loaded().public, required=True, message_type=message_type, topic=topic, rejected=rejected
        )

    def _loaded(self) -> _Keys:
        keys, problems = self._load()
        if problems:
            raise SigningKeyError("invalid signing keys:\n  " + "\n  ".join(problems))
        return keys

    def _load(self) -> tuple[_Keys, list[str]]:
        if self._keys is not None:
            return self._keys, []
        problems: list[str] = []
        private = None
        if self.private_key is not None:
            private = _parse(_private_key, self.private_key.get_secret_value(), "PRIVATE_KEY", problems)
        elif self.private_key_file is not None:
            text = _read(self.private_key_file, "PRIVATE_KEY_FILE", problems)
            private = _parse(_private_key, text, "PRIVATE_KEY_FILE", problems) if text is not None else None
        public: dict[str, Ed25519PublicKey] = {}
        sources = [(f"PUBLIC_KEYS[{n}]", text) for n, text in enumerate(self.public_keys)]
        for where, text in sources + _public_key_files(self.public_keys_dir, problems):
            key = _parse(_public_key, text, where, problems)
            if key is not None:
                public[key_id(_raw(key))] = key
        keys = _Keys(private, public)
        if not problems:
            self._keys = keys
        return keys, problems


class RecordSigner:
    """Signs records with one private key; without one (signing not required) adds only the type."""

    def __init__(self, private_key: Ed25519PrivateKey | None) -> None:
        self._private = private_key
        self.key_id = key_id(_raw(private_key.public_key())) if private_key else None

    def headers(self, message_type: str, key: bytes, value: bytes | None) -> Headers:
        """The headers of one record: its type, and its signature when this writer has a key."""
        headers = [(TYPE_HEADER, message_type.encode())]
        if self._private is not None and self.key_id is not None:
            signature = self._private.sign(signed_bytes(message_type, key, value))
            headers += [(KEY_ID_HEADER, self.key_id.encode()), (SIGNATURE_HEADER, base64.b64encode(signature))]
        return headers


class RecordVerifier:
    """Says whether a record read from one topic was signed by an accepted writer key. Not
    locked: one reader thread calls it."""

    def __init__(
        self,
        *,
        public_keys: Mapping[str, Ed25519PublicKey],
        required: bool,
        message_type: str,
        topic: str,
        rejected: Counter,
    ) -> None:
        self._public = dict(public_keys)
        self._required = required
        self._message_type = message_type
        self._topic = topic
        self._rejected = rejected
        self._logged: set[tuple[str, str]] = set()

    def accepts(self, record: TopicRecord) -> bool:
        """True if the record may be applied; otherwise it is counted and (once) logged."""
        if not self._required:
            return True
        headers = dict(record.headers or ())
        writer = headers.get(KEY_ID_HEADER, b"").decode(errors="replace")
        signature = headers.get(SIGNATURE_HEADER)
        if signature is None:
            return self._reject("unsigned", writer)
        public = self._public.get(writer)
        if public is None:
            return self._reject("unknown_key", writer)
        try:
            public.verify(
                base64.b64decode(signature, validate=True),
                signed_bytes(self._message_type, record.key or b"", record.value),
            )
        except (InvalidSignature, binascii.Error, ValueError):
            return self._reject("bad_signature", writer)
        return True

    def _reject(self, reason: str, writer: str) -> bool:
        self._rejected.labels(topic=self._topic, reason=reason).inc()
        if (reason, writer) not in self._logged:
            self._logged.add((reason, writer))
            log.error(
                "dropping %s records on %s from writer key %s (logged once; counted in records_rejected)",
                reason.replace("_", " "),
                self._topic,
                writer or "(none)",
            )
        return False


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
    return key_id(_raw(private.public_key()))


def read_key_id(private_path: Path) -> str:
    """The key id of a private key file."""
    return key_id(_raw(_private_key(private_path.read_text(encoding="utf-8")).public_key()))


def raw_key_pair() -> tuple[str, str]:
    """A fresh (private, public) pair as raw base64 values, for settings given as values."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(seed).decode(), base64.b64encode(_raw(private.public_key())).decode()


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _private_key(text: str) -> Ed25519PrivateKey:
    if text.lstrip().startswith("-----BEGIN"):
        loaded = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 key")
        return loaded
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text.strip(), validate=True))


def _public_key(text: str) -> Ed25519PublicKey:
    if text.lstrip().startswith("-----BEGIN"):
        loaded = serialization.load_pem_public_key(text.encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return loaded
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))


def _parse(parse: Callable[[str], K], text: str, where: str, problems: list[str]) -> K | None:
    try:
        return parse(text)
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm) as error:
        problems.append(f"{PREFIX}{where}: not an Ed25519 key in PEM or raw base64 ({type(error).__name__})")
        return None


def _read(path: Path, where: str, problems: list[str]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        problems.append(f"{PREFIX}{where}: cannot read {path} ({error.strerror or error})")
        return None


def _public_key_files(directory: Path | None, problems: list[str]) -> list[tuple[str, str]]:
    if directory is None:
        return []
    if not directory.is_dir():
        problems.append(f"{PREFIX}PUBLIC_KEYS_DIR: {directory} is not a directory")
        return []
    files = sorted(directory.glob("*.pub"))
    if not files:
        problems.append(f"{PREFIX}PUBLIC_KEYS_DIR: no *.pub file in {directory}")
    where = "PUBLIC_KEYS_DIR"
    return [(f"{where} {path.name}", text) for path in files if (text := _read(path, where, problems)) is not None]


def uncollected_rejections() -> Counter:
    """A rejection counter no one scrapes, for one-shot readers (the CLI, the Python API): the
    log line is what they show."""
    return Counter(
        "spendpipe_records_rejected", "Records dropped by signature", ["topic", "reason"], registry=CollectorRegistry()
    )
