"""Who a request is, read the same from each shape LiteLLM hands the plugin, and which scopes'
budgets and rate limits apply to it."""

from dataclasses import replace
from typing import Any

import litellm
import litellm.integrations.custom_logger
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litellm.proxy._types import UserAPIKeyAuth

from spendpipe.contracts.decisions import decision_key
from spendpipe.contracts.rate_limits import LIMITED_SCOPES
from spendpipe.contracts.scopes import Scope, ScopeType, hash_api_key, scopes_of
from spendpipe.gateway.identity import AGENT_FIELD, RequestIdentity, mark_agent
from spendpipe.gateway.labels import MAX_LABEL, label_of
from spendpipe.gateway.recording.logged_call import copy_logged_call
from spendpipe.gateway.recording.wire import restore, snapshot
from tests.support.waiting import eventually_sync

RAW_KEY = "sk-alice-raw-key"
KEY_HASH = hash_api_key(RAW_KEY)


def test_one_request_reads_the_same_in_every_shape() -> None:
    expected = RequestIdentity(
        key_hash=KEY_HASH,
        user_id="alice",
        team_id="eng",
        org_id="acme",
        end_user="customer-7",
        agent_id="planner",
        session_id="s-1",
    )
    auth = UserAPIKeyAuth(api_key=RAW_KEY, user_id="alice", team_id="eng", org_id="acme", agent_id="planner")
    body = {"model": "gpt-4o", "user": "customer-7", "metadata": {"session_id": "s-1"}}
    sdk_metadata = {
        "user_api_key": RAW_KEY,
        "user_api_key_user_id": "alice",
        "user_api_key_team_id": "eng",
        "user_api_key_org_id": "acme",
        "agent_id": "planner",
        "session_id": "s-1",
    }
    logged = {  # as the proxy logs the call
        "standard_logging_object": {
            "end_user": "customer-7",
            "metadata": {
                "user_api_key_hash": KEY_HASH,
                "user_api_key_user_id": "alice",
                "user_api_key_team_id": "eng",
                "user_api_key_org_id": "acme",
            },
        },
        "litellm_params": {"metadata": {"agent_id": "planner", "session_id": "s-1"}},
    }

    assert RequestIdentity.of_proxy_request(auth, body) == expected
    assert RequestIdentity.of_sdk_call(user="customer-7", metadata=sdk_metadata) == expected
    assert RequestIdentity.of_logged_call(logged) == expected


def test_a_key_is_only_ever_its_hash() -> None:
    assert RequestIdentity.of_sdk_call(user=None, metadata={"user_api_key": RAW_KEY}).key_hash == KEY_HASH
    assert RequestIdentity.of_sdk_call(user=None, metadata={"user_api_key_hash": KEY_HASH}).key_hash == KEY_HASH
    assert RequestIdentity.of_sdk_call(user=None, metadata=None) == RequestIdentity()


def test_the_session_is_the_first_found_and_never_litellms_per_call_trace_id() -> None:
    def session(**data: object) -> str | None:
        return RequestIdentity.of_proxy_request(UserAPIKeyAuth(), data).session_id

    assert session(metadata={"session_id": "a", "trace_id": "t"}, litellm_session_id="b") == "a"
    assert session(metadata={}, litellm_metadata={"session_id": "c"}, litellm_session_id="b") == "c"
    assert session(metadata={"trace_id": "t"}, litellm_session_id="b") == "b"
    assert session(metadata={"trace_id": "t"}) == "t"
    assert session(metadata={"litellm_trace_id": "generated"}) is None
    # too long to be a Kafka key of ours as it is: kept as its bounded label (labels.py), not ignored
    long_session = session(metadata={"session_id": "x" * 257})
    assert long_session == label_of("x" * 257)
    assert long_session is not None
    assert len(long_session) <= MAX_LABEL


