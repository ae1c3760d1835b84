"""Who a request is, read once from whichever shape LiteLLM hands the plugin, and which scopes'
budgets and rate limits apply to it.

LiteLLM shows the plugin one request in three shapes, each with its own constructor:
* `of_proxy_request`: the proxy's pre- and post-call hooks, the key's `UserAPIKeyAuth` and the
  request body;
* `of_sdk_call`: `check()` in SDK mode, the `user`, `metadata` and `model` of the `litellm.completion` call;
* `of_logged_call`: the success and failure logs of both modes, the callback's kwargs with
  LiteLLM's `standard_logging_object`.

**SDK names.** An SDK caller may name who a call is in its `metadata` with LiteLLM's proxy
names or with plain ones (`SDK_NAMES`, LiteLLM's first): `key` (raw or already hashed), `user`,
`team`, `org`, `end_user` (the call's own `user` argument comes first: it is LiteLLM's end
customer). `check()`, the pre-call refusal and the logged event all read them the same way. A
proxy request never reads the plain names: there the metadata is the client's, and who a request
is comes from its key (`of_proxy_request`, and the proxy's own `user_api_key_*` in the log).

**Key**: only its SHA-256 as LiteLLM's proxy stores it (`hash_token`), so events join LiteLLM's
own key tables. The proxy already hands over the hash; a raw key (SDK mode,
`metadata["user_api_key"]`) is hashed here and goes no further.

**Session**, the first found of:
1. `metadata["session_id"]` (LiteLLM's own session limiters read this; the proxy copies the
   `x-litellm-session-id` / `x-litellm-trace-id` headers into it),
2. `litellm_metadata["session_id"]` (the proxy's metadata field on /thread, /assistant... routes),
3. `litellm_session_id` (a top-level request field or SDK argument; the proxy also sets it from
   session headers such as `x-<vendor>-session-id` and W3C baggage),
4. `metadata["trace_id"]` (LiteLLM chains calls that share a trace id into one session).
LiteLLM's generated per-call trace id (`litellm_trace_id` when the caller gave none) is not read:
it would make every call a session of its own.

**Agent**: in the proxy, the key's agent as LiteLLM resolves it (the agent the key invokes, else
the key's own `agent_id`); for a key without one, the agent the request names, where LiteLLM puts
it: `litellm_metadata["agent_id"]` (the `x-litellm-agent-id` header on LiteLLM's
`litellm_metadata` routes), else `metadata["agent_id"]` (the header on other routes, else the
body's), else `metadata["agent_name"]`. In SDK mode the metadata's `agent_id`, else its
`agent_name`. A client never names another agent for a key that has one: on the
`litellm_metadata` routes (/v1/responses, /v1/messages) the body's `metadata` is the client's
own, so the key must come first. The pre-call hook marks the agent it read in the proxy's own
metadata of the request (`mark_agent`), and the logged call is charged to that mark, so a call
is refused and counted under one agent.

**Tags and provider**: the tags are the ones the call's key and team assign, then the ones
LiteLLM logs for the request (`attributed_request_tags`; `request_tags_of` is LiteLLM's own
rule), and the provider the one its model goes to (`providers.py`), so a call is refused under
the tags and provider its spend is counted under.

**Which budgets apply** (as LiteLLM): a block on any scope the request counts towards
(`scopes_of`: any of its tags, its provider) refuses it, except the user's personal budget when
the request is made for a team: the team's budget governs a team key. Each scope also per model.
**Rate limits** apply to the agent and to each of the key, user, team and end customer the
request has (`LIMITED_SCOPES`), each on its own. Both lists are built as plain strings because
they are built on every request; tests hold them to the names `scopes_of` and `decision_key` give.

**Every value** but the key goes through `labels.label_of`, in all three constructors: a value
too long, of the wrong type or with odd characters becomes the same bounded label in the pre-call
checks as in the recorded event, so the customer it names is counted and refused under one name.
"""

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spendpipe.contracts.decisions import RATE_LIMIT_PREFIX, decision_key
from spendpipe.contracts.scopes import (
    GLOBAL_ID,
    SHA256_HEX,
    ScopeType,
    attributed_tags,
    hash_api_key,
    scope_name,
    team_member_id,
)
from spendpipe.gateway.labels import first_label, label_of, tags_of
from spendpipe.gateway.providers import provider_of_model
from spendpipe.gateway.rate_limits.leases import mark, marked

AGENT_FIELD = "spendpipe_agent"
"""Marked by the proxy's pre-call hook (`mark_agent`): the agent admission read, "" for none."""

