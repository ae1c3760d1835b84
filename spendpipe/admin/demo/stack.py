"""What the demo starts and stops: a local Kafka broker, the topics, signing keys, the demo
key's budget, `spendpipe run all` on the embedded store, and the `.env` for the CLI.

`DemoStack` is a context manager: leaving it, however (Ctrl-C, an error during start-up), stops
everything it started, in reverse order, and waits for each to be gone. The pipeline runs in a
session of its own, so Ctrl-C in the terminal reaches the demo alone, which stops the traffic
before the pipeline that counts it and the pipeline before the broker it reads.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, ConfigDict, Field

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.admin.demo import env_file
from spendpipe.admin.errors import CliError
from spendpipe.contracts.scopes import key_scope
from spendpipe.contracts.topics import Topics
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, topic_specs
from spendpipe.platform.local_broker import LocalBroker, kafka_script
from spendpipe.platform.processes import terminate
from spendpipe.platform.settings import ENV_PREFIX
from spendpipe.platform.signing import SigningSettings, generate_key_pair
from spendpipe.store.sql_endpoint.client import EndpointSource

READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 60.0


class DemoOptions(BaseModel):
    """What `spendpipe demo` takes on its command line."""

    model_config = ConfigDict(frozen=True)

    rate: float = Field(default=2.0, gt=0)
    """LiteLLM calls per second."""
    duration_s: float = Field(default=0.0, ge=0)
    """Seconds of traffic before the demo stops by itself; 0 runs until Ctrl-C."""
    data_dir: Path = Path(".data")
    env_file: Path = Path(".env")
    kafka_port: int = Field(default=19092, ge=1, le=65534)
    bootstrap_servers: str | None = None
    """A broker to use instead of starting one."""
    sql_port: int = Field(default=8124, ge=1, le=65535)
    ops_port: int = Field(default=9464, ge=0, le=65535)
    key_budget: Decimal = Field(default=Decimal("0.001"), gt=0)
    """The daily budget of the demo key that gets blocked."""


@dataclass
class DemoStack:
    options: DemoOptions
    say: Callable[[str], None]
    """Reports what the stack starts and stops (a line printed above the live tables)."""
    topics: Topics = field(default_factory=Topics)
    bootstrap: str = ""
    pipeline: subprocess.Popen[bytes] | None = None
    broker: LocalBroker | None = None
    """The broker this demo started (None: it uses one that was already running)."""
    _exits: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def data_dir(self) -> Path:
        return self.options.data_dir.resolve()

    @property
    def keys(self) -> Path:
        return self.data_dir / "keys"

    @property
    def sql_url(self) -> str:
        return f"http://127.0.0.1:{self.options.sql_port}"

    def signing(self, writer: str | None) -> SigningSettings:
        """The demo's keys: every process accepts both writers; `writer` signs (enforcer, admin)."""
        return SigningSettings(
            public_keys_dir=self.keys / "public",
            private_key_file=self.keys / "private" / f"{writer}.key" if writer else None,
        )

    def __enter__(self) -> "DemoStack":
        try:
            env_file.claim(self.options.env_file)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._make_keys()
            self.bootstrap = self._broker()
            kafka = KafkaSettings(bootstrap_servers=self.bootstrap)
            asyncio.run(ensure_topics(kafka, topic_specs(self.topics, partitions=3, replication=1)))
            self._start_pipeline()
            self._wait_ready()
            self._write_env_file()
        except BaseException:
            self._exits.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._exits.close()

    def set_key_budget(self, raw_key: str, alias: str) -> None:
        budget = {
            "scope": str(key_scope(raw_key)),
            "max_budget": str(self.options.key_budget),
            "budget_duration": "24h",
        }
        BudgetAdmin(
            kafka=KafkaSettings(bootstrap_servers=self.bootstrap), topics=self.topics, signing=self.signing("admin")
        ).set(budget)
        self.say(f"budget: key {alias} may spend ${self.options.key_budget} a day")

    def _make_keys(self) -> None:
        for name in ("enforcer", "admin"):
            if not (self.keys / "private" / f"{name}.key").exists():
                generate_key_pair(self.keys / "private" / f"{name}.key", self.keys / "public" / f"{name}.pub")

    def _broker(self) -> str:
        if self.options.bootstrap_servers:
            return self.options.bootstrap_servers
        script = kafka_script()
        if script is None:
            raise CliError(
                "no deploy/kafka/kafka-local.sh beside this install (start the demo from a spendpipe "
                "checkout), so no broker to start: pass --bootstrap-servers",
                exit_code=2,
            )
        broker = LocalBroker(self.data_dir / "kafka", self.options.kafka_port, script=script)
        if broker.running():  # a demo killed before it could stop its broker left this one
            self.say(f"using the Kafka broker already running from {broker.data_dir}")
            return broker.bootstrap
        self.say(f"starting a Kafka broker on {broker.bootstrap} (data in {broker.data_dir})")
        broker.start()
        self.broker = broker
        self._exits.callback(self._stop_broker, broker)
        return broker.bootstrap

    def _stop_broker(self, broker: LocalBroker) -> None:
        broker.stop()
        self.say("Kafka broker stopped")

    def child_env(self, writer: str | None) -> dict[str, str]:
        """The environment of a process the demo starts: its own settings, not the shell's."""
        signing = self.signing(writer)
        own = {
            "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{self.data_dir / 'clickhouse'}",
            "SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR": str(signing.public_keys_dir),
        }
        if signing.private_key_file is not None:
            own["SPENDPIPE_SIGNING__PRIVATE_KEY_FILE"] = str(signing.private_key_file)
        return own

    def _start_pipeline(self) -> None:
        log_path = self.data_dir / "pipeline.log"
        environment = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
        environment |= self.child_env("enforcer") | {
            "SPENDPIPE_SQL_ENDPOINT__PORT": str(self.options.sql_port),
            "SPENDPIPE_OPS__PORT": str(self.options.ops_port),
        }
        with log_path.open("ab") as log:
            self.pipeline = subprocess.Popen(
                [sys.executable, "-m", "spendpipe.admin.cli", "run", "all"],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in turn
            )
        self._exits.callback(self._stop_pipeline, self.pipeline)
        self.say(f"started `spendpipe run all` (pid {self.pipeline.pid}, log {log_path})")

    def _stop_pipeline(self, pipeline: subprocess.Popen[bytes]) -> None:
        terminate(pipeline, STOP_GRACE_S, kill_wait_s=STOP_GRACE_S)
        self.say(f"`spendpipe run all` stopped (exit {pipeline.returncode})")

    def _wait_ready(self) -> None:
        assert self.pipeline is not None
        source = EndpointSource(url=self.sql_url, timeout_s=5)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.pipeline.poll() is not None:
                raise CliError(
                    f"spendpipe run all exited with {self.pipeline.returncode}: see {self.data_dir / 'pipeline.log'}"
                )
            try:
                source.query("SELECT 1")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise CliError(
                        f"spendpipe run all did not answer on {self.sql_url} in {READY_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(0.3)  # polling the endpoint while it starts

    def _write_env_file(self) -> None:
        values = self.child_env("admin") | {"SPENDPIPE_SQL_ENDPOINT_URL": self.sql_url}
        path = self.options.env_file
        text = env_file.write(path, values)
        self._exits.callback(env_file.remove, path, text)