def test_a_proxy_keys_agent_comes_before_what_the_request_names() -> None:
    key_of_agent = UserAPIKeyAuth(agent_id="from-key")
    invoking = UserAPIKeyAuth(agent_id="from-key")
    invoking.invoked_agent_id = "invoked"  # LiteLLM's auth sets it after building the key object

    # as LiteLLM resolves the agent: the agent the key invokes, else its own, else the request's
    assert RequestIdentity.of_proxy_request(key_of_agent, {"metadata": {"agent_id": "a"}}).agent_id == "from-key"
    assert RequestIdentity.of_proxy_request(invoking, {"metadata": {"agent_id": "a"}}).agent_id == "invoked"
    assert RequestIdentity.of_proxy_request(key_of_agent, {"metadata": {"agent_name": "n"}}).agent_id == "from-key"
    assert RequestIdentity.of_proxy_request(UserAPIKeyAuth(), {"metadata": {"agent_id": "a"}}).agent_id == "a"
    assert RequestIdentity.of_proxy_request(UserAPIKeyAuth(), {"metadata": {"agent_name": "n"}}).agent_id == "n"
    # on LiteLLM's litellm_metadata routes the x-litellm-agent-id header is there, the body's metadata beside it
    by_header = {"metadata": {"agent_id": "body"}, "litellm_metadata": {"agent_id": "header"}}
    assert RequestIdentity.of_proxy_request(UserAPIKeyAuth(), by_header).agent_id == "header"
    assert RequestIdentity.of_proxy_request(key_of_agent, by_header).agent_id == "from-key"
    blank = UserAPIKeyAuth(agent_id="from-key")
    blank.invoked_agent_id = " "  # no label: the key's own agent
    assert RequestIdentity.of_proxy_request(blank, by_header).agent_id == "from-key"


@pytest.mark.parametrize("key_agent", ["from-key", None])
@pytest.mark.parametrize("route_metadata", [True, False], ids=["litellm_metadata-route", "metadata-route"])
@pytest.mark.parametrize(
    "client",
    [
        {"metadata": {"agent_id": "free"}},
        {"metadata": {"agent_id": "free", AGENT_FIELD: "forged"}},
        {"metadata": {AGENT_FIELD: "forged"}, "litellm_metadata": {AGENT_FIELD: "forged"}},
        {"metadata": {"agent_name": 7}},
        {},
    ],
)
def test_a_proxy_call_is_charged_to_the_agent_its_admission_checked(
    key_agent: str | None, route_metadata: bool, client: dict[str, Any]
) -> None:
    # given a request as the proxy's pre-call hook sees it, the client's metadata in it
    data: dict[str, Any] = {"model": "gpt-4o", **{name: dict(value) for name, value in client.items()}}
    if route_metadata:  # /v1/responses, /v1/messages: LiteLLM keeps its own metadata apart
        data.setdefault("litellm_metadata", {})
    who = RequestIdentity.of_proxy_request(UserAPIKeyAuth(api_key=RAW_KEY, agent_id=key_agent), data)

    # when the hook marks it, and LiteLLM logs the call with the request's metadata
    mark_agent(data, who.agent_id)
    params: dict[str, Any] = {n: data[n] for n in ("metadata", "litellm_metadata") if n in data}
    params["proxy_server_request"] = {"url": "/"}
    logged = {"litellm_params": params}

    # then the call is charged to the agent its admission was checked under, from the copy too
    assert RequestIdentity.of_logged_call(logged).agent_id == who.agent_id
    assert RequestIdentity.of_logged_call(copy_logged_call(logged)).agent_id == who.agent_id
    if key_agent is not None:
        assert who.agent_id == key_agent


def test_request_with_a_team_is_not_checked_against_the_users_own_budget() -> None:
    who = RequestIdentity(key_hash="abc", user_id="alice", team_id="eng", org_id="acme", end_user="cust-7")
    keys = who.budget_keys()

    assert keys == ["global", "key:abc", "team:eng", "team_member:eng/alice", "org:acme", "end_user:cust-7"]
    assert "user:alice" not in keys


