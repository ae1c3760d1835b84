"""`SessionRecord`: one step of an agent session's admission log, the message on `spend.sessions`,
keyed by `<agent>|<session>` so every record of a session lands in one partition, in order.

Gateways write `reserve` before a call of a capped session and `settle` (its cost), `release`
(it failed: it counts as an iteration, costs nothing) or `withdraw` (it never ran) after it.
Every gateway reads the whole topic and applies the same records in the same order to the same
deterministic ledger (`gateway/sessions/ledger.py`), so all reach the same verdict on
every reservation without asking each other: the partition is the session's one serialisation
point. A reservation carries the caps its gateway saw, so a gateway with older budgets cannot
judge it differently.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from spendpipe.contracts.events import Cost, Label
from spendpipe.contracts.rate_limits import LimitCount

MESSAGE_TYPE = "spendpipe.session_record.v1"

RecordKind = Literal["reserve", "settle", "release", "withdraw"]


class SessionRecord(BaseModel):
    """One step of a capped agent session's admission log: `reserve` before a call, then `settle`
    (its cost), `release` (it failed) or `withdraw` (it never ran). Every gateway applies the
    records of a session in log order and reaches the same verdicts."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    kind: RecordKind
    agent_id: str = Field(min_length=1, max_length=256)
    session_id: str = Field(min_length=1, max_length=256)
    call_id: str = Field(min_length=1, max_length=128)
    """Chosen by the gateway (not the client), unique per call."""
    max_iterations: LimitCount | None = None
    """On `reserve`: the agent's caps as the reserving gateway saw them."""
    max_budget_per_session: Cost | None = None
    cost: Cost | None = None
    """On `settle`: what the call cost."""
    gateway_id: Label = None

    @property
    def key(self) -> str:
        return session_key(self.agent_id, self.session_id)


def session_key(agent_id: str, session_id: str) -> str:
    return f"{agent_id}|{session_id}"
