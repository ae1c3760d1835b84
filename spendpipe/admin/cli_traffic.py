"""`spendpipe traffic`: chat completions against a LiteLLM proxy, to see spend flow.

The compose file runs it (profile `traffic`) against the gateway's `mock_response` models, so
every request has a real price and no provider is called. Standard library HTTP only: it must
run in the slim services image with nothing added.
"""

import json
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

UNREACHABLE = 0
"""The status counted when the proxy did not answer at all."""

Send = Callable[[dict[str, Any]], int]
"""Posts one chat completion body and returns the HTTP status (UNREACHABLE if none)."""


class Plan(Protocol):
    """What request `n` of a run is."""

    def request(self, n: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrafficPlan:
    """Request `n` of a run: models and end customers in turn, so every one gets spend."""

    models: tuple[str, ...]
    end_users: int

    def request(self, n: int) -> dict[str, Any]:
        return {
            "model": self.models[n % len(self.models)],
            "user": f"customer-{n % self.end_users}",
            "messages": [{"role": "user", "content": f"spendpipe traffic request {n}"}],
        }


def http_sender(url: str, api_key: str, timeout_s: float = 30.0) -> Send:
    """A `Send` that posts to `<url>/chat/completions` with the key as a bearer token."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    endpoint = url.rstrip("/") + "/chat/completions"

    def send(body: dict[str, Any]) -> int:
        request = urllib.request.Request(  # noqa: S310 (http(s) only, checked above)
            endpoint,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (as above)
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return UNREACHABLE

    return send


def run_traffic(
    *,
    send: Send,
    plan: Plan,
    count: int,
    rate: float,
    on_answer: Callable[[int, Counter[int]], None] = lambda n, statuses: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stopped: Callable[[], bool] = lambda: False,
) -> Counter[int]:
    """Send `count` requests (0: until interrupted or `stopped()`) at most `rate` per second (0:
    back to back). Returns how many answers had each status; `on_answer` sees the running tally
    after each. `stopped` is asked before each request, after its pause."""
    statuses: Counter[int] = Counter()
    start = clock()
    n = 0
    while count == 0 or n < count:
        if rate > 0:
            sleep(max(0.0, start + n / rate - clock()))
        if stopped():
            break
        statuses[send(plan.request(n))] += 1
        n += 1
        on_answer(n, statuses)
    return statuses


def _summary(statuses: Counter[int]) -> str:
    return ", ".join(f"{status or 'unreachable'}: {seen}" for status, seen in sorted(statuses.items()))


def traffic(
    url: Annotated[str, typer.Option(help="the LiteLLM proxy's base URL")] = "http://127.0.0.1:4000",
    api_key: Annotated[str, typer.Option(envvar="LITELLM_API_KEY", help="a key the proxy accepts")] = "",
    model: Annotated[list[str] | None, typer.Option(help="a model the proxy serves; repeat for several")] = None,
    end_users: Annotated[int, typer.Option(min=1, help="distinct end customers (the `user` field)")] = 5,
    rate: Annotated[float, typer.Option(min=0, help="requests per second (0: as fast as answered)")] = 2.0,
    count: Annotated[int, typer.Option(min=0, help="requests to send (0: until stopped)")] = 0,
    heartbeat: Annotated[Path | None, typer.Option(help="a file touched after every answer")] = None,
) -> None:
    """Send mock chat completions to a LiteLLM proxy and print the answers' statuses."""
    plan = TrafficPlan(models=tuple(model or ("gpt-4o-mini", "gpt-4o")), end_users=end_users)

    def on_answer(n: int, statuses: Counter[int]) -> None:
        if heartbeat is not None:
            heartbeat.touch()
        if n % 50 == 0:
            typer.echo(f"{n} requests: {_summary(statuses)}")

    # SIGTERM (a container's stop) ends it as Ctrl-C does; as a container's PID 1 it would
    # otherwise be ignored, and the engine would SIGKILL it after its grace period
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        statuses = run_traffic(send=http_sender(url, api_key), plan=plan, count=count, rate=rate, on_answer=on_answer)
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo(f"done, {sum(statuses.values())} requests: {_summary(statuses)}")
    if not statuses[200]:
        raise typer.Exit(1)