def test_request_without_a_team_is_checked_against_the_users_budget() -> None:
    keys = RequestIdentity(key_hash="abc", user_id="alice").budget_keys()

    assert keys == ["global", "key:abc", "user:alice"]


@pytest.mark.parametrize(
    ("user_id", "team_id"),
    [("alice", None), (None, "eng"), (None, None)],
)
def test_team_member_key_needs_both_team_and_user(user_id: str | None, team_id: str | None) -> None:
    keys = RequestIdentity(user_id=user_id, team_id=team_id).budget_keys()

    assert not any(key.startswith("team_member:") for key in keys)


def test_each_distinct_tag_and_the_provider_have_a_budget_key() -> None:
    who = RequestIdentity(user_id="alice", tags=("batch", "nightly", "batch", "", "<+2 more>"), provider="openai")

    assert who.budget_keys() == ["global", "user:alice", "tag:batch", "tag:nightly", "provider:openai"]


def test_per_model_keys_are_appended_when_a_model_is_given() -> None:
    keys = RequestIdentity(key_hash="abc", user_id="alice", team_id="eng").budget_keys("gpt-4o")

    assert keys == [
        "global",
        "key:abc",
        "team:eng",
        "team_member:eng/alice",
        "global|gpt-4o",
        "key:abc|gpt-4o",
        "team:eng|gpt-4o",
        "team_member:eng/alice|gpt-4o",
    ]


def test_rate_limits_apply_to_the_agent_first_and_never_to_org_or_global() -> None:
    who = RequestIdentity(key_hash="abc", user_id="alice", team_id="eng", org_id="acme", end_user="c", agent_id="a")

    assert who.rate_limit_scopes() == ["agent:a", "key:abc", "user:alice", "team:eng", "end_user:c"]
    assert who.rate_limit_keys("m")[:2] == ["rate_limit|agent:a", "rate_limit|key:abc"]
    assert "rate_limit|agent:a|m" in who.rate_limit_keys("m")


identities = st.builds(
    RequestIdentity,
    key_hash=st.none() | st.just("ab" * 32),
    user_id=st.none() | st.sampled_from(["alice", "bob"]),
    team_id=st.none() | st.sampled_from(["eng", "ops"]),
    org_id=st.none() | st.just("acme"),
    end_user=st.none() | st.just("customer-1"),
    agent_id=st.none() | st.just("planner"),
    tags=st.lists(st.sampled_from(["batch", "nightly", "", "<+3 more>", "a:b|c"]), max_size=5).map(tuple),
    provider=st.none() | st.sampled_from(["openai", "azure"]),
)


@given(who=identities, model=st.none() | st.just("gpt-4o"))
def test_budget_keys_name_scopes_exactly_as_the_aggregator_does(who: RequestIdentity, model: str | None) -> None:
    # budget_keys builds its strings by hand for speed; they must stay the scopes' own names
    attributes = (who.key_hash, who.user_id, who.team_id, who.org_id, who.end_user)
    scopes = scopes_of(*attributes, tags=who.tags, provider=who.provider)
    applying = [str(scope) for scope in scopes if not (scope.type is ScopeType.USER and who.team_id)]
    expected = {decision_key(scope, m) for scope in applying for m in {"", model or ""}}

    keys = who.budget_keys(model)

    assert set(keys) == expected
    assert len(keys) == len(expected)


@given(who=identities, model=st.none() | st.just("gpt-4o"))
def test_rate_limit_keys_name_the_limited_scopes_as_the_enforcer_does(who: RequestIdentity, model: str | None) -> None:
    scopes = scopes_of(who.key_hash, who.user_id, who.team_id, who.org_id, who.end_user)
    limited = [str(scope) for scope in scopes if scope.type in LIMITED_SCOPES]
    limited += [str(Scope(ScopeType.AGENT, who.agent_id))] if who.agent_id else []
    expected = {decision_key(scope, m, "rate_limit") for scope in limited for m in {"", model or ""}}

    assert set(who.rate_limit_scopes()) == set(limited)
    assert set(who.rate_limit_keys(model)) == expected
    assert len(who.rate_limit_keys(model)) == len(expected)


