"""Settings of the notifier (env prefix `SPENDPIPE_`, `__` between section and field)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from spendpipe.platform.settings import PipelineSettings

PayloadFormat = Literal["slack", "json"]


class WebhookSettings(BaseModel):
    """One receiver of notifications."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    url: SecretStr
    """Where notifications are POSTed; a secret (a Slack incoming-webhook URL is a credential)."""
    format: PayloadFormat = "json"
    """`slack`: `{"text": ...}` as Slack incoming webhooks take it; `json`: the generic payload."""
    name: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9._-]*$")
    """A label for logs and metrics (the URL never appears there); default `webhook-<n>`."""


class RetrySettings(BaseModel):
    """`SPENDPIPE_RETRY__*`: how a failed delivery is tried again. It never stops trying."""

    initial_backoff_s: float = Field(default=1.0, gt=0, le=60)
    max_backoff_s: float = Field(default=60.0, gt=0, le=3600)
    """The backoff doubles after each failure up to this, then stays here until delivered."""
    alarm_after_attempts: int = Field(default=8, ge=1)
    """Failures in a row after which a delivery counts as stuck (logged as an error, the
    `spendpipe_notifier_stuck` gauge set): it is still retried, never dropped."""
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    """One HTTP request's timeout."""


class NotifierSettings(PipelineSettings):
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    """`SPENDPIPE_WEBHOOKS='[{"url": "https://hooks.slack.com/...", "format": "slack"}]'`."""
    notifier_group_id: str = Field(default="spendpipe-notifier", min_length=1)
    """Consumer group: its committed offsets are the notifications already delivered."""
    start_from: Literal["latest", "earliest"] = "latest"
    """Where a new consumer group starts: `latest` notifies only what happens from now on;
    `earliest` also every alert and decision still on the topics."""
    retry: RetrySettings = RetrySettings()

    @model_validator(mode="after")
    def _receivers(self) -> "NotifierSettings":
        """At least one webhook, names unique; decisions are verified before they are notified."""
        problems = []
        if not self.webhooks:
            problems.append("SPENDPIPE_WEBHOOKS: no webhook to deliver to")
        names = self.webhook_names()
        if len(set(names)) != len(names):
            problems.append(f"SPENDPIPE_WEBHOOKS: webhook names repeat ({', '.join(names)})")
        if self.retry.initial_backoff_s > self.retry.max_backoff_s:
            problems.append("SPENDPIPE_RETRY__INITIAL_BACKOFF_S: above SPENDPIPE_RETRY__MAX_BACKOFF_S")
        problems += self.signing.problems(writes=False, reads=True)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def webhook_names(self) -> list[str]:
        return [hook.name or f"webhook-{n}" for n, hook in enumerate(self.webhooks)]