SDK_NAMES: dict[str, tuple[str, ...]] = {
    "key": ("user_api_key_hash", "user_api_key", "key"),
    "user": ("user_api_key_user_id", "user"),
    "team": ("user_api_key_team_id", "team"),
    "org": ("user_api_key_org_id", "org"),
    "end_user": ("user_api_key_end_user_id", "end_user"),
}
"""The metadata names an SDK call's attribution is read from, in order: LiteLLM's proxy names,
then plain ones."""


@dataclass(frozen=True, slots=True)
class RequestIdentity:
    key_hash: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    end_user: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    """The request's tags (`labels.tags_of`): its key's and team's, then those LiteLLM logs."""
    provider: str | None = None
    """The provider the call goes to, where known before the call (`providers.provider_of_model`)."""

    @classmethod
    def of_proxy_request(cls, auth: Any, data: Mapping[str, Any]) -> "RequestIdentity":
        """The proxy's hooks: `auth` is the key's `UserAPIKeyAuth`, `data` the request body. The end
        customer is LiteLLM's (`auth.end_user_id`: the key's, else a customer header, else the
        body's `user`), else the body's `user`: the order in which the proxy logs it, so a call is
        checked under the customer it is counted under."""
        metadata, litellm_metadata = _mapping(data.get("metadata")), _mapping(data.get("litellm_metadata"))
        return cls(
            *_of_proxy_key(auth, data),
            agent_id=agent_of(metadata, litellm_metadata, key_agent_id=key_agent_of(auth)),
            session_id=session_of(metadata, litellm_metadata, litellm_session_id=data.get("litellm_session_id")),
            tags=attributed_request_tags(
                request_tags_of(metadata, litellm_metadata, _mapping(data.get("proxy_server_request"))),
                litellm_metadata,  # the proxy's own on the routes that have it: the body's `metadata` is the client's
                metadata,
            ),
            provider=provider_of_model(data.get("model"), proxy=True),
        )

    @classmethod
    def of_proxy_key(cls, auth: Any, data: Mapping[str, Any]) -> "RequestIdentity":
        """`of_proxy_request` without the agent, session, tags and provider (None and empty): the
        key, user, team, organisation and end customer, read alike. For the response headers hook,
        which reads no more, at a fraction of the cost (the provider lists the router's deployments)."""
        return cls(*_of_proxy_key(auth, data))

    @classmethod
    def of_sdk_call(cls, *, user: object, metadata: object, model: object = None) -> "RequestIdentity":
        """An SDK call before it runs (`check()`, the pre-call refusal): the `user`, `metadata`
        and `model` the caller passes to `litellm.completion`, read by `SDK_NAMES`."""
        metadata = _mapping(metadata) or {}
        return cls(
            key_hash=key_hash_of(sdk_value(metadata, "key")),
            user_id=label_of(sdk_value(metadata, "user")),
            team_id=label_of(sdk_value(metadata, "team")),
            org_id=label_of(sdk_value(metadata, "org")),
            end_user=first_label(user, sdk_value(metadata, "end_user")),
            agent_id=agent_of(metadata),
            session_id=session_of(metadata),
            tags=attributed_request_tags(request_tags_of(metadata, None, None), metadata),
            provider=provider_of_model(model, proxy=False),
        )

    @classmethod
    def of_logged_call(cls, kwargs: Mapping[str, Any]) -> "RequestIdentity":
        """A logged call in either mode: the `standard_logging_object`, and the call's own
        parameters for what the SDK leaves there (the raw key, the end customer, agent, session)."""
        record: Mapping[str, Any] = _mapping(kwargs.get("standard_logging_object")) or {}
        metadata: Mapping[str, Any] = _mapping(record.get("metadata")) or {}
        params: Mapping[str, Any] = _mapping(kwargs.get("litellm_params")) or {}
        call_metadata = _mapping(params.get("metadata")) or {}
        call_litellm_metadata = _mapping(params.get("litellm_metadata"))
        session = session_of(call_metadata, call_litellm_metadata, litellm_session_id=params.get("litellm_session_id"))
        plain = {} if params.get("proxy_server_request") else call_metadata  # SDK calls only
        return cls(
            key_hash=_logged_key_hash(metadata, call_metadata) or key_hash_of(sdk_value(plain, "key")),
            user_id=first_label(metadata.get("user_api_key_user_id"), sdk_value(plain, "user")),
            team_id=first_label(metadata.get("user_api_key_team_id"), sdk_value(plain, "team")),
            org_id=first_label(metadata.get("user_api_key_org_id"), sdk_value(plain, "org")),
            end_user=_logged_end_user(record, metadata, kwargs) or label_of(sdk_value(plain, "end_user")),
            agent_id=_logged_agent(params, call_metadata),
            # LiteLLM's logged `session_id` (set only with `litellm.request_correlation_in_logs`) last
            session_id=session or label_of(record.get("session_id")),
            tags=attributed_request_tags(record.get("request_tags") or [], call_litellm_metadata, call_metadata),
            provider=label_of(record.get("custom_llm_provider")),
        )

    def budget_keys(self, model: object = None) -> list[str]:
        """The decision keys whose budget blocks refuse this request, most general first."""
        names = [scope_name(ScopeType.GLOBAL, GLOBAL_ID)]
        if self.key_hash:
            names.append(scope_name(ScopeType.KEY, self.key_hash))
        if self.team_id:
            names.append(scope_name(ScopeType.TEAM, self.team_id))
            if self.user_id:
                names.append(scope_name(ScopeType.TEAM_MEMBER, team_member_id(self.team_id, self.user_id)))
        elif self.user_id:  # the user's personal budget only for requests not made for a team
            names.append(scope_name(ScopeType.USER, self.user_id))
        if self.org_id:
            names.append(scope_name(ScopeType.ORG, self.org_id))
        if self.end_user:
            names.append(scope_name(ScopeType.END_USER, self.end_user))
        names += [scope_name(ScopeType.TAG, tag) for tag in attributed_tags(self.tags)]
        if self.provider:
            names.append(scope_name(ScopeType.PROVIDER, self.provider))
        return _with_model(names, model)

    def rate_limit_scopes(self) -> list[str]:
        """The scopes whose rate limits this request counts against, the agent first."""
        names = [scope_name(ScopeType.AGENT, self.agent_id)] if self.agent_id else []
        if self.key_hash:
            names.append(scope_name(ScopeType.KEY, self.key_hash))
        if self.user_id:
            names.append(scope_name(ScopeType.USER, self.user_id))
        if self.team_id:
            names.append(scope_name(ScopeType.TEAM, self.team_id))
        if self.end_user:
            names.append(scope_name(ScopeType.END_USER, self.end_user))
        return names

    def rate_limit_keys(self, model: object = None) -> list[str]:
        """The decision keys of the enforcer's rate-limit blocks that refuse this request."""
        return _with_model([RATE_LIMIT_PREFIX + scope for scope in self.rate_limit_scopes()], model)

    def checked_keys(self, model: object = None) -> tuple[str, ...]:
        """Every decision key whose block refuses this request for `model`: the budget blocks'
        (`budget_keys`), then the rate-limit blocks' (`rate_limit_keys`), so the first in force
        is a budget block when there is one. They follow from the identity and the model alone,
        and a gateway sees the same few again and again, so the keys of the last
        `CHECKED_KEYS_KEPT` pairs are kept rather than built (about 20 strings) for every
        request checked while a block is in force. A model that is not text (a client's JSON)
        is never kept."""
        if model is None or type(model) is str:
            return _checked_keys(self, model)
        return _checked_keys.__wrapped__(self, model)


