"""Soft-budget alerts written as the enforcer writes them: JSON, keyed `<scope>@<window start>`,
with the type header."""

from spendpipe.contracts.alerts import MESSAGE_TYPE as ALERT_TYPE
from spendpipe.contracts.alerts import SoftBudgetAlert
from spendpipe.contracts.topics import TYPE_HEADER
from tests.support.signing import write_records


async def publish_alerts(bootstrap: str, topic: str, alerts: list[SoftBudgetAlert]) -> None:
    headers = [(TYPE_HEADER, ALERT_TYPE.encode())]
    await write_records(bootstrap, topic, [(a.key.encode(), a.model_dump_json().encode(), headers) for a in alerts])
