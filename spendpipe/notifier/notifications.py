"""What a person is told: one `Notification` per soft-budget alert, burn-rate warning, block or
unblock, with its
idempotency key, and the two payloads it is sent as (Slack-compatible and generic JSON).

Every value in the text comes from data (a scope is a request's `user` field, a reason or a
model whoever wrote the topic chose), so the Slack text escapes `&`, `<` and `>` as Slack's
formatting guide says (no `<!channel>`, no `<https://...|link>` from a value) and shows control
and invisible characters as visible escapes, as the CLI does (no line of its own forged with a
newline, no look-alike scope).
"""

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from spendpipe.contracts.alerts import BurnRateAlert, SoftBudgetAlert
from spendpipe.contracts.decisions import Decision
from spendpipe.platform.visible_text import visible

Kind = Literal["soft_budget_alert", "burn_rate_alert", "block", "unblock"]
PAYLOAD_VERSION = "spendpipe.notification.v1"

_SLACK_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def slack_escaped(value: object) -> str:
    """A value from data as Slack text: `&`, `<`, `>` escaped, and what would not print as itself
    (controls, bidi overrides, zero-width characters) as the CLI shows it (`platform.visible_text`)."""
    return visible("".join(_SLACK_ESCAPES.get(char, char) for char in str(value)))


SHOWN_CHARACTERS = 500
"""Most characters of one value from data in a notification's text; the rest is counted."""


def _cut(value: object) -> str:
    text = str(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[:SHOWN_CHARACTERS]}… ({len(text) - SHOWN_CHARACTERS:,} more characters)"


@dataclass(frozen=True)
class Notification:
    kind: Kind
    key: str
    """The record's key: the decision key, or the alert's `<scope>@<window start>`."""
    logical_id: str
    """What makes a repeat a repeat: `decision:<key>:v<version>`, `soft_budget_alert:<key>` or
    `burn_rate_alert:<key>` (an alert is sent once per window, so its key is its identity)."""
    summary: tuple[str | tuple[object], ...]
    """The text: our words as `str`, a value from data as a 1-tuple (escaped for Slack)."""
    record: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        """A header-safe digest of `logical_id` (which holds arbitrary scope text)."""
        return hashlib.sha256(self.logical_id.encode()).hexdigest()[:32]

    def text(self, *, slack: bool) -> str:
        shown = slack_escaped if slack else str
        return "".join(part if isinstance(part, str) else shown(_cut(part[0])) for part in self.summary)

    def slack_payload(self) -> dict[str, Any]:
        return {"text": self.text(slack=True)}

    def json_payload(self) -> dict[str, Any]:
        return {
            "type": PAYLOAD_VERSION,
            "idempotency_key": self.idempotency_key,
            "id": _cut(self.logical_id),  # whole, they identify it; `idempotency_key` does, always
            "kind": self.kind,
            "key": _cut(self.key),
            "text": self.text(slack=False),
            "record": self.record,
        }


def of_alert(alert: SoftBudgetAlert) -> Notification:
    start = alert.window_start.isoformat() if alert.window_start else "lifetime"
    return Notification(
        kind="soft_budget_alert",
        key=alert.key,
        logical_id=f"soft_budget_alert:{alert.key}",
        summary=(
            "Soft budget reached: ",
            (alert.scope,),
            " spent $",
            (alert.spend,),
            " of its soft budget $",
            (alert.soft_budget,),
            " (window ",
            (alert.window,),
            " from ",
            (start,),
            ")",
        ),
        record=alert.model_dump(mode="json"),
    )


def of_burn_rate(alert: BurnRateAlert) -> Notification:
    model = ("", "") if not alert.model else (" on model ", (alert.model,))
    return Notification(
        kind="burn_rate_alert",
        key=alert.key,
        logical_id=f"burn_rate_alert:{alert.key}",
        summary=tuple(
            part
            for part in (
                "Burn rate: ",
                (alert.scope,),
                *model,
                " reaches its cap $",
                (alert.cap,),
                " (window ",
                (alert.window,),
                ") at ",
                (alert.projected_exhaustion_at.isoformat(),),
                ", before the window resets at ",
                (alert.window_end.isoformat(),),
                "; spent $",
                (alert.spend,),
            )
            if part != ""
        ),
        record=alert.model_dump(mode="json"),
    )


def of_decision(decision: Decision) -> Notification:
    model = ("", "") if not decision.model else (" on model ", (decision.model,))
    if decision.blocked:
        lifts = (
            (" until ", (decision.expires_at.isoformat(),)) if decision.expires_at else (" until its budget changes",)
        )
        what: tuple[str | tuple[object], ...] = (
            "Blocked" if decision.kind == "budget" else "Rate-limited",
            ": ",
            (decision.scope,),
            *model,
            *lifts,
            ": ",
            (decision.reason,),
        )
    else:
        what = ("Unblocked: ", (decision.scope,), *model, ": ", (decision.reason,))
    return Notification(
        kind="block" if decision.blocked else "unblock",
        key=decision.key,
        logical_id=f"decision:{decision.key}:v{decision.version}",
        summary=tuple(part for part in what if part != ""),
        record=decision.model_dump(mode="json"),
    )
