"""`spendpipe run notifier`: settings in, the HTTP client, delivery and service built, run until
SIGINT or SIGTERM, with the ops server (/healthz, /readyz, /metrics) beside it."""

import asyncio
import logging
import signal

import httpx
from prometheus_client import REGISTRY, CollectorRegistry

from spendpipe.notifier.metrics import NotifierMetrics
from spendpipe.notifier.service import NotifierService
from spendpipe.notifier.settings import NotifierSettings
from spendpipe.notifier.webhooks import Webhook, WebhookDelivery
from spendpipe.platform.ops_server import OpsServer, Readiness

SECRET_LOGGERS = ("httpx", "httpcore")
"""They log each request with its URL, and a webhook URL is a credential (Slack's holds its token)."""


async def serve(settings: NotifierSettings, *, registry: CollectorRegistry = REGISTRY) -> None:
    for name in SECRET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    metrics = NotifierMetrics(registry=registry)
    readiness = Readiness()
    ops = OpsServer(settings=settings.ops, registry=registry, readiness=readiness).start()
    webhooks = [Webhook(name, hook) for name, hook in zip(settings.webhook_names(), settings.webhooks, strict=True)]
    try:
        async with httpx.AsyncClient(follow_redirects=False) as client:
            delivery = WebhookDelivery(webhooks=webhooks, retry=settings.retry, metrics=metrics, client=client)
            service = NotifierService(settings=settings, delivery=delivery, metrics=metrics)
            readiness.add("notifier", service.not_ready)
            await service.start()
            try:
                await _until_signalled(service)
            finally:
                await service.stop()
    finally:
        ops.stop()


async def _until_signalled(service: NotifierService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stopped = asyncio.create_task(stop.wait())
    running = asyncio.create_task(service.wait())
    done, _ = await asyncio.wait({stopped, running}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if running in done:
        running.result()  # the loop failed: raise its error