@given(who=identities, model=st.none() | st.sampled_from(["gpt-4o", "", {"name": ["gpt-4o"]}, ["x"], 7]))
def test_a_request_is_checked_by_its_budget_keys_then_its_rate_limit_keys(who: RequestIdentity, model: object) -> None:
    # kept per (identity, model) after the first request; a model a client sent as JSON is not
    # kept (it cannot be a cache key), and is checked under its label all the same
    expected = (*who.budget_keys(model), *who.rate_limit_keys(model))

    assert who.checked_keys(model) == expected
    assert replace(who).checked_keys(model) == expected  # an equal identity, made anew


def test_the_end_customer_litellm_resolved_is_checked_as_the_proxy_logs_it() -> None:
    # LiteLLM's auth resolves the key's end user, a customer header, then the body's `user` into
    # end_user_id, and logs that first; the body's raw `user` only when it resolved none (an object)
    auth = UserAPIKeyAuth(api_key=RAW_KEY, end_user_id="from-header")
    body = {"user": "from-body"}
    logged = {
        "standard_logging_object": {"end_user": "from-header", "metadata": {"user_api_key_end_user_id": "from-header"}}
    }

    assert RequestIdentity.of_proxy_request(auth, body).end_user == "from-header"
    assert RequestIdentity.of_logged_call(logged).end_user == "from-header"
    assert RequestIdentity.of_proxy_request(UserAPIKeyAuth(), {"user": {"id": 7}}).end_user == '{"id":7}'
    assert RequestIdentity.of_logged_call({"standard_logging_object": {"end_user": {"id": 7}}}).end_user == '{"id":7}'


def test_a_requests_model_is_checked_under_its_label() -> None:
    model = "openai/" + "m" * 300  # a wildcard route serves any name a client sends
    label = label_of(model)
    assert label is not None

    keys = RequestIdentity(key_hash="abc").budget_keys(model)

    assert keys == ["global", "key:abc", decision_key("global", label), decision_key("key:abc", label)]
    assert RequestIdentity(key_hash="abc").rate_limit_keys(" ") == ["rate_limit|key:abc"]


PLAIN_METADATA = {"key": RAW_KEY, "user": "alice", "team": "eng", "org": "acme", "end_user": "customer-7"}
PLAIN_IDENTITY = RequestIdentity(
    key_hash=KEY_HASH, user_id="alice", team_id="eng", org_id="acme", end_user="customer-7"
)


