"""The notifier's parts without I/O: what a notification says and under which idempotency key,
the Slack text escaped, the backoff, retries until each webhook accepts (httpx's MockTransport
answers), and its settings."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from spendpipe.contracts.alerts import BurnRateAlert, SoftBudgetAlert
from spendpipe.contracts.decisions import Decision
from spendpipe.notifier.metrics import NotifierMetrics
from spendpipe.notifier.notifications import of_alert, of_burn_rate, of_decision, slack_escaped
from spendpipe.notifier.settings import NotifierSettings, RetrySettings, WebhookSettings
from spendpipe.notifier.webhooks import IDEMPOTENCY_HEADER, MOST_BODY_BYTES, Webhook, WebhookDelivery
from spendpipe.platform.settings import SettingsError, load_settings

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def block(version: int, scope: str = "team:eng", model: str = "") -> Decision:
    return Decision(
        scope=scope, model=model, version=version, blocked=True, reason="over 10 in 1mo", window="1mo",
        expires_at=NOW + timedelta(days=30), decided_at=NOW,
    )  # fmt: skip


def test_slack_text_escapes_what_slack_parses_and_shows_controls() -> None:
    assert slack_escaped("<!channel> & <https://x|y>") == "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
    assert slack_escaped("a\nb\x1b[2J\u202e") == "a\\nb\\x1b[2J\\u202e"


def test_a_decision_says_what_happened_and_escapes_only_data() -> None:
    notification = of_decision(block(3, scope="team:<eng>", model="gpt-4o"))

    assert notification.kind == "block"
    assert notification.text(slack=True) == (
        "Blocked: team:&lt;eng&gt; on model gpt-4o until 2026-12-31T12:00:00+00:00: over 10 in 1mo"
    )
    assert notification.text(slack=False).startswith("Blocked: team:<eng> on model gpt-4o")
    unblock = of_decision(Decision(scope="team:eng", version=4, blocked=False, reason="reset", decided_at=NOW))
    assert (unblock.kind, unblock.text(slack=True)) == ("unblock", "Unblocked: team:eng: reset")


def test_idempotency_key_per_decision_version_and_per_alert() -> None:
    assert of_decision(block(3)).idempotency_key == of_decision(block(3)).idempotency_key
    assert of_decision(block(3)).idempotency_key != of_decision(block(4)).idempotency_key
    assert of_decision(block(3)).idempotency_key != of_decision(block(3, model="gpt-4o")).idempotency_key
    alert = SoftBudgetAlert(
        scope="team:eng\r\nX-Injected: 1", soft_budget=Decimal(5), spend=Decimal("5.5"), window="1mo",
        window_start=NOW, window_end=NOW + timedelta(days=30), alerted_at=NOW,
    )  # fmt: skip
    key = of_alert(alert).idempotency_key
    assert len(key) == 32
    assert key.isalnum()
    payload = of_alert(alert).json_payload()
    assert payload["idempotency_key"] == key
    assert payload["id"] == f"soft_budget_alert:{alert.key}"
    assert payload["record"]["spend"] == "5.5"


def test_a_burn_rate_warning_says_when_the_cap_is_reached() -> None:
    warning = BurnRateAlert(
        scope="team:<a&b>", model="gpt-4o", cap=Decimal(10), spend=Decimal(4), rate_per_second=Decimal("0.001"),
        lookback_start=NOW - timedelta(minutes=15), projected_exhaustion_at=NOW + timedelta(hours=2), window="24h",
        window_start=NOW, window_end=NOW + timedelta(days=1), alerted_at=NOW,
    )  # fmt: skip
    notification = of_burn_rate(warning)

    assert notification.kind == "burn_rate_alert"
    assert notification.logical_id == f"burn_rate_alert:{warning.key}"
    assert notification.text(slack=True) == (
        "Burn rate: team:&lt;a&amp;b&gt; on model gpt-4o reaches its cap $10 (window 24h) at "
        "2026-12-01T14:00:00+00:00, before the window resets at 2026-12-02T12:00:00+00:00; spent $4"
    )
    assert notification.json_payload()["record"]["rate_per_second"] == "0.001"


class Receiver:
    """Answers each path from a script of statuses (None: refused; then 200), recording what it accepted."""

    def __init__(self, statuses: dict[str, list[int | None]]) -> None:
        self.statuses = statuses
        self.seen: list[tuple[str, str, dict[str, object]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        script = self.statuses[request.url.path]
        status = script.pop(0) if script else 200
        if status is None:
            raise httpx.ConnectError("refused", request=request)
        if status == 200:
            self.seen.append((request.url.path, request.headers[IDEMPOTENCY_HEADER], json.loads(request.content)))
        return httpx.Response(status)


async def test_each_webhook_is_retried_until_it_accepts_and_never_sent_twice() -> None:
    receiver, slept = Receiver({"/slack": [503], "/json": [None, 429, 500]}), []
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry=registry)
    hooks = [
        Webhook("slack", WebhookSettings(url=SecretStr("http://r/slack"), format="slack")),
        Webhook("json", WebhookSettings(url=SecretStr("http://r/json"))),
    ]

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        retry = RetrySettings(initial_backoff_s=1, max_backoff_s=4, alarm_after_attempts=3)
        delivery = WebhookDelivery(webhooks=hooks, retry=retry, metrics=metrics, client=client, sleep=sleep)
        notification = of_decision(block(1))
        await delivery.deliver(notification)

    assert [path for path, _, _ in receiver.seen] == ["/slack", "/json"]  # each accepted once
    assert {key for _, key, _ in receiver.seen} == {notification.idempotency_key}
    assert slept == [1, 2, 4]
    assert registry.get_sample_value("spendpipe_notifier_delivery_failures_total", {"webhook": "slack"}) == 1
    assert registry.get_sample_value("spendpipe_notifier_delivery_failures_total", {"webhook": "json"}) == 3
    assert registry.get_sample_value("spendpipe_notifier_stuck") == 0
    bodies = {path: body for path, _, body in receiver.seen}
    assert set(bodies["/slack"]) == {"text"}
    assert bodies["/json"]["idempotency_key"] == notification.idempotency_key


def test_backoff_doubles_to_its_bound() -> None:
    retry = RetrySettings(initial_backoff_s=0.5, max_backoff_s=60)
    delivery = WebhookDelivery(
        webhooks=[], retry=retry, metrics=NotifierMetrics(registry=CollectorRegistry()), client=httpx.AsyncClient()
    )
    assert [delivery.backoff(n) for n in (1, 2, 3, 8, 1000)] == [0.5, 1, 2, 60, 60]


def test_settings_need_a_webhook_and_keep_its_url_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDPIPE_WEBHOOKS", "[]")
    with pytest.raises(SettingsError, match="no webhook to deliver to"):
        load_settings(NotifierSettings)
    monkeypatch.setenv(
        "SPENDPIPE_WEBHOOKS",
        '[{"url": "https://hooks.slack.com/services/T/B/secret", "format": "slack"}, {"url": "https://x/h"}]',
    )
    settings = load_settings(NotifierSettings)
    assert settings.webhook_names() == ["webhook-0", "webhook-1"]
    assert settings.webhooks[0].format == "slack"
    assert "secret" not in repr(settings)


def test_slack_text_shows_what_reorders_or_prints_as_nothing_as_the_cli_does() -> None:
    assert slack_escaped("eng\u200b \u061cx \ufeff \U000e0041") == "eng\\u200b \\u061cx \\ufeff \\U000e0041"


def test_a_body_never_grows_past_its_bound_whatever_an_alert_holds() -> None:
    """Alerts are not signed: whoever writes the topic chooses a scope of 900,000 characters. The
    text shows each value cut, and the record is left out of a JSON body it would make too big."""
    huge = SoftBudgetAlert(
        scope="team:" + "<" * 900_000, soft_budget=Decimal("1"), spend=Decimal("2"), window="1d",
        window_start=NOW, window_end=NOW + timedelta(days=1), alerted_at=NOW,
    )  # fmt: skip
    notification = of_alert(huge)

    for fmt in ("slack", "json"):
        body = Webhook(fmt, WebhookSettings(url=SecretStr("http://r/"), format=fmt)).body(notification)
        assert len(body) <= MOST_BODY_BYTES
    as_json = json.loads(Webhook("j", WebhookSettings(url=SecretStr("http://r/"))).body(notification))
    assert as_json["record"] is None
    assert "(899,505 more characters)" in as_json["text"]  # "team:" and 900,000: 500 shown
    assert as_json["idempotency_key"] == notification.idempotency_key
