"""One gateway process of the overshoot benchmark (`python -m benchmarks.overshoot_gateway`).

An application using the LiteLLM SDK with the spendpipe plugin registered. Per run it sends up to
three streams of `mock_response` calls at a fixed rate each, each with its own budget of the same
cap: one gated by spendpipe's block decisions (`check()` before each call; the pipeline enforces
one budget shared by every gateway), one gated by spendpipe with headroom leases (the same
`check()`, on a budget that sets `headroom_leases`: the call's estimate is reserved from this
gateway's lease), and one gated by LiteLLM's own `BudgetManager` in its local mode, as LiteLLM
documents it (this process's manager knows only this process's spend). A run message names the
streams it wants (`team`, `leased_team`, `user`) and may set its own `rate`.

Protocol on stdin/stdout, one JSON object a line: the process prints `{"ready": true}` once the
pipeline has blocked its canary team (so LiteLLM is warm, events reach the pipeline and decisions
reach this block list); then each `{"run": ..., "start": ..., "team": ..., "user": ..., "cap": ...,
"log": ...}` line runs the traffic, writes one line per call to `log` and answers `{"done": run}`;
end of input ends the process. Run it with its own working directory: the local BudgetManager
writes `user_cost.json` there.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not reach the internet

import litellm

from spendpipe.contracts.topics import Topics
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.kafka import KafkaSettings

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "How much is left in the budget?"}]
ANSWER = "A fixed answer of a few words for the benchmark."
CANARY_WAIT_S = 90.0


class Gate(Protocol):
    system: str

    async def admit(self) -> dict[str, Any] | None: ...

    def spent(self, response: Any) -> None: ...


@dataclass
class SpendpipeGate:
    """SDK mode's check (`acheck`, this being async code): refused once the enforcer's block
    reaches this process's block list, or, on a leased budget, once no headroom is left."""

    plugin: SpendpipeLogger
    team: str
    system: str = "spendpipe"

    async def admit(self) -> dict[str, Any] | None:
        """The call's metadata if admitted (a leased budget's reservation rides in it), else None."""
        metadata = {"user_api_key_team_id": self.team}
        try:
            await self.plugin.acheck(model=MODEL, metadata=metadata, messages=MESSAGES)
        except litellm.BudgetExceededError:
            return None
        return metadata

    def spent(self, response: Any) -> None:
        """Nothing to do: the plugin records the call from LiteLLM's callback."""


@dataclass
class BudgetManagerGate:
    """LiteLLM's documented BudgetManager flow, in local mode: check before, update after."""

    manager: litellm.BudgetManager
    user: str
    cap: float
    system: str = "budget_manager"

    def __post_init__(self) -> None:
        if not self.manager.is_valid_user(self.user):
            self.manager.create_budget(total_budget=self.cap, user=self.user)

    async def admit(self) -> dict[str, Any] | None:
        admitted = self.manager.get_current_cost(user=self.user) <= self.manager.get_total_budget(self.user)
        return {"user_api_key_team_id": self.user} if admitted else None

    def spent(self, response: Any) -> None:
        self.manager.update_cost(completion_obj=response, user=self.user)


@dataclass
class CallLog:
    lines: list[str] = field(default_factory=list)

    def add(self, system: str, admitted_at: float, done_at: float, cost: float, admitted: bool) -> None:
        self.lines.append(f"{system},{admitted_at:.6f},{done_at:.6f},{cost!r},{int(admitted)}\n")

    def write(self, path: Path) -> None:
        path.write_text("system,admitted_at,done_at,cost,admitted\n" + "".join(self.lines))


async def one_call(gate: Gate, log: CallLog) -> None:
    admitted_at = time.time()
    metadata = await gate.admit()
    if metadata is None:  # done_at: when it was refused (a leased check may wait for a grant)
        log.add(gate.system, admitted_at, time.time(), 0.0, admitted=False)
        return
    response = await litellm.acompletion(model=MODEL, messages=MESSAGES, mock_response=ANSWER, metadata=metadata)
    gate.spent(response)
    log.add(gate.system, admitted_at, time.time(), response._hidden_params["response_cost"], admitted=True)


async def send(gate: Gate, log: CallLog, *, start: float, rate: float, duration: float) -> None:
    """Open loop: call n is due at start + n/rate whether or not earlier calls have finished."""
    in_flight: set[asyncio.Task[None]] = set()
    n = 0
    while (due := start + n / rate) < start + duration:
        await asyncio.sleep(max(0.0, due - time.time()))  # pacing the rate, not synchronisation
        n += 1
        task = asyncio.create_task(one_call(gate, log))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)


async def wait_for_canary(plugin: SpendpipeLogger, canary: str) -> None:
    """Spend on the canary team until the pipeline blocks it. The enforcer reads flush
    announcements from the latest offset, so a first flush may pass unseen: spend again."""
    gate = SpendpipeGate(plugin, canary)
    deadline = time.monotonic() + CANARY_WAIT_S
    while time.monotonic() < deadline:
        await one_call(gate, CallLog())
        for _ in range(50):
            if await gate.admit() is None:
                return
            await asyncio.sleep(0.1)  # polling the block list, with the deadline above
    raise TimeoutError(f"the pipeline did not block the canary team {canary} within {CANARY_WAIT_S:.0f} s")


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve(plugin: SpendpipeLogger, args: argparse.Namespace) -> None:
    await wait_for_canary(plugin, args.canary_team)
    manager = litellm.BudgetManager(project_name=f"overshoot-{args.gateway_id}")
    emit({"ready": True})
    while line := await asyncio.to_thread(sys.stdin.readline):
        run = json.loads(line)
        log = CallLog()
        rate = run.get("rate", args.rate)
        gates: list[Gate] = []
        if run.get("team"):
            gates.append(SpendpipeGate(plugin, run["team"]))
        if run.get("leased_team"):  # a budget with headroom leases
            gates.append(SpendpipeGate(plugin, run["leased_team"], system="leased"))
        if run.get("user"):
            # its own team, with no spendpipe budget: the plugin records it, nothing blocks it
            gates.append(BudgetManagerGate(manager, run["user"], run["cap"]))
        await asyncio.gather(
            *(
                send(gate, log, start=run["start"] + n / len(gates) / rate, rate=rate, duration=run["duration"])
                for n, gate in enumerate(gates)
            )
        )
        log.write(Path(run["log"]))
        emit({"done": run["run"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True, help="every topic name, as Topics JSON")
    parser.add_argument("--gateway-id", required=True)
    parser.add_argument("--canary-team", required=True)
    parser.add_argument("--rate", type=float, required=True, help="calls per second of each stream")
    args = parser.parse_args()
    settings = GatewaySettings(
        kafka=KafkaSettings(bootstrap_servers=args.bootstrap),
        topics=Topics.model_validate_json(args.topics),
        spool_dir=Path("spool"),
        gateway_id=args.gateway_id,
    )
    plugin = SpendpipeLogger.from_settings(settings)
    litellm.callbacks = [plugin]
    try:
        asyncio.run(serve(plugin, args))
    finally:
        plugin.close()


if __name__ == "__main__":
    main()