class Captured(litellm.integrations.custom_logger.CustomLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.logged: list[dict[str, Any]] = []

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.logged.append(kwargs)


def test_an_sdk_call_may_name_who_it_is_with_plain_names() -> None:
    assert RequestIdentity.of_sdk_call(user=None, metadata=PLAIN_METADATA) == PLAIN_IDENTITY
    assert RequestIdentity.of_sdk_call(user=None, metadata={"key": KEY_HASH}).key_hash == KEY_HASH
    # the call's own `user` is LiteLLM's end customer and comes first; LiteLLM's names before plain ones
    both = {**PLAIN_METADATA, "user_api_key_team_id": "search"}
    assert RequestIdentity.of_sdk_call(user="acme", metadata=both).end_user == "acme"
    assert RequestIdentity.of_sdk_call(user="acme", metadata=both).team_id == "search"


def test_an_sdk_call_with_plain_names_is_counted_under_the_names_it_is_checked_under() -> None:
    captured = Captured()
    litellm.callbacks.append(captured)
    try:
        litellm.completion(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            mock_response="hello",
            metadata=dict(PLAIN_METADATA),
        )
        logged = eventually_sync(lambda: list(captured.logged), bool, within=10, what="the call logged")
    finally:
        litellm.logging_callback_manager.remove_callback_from_all_lists(captured)

    # the model's provider is read before the call as LiteLLM logs it
    assert RequestIdentity.of_logged_call(logged[0]) == RequestIdentity.of_sdk_call(
        user=None, metadata=PLAIN_METADATA, model="gpt-4o"
    )
    assert RequestIdentity.of_logged_call(logged[0]) == replace(PLAIN_IDENTITY, provider="openai")


def test_a_proxy_request_is_never_attributed_by_the_plain_names_its_client_sent() -> None:
    logged = {
        "standard_logging_object": {"metadata": {"user_api_key_hash": KEY_HASH, "user_api_key_team_id": None}},
        "litellm_params": {"proxy_server_request": {"url": "/chat/completions"}, "metadata": {"team": "victim"}},
    }

    assert RequestIdentity.of_logged_call(logged) == RequestIdentity(key_hash=KEY_HASH)


hostile = st.none() | st.integers() | st.text(max_size=80) | st.lists(st.text(max_size=5), max_size=2)


@given(
    key=st.none() | st.just(RAW_KEY) | st.just(KEY_HASH) | st.text(max_size=40),
    values=st.fixed_dictionaries(dict.fromkeys(("user_id", "team_id", "org_id", "end_user_id"), hostile)),
    body_user=hostile,
    agent=hostile,
)
def test_the_headers_hooks_identity_is_the_pre_call_hooks_without_agent_session_tags_provider(
    key: object, values: dict[str, object], body_user: object, agent: object
) -> None:
    auth = UserAPIKeyAuth.model_construct(api_key=key, **values)
    body = {"user": body_user, "metadata": {"agent_id": agent, "session_id": "s", "tags": ["t"]}, "model": "gpt-4o"}

    full = RequestIdentity.of_proxy_request(auth, body)

    assert RequestIdentity.of_proxy_key(auth, body) == replace(
        full, agent_id=None, session_id=None, tags=(), provider=None
    )


@pytest.mark.parametrize("route_metadata", ["metadata", "litellm_metadata"])
@pytest.mark.parametrize("client_tags", [[], ["mine"], [f"x{n}" for n in range(32)]])
def test_the_tags_a_key_and_its_team_assign_are_checked_and_counted_whatever_the_client_sends(
    route_metadata: str, client_tags: list[str]
) -> None:
    """As the proxy builds a request: the client's tags first, then the key's and the team's
    (LiteLLM's `merge_tags`) in the route's metadata, which also carries the key's and team's
    metadata. On `/v1/responses` LiteLLM logs the client's `metadata.tags` alone; past 32 tags
    the key's would not be kept. Both must still see `project:alpha` and `team-wide`."""
    assigned = {
        "user_api_key_metadata": {"tags": ["project:alpha"]},
        "user_api_key_team_metadata": {"tags": ["team-wide"]},
    }
    merged = [*client_tags, "project:alpha", "team-wide"]
    data: dict[str, Any] = {"model": "gpt-4o", route_metadata: {"tags": merged, **assigned}}
    if route_metadata == "litellm_metadata" and client_tags:
        data["metadata"] = {"tags": client_tags}  # the client's own, which LiteLLM logs first
    logged = {
        "standard_logging_object": {"request_tags": data.get("metadata", data[route_metadata])["tags"]},
        "litellm_params": {n: data[n] for n in ("metadata", "litellm_metadata") if n in data},
    }

    checked = RequestIdentity.of_proxy_request(UserAPIKeyAuth(api_key=RAW_KEY), data)
    counted = [  # in the gateway's thread, and in the publisher child from the wire's snapshot
        RequestIdentity.of_logged_call(logged),
        RequestIdentity.of_logged_call(copy_logged_call(logged)),
        RequestIdentity.of_logged_call(restore(snapshot(logged))),
    ]

    for who in (checked, *counted):
        assert "tag:project:alpha" in who.budget_keys()
        assert "tag:team-wide" in who.budget_keys()
        assert who.tags == checked.tags
