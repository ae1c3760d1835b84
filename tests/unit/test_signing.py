"""Signing and verifying records (`platform/signing.py`, `contracts/signatures.py`) without a
broker: what is accepted, what is dropped and why, and how keys load from settings."""

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from typer.testing import CliRunner

from spendpipe.admin.cli import app
from spendpipe.admin.errors import CliError
from spendpipe.contracts.signatures import KEY_ID_HEADER, SIGNATURE_HEADER, signed_bytes
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.settings import SettingsError, load_settings, require_keys
from spendpipe.platform.signing import (
    RecordVerifier,
    SigningKeyError,
    SigningSettings,
    generate_key_pair,
    read_key_id,
)
from spendpipe.platform.signing.records import MOST_LOGGED
from tests.support.signing import WriterKey, forged_headers, reader_settings, signing_from_environment

TYPE = "spendpipe.decision.v1"


def record(key: bytes, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
    return ConsumerRecord("t", 0, 0, 0, 0, key, value, None, len(key), len(value or b""), headers)


def verifier(signing: SigningSettings) -> tuple[RecordVerifier, Counter]:
    counter = Counter("rejected", "", ["topic", "reason"], registry=CollectorRegistry())
    return signing.verifier(message_type=TYPE, topic="t", rejected=counter), counter


def count(counter: Counter, reason: str) -> float:
    return float(counter.labels(topic="t", reason=reason)._value.get())


def signed(writer: WriterKey, key: bytes, value: bytes | None, message_type: str = TYPE) -> Any:
    return record(key, value, writer.settings().signer().headers(message_type, key, value))


def test_a_signed_record_and_a_signed_tombstone_are_accepted() -> None:
    writer = WriterKey.generate()
    check, counter = verifier(reader_settings(writer))

    assert check.accepts(signed(writer, b"team:eng", b'{"a": 1}'))
    assert check.accepts(signed(writer, b"team:eng", None))
    assert count(counter, "unsigned") == 0


@pytest.mark.parametrize("how", ["unsigned", "unknown_key", "bad_signature"])
def test_forgeries_are_dropped_and_counted_by_reason(how: str) -> None:
    writer = WriterKey.generate()
    check, counter = verifier(reader_settings(writer))

    for value in (b'{"version": 4611686018427387904}', None):
        assert not check.accepts(
            record(b"team:eng", value, forged_headers(TYPE, b"team:eng", value, how, genuine=writer))
        )

    assert count(counter, how) == 2


def test_headers_without_a_value_are_dropped_and_counted_not_raised_on() -> None:
    """Kafka allows a header without a value: a key id or a signature header that has none names
    no writer, or carries no signature."""
    writer = WriterKey.generate()
    check, counter = verifier(reader_settings(writer))
    value = b'{"version": 4611686018427387904}'
    signed_headers = writer.settings().signer().headers(TYPE, b"team:eng", value)

    for empty, reason in ((KEY_ID_HEADER, "unknown_key"), (SIGNATURE_HEADER, "unsigned")):
        headers: Any = [(name, None if name == empty else header) for name, header in signed_headers]
        assert not check.accepts(record(b"team:eng", value, headers))
        assert count(counter, reason) == 1


def test_a_signature_covers_the_value_the_key_and_the_type() -> None:
    writer = WriterKey.generate()
    check, counter = verifier(reader_settings(writer))
    headers = writer.settings().signer().headers(TYPE, b"team:eng", b'{"blocked": true}')

    assert not check.accepts(record(b"team:eng", b'{"blocked": false}', headers))
    assert not check.accepts(record(b"team:ops", b'{"blocked": true}', headers))
    assert not check.accepts(record(b"team:eng", None, headers))  # a signed record is no signed tombstone
    assert not check.accepts(signed(writer, b"team:eng", b'{"blocked": true}', "spendpipe.budget.v1"))
    assert count(counter, "bad_signature") == 4


def test_signed_bytes_frame_each_part() -> None:
    assert signed_bytes(TYPE, b"ab", b"c") != signed_bytes(TYPE, b"a", b"bc")
    assert signed_bytes(TYPE, b"a", b"") != signed_bytes(TYPE, b"a", None)


def test_rotation_accepts_every_listed_key() -> None:
    old, new = WriterKey.generate(), WriterKey.generate()
    check, _ = verifier(reader_settings(old, new))
    retired, counter = verifier(reader_settings(new))

    assert check.accepts(signed(old, b"k", b"v"))
    assert check.accepts(signed(new, b"k", b"v"))
    assert not retired.accepts(signed(old, b"k", b"v"))
    assert count(counter, "unknown_key") == 1


def test_not_required_takes_everything_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    check, _ = verifier(SigningSettings(required=False))

    assert check.accepts(record(b"k", b"v", []))
    assert "SIGNATURES NOT CHECKED" in caplog.text
    assert SigningSettings(required=False).signer().headers(TYPE, b"k", b"v") == [("spendpipe-type", TYPE.encode())]


def test_each_reason_and_writer_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    writer, stranger = WriterKey.generate(), WriterKey.generate()
    check, _ = verifier(reader_settings(writer))

    for _ in range(3):
        check.accepts(record(b"k", b"v", []))
        check.accepts(signed(stranger, b"k", b"v"))

    assert len([r for r in caplog.records if r.name == "spendpipe.platform.signing.records"]) == 2


def test_keys_load_from_generated_files(tmp_path: Path) -> None:
    key_id = generate_key_pair(tmp_path / "private" / "enforcer.key", tmp_path / "public" / "enforcer.pub")
    settings = SigningSettings(
        private_key_file=tmp_path / "private" / "enforcer.key", public_keys_dir=tmp_path / "public"
    )

    assert (tmp_path / "private" / "enforcer.key").stat().st_mode & 0o777 == 0o600
    assert read_key_id(tmp_path / "private" / "enforcer.key") == key_id
    assert settings.signer().key_id == key_id
    assert settings.key_problems(writes=True, reads=True) == []
    check, _ = verifier(settings)
    assert check.accepts(record(b"k", b"v", settings.signer().headers(TYPE, b"k", b"v")))
    with pytest.raises(FileExistsError):
        generate_key_pair(tmp_path / "private" / "enforcer.key", tmp_path / "public" / "again.pub")


def test_what_a_service_lacks_is_named() -> None:
    lacking = SigningSettings().problems(writes=True, reads=True)

    assert [line.split(":")[0] for line in lacking] == [
        "SPENDPIPE_SIGNING__PRIVATE_KEY_FILE or SPENDPIPE_SIGNING__PRIVATE_KEY",
        "SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR or SPENDPIPE_SIGNING__PUBLIC_KEYS",
    ]
    assert SigningSettings(required=False).problems(writes=True, reads=True) == []
    with pytest.raises(SettingsError, match="SPENDPIPE_SIGNING__PUBLIC_KEYS"):
        require_keys(SigningSettings(), writes=False, reads=True)


def test_keys_that_do_not_load_are_refused_at_start(tmp_path: Path) -> None:
    broken = SigningSettings(private_key="not a key", public_keys=["AAAA"], public_keys_dir=tmp_path / "missing")

    problems = broken.key_problems(writes=True, reads=True)

    assert [line.split(":")[0] for line in problems] == [
        "SPENDPIPE_SIGNING__PRIVATE_KEY",
        "SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR",
        "SPENDPIPE_SIGNING__PUBLIC_KEYS[0]",
    ]
    with pytest.raises(SigningKeyError):
        broken.signer()


def test_a_writer_must_accept_its_own_key() -> None:
    writer, other = WriterKey.generate(), WriterKey.generate()

    (problem,) = writer.settings(other).key_problems(writes=True, reads=True)

    assert f"this writer's own key {writer.settings().signer().key_id}" in problem


def test_one_private_key_source_only(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not both"):
        SigningSettings(private_key="x", private_key_file=tmp_path / "k")


def test_the_session_keys_reach_settings_through_the_environment(signing_keys: WriterKey) -> None:
    settings = signing_from_environment()

    assert settings.private_key is not None
    assert settings.private_key.get_secret_value() == signing_keys.private
    assert settings.public_keys == json.loads(signing_keys.env()["SPENDPIPE_SIGNING__PUBLIC_KEYS"])


def test_validate_loads_the_enforcers_keys(tmp_path: Path) -> None:
    env = {
        "SPENDPIPE_SIGNING__PRIVATE_KEY": None,
        "SPENDPIPE_SIGNING__PRIVATE_KEY_FILE": str(tmp_path / "missing.key"),
        "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'clickhouse'}",
    }

    result = CliRunner().invoke(app, ["run", "enforcer", "--validate"], env=env)

    assert isinstance(result.exception, CliError)  # main() prints it as one line, exit 2
    assert result.exception.exit_code == 2
    assert str(result.exception).startswith(
        f"SPENDPIPE_SIGNING__PRIVATE_KEY_FILE: cannot read {tmp_path / 'missing.key'}"
    )


def test_log_lines_are_bounded_whatever_key_ids_a_writer_invents(caplog: pytest.LogCaptureFixture) -> None:
    writer = WriterKey.generate()
    check, counter = verifier(reader_settings(writer))

    for n in range(MOST_LOGGED + 10):
        check.accepts(
            record(b"k", b"v", [("spendpipe-key-id", f"{n:x}\x1b[2J".encode()), ("spendpipe-signature", b"")])
        )

    lines = [r.getMessage() for r in caplog.records if r.name == "spendpipe.platform.signing.records"]
    assert len(lines) == MOST_LOGGED
    assert "no other writer after this one" in lines[-1]
    assert "\x1b" not in "".join(lines)
    assert count(counter, "unknown_key") == MOST_LOGGED + 10


def test_a_service_without_its_keys_does_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SPENDPIPE_SIGNING__PRIVATE_KEY", "SPENDPIPE_SIGNING__PUBLIC_KEYS"):
        monkeypatch.delenv(name)
    monkeypatch.setitem(EnforcerSettings.model_config, "env_file", None)

    with pytest.raises(SettingsError) as refused:
        load_settings(EnforcerSettings)

    assert str(refused.value).splitlines()[1:] == [
        "  settings: SPENDPIPE_SIGNING__PRIVATE_KEY_FILE or SPENDPIPE_SIGNING__PRIVATE_KEY: this service signs what "
        "it publishes (spendpipe keys generate), or set SPENDPIPE_SIGNING__REQUIRED=false",
        "  SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR or SPENDPIPE_SIGNING__PUBLIC_KEYS: no accepted writer public key, so "
        "every decision and budget would be dropped (or set SPENDPIPE_SIGNING__REQUIRED=false)",
    ]
    monkeypatch.setenv("SPENDPIPE_SIGNING__REQUIRED", "false")
    assert not load_settings(EnforcerSettings).signing.required


MESSAGE_TYPES = {
    "decision": "spendpipe.decision.v1",
    "lease grant": "spendpipe.lease_grant.v1",
    "budget": "spendpipe.budget.v1",
    "declared budget": "spendpipe.declared_budget.v1",
}
MAY_SIGN = {
    "enforcer": {"decision", "lease grant", "budget"},
    "admin": {"budget"},
    "gateway": {"declared budget"},
}


@pytest.mark.parametrize("role", sorted(MAY_SIGN))
def test_a_key_named_for_a_role_verifies_only_what_that_role_signs(role: str, tmp_path: Path) -> None:
    generate_key_pair(tmp_path / "private" / f"{role}-2027.key", tmp_path / "public" / f"{role}-2027.pub")
    writer = SigningSettings(private_key_file=tmp_path / "private" / f"{role}-2027.key")
    reader = SigningSettings(public_keys_dir=tmp_path / "public")

    for name, message_type in MESSAGE_TYPES.items():
        counter = Counter("rejected", "", ["topic", "reason"], registry=CollectorRegistry())
        check = reader.verifier(message_type=message_type, topic="t", rejected=counter)
        forged = record(b"k", b"v", writer.signer().headers(message_type, b"k", b"v"))
        assert check.accepts(forged) == (name in MAY_SIGN[role]), name
        assert count(counter, "not_allowed") == (0 if name in MAY_SIGN[role] else 1), name


def test_keys_given_by_role_are_scoped_and_a_key_in_two_roles_has_both() -> None:
    gateway, enforcer = WriterKey.generate(), WriterKey.generate()
    reader = SigningSettings(public_keys={"gateway": [gateway.public, enforcer.public], "enforcer": [enforcer.public]})

    decisions = reader.verifier(message_type=TYPE, topic="t", rejected=verifier(reader)[1])
    declared = reader.verifier(message_type=MESSAGE_TYPES["declared budget"], topic="t", rejected=verifier(reader)[1])
    assert not decisions.accepts(signed(gateway, b"k", b"v"))
    assert decisions.accepts(signed(enforcer, b"k", b"v"))
    assert declared.accepts(signed(enforcer, b"k", b"v", MESSAGE_TYPES["declared budget"]))
    assert declared.accepts(signed(gateway, b"k", b"v", MESSAGE_TYPES["declared budget"]))


def test_unscoped_keys_verify_everything_and_are_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_id = generate_key_pair(tmp_path / "private" / "ops.key", tmp_path / "public" / "ops.pub")
    writer = SigningSettings(private_key_file=tmp_path / "private" / "ops.key")
    reader = SigningSettings(public_keys_dir=tmp_path / "public")

    for message_type in MESSAGE_TYPES.values():
        check = reader.verifier(message_type=message_type, topic="t", rejected=verifier(reader)[1])
        assert check.accepts(record(b"k", b"v", writer.signer().headers(message_type, b"k", b"v")))
    assert [r.levelname for r in caplog.records if key_id in r.getMessage()] == ["WARNING"]


def test_public_keys_by_role_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = WriterKey.generate()
    monkeypatch.setenv("SPENDPIPE_SIGNING__PUBLIC_KEYS", json.dumps({"gateway": [gateway.public]}))

    assert signing_from_environment().public_keys == {"gateway": [gateway.public]}
    monkeypatch.setenv("SPENDPIPE_SIGNING__PUBLIC_KEYS", json.dumps({"operator": [gateway.public]}))
    with pytest.raises(ValidationError, match="operator"):
        signing_from_environment()


def test_a_tombstone_yields_no_value_and_only_a_forged_one_is_counted() -> None:
    writer = WriterKey.generate()
    check, counter = verifier(reader_settings(writer))

    assert check.accepted_value(signed(writer, b"team:eng", b'{"a": 1}')) == b'{"a": 1}'
    assert check.accepted_value(signed(writer, b"team:eng", None)) is None
    assert count(counter, "unsigned") == 0
    assert (
        check.accepted_value(
            record(b"team:eng", None, forged_headers(TYPE, b"team:eng", None, "unsigned", genuine=writer))
        )
        is None
    )
    assert count(counter, "unsigned") == 1