CHECKED_KEYS_KEPT = 256
"""(identity, model) pairs whose checked keys are kept: about 2 KiB each for a usual request (20
keys), at most about 50 KiB for one whose labels, 32 tags and model are all as long as a label
may be (88 keys, the identity included), so never much more than 13 MiB."""


@functools.lru_cache(maxsize=CHECKED_KEYS_KEPT)
def _checked_keys(who: RequestIdentity, model: object) -> tuple[str, ...]:
    return (*who.budget_keys(model), *who.rate_limit_keys(model))


_Named = str | None


def _of_proxy_key(auth: Any, data: Mapping[str, Any]) -> tuple[_Named, _Named, _Named, _Named, _Named]:
    """A proxy request's key hash, user, team, organisation and end customer, in the order of
    `RequestIdentity`'s first fields."""
    return (
        key_hash_of(getattr(auth, "api_key", None)),
        label_of(getattr(auth, "user_id", None)),
        label_of(getattr(auth, "team_id", None)),
        label_of(getattr(auth, "org_id", None)),
        first_label(getattr(auth, "end_user_id", None), data.get("user")),
    )


ASSIGNED_TAGS_FROM = ("user_api_key_metadata", "user_api_key_team_metadata")
"""Where the proxy puts the key's and the team's metadata in a call's metadata: their `tags`."""


def attributed_request_tags(request_tags: object, *containers: Mapping[str, Any] | None) -> tuple[str, ...]:
    """A call's tags as spendpipe attributes them, at its check and in its event alike: the tags
    its key and its team assign (`user_api_key_metadata.tags`, `user_api_key_team_metadata.tags`,
    which the proxy puts in the call's metadata, `containers`) first, then the request's. LiteLLM
    lists the request's first, so a client naming 32 tags of its own pushed its key's tag past
    `MAX_TAGS`, and on the routes whose metadata is `litellm_metadata` (`/v1/responses`) it logs
    the client's `metadata.tags` alone: either way the key's tag budget saw none of the spend."""
    assigned: list[object] = []
    for container in containers:
        for field in ASSIGNED_TAGS_FROM:
            owner = _mapping((container or {}).get(field))
            tags = (owner or {}).get("tags")
            if isinstance(tags, list):
                assigned += tags
    given = request_tags if isinstance(request_tags, list | tuple) else [request_tags]
    return tags_of([*assigned, *given])


