"""`SigningSettings` (`SPENDPIPE_SIGNING__*`): a writer's private key, the accepted public keys,
whether signatures are required; the signer and the verifiers built from them."""

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from spendpipe.contracts.signatures import ROLES, Role, key_id, may_sign, role_of
from spendpipe.platform.signing.keys import load_private_key, load_public_key, parse, public_key_files, raw, read
from spendpipe.platform.signing.records import RecordSigner, RecordVerifier

log = logging.getLogger(__name__)


class SigningKeyError(ValueError):
    """Key settings that name a file that does not read or a key that does not parse."""


@dataclass(frozen=True)
class _Keys:
    private: Ed25519PrivateKey | None
    public: dict[str, Ed25519PublicKey]
    roles: dict[str, frozenset[Role] | None]
    """Per key id, the roles it is accepted for; None: unscoped, every message type."""

    def accepted_for(self, message_type: str) -> dict[str, Ed25519PublicKey]:
        return {key: public for key, public in self.public.items() if may_sign(message_type, self.roles[key])}

    def add(self, public: Ed25519PublicKey, role: Role | None) -> None:
        """Accept `public` for `role` too (None: for everything)."""
        key = key_id(raw(public))
        self.public[key] = public
        if key in self.roles and self.roles[key] is None:
            return
        self.roles[key] = None if role is None else (self.roles.get(key) or frozenset()) | {role}


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
    public_keys: list[str] | dict[Role, list[str]] = Field(default_factory=list)
    """Accepted writer public keys (PEM, or raw base64): a JSON object of lists by writer role
    (`{"enforcer": [...], "admin": [...], "gateway": [...]}`), or a JSON list of keys accepted
    for every message type."""
    public_keys_dir: Path | None = None
    """Or a directory: every `*.pub` file in it is an accepted public key, for the role its name
    starts with (`enforcer.pub`, `gateway-eu1.pub`), or for every message type if it names none."""

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
        keys = self._loaded()
        accepted = keys.accepted_for(message_type)
        return RecordVerifier(
            public_keys=accepted,
            not_allowed=set(keys.public) - set(accepted),
            required=True,
            message_type=message_type,
            topic=topic,
            rejected=rejected,
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
        keys = _Keys(private, {}, {})
        for where, role, text in self._public_key_sources(problems):
            public = parse(load_public_key, text, where, problems)
            if public is not None:
                keys.add(public, role)
        if not problems:
            self._keys = keys
            unscoped = sorted(key for key, roles in keys.roles.items() if roles is None)
            if unscoped and self.required:
                log.warning(
                    "signing: public key(s) %s accepted for every message type, so each may sign decisions; "
                    "scope them: name their files %s*.pub, or give SPENDPIPE_SIGNING__PUBLIC_KEYS by role",
                    ", ".join(unscoped),
                    "*.pub, ".join(ROLES),
                )
        return keys, problems

    def _public_key_sources(self, problems: list[str]) -> list[tuple[str, Role | None, str]]:
        """(where, role or None for unscoped, text) of every public key named."""
        values: list[tuple[str, Role | None, str]]
        if isinstance(self.public_keys, dict):
            values = [
                (f"PUBLIC_KEYS[{role}][{n}]", role, text)
                for role, texts in self.public_keys.items()
                for n, text in enumerate(texts)
            ]
        else:
            values = [(f"PUBLIC_KEYS[{n}]", None, text) for n, text in enumerate(self.public_keys)]
        for where, path, text in public_key_files(self.public_keys_dir, problems):
            values.append((where, role_of(path.stem), text))
        return values
