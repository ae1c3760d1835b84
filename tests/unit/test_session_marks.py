"""Where a granted session call is marked for the hook that sees it end, and that a client cannot
write that mark itself: the session gate with a session log that grants every call and keeps
what it is told."""

from typing import Any

import pytest
from litellm.proxy._types import UserAPIKeyAuth

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.sessions import SessionRecord
from spendpipe.gateway.sessions.caps import SessionCaps
from spendpipe.gateway.sessions.gate import SESSION_FIELD, SessionGate
from spendpipe.gateway.sessions.ledger import SessionVerdict
from tests.unit.test_plugin_policy import block, one_slot_gateway

AGENT = "planner"


class GrantingLog:
    """Stands in for the session log: grants every reservation, keeps every record written."""

    def __init__(self) -> None:
        self.written: list[SessionRecord] = []

    async def reserve(self, record: SessionRecord, *, wait_s: float) -> SessionVerdict:
        return SessionVerdict(record.call_id, granted=True)

    def write(self, record: SessionRecord) -> None:
        self.written.append(record)

    def start(self) -> None: ...

    def stop(self) -> None: ...


def gate(log: GrantingLog) -> SessionGate:
    caps = SessionCaps()
    caps.put(validate_budget({"scope": f"agent:{AGENT}", "max_iterations": 5}))
    return SessionGate(caps=caps, sessions=log, gateway_id="g", wait_s=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("route", ["chat/completions", "v1/responses"])
async def test_a_granted_call_is_marked_in_the_proxys_own_metadata_as_text(route: str) -> None:
    log = GrantingLog()
    sessions = gate(log)
    client_metadata = {"purpose": "test"}
    data: dict[str, Any] = {"model": "m", "metadata": dict(client_metadata)}
    if route == "v1/responses":  # LiteLLM keeps its own metadata apart; `metadata` goes to the provider
        data["litellm_metadata"] = {}

    verdict = await sessions.admit(AGENT, "s-1", data)
    assert verdict is not None
    assert verdict.granted

    slot = data["litellm_metadata"] if route == "v1/responses" else data["metadata"]
    assert isinstance(slot[SESSION_FIELD], str)
    if route == "v1/responses":
        assert data["metadata"] == client_metadata  # what the provider receives is the client's own
    sessions.settle(data, cost=0)  # type: ignore[arg-type]
    assert [(r.kind, r.agent_id, r.session_id, r.call_id) for r in log.written] == [
        ("settle", AGENT, "s-1", verdict.call_id)
    ]


@pytest.mark.parametrize(
    "planted",
    [
        {"metadata": {SESSION_FIELD: [AGENT, "s-victim", "c" * 32]}},
        {"metadata": {SESSION_FIELD: f'["{AGENT}", "s-victim", "{"c" * 32}"]'}},
        {"metadata": {}, "litellm_metadata": {SESSION_FIELD: f'["{AGENT}", "s-victim", "{"c" * 32}"]'}},
    ],
    ids=["a list in metadata", "text in metadata", "text in litellm_metadata"],
)
async def test_a_session_mark_a_client_wrote_ends_nothing(planted: dict[str, Any]) -> None:
    # given a proxy whose sessions are capped, and a request refused before its session is admitted
    log = GrantingLog()
    gateway = one_slot_gateway()
    gateway.sessions = gate(log)
    alice = UserAPIKeyAuth(api_key="a" * 64, user_id="alice")
    gateway.blocklist.apply(block("user:alice"))
    data: dict[str, Any] = {"model": "m", **{name: dict(value) for name, value in planted.items()}}

    # when the client's request came with a session mark of its own
    with pytest.raises(Exception, match="Budget has been exceeded"):
        await gateway.async_pre_call_hook(alice, None, data, "completion")
    await gateway.async_post_call_failure_hook(data, RuntimeError("refused"), alice)

    # then no session call is ended on the client's word
    assert log.written == []
    assert not gateway.sessions.marked(data)
