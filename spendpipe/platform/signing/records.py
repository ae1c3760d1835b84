"""Signing a record's headers, and verifying a record read back before it is parsed (what the
headers hold and the exact bytes signed: `spendpipe.contracts.signatures`). A verifier counts
each record it drops (`topic`, `reason`: `VERIFICATION_REASONS`, or what its reader refuses) and
logs the first per reason and writer key id. The count of each verification reason is exported
from the start, at 0, so the first forgery is an increase an alert rule sees."""

import base64
import binascii
import logging
from collections.abc import Mapping, Set

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import CollectorRegistry, Counter

from spendpipe.contracts.signatures import KEY_ID_HEADER, SIGNATURE_HEADER, key_id, signed_bytes
from spendpipe.contracts.topics import TYPE_HEADER, header_text
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.signing.keys import raw

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

MOST_LOGGED = 1000
"""Writer keys logged per verifier: key ids come from headers anyone with write access sets."""
KEY_ID_SHOWN = 64
VERIFICATION_REASONS = ("unsigned", "unknown_key", "bad_signature", "not_allowed")
"""Why `RecordVerifier.accepts` drops a record."""


class RecordSigner:
    """Signs records with one private key; without one (signing not required) adds only the type."""

    def __init__(self, private_key: Ed25519PrivateKey | None) -> None:
        self._private = private_key
        self.key_id = key_id(raw(private_key.public_key())) if private_key else None

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
        not_allowed: Set[str] = frozenset(),
        required: bool,
        message_type: str,
        topic: str,
        rejected: Counter,
    ) -> None:
        self._public = dict(public_keys)
        self._not_allowed = frozenset(not_allowed)
        """Key ids accepted for other message types, not this one."""
        self._required = required
        self._message_type = message_type
        self._topic = topic
        self._rejected = rejected
        self._logged: set[tuple[str, str]] = set()
        for reason in VERIFICATION_REASONS:
            rejected.labels(topic=topic, reason=reason)

    def accepts(self, record: TopicRecord) -> bool:
        """True if the record may be applied; otherwise it is counted and (once) logged."""
        if not self._required:
            return True
        writer = writer_of(record)
        signature = dict(record.headers or ()).get(SIGNATURE_HEADER)
        if not isinstance(signature, bytes):
            return self._reject("unsigned", writer)
        public = self._public.get(writer)
        if public is None:
            return self._reject("not_allowed" if writer in self._not_allowed else "unknown_key", writer)
        try:
            public.verify(
                base64.b64decode(signature, validate=True),
                signed_bytes(self._message_type, record.key or b"", record.value),
            )
        except (InvalidSignature, binascii.Error, ValueError):
            return self._reject("bad_signature", writer)
        return True

    def accepted_value(self, record: TopicRecord) -> bytes | None:
        """The value of a record an accepted writer wrote; None for a tombstone and for a record
        `accepts` drops. For readers to whom a tombstone says nothing: it is verified all the
        same, so a forged one is counted and logged as any forgery is."""
        return record.value if self.accepts(record) else None

    def refuse(self, reason: str, record: TopicRecord) -> None:
        """Count and (once) log a record that passed `accepts` but that its reader cannot apply
        (`stale`, `unreadable`), as `accepts` does its own drops."""
        self._reject(reason, writer_of(record))

    def _reject(self, reason: str, writer: str) -> bool:
        self._rejected.labels(topic=self._topic, reason=reason).inc()
        writer = writer[:KEY_ID_SHOWN]  # whoever writes the topic chooses this header
        if (reason, writer) not in self._logged and len(self._logged) < MOST_LOGGED:
            self._logged.add((reason, writer))
            log.error(
                "dropping %s records on %s from writer key %s (logged once%s; counted in records_rejected)",
                reason.replace("_", " "),
                self._topic,
                ascii(writer) if writer else "(none)",
                ", and no other writer after this one" if len(self._logged) == MOST_LOGGED else "",
            )
        return False


def uncollected_rejections() -> Counter:
    """A rejection counter no one scrapes, for one-shot readers (the CLI, the Python API): the
    log line is what they show."""
    return Counter(
        "spendpipe_records_rejected", "Records dropped by signature", ["topic", "reason"], registry=CollectorRegistry()
    )


def writer_of(record: TopicRecord) -> str:
    """The id of the key a record says signed it ('' when it names none); not yet verified."""
    return header_text(dict(record.headers or ()).get(KEY_ID_HEADER))
