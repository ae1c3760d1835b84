"""Driving rate-limited traffic through real proxies and measuring what was admitted."""

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from dev.litellm_proxy import LiteLLMProxy

HELLO = [{"role": "user", "content": "hello there how are you"}]
"""10 prompt tokens; LiteLLM's mock answers with 20 completion tokens."""


def key_scope(key: str) -> str:
    return f"key:{hashlib.sha256(key.encode()).hexdigest()}"


@dataclass(frozen=True)
class Answer:
    sent_at: float
    done_at: float
    proxy: int
    response: httpx.Response

    @property
    def admitted(self) -> bool:
        return self.response.status_code == 200

    def tokens(self, kind: str) -> int:
        return int(self.response.json()["usage"][f"{kind}_tokens"]) if self.admitted else 0


async def ask(
    http: httpx.AsyncClient, proxies: Sequence[LiteLLMProxy], n: int, key: str, model: str = "gpt-4o", **body: object
) -> Answer:
    """One chat completion through proxy `n % len(proxies)`."""
    which = n % len(proxies)
    sent = time.time()
    response = await http.post(
        f"{proxies[which].url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": HELLO, **body},
    )
    return Answer(sent, time.time(), which, response)


async def paced(
    http: httpx.AsyncClient,
    proxies: Sequence[LiteLLMProxy],
    key: str,
    *,
    per_second: float,
    seconds: float | None = None,
    until_refused_by_all: bool = False,
    model: str = "gpt-4o",
    **body: object,
) -> list[Answer]:
    """Requests at a steady rate (pacing, not synchronisation), alternating over the proxies,
    for `seconds`, or until every proxy has refused one (at most 60 s)."""
    start = time.monotonic()
    limit = seconds if seconds is not None else 60.0
    pending: list[asyncio.Task[Answer]] = []
    refused_by: set[int] = set()
    n = 0
    while time.monotonic() - start < limit:
        if until_refused_by_all and len(refused_by) == len(proxies):
            break
        pending.append(asyncio.create_task(ask(http, proxies, n, key, model, **body)))
        n += 1
        refused_by |= {t.result().proxy for t in pending if t.done() and not t.result().admitted}
        await asyncio.sleep(max(0.0, start + n / per_second - time.monotonic()))
    answers = list(await asyncio.gather(*pending))
    assert not until_refused_by_all or len({a.proxy for a in answers if not a.admitted}) == len(proxies), (
        f"not refused by every proxy within {limit}s: {[a.response.status_code for a in answers]}"
    )
    return answers


def most_in_a_sliding_minute(times: Sequence[float], window_s: float = 60.0) -> int:
    """The largest number of instants in any window (t - 60 s, t]."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def most_in_flight(intervals: Sequence[tuple[float, float]]) -> int:
    """The largest number of [start, end) intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most
