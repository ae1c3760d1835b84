"""The notifier on the real broker, delivering to a receiver on 127.0.0.1 through an
outage: the receiver answers 503, then is not listening at all, while alerts and decisions keep
coming and the first notifier is stopped mid-outage (a crash or a deploy); a second one in the
same consumer group takes over. When the receiver is back every notification has reached both
webhooks at least once under its idempotency key, per key in the order it was written, and the
forged (unsigned) decision was never notified."""

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from dev.local_kafka import free_port_pair
from spendpipe.contracts.alerts import BURN_RATE_MESSAGE_TYPE, BurnRateAlert, SoftBudgetAlert
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.notifier.metrics import NotifierMetrics
from spendpipe.notifier.notifications import of_alert, of_burn_rate, of_decision
from spendpipe.notifier.service import NotifierService
from spendpipe.notifier.settings import NotifierSettings, RetrySettings, WebhookSettings
from spendpipe.notifier.webhooks import Webhook, WebhookDelivery
from spendpipe.platform.kafka import KafkaSettings
from tests.support.alerts import publish_alerts
from tests.support.processes import ServiceProcess
from tests.support.signing import WriterKey, forged_headers, publish_decisions, write_records
from tests.support.waiting import eventually
from tests.support.webhook_receiver import WebhookReceiver

HOOKS = ("slack", "json")
HOSTILE = "team:<!channel> & <https://evil.example|click>\n*fake line*"
NOW = datetime.now(UTC).replace(microsecond=0)


def settings(bootstrap: str, topics: Topics, receiver: WebhookReceiver, group: str) -> NotifierSettings:
    return NotifierSettings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topics=topics,
        webhooks=[WebhookSettings(url=SecretStr(receiver.url(h)), format=h, name=h) for h in HOOKS],
        notifier_group_id=group,
        start_from="earliest",
        retry=RetrySettings(initial_backoff_s=0.02, max_backoff_s=0.2, alarm_after_attempts=3, timeout_s=2),
    )


@asynccontextmanager
async def running_notifier(notifier_settings: NotifierSettings) -> AsyncIterator[CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry=registry)
    webhooks = [
        Webhook(n, h) for n, h in zip(notifier_settings.webhook_names(), notifier_settings.webhooks, strict=True)
    ]
    async with httpx.AsyncClient() as client:
        delivery = WebhookDelivery(webhooks=webhooks, retry=notifier_settings.retry, metrics=metrics, client=client)
        service = NotifierService(settings=notifier_settings, delivery=delivery, metrics=metrics)
        await service.start()
        try:
            yield registry
        finally:
            await service.stop()


def decisions(keys: list[str], versions: range) -> list[Decision]:
    return [
        Decision(
            scope=scope,
            version=v,
            blocked=v % 2 == 1,
            reason=f"{scope} v{v}",
            window="1mo" if v % 2 == 1 else None,
            expires_at=NOW + timedelta(days=1) if v % 2 == 1 else None,
            decided_at=NOW,
        )
        for v in versions
        for scope in keys
    ]


def alerts(scopes: list[str]) -> list[SoftBudgetAlert]:
    return [
        SoftBudgetAlert(
            scope=scope,
            soft_budget=Decimal("5"),
            spend=Decimal("5.000001"),
            window="1mo",
            window_start=NOW,
            window_end=NOW + timedelta(days=30),
            alerted_at=NOW,
        )
        for scope in scopes
    ]


BURN_RATE = BurnRateAlert(
    scope="team:ops",
    model="gpt-4o",
    cap=Decimal("10"),
    spend=Decimal("4"),
    rate_per_second=Decimal("0.001"),
    lookback_start=NOW - timedelta(minutes=15),
    projected_exhaustion_at=NOW + timedelta(hours=2),
    window="24h",
    window_start=NOW,
    window_end=NOW + timedelta(days=1),
    alerted_at=NOW,
)


def failures(registry: CollectorRegistry) -> float:
    return sum(
        registry.get_sample_value("spendpipe_notifier_delivery_failures_total", {"webhook": h}) or 0 for h in HOOKS
    )


def first_seen_per_key(receiver: WebhookReceiver) -> dict[str, list[int]]:
    """Per decision key, the versions in the order the json webhook first accepted them."""
    seen: dict[str, list[int]] = {}
    delivered: set[str] = set()
    for received in receiver.accepted:
        if received.path == "/json" and received.idempotency_key not in delivered:
            delivered.add(received.idempotency_key)
            record: dict[str, Any] = received.body["record"]
            if "version" in record:
                seen.setdefault(received.body["key"], []).append(record["version"])
    return seen


