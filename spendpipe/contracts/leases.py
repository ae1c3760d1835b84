"""Headroom leases (docs/leases.md): `LeaseRequest` from a gateway on `spend.lease_requests`,
`LeaseGrant` from the enforcer on `spend.leases`, both keyed by the target's decision key
(`<scope>` or `<scope>|<model>`) so a target's records stay in one partition, in order.

A gateway's leases on one target form a chain, named by the gateway. Its first request commits
to a secret (`commitment` = SHA-256 hex of it); only a return that reveals the secret ends the
chain early, so a return written by anyone else frees nothing. A release hands part of a chain
back and keeps it open: it reveals the current secret and commits to the next one. Grants are signed by the
enforcer like decisions (`platform/signing`); `granted` is cumulative and a higher `version`
of a chain supersedes a lower one.

A chain returned with calls still in flight commits in its return to one more secret. Once those
calls have ended, the gateway settles the chain (`kind = "settle"`): it reveals that secret and
says what the calls cost, and the enforcer lowers what it counts as lent to the chain to match.
An enforcer older than `settle` reads such a record as unreadable and drops it (docs/leases.md,
upgrade order).
"""

import hashlib
import hmac
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from spendpipe.contracts.decisions import decision_key
from spendpipe.contracts.events import Cost

REQUEST_MESSAGE_TYPE = "spendpipe.lease_request.v1"
GRANT_MESSAGE_TYPE = "spendpipe.lease_grant.v1"

ChainId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
GatewayId = Annotated[str, Field(min_length=1, max_length=256)]
TargetScope = Annotated[str, Field(min_length=1, max_length=1024)]
Model = Annotated[str, Field(max_length=256)]


def commitment_of(secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(secret)).hexdigest()


def reveals(secret: str | None, commitment: str) -> bool:
    """Whether `secret` is the one `commitment` was made to (compared in constant time)."""
    if secret is None:
        return False
    return hmac.compare_digest(commitment_of(secret), commitment)


class LeaseRequest(BaseModel):
    """A gateway asks to add `want` to its chain on a target (`kind = "request"`), hands part of
    it back and keeps the chain (`kind = "release"`, with the chain's current secret, the next
    one's commitment and the cumulative amount released), hands the chain back
    (`kind = "return"`, with the chain's secret and its exact use), or, after a return with calls
    in flight, says what those calls cost once they all ended (`kind = "settle"`, with the secret
    the return committed to)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    kind: Literal["request", "release", "return", "settle"]
    gateway_id: GatewayId
    chain: ChainId
    scope: TargetScope
    model: Model = ""
    """The model of a `model_max_budget` target; empty for the scope's caps over all models."""
    want: Cost = Decimal(0)
    """Dollars to add to the chain (requests)."""
    need: Cost = Decimal(0)
    """Of `want`, the estimate of a call waiting for this grant (0 when asking ahead): granted
    whole when the headroom nobody holds covers it, even above the chain's fair share."""
    rate: Cost = Decimal(0)
    """The gateway's recent spend on the target, dollars per second: what the enforcer sizes by."""
    commitment: Sha256Hex | None = None
    """On a chain's first request: SHA-256 hex of the chain's secret. On a release: of the
    chain's next secret (the one its next release or its return reveals). On a return with calls
    in flight (`reserved` above 0): of the secret the chain's settle reveals."""
    secret: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """On a release, a return or a settle: the chain's current secret itself (32 bytes, hex)."""
    released: Cost = Decimal(0)
    """On a release: what the chain has handed back in all, cumulative (a later release never
    lowers it); the chain may spend `granted - released`."""
    used: Cost = Decimal(0)
    """On a return: the exact cost the chain was charged. On a settle: the exact cost of the
    calls that were in flight at the return."""
    reserved: Cost = Decimal(0)
    """On a return: estimates of the chain's calls still in flight."""

    @model_validator(mode="after")
    def _kind_fields(self) -> "LeaseRequest":
        if self.kind in ("return", "release", "settle") and self.secret is None:
            raise ValueError(f"a {self.kind} carries the chain's secret")
        if self.kind == "release" and self.commitment is None:
            raise ValueError("a release commits to the chain's next secret")
        return self

    @property
    def key(self) -> str:
        return target_key(self.scope, self.model)


class LeaseGrant(BaseModel):
    """The enforcer's answer on one chain: what it may spend in all (`granted`), until when, and
    the target's headroom nobody holds after this grant (`free`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    gateway_id: GatewayId
    chain: ChainId
    scope: TargetScope
    model: Model = ""
    version: int = Field(ge=0)
    """Grows with every grant on the chain; a reader keeps the highest."""
    granted: Cost
    """Cumulative: what the chain may spend since it began. A later grant never lowers it."""
    free: Cost
    """The target's headroom lent to no chain after this grant (0 when none is left)."""
    headroom: Cost | None = None
    """The target's headroom not yet spent as the pipeline counts it (`free` plus what the chains
    hold). A gateway whose chain cannot cover a call refuses it at once only when this is below
    the call's estimate; while chains hold more, it waits for them to hand some back. None from
    an enforcer that does not say (then `free` is all a gateway knows)."""
    ttl_s: float = Field(gt=0, le=3600)
    """The gateway stops using the chain this long after it received the grant."""
    expires_at: AwareDatetime
    revoked: bool = False
    """Stop admitting on this chain now (its budget changed or stopped leasing)."""
    issued_at: AwareDatetime

    @property
    def key(self) -> str:
        return target_key(self.scope, self.model)


def target_key(scope: str, model: str = "") -> str:
    """The same key as the target's budget decision (`decisions.decision_key`)."""
    return decision_key(scope, model)


class LeaseSettings(BaseModel):
    """The lease protocol's timings and the gateway's estimate rule (`SPENDPIPE_LEASES__*`), one
    section for the enforcer and the gateways: `ttl_s` and `settle_grace_s` must be the same on
    both sides (docs/leases.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    ttl_s: float = Field(default=10.0, gt=0, le=3600)
    """A grant lets its chain spend for this long after the gateway received it."""
    settle_grace_s: float = Field(default=5.0, ge=0, le=3600)
    """After a chain's expiry the enforcer keeps counting it as lent this long (longer than the
    pipeline's lag), so its last calls are in the totals before its slice is lent again."""
    horizon_s: float = Field(default=2.0, gt=0, le=3600)
    """A gateway asks for this many seconds of its recent spend at a time."""
    prefetch_s: float = Field(default=0.5, ge=0, le=3600)
    """A gateway asks for more once its chain holds less than this many seconds of its spend."""
    wait_s: float = Field(default=2.0, ge=0, le=600)
    """How long a call whose estimate the chain cannot cover waits for a grant."""
    idle_return_s: float = Field(default=1.0, gt=0, le=3600)
    """A chain without a call for this long is returned."""
    first_output_tokens: int = Field(default=256, ge=0)
    """Expected output of a model's first call at a gateway, when the request sets no `max_tokens`."""
    unpriced_reserve: Cost = Decimal("0.01")
    """Reserved for a call whose cost LiteLLM's cost map cannot estimate."""
