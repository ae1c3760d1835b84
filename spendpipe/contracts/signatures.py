"""What a signed record of `spend.decisions` or `spend.budgets` carries, and the exact bytes its
signature covers.

The JSON value stays as it is (its JSON Schema unchanged and readable); the signature lives in
two Kafka headers: `spendpipe-key-id` (which writer key signed) and `spendpipe-signature` (an
Ed25519 signature, base64). It covers `signed_bytes(type, key, value)`: the message type (so a
signed budget is never taken for a decision), the record key (so a signed verdict for one scope
is never replayed on another) and the value bytes exactly as written, or a marker for a
tombstone (so a deletion is signed like any other record and a forged tombstone is refused).
Each part is prefixed with its length, so no two different records share signed bytes.

A key id is the first 16 hex digits of the SHA-256 of the raw 32-byte Ed25519 public key:
anyone holding the public key computes the same id, so ids cannot disagree with keys.

**Who may sign what.** A reader accepts a public key either for one writer role or, unscoped, for
every message type. `SIGNERS` says which roles may sign each signed message type: only the
enforcer signs decisions and lease grants; budgets come from an admin (or the enforcer, which
can lift any block anyway); a gateway's key signs only the budgets its keys declare. So the many
gateways, which run beside LiteLLM and are the likeliest to leak a key, can never sign a decision
or an operator's budget, whatever ACLs the topics have.
"""

import hashlib
from collections.abc import Mapping
from typing import Literal, get_args

from spendpipe.contracts.budgets import MESSAGE_TYPE as BUDGET_TYPE
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.declared_budgets import MESSAGE_TYPE as DECLARED_BUDGET_TYPE
from spendpipe.contracts.leases import GRANT_MESSAGE_TYPE

SIGNATURE_HEADER = "spendpipe-signature"
"""Base64 of the 64-byte Ed25519 signature of `signed_bytes(...)`."""

KEY_ID_HEADER = "spendpipe-key-id"
"""`key_id(public key)` of the writer key that signed the record."""

DOMAIN = b"spendpipe.signed-record.v1"
"""Signed first: these signatures mean nothing anywhere else."""

TOMBSTONE = 0xFFFFFFFF
"""The length written for a null value: no value has 2^32 - 1 bytes, so it cannot collide."""


def signed_bytes(message_type: str, key: bytes, value: bytes | None) -> bytes:
    """The bytes a writer signs and a reader verifies for one record."""
    parts = [DOMAIN, message_type.encode(), key]
    framed = b"".join(len(part).to_bytes(4, "big") + part for part in parts)
    if value is None:
        return framed + TOMBSTONE.to_bytes(4, "big")
    return framed + len(value).to_bytes(4, "big") + value


def key_id(public_key: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


Role = Literal["enforcer", "admin", "gateway"]
"""A writer role. A public key file named `<role>.pub` or `<role>-<anything>.pub` is accepted for
that role only; any other name, and a key given as a plain value, for every message type."""

ROLES: tuple[Role, ...] = get_args(Role)

SIGNERS: Mapping[str, frozenset[Role]] = {
    DECISION_TYPE: frozenset({"enforcer"}),
    GRANT_MESSAGE_TYPE: frozenset({"enforcer"}),
    BUDGET_TYPE: frozenset({"admin", "enforcer"}),
    DECLARED_BUDGET_TYPE: frozenset({"gateway"}),
}
"""Per signed message type, the roles whose keys may sign it."""


def role_of(name: str) -> Role | None:
    """The role a key's name gives it (`gateway-eu1` -> gateway), or None: unscoped."""
    head = name.split("-", 1)[0]
    return next((role for role in ROLES if role == head), None)


def may_sign(message_type: str, roles: frozenset[Role] | None) -> bool:
    """Whether a key of `roles` (None: unscoped) may sign a record of `message_type`."""
    return roles is None or bool(roles & SIGNERS[message_type])
