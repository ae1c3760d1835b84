"""Scopes: who a request's spend is attributed to.

Every event counts towards its key, user, team, team membership (user within team),
organisation, end customer, each of its request tags, its model's provider and the global
scope; each of those both across all models and for the event's own model. `model = ""` means
"all models".

**Tags** (LiteLLM's tag budgets): a request counts once towards each distinct tag it carries
(`attributed_tags`): empty tags and the overflow marker `<+N more>` (written by a gateway in place
of the tags past `MAX_TAGS`) name no scope, and at most `MAX_TAGS` distinct tags are attributed
per event, the first ones in the event's order. The event's cost still counts in full for every
other scope. **Provider** (LiteLLM's `provider_budget_config`): the provider LiteLLM called
(`custom_llm_provider`, e.g. `openai`).
"""

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

ALL_MODELS = ""
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
"""A key hash as LiteLLM's proxy stores it: 64 lowercase hex digits."""


class ScopeType(StrEnum):
    KEY = "key"
    USER = "user"
    TEAM = "team"
    TEAM_MEMBER = "team_member"
    ORG = "org"
    END_USER = "end_user"
    GLOBAL = "global"
    TAG = "tag"
    """A request tag (LiteLLM's `metadata.tags`, `x-litellm-tags`): LiteLLM's tag budgets."""
    PROVIDER = "provider"
    """The provider a call went to (`custom_llm_provider`): LiteLLM's `provider_budget_config`."""
    AGENT = "agent"
    """An agent (LiteLLM's agent id): rate limits and session caps only. Its spend has no rollup
    of its own (agents are not in `scopes_of`); per-session spend is counted by the gateways."""


GLOBAL_ID = ""
TEAM_MEMBER_SEPARATOR = "/"
MAX_TAGS = 32
"""Tags attributed per event; a gateway keeps at most this many per call, the last place then
holding the overflow marker."""
OVERFLOW_TAG = re.compile(r"^<\+[0-9]+ more>$")
"""The marker a gateway writes in place of the tags past `MAX_TAGS` (`<+3 more>`): no scope."""


def scope_name(scope_type: ScopeType, scope_id: str) -> str:
    """A scope as budgets, decisions and the CLI name it: `team:eng`, `team_member:eng/alice`;
    the global scope is `global`. `Scope.parse` reads it back."""
    return scope_type.value if scope_type is ScopeType.GLOBAL else f"{scope_type.value}:{scope_id}"


def overflow_marker(dropped: int) -> str:
    return f"<+{dropped} more>"


def attributed_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The tags whose scopes an event with `tags` counts towards, by the rule above (the
    aggregator's rollup SQL applies the same rule; tests/integration/test_rollup.py holds them
    together)."""
    kept: list[str] = []
    for tag in tags:
        if tag and tag not in kept and not OVERFLOW_TAG.match(tag):
            kept.append(tag)
    return tuple(kept[:MAX_TAGS])


@dataclass(frozen=True, slots=True)
class Scope:
    type: ScopeType
    id: str

    def __str__(self) -> str:
        return scope_name(self.type, self.id)

    @classmethod
    def parse(cls, text: str) -> "Scope":
        """`team:eng`, `team_member:eng/alice`, `global`. Raises ValueError naming what is wrong."""
        kind, _, scope_id = text.partition(":")
        try:
            scope_type = ScopeType(kind)
        except ValueError:
            known = ", ".join(t.value for t in ScopeType)
            raise ValueError(f"unknown scope type {kind!r} (expected one of: {known})") from None
        if scope_type is ScopeType.GLOBAL:
            return cls(scope_type, GLOBAL_ID)
        if not scope_id:
            raise ValueError(f"scope {text!r} needs an id, as in {scope_type.value}:<id>")
        if scope_type is ScopeType.KEY and not SHA256_HEX.match(scope_id):
            # a raw key here would be published on the budgets and decisions topics
            raise ValueError("a key scope takes the key's SHA-256 hex (as LiteLLM's proxy stores it), not the key")
        return cls(scope_type, scope_id)


def hash_api_key(raw_key: str) -> str:
    """The hash LiteLLM's proxy stores for a virtual key (`litellm.proxy.utils.hash_token`):
    SHA-256 hex of its UTF-8 bytes. A key scope names a key by this, never by the key itself."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_scope(raw_key: str) -> Scope:
    """The scope of a raw key (`sk-...`), hashed here: the key itself goes no further."""
    return Scope(ScopeType.KEY, hash_api_key(raw_key))


def team_member_id(team_id: str, user_id: str) -> str:
    return f"{team_id}{TEAM_MEMBER_SEPARATOR}{user_id}"


def scopes_of(
    key_hash: str | None,
    user_id: str | None,
    team_id: str | None,
    org_id: str | None,
    end_user: str | None,
    *,
    tags: Iterable[str] = (),
    provider: str | None = None,
) -> tuple[Scope, ...]:
    """The scopes a request with these attributes counts towards; absent attributes add none."""
    scopes = [Scope(ScopeType.GLOBAL, GLOBAL_ID)]
    if key_hash:
        scopes.append(Scope(ScopeType.KEY, key_hash))
    if user_id:
        scopes.append(Scope(ScopeType.USER, user_id))
    if team_id:
        scopes.append(Scope(ScopeType.TEAM, team_id))
        if user_id:
            scopes.append(Scope(ScopeType.TEAM_MEMBER, team_member_id(team_id, user_id)))
    if org_id:
        scopes.append(Scope(ScopeType.ORG, org_id))
    if end_user:
        scopes.append(Scope(ScopeType.END_USER, end_user))
    scopes.extend(Scope(ScopeType.TAG, tag) for tag in attributed_tags(tags))
    if provider:
        scopes.append(Scope(ScopeType.PROVIDER, provider))
    return tuple(scopes)
