"""The demo's traffic: LiteLLM `mock_response` calls through the gateway plugin in SDK mode,
paced by `cli_traffic.run_traffic`, checking the block list before each call as SDK users do.

Each call goes out under one of six demo keys of three teams, with the key's team and a user
in LiteLLM's metadata, as the proxy would resolve them. A refused call is LiteLLM's own error
(`BudgetExceededError`, or `RateLimitError` for a rate limit); the demo reports the first
refusal of each key for each reason, and the first call served again after refusals.
"""

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import litellm

from spendpipe.admin.cli_traffic import run_traffic
from spendpipe.gateway.plugin import SpendpipeLogger

TEAMS = ("search", "support", "research")
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo")
SERVED, REFUSED = 200, 400


@dataclass(frozen=True)
class DemoKey:
    team: str
    n: int

    @property
    def raw(self) -> str:
        """The key a client would send; the plugin hashes it, the demo never prints it."""
        return f"sk-demo-{self.team}-{self.n}"

    @property
    def alias(self) -> str:
        return f"demo-{self.team}-{self.n}"


KEYS = tuple(DemoKey(team, n) for team in TEAMS for n in range(2))
BUDGETED_KEY = KEYS[-1]


@dataclass
class KeyTally:
    served: int = 0
    refused: int = 0
    refusing: str | None = None
    """The reason of the refusals in a row, until a call is served again."""


@dataclass
class DemoPlan:
    """Request `n`: a key, a model, an end customer and a prompt, drawn from a seeded generator."""

    seed: int = 42
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - demo traffic, not security

    def request(self, n: int) -> dict[str, Any]:
        key = self._rng.choice(KEYS)
        return {
            "model": self._rng.choice(MODELS),
            "user": f"customer-{self._rng.randint(1, 5)}",
            "metadata": {
                "user_api_key": key.raw,
                "user_api_key_alias": key.alias,
                "user_api_key_user_id": f"{key.team}-dev-{n % 3}",
                "user_api_key_team_id": key.team,
            },
            "messages": [{"role": "user", "content": "hello " * self._rng.randint(1, 40)}],
            "mock_response": "spend " * self._rng.randint(1, 80),
        }


class DemoTraffic:
    """Runs the plan in a thread until `stop()`; `tallies` counts each key's answers."""

    def __init__(self, *, plugin: SpendpipeLogger, rate: float, report: Callable[[str], None]) -> None:
        self._plugin = plugin
        self._rate = rate
        self._report = report
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self.tallies = {key.alias: KeyTally() for key in KEYS}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        run_traffic(
            send=self._send,
            plan=DemoPlan(),
            count=0,
            rate=self._rate,
            sleep=self._pause,
            stopped=self._stopping.is_set,
        )

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # the pacing pause, cut short by stop()

    def _send(self, call: dict[str, Any]) -> int:
        alias = call["metadata"]["user_api_key_alias"]
        tally = self.tallies[alias]
        try:
            self._plugin.check(model=call["model"], user=call["user"], metadata=call["metadata"])
        except (litellm.BudgetExceededError, litellm.RateLimitError) as refusal:
            tally.refused += 1
            # LiteLLM's own error name (spendpipe raises subclasses of it that name the scope)
            kind = "BudgetExceededError" if isinstance(refusal, litellm.BudgetExceededError) else "RateLimitError"
            reason = f"{kind}: {refusal}"
            if tally.refusing != reason:
                tally.refusing = reason
                self._report(f"{_now()} refused {alias} (team {call['metadata']['user_api_key_team_id']}): {reason}")
            return REFUSED
        litellm.completion(**call)
        tally.served += 1
        if tally.refusing is not None:
            tally.refusing = None
            self._report(f"{_now()} served {alias} again")
        return SERVED


def _now() -> str:
    return f"{datetime.now(UTC):%H:%M:%S}"