def request_tags_of(
    metadata: Mapping[str, Any] | None,
    litellm_metadata: Mapping[str, Any] | None,
    proxy_server_request: Mapping[str, Any] | None,
) -> list[str]:
    """The tags LiteLLM will log for this request (`request_tags`), read by LiteLLM's own rule
    (`StandardLoggingPayloadSetup.get_request_tags`: `metadata.tags`, else `litellm_metadata.tags`,
    then the User-Agent and the configured header tags); the first two alone if that is gone."""
    params = {"metadata": metadata or {}, "litellm_metadata": litellm_metadata or {}}
    try:
        from litellm.litellm_core_utils.litellm_logging import StandardLoggingPayloadSetup  # noqa: PLC0415

        return list(StandardLoggingPayloadSetup.get_request_tags(params, proxy_server_request or {}))
    except Exception:
        for container in (metadata, litellm_metadata):
            tags = (container or {}).get("tags")
            if isinstance(tags, list) and tags:
                return tags
        return []


def sdk_value(metadata: Mapping[str, Any], name: str) -> object:
    """The first value an SDK call's metadata gives for `name` under `SDK_NAMES` that has a label."""
    for field in SDK_NAMES[name]:
        value = metadata.get(field)
        if label_of(value) is not None:
            return value
    return None


def key_hash_of(key: object) -> str | None:
    """A key's hash as LiteLLM's proxy stores it; a value that already is one is kept."""
    if not isinstance(key, str) or not key:
        return None
    return key if SHA256_HEX.match(key) else hash_api_key(key)


def session_of(*containers: Mapping[str, Any] | None, litellm_session_id: object = None) -> str | None:
    """The session id; `containers` are the request's metadata dicts in order of preference."""
    present = [metadata for metadata in containers if metadata]
    return first_label(
        *(metadata.get("session_id") for metadata in present),
        litellm_session_id,
        *(metadata.get("trace_id") for metadata in present),
    )


def agent_of(
    metadata: Mapping[str, Any] | None,
    litellm_metadata: Mapping[str, Any] | None = None,
    *,
    key_agent_id: str | None = None,
) -> str | None:
    """The agent (module docstring): the key's, else the one the request names."""
    metadata, litellm_metadata = metadata or {}, litellm_metadata or {}
    return key_agent_id or first_label(
        litellm_metadata.get("agent_id"), metadata.get("agent_id"), metadata.get("agent_name")
    )


def key_agent_of(auth: Any) -> str | None:
    """The agent a proxy key acts as, as LiteLLM resolves it: the agent it invokes, else its own."""
    return first_label(getattr(auth, "invoked_agent_id", None), getattr(auth, "agent_id", None))


def mark_agent(data: dict[str, Any], agent_id: str | None) -> None:
    """Mark the agent the proxy's pre-call hook read where the logged call's agent is read from
    (`_logged_agent`), over anything a client put there."""
    mark(data, AGENT_FIELD, agent_id or "")


def _logged_agent(params: Mapping[str, Any], call_metadata: Mapping[str, Any]) -> str | None:
    """A proxy call's agent as its admission marked it; else (an SDK call, or a proxy call no
    pre-call hook saw) the metadata's."""
    if params.get("proxy_server_request"):
        admitted = marked(params, AGENT_FIELD)
        if admitted is not None:
            return label_of(admitted)
    return agent_of(call_metadata)


def _with_model(names: list[str], model: object) -> list[str]:
    model = label_of(model)  # the request's model, named as its events' `model_group`
    return names + [decision_key(name, model) for name in names] if model else names


def _logged_key_hash(metadata: Mapping[str, Any], call_metadata: Mapping[str, Any]) -> str | None:
    hashed = metadata.get("user_api_key_hash")
    if isinstance(hashed, str) and SHA256_HEX.match(hashed):
        return hashed
    return key_hash_of(call_metadata.get("user_api_key"))


def _logged_end_user(record: Mapping[str, Any], metadata: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str | None:
    """The request's `user` field: the proxy resolves it into the record; the SDK leaves it in
    the call's parameters."""
    optional = _mapping(kwargs.get("optional_params")) or {}
    return first_label(
        record.get("end_user"), metadata.get("user_api_key_end_user_id"), kwargs.get("user"), optional.get("user")
    )


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None
