"""What `spendpipe run ... --validate` checks beyond the settings' own validation, and what every
`run` checks before it starts: the same function, so the two cannot disagree.

Only what can be known without connecting: the embedded store's directory (usable, and not
owned by another process), the SQL endpoint's port (free), the TLS files the settings name
(present; Kafka's load into an SSL context) and the enforcer's signing keys (they load).
Whether Kafka and a ClickHouse server answer, accept the credentials and hold the topics is
learnt by starting; those failures are reported by `spendpipe.admin.errors` as one line each.
"""

import errno
import fcntl
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from spendpipe.platform.clickhouse import ClickhouseSettings, chdb_path
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.runner import Services
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings

SETTINGS = 2
IN_USE = 1
"""Exit codes: settings that can never start, and a resource another process holds now."""

CHDB_LOCK_FILE = "status"
"""The file the ClickHouse engine holds an exclusive flock(2) on while it owns the directory."""


@dataclass(frozen=True)
class Problem:
    variable: str
    reason: str
    exit_code: int = SETTINGS

    def __str__(self) -> str:
        return f"{self.variable}: {self.reason}"


def problems(services: Services) -> list[Problem]:
    """Every reason these settings would refuse to start, all at once; empty when none is known."""
    found = _kafka_tls(services.kafka) + _clickhouse_files(services.clickhouse)
    if services.enforcer is not None:
        found += _signing_keys(services.enforcer.signing.key_problems(writes=True, reads=True))
    if services.clickhouse.embedded:
        found += _embedded_store(Path(chdb_path(services.clickhouse.dsn)))
        found += _sql_endpoint(services.sql_endpoint)
    return found


def _embedded_store(directory: Path) -> list[Problem]:
    variable = "SPENDPIPE_CLICKHOUSE__DSN"
    if directory.exists() and not directory.is_dir():
        return [Problem(variable, f"{directory} is not a directory")]
    existing = next(p for p in (directory, *directory.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "write to" if existing == directory else "create a directory in"
        return [Problem(variable, f"cannot {verb} {existing} (permissions)")]
    if _locked(directory / CHDB_LOCK_FILE):
        reason = f"another spendpipe process owns {directory}: stop it, or point this at another directory"
        return [Problem(variable, reason, IN_USE)]
    return []


def _locked(lock_file: Path) -> bool:
    try:
        descriptor = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return False  # no engine has run here yet, or nothing we may read: the engine will say
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing releases a lock we took
    return False


def _sql_endpoint(endpoint: SqlEndpointSettings) -> list[Problem]:
    if not endpoint.enabled or endpoint.port == 0:
        return []
    with socket.socket(socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET) as probe:
        # as the endpoint's server binds: address reuse on, so a port in TIME_WAIT passes
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((endpoint.host, endpoint.port))
        except OSError as error:
            why = "in use by another process" if error.errno == errno.EADDRINUSE else error.strerror
            exit_code = IN_USE if error.errno == errno.EADDRINUSE else SETTINGS
            reason = f"cannot listen on {endpoint.host}:{endpoint.port} ({why})"
            return [Problem("SPENDPIPE_SQL_ENDPOINT__PORT", reason, exit_code)]
    return []


def _kafka_tls(kafka: KafkaSettings) -> list[Problem]:
    files = {"ssl_cafile": kafka.ssl_cafile, "ssl_certfile": kafka.ssl_certfile, "ssl_keyfile": kafka.ssl_keyfile}
    missing = _missing_files("SPENDPIPE_KAFKA__", files)
    if missing or kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return missing
    try:
        kafka.security()  # builds the SSL context start-up builds, from the same files
    except (OSError, ssl.SSLError) as error:
        return [Problem("SPENDPIPE_KAFKA__SSL_*", f"the TLS files do not load ({error})")]
    return []


def _clickhouse_files(clickhouse: ClickhouseSettings) -> list[Problem]:
    files = {
        "ca_cert": None if clickhouse.ca_cert == "certifi" else clickhouse.ca_cert,
        "client_cert": clickhouse.client_cert,
        "client_cert_key": clickhouse.client_cert_key,
    }
    return _missing_files("SPENDPIPE_CLICKHOUSE__", files)


def _signing_keys(lines: list[str]) -> list[Problem]:
    """The enforcer's key files read and parsed, as its start reads them."""
    return [Problem(variable, reason) for variable, _, reason in (line.partition(": ") for line in lines)]


def _missing_files(prefix: str, files: dict[str, str | None]) -> list[Problem]:
    found = []
    for name, path in files.items():
        if path is not None and not Path(path).is_file():
            found.append(Problem(prefix + name.upper(), f"no such file: {path}"))
    return found
