"""Settings of the gateway plugin (env prefix `SPENDPIPE_`, `__` between section and field)."""

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from spendpipe.contracts.leases import LeaseSettings
from spendpipe.contracts.topics import Topics
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.ops_server import OpsSettings
from spendpipe.platform.settings import CalendarFields, service_config
from spendpipe.platform.signing import SigningSettings


def _default_gateway_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class GatewayOpsSettings(OpsSettings):
    """Off unless asked for (`SPENDPIPE_OPS__ENABLED=true`): the plugin lives in someone else's
    process — a proxy whose own port serves the API, possibly several workers of it, or an SDK
    application — where binding a port by surprise is not ours to do. Its own port, 9465, so it
    never collides with a pipeline process (9464) on the same host."""

    enabled: bool = False
    port: int = Field(default=9465, ge=0, le=65535)


class GatewaySettings(CalendarFields, BaseSettings):
    model_config = service_config()

    kafka: KafkaSettings = KafkaSettings()
    topics: Topics = Topics()
    gateway_id: str = Field(default_factory=_default_gateway_id, min_length=1, max_length=256)
    """Names this gateway process in every event it publishes."""
    queue_size: int = Field(default=100_000, ge=1)
    """Events held in memory while the background producer catches up."""
    spool_dir: Path = Path(".data/gateway-spool")
    """Where events wait on disk while Kafka is unreachable. One directory per gateway process."""
    spool_max_bytes: int = Field(default=1 << 30, ge=1024)
    delivery_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    """How long a batch may wait for Kafka's acknowledgement before it is spooled."""
    retry_backoff_s: float = Field(default=1.0, gt=0, le=300)
    publish_linger_s: float = Field(default=0.05, ge=0, le=5)
    """How long the publisher lets events gather before it sends them (one Kafka batch per
    partition for all): what an event waits at most before it leaves, for much less CPU per event."""
    publisher: Literal["auto", "subprocess", "thread"] = "auto"
    """Where events are built and delivered: `subprocess`, a child process of the gateway's fed
    over a pipe (the request path only pickles a few fields; docs/performance.md measures what
    that saves), or `thread`, a thread of the gateway process. `auto`: the subprocess in SDK mode
    (`spendpipe.install()`) and in a proxy (`spendpipe.gateway.proxy.handler`: one child per
    proxy worker), the thread in a `SpendpipeLogger` built by hand; and the thread, with one
    warning, where no child can be started (`sys.executable` not a Python interpreter, as under
    uWSGI, or a first child without its start handshake)."""
    unsynced_policy: Literal["fail_open", "fail_closed"] = "fail_open"
    """What a gateway does before its block list has read the decisions topic to the end:
    serve every request (fail_open) or refuse every request (fail_closed)."""
    sync_wait_s: float = Field(default=5.0, ge=0, le=3600)
    """SDK `check()`: how long after `start()` a check waits for the block list to read the
    decisions topic to its end before `unsynced_policy` answers. A deadline, not a wait per call:
    a healthy broker is read to its end in well under a second, so only a fresh process's first
    checks wait, and with Kafka down every check answers by the policy once this has passed. Once
    in sync, `check()` never waits."""
    close_wait_s: float = Field(default=5.0, ge=0, le=3600)
    """`close()` (and exit): how long to wait for LiteLLM to log the calls already made (it logs
    a call from its own thread or task just after `completion()` returns) before delivering or
    spooling what is queued; an event logged later is lost and counted as `closed`."""
    parallel_lease_s: float = Field(default=600.0, gt=0, le=86_400)
    """`max_parallel_requests`: how long a request holds its slot if no hook ever reports its end
    (a call cancelled mid-flight); longer than your slowest call."""
    session_idle_s: float = Field(default=3600.0, gt=0, le=86_400)
    """An agent session with no call for this long starts again from nothing (LiteLLM's session
    limiters keep their counters an hour); its state is dropped after twice this. The same value
    at every gateway: each replays the sessions topic with it."""
    session_wait_s: float = Field(default=60.0, gt=0, le=3600)
    """How long a call of a capped session may wait for its admission (behind the session's first
    call while its cost is unknown) before it is refused; longer than your slowest call."""
    leases: LeaseSettings = LeaseSettings()
    """Headroom leases of budgets that set `headroom_leases` (docs/leases.md)."""
    ops: GatewayOpsSettings = GatewayOpsSettings()
    signing: SigningSettings = SigningSettings()
    """The accepted writer public keys: a gateway verifies decisions and budgets. With a writer key
    of its own it signs the budgets LiteLLM key objects declare (`declared_budgets.py`), nothing else."""

    @model_validator(mode="after")
    def _signing_keys(self) -> "GatewaySettings":
        self.signing.require(writes=False, reads=True)
        return self
