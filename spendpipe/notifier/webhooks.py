"""Delivering one notification to every webhook, retrying each until it accepts.

A webhook has accepted when it answers 2xx. Anything else (refused, timed out, 429, 5xx, and 4xx
too: a receiver misconfigured now may be fixed later) is a failure, counted and retried after a
backoff that doubles from `initial_backoff_s` to `max_backoff_s` and stays there. A webhook that
accepted is not sent the notification again by this call; across a restart it may be (at least
once), and receivers drop it by its `Idempotency-Key`.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from spendpipe.notifier.metrics import NotifierMetrics
from spendpipe.notifier.notifications import Notification
from spendpipe.notifier.settings import RetrySettings, WebhookSettings

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
MOST_BODY_BYTES = 64 << 10
"""Largest body sent: well under what receivers take (Slack's text limit is 40,000 characters,
a proxy in front of a receiver often refuses 1 MiB)."""

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Webhook:
    name: str
    settings: WebhookSettings

    def body(self, notification: Notification) -> bytes:
        """The request's body, never over `MOST_BODY_BYTES`: the text shows each value from data
        cut to `notifications.SHOWN_CHARACTERS`, and a record too large to go along is left out
        (`record_omitted`), so no alert a topic's writer chose is too large for a receiver."""
        if self.settings.format == "slack":
            return json.dumps(notification.slack_payload(), ensure_ascii=False).encode()
        payload = notification.json_payload()
        body = json.dumps(payload, ensure_ascii=False).encode()
        if len(body) <= MOST_BODY_BYTES:
            return body
        payload["record"] = None
        payload["record_omitted"] = f"the record is {len(body):,} bytes; read it on the topic"
        return json.dumps(payload, ensure_ascii=False).encode()


class WebhookDelivery:
    """Sends notifications to every webhook; `deliver()` returns once each has accepted."""

    def __init__(
        self,
        *,
        webhooks: list[Webhook],
        retry: RetrySettings,
        metrics: NotifierMetrics,
        client: httpx.AsyncClient,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._webhooks = webhooks
        self._retry = retry
        self._metrics = metrics
        self._client = client
        self._sleep = sleep

    async def deliver(self, notification: Notification) -> None:
        """Return when every webhook accepted `notification`; until then retry, never give up."""
        waiting = list(self._webhooks)
        failures = 0
        while True:
            waiting = [hook for hook in waiting if not await self._send(hook, notification)]
            if not waiting:
                if failures >= self._retry.alarm_after_attempts:
                    log.info("notification %s delivered after %d failures", notification.idempotency_key, failures)
                self._metrics.stuck.set(0)
                return
            failures += 1
            if failures == self._retry.alarm_after_attempts:
                self._metrics.stuck.set(1)
                log.error(
                    "notification %s not accepted by %s after %d attempts; still retrying every %ss",
                    notification.idempotency_key,
                    ", ".join(hook.name for hook in waiting),
                    failures,
                    self._retry.max_backoff_s,
                )
            await self._sleep(self.backoff(failures))

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt after `failures` failures in a row."""
        return float(min(self._retry.initial_backoff_s * 2 ** min(failures - 1, 30), self._retry.max_backoff_s))

    async def _send(self, hook: Webhook, notification: Notification) -> bool:
        """One attempt: within `timeout_s` in all (httpx's own timeout bounds each read, so an
        answer trickled a byte at a time would hold the notifier), and the answer's body is never
        read (only its status counts: a huge one would be read into memory)."""
        try:
            async with asyncio.timeout(self._retry.timeout_s):
                async with self._client.stream(
                    "POST",
                    hook.settings.url.get_secret_value(),
                    content=hook.body(notification),
                    headers={"Content-Type": "application/json", IDEMPOTENCY_HEADER: notification.idempotency_key},
                    timeout=self._retry.timeout_s,
                ) as response:
                    status = response.status_code
        except (httpx.HTTPError, TimeoutError) as error:
            # the error's text may hold the URL: name the webhook and the error type only
            log.warning("webhook %s: %s delivering %s", hook.name, type(error).__name__, notification.idempotency_key)
            self._metrics.failures.labels(hook.name).inc()
            return False
        if not 200 <= status < 300:
            log.warning("webhook %s answered %d to %s", hook.name, status, notification.idempotency_key)
            self._metrics.failures.labels(hook.name).inc()
            return False
        self._metrics.delivered.labels(hook.name, notification.kind).inc()
        return True