async def test_every_notification_survives_a_receiver_outage_and_a_restart(
    kafka_broker: str, make_topics: Callable[..., Any], signing_keys: WriterKey
) -> None:
    # given: three partitions, a receiver that is down (503), a notifier in a fresh group
    topics = await make_topics(kafka_broker, 3)
    receiver = WebhookReceiver(status=503)
    await receiver.listen()
    group = f"notifier-{uuid.uuid4().hex[:12]}"
    keys = ["team:eng", "team:ops", "key:" + "a" * 64]
    first, second = decisions(keys, range(1, 4)), decisions(keys, range(4, 6))
    first_alerts, second_alerts = alerts(["team:eng", HOSTILE]), alerts(["team:ops"])
    forged = Decision(scope="team:eng", version=99, blocked=False, reason="forged", decided_at=NOW)
    forged_value = forged.model_dump_json().encode()

    try:
        async with running_notifier(settings(kafka_broker, topics, receiver, group)) as registry:
            # when: alerts and decisions come (a forged unblock among them) while refused with 503
            await publish_decisions(kafka_broker, topics.decisions, first[:3])
            unsigned = forged_headers(DECISION_TYPE, b"team:eng", forged_value, "unsigned", genuine=signing_keys)
            await write_records(kafka_broker, topics.decisions, [(b"team:eng", forged_value, unsigned)])
            await publish_decisions(kafka_broker, topics.decisions, first[3:])
            await publish_alerts(kafka_broker, topics.alerts, first_alerts)
            await eventually(
                lambda: registry.get_sample_value("spendpipe_notifier_stuck"), lambda v: v == 1, within=30, what="stuck"
            )
        # the first notifier stops mid-outage; the receiver stops listening (connection refused)
        await receiver.close()
        async with running_notifier(settings(kafka_broker, topics, receiver, group)) as registry:
            await publish_decisions(kafka_broker, topics.decisions, second)
            await publish_alerts(kafka_broker, topics.alerts, second_alerts)
            # a burn-rate warning, and an unsigned unblock that calls itself a decision on spend.alerts
            burn_rate = BURN_RATE.model_dump_json().encode()
            await write_records(
                kafka_broker,
                topics.alerts,
                [
                    (BURN_RATE.key.encode(), burn_rate, [(TYPE_HEADER, BURN_RATE_MESSAGE_TYPE.encode())]),
                    (b"team:eng", forged_value, [(TYPE_HEADER, DECISION_TYPE.encode())]),
                ],
            )
            await eventually(lambda: failures(registry), lambda n: n >= 6, within=30, what="refused connections")
            assert receiver.accepted == []

            # then: the receiver comes back and everything arrives, at each webhook
            receiver.status = 200
            await receiver.listen()
            expected = {of_decision(d).idempotency_key for d in first + second}
            expected |= {of_alert(a).idempotency_key for a in first_alerts + second_alerts}
            expected.add(of_burn_rate(BURN_RATE).idempotency_key)
            for hook in HOOKS:
                await eventually(
                    lambda hook=hook: set(receiver.keys(hook)),  # type: ignore[misc]
                    lambda seen: seen >= expected,
                    within=60,
                    what=f"every notification at the {hook} webhook",
                )
    finally:
        await receiver.close()

    assert receiver.refused > 0
    assert of_decision(forged).idempotency_key not in {r.idempotency_key for r in receiver.accepted}
    assert all(r.body.get("record", {}).get("reason") != "forged" for r in receiver.accepted)
    assert first_seen_per_key(receiver) == {key: [1, 2, 3, 4, 5] for key in keys}
    for received in receiver.accepted:
        if received.path == "/json":
            assert received.body["idempotency_key"] == received.idempotency_key
    hostile = of_alert(first_alerts[1]).idempotency_key
    (slack_text,) = {r.body["text"] for r in receiver.accepted if r.path == "/slack" and r.idempotency_key == hostile}
    assert not {"<", ">", "\n"} & set(slack_text)
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;\\n*fake line*" in slack_text
    (json_body,) = {json.dumps(r.body) for r in receiver.accepted if r.path == "/json" and r.idempotency_key == hostile}
    assert json.loads(json_body)["record"]["scope"] == HOSTILE


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_spendpipe_run_notifier_delivers_and_stops_on_sigterm(
    kafka_broker: str, make_topics: Callable[..., Any], tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker, 1)
    receiver = WebhookReceiver()
    await receiver.listen()
    ops_port = free_port_pair()
    secret_url = receiver.url("json") + "?token=s3cret-token"
    service = ServiceProcess(
        ["run", "notifier"],
        {
            "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker,
            **{f"SPENDPIPE_TOPICS__{name.upper()}": value for name, value in topics.model_dump().items()},
            "SPENDPIPE_WEBHOOKS": json.dumps([{"name": "ops", "url": secret_url}]),
            "SPENDPIPE_NOTIFIER_GROUP_ID": f"notifier-{uuid.uuid4().hex[:12]}",
            "SPENDPIPE_START_FROM": "earliest",
            "SPENDPIPE_OPS__PORT": str(ops_port),
        },
        tmp_path / "notifier.log",
    )
    decision = decisions(["team:eng"], range(1, 2))[0]
    service.start()
    try:
        await asyncio.to_thread(service.wait_http_ok, f"http://127.0.0.1:{ops_port}/readyz")
        await publish_decisions(kafka_broker, topics.decisions, [decision])
        await eventually(lambda: receiver.keys("json"), bool, within=30, what="the block delivered")
        metrics = await asyncio.to_thread(scrape, f"http://127.0.0.1:{ops_port}/metrics")
    finally:
        service.stop()
        await receiver.close()

    assert receiver.keys("json") == [of_decision(decision).idempotency_key]
    assert 'spendpipe_notifier_delivered_total{kind="block",webhook="ops"} 1.0' in metrics
    assert service.process is not None
    assert service.process.returncode == 0, service.log_tail()
    assert "s3cret-token" not in (tmp_path / "notifier.log").read_text()
