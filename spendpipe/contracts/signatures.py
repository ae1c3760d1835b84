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
"""

import hashlib

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
