"""`SigningSettings` (`SPENDPIPE_SIGNING__*`): a writer's private key, the accepted public keys,
whether signatures are required; the signer and the verifiers built from them."""

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from spendpipe.contracts.signatures import key_id
from spendpipe.platform.signing.keys import load_private_key, load_public_key, parse, public_key_files, raw, read
from spendpipe.platform.signing.records import RecordSigner, RecordVerifier

log = logging.getLogger(__name__)


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
        """A service's settings validator: raise with `problems()`, each on a line of its own in
        the settings error (`describe_errors` indents the list by two spaces)."""
        lacking = self.problems(writes=writes, reads=reads)
        if lacking:
            raise PydanticCustomError("signing_keys", "\n  ".join(lacking).replace("{", "{{").replace("}", "}}"))

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
            own = key_id(raw(keys.private.public_key()))
            if own not in keys.public:
                lacking.append(f"SPENDPIPE_SIGNING__PUBLIC_KEYS(_DIR): does not hold this writer's own key {own}")
        return lacking

    def signer(self) -> RecordSigner:
        """Raises `SigningKeyError` if the key does not load."""
        return RecordSigner(self._loaded().private)

    def verifier(self, *, message_type: str, topic: str, rejected: Counter) -> RecordVerifier:
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
            private = parse(load_private_key, self.private_key.get_secret_value(), "PRIVATE_KEY", problems)
        elif self.private_key_file is not None:
            text = read(self.private_key_file, "PRIVATE_KEY_FILE", problems)
            private = parse(load_private_key, text, "PRIVATE_KEY_FILE", problems) if text is not None else None
        public: dict[str, Ed25519PublicKey] = {}
        sources = [(f"PUBLIC_KEYS[{n}]", text) for n, text in enumerate(self.public_keys)]
        for where, text in sources + public_key_files(self.public_keys_dir, problems):
            key = parse(load_public_key, text, where, problems)
            if key is not None:
                public[key_id(raw(key))] = key
        keys = _Keys(private, public)
        if not problems:
            self._keys = keys
        return keys, problems
