"""Which provider a call for a model goes to, before it is made: the id of a provider budget
(`provider:<provider>`, LiteLLM's `provider_budget_config`) that can refuse it.

LiteLLM's own parser names the provider (`litellm.get_llm_provider`: `openai/gpt-4o` and
`gpt-4o` are `openai`), the name its logs carry as `custom_llm_provider`, so a call is refused
under the provider its spend is counted under. On a proxy the client names a model group: its
provider is the one provider of the group's deployments in the proxy's router. A group whose
deployments go to several providers has no single provider before the router picks one, so no
provider budget refuses its calls before they are made (its spend still counts for each provider
its calls went to).

A group's provider is read from the router once per version of its deployments (LiteLLM's
`registry().version`, which changes whenever they change) and kept: listing a group's
deployments was a tenth of the plugin's cost on a proxy call (docs/performance.md).
"""

import functools
from collections.abc import Mapping

from spendpipe.gateway.labels import label_of


def provider_of_model(model: object, *, proxy: bool) -> str | None:
    """The provider a call for `model` goes to, or None when it is not known before the call."""
    if not isinstance(model, str) or not model:
        return None
    if proxy:
        return _group_provider(model)
    return _provider(model, None)


def provider_override(model: object, requested: object) -> str | None:
    """Why a proxy request for model group `model` may not name `requested` as its provider (the
    body's `custom_llm_provider`), or None when it may. LiteLLM merges the request's fields over
    the deployment's, so a client naming a provider that none of the group's deployments has
    (`custom_openai`, `ollama`) is still served by the deployment's upstream, but LiteLLM prices
    the call under a model it has no price for (`custom_openai/gpt-4o`) and records it as free.
    A group the router does not list (a wildcard deployment serves any model the client names)
    is not checked: there the client chooses the model anyway."""
    if requested is None or not isinstance(model, str) or not model:
        return None
    router, _ = _router()
    providers = {_provider(*_deployment_model(d)) for d in _deployments(router, model)}
    if not providers or (isinstance(requested, str) and label_of(requested) in providers):
        return None
    named = ", ".join(sorted(p or "unknown" for p in providers))
    return (
        f"custom_llm_provider {ascii(requested)[:80]} is not the provider of model {ascii(model)[:200]} "
        f"(its deployments use: {named}); leave it out, the proxy's deployments choose the provider"
    )


_GROUPS_KEPT = 1024
"""Model groups whose provider is kept at most: the model is the client's to name."""
_groups: dict[str, tuple[object, int, str | None]] = {}
"""Per model group: the router and its deployments' version the provider was read from, and it."""


def _group_provider(model_group: str) -> str | None:
    router, version = _router()
    known = _groups.get(model_group)
    if known is not None and version is not None and known[0] is router and known[1] == version:
        return known[2]
    found = {_provider(*_deployment_model(d)) for d in _deployments(router, model_group)}
    provider = found.pop() if len(found) == 1 else None
    if version is not None:
        if len(_groups) >= _GROUPS_KEPT:
            _groups.clear()
        _groups[model_group] = (router, version, provider)
    return provider


def _router() -> tuple[object, int | None]:
    """The proxy's router and the version of its deployments (None: not known, nothing is kept)."""
    try:
        from litellm.proxy import proxy_server  # noqa: PLC0415 - proxy only

        router = proxy_server.llm_router
        version = router.registry().version if router is not None else None
        return router, version if isinstance(version, int) else None
    except Exception:
        return None, None


def _deployments(router: object, model_group: str) -> list[Mapping[str, object]]:
    try:
        return list(router.registry().deployments(model_group) or []) if router is not None else []  # type: ignore[attr-defined]
    except Exception:
        return []


def _deployment_model(deployment: Mapping[str, object]) -> tuple[str, str | None]:
    params = deployment.get("litellm_params")
    params = params if isinstance(params, Mapping) else {}
    model, provider = params.get("model"), params.get("custom_llm_provider")
    return (model if isinstance(model, str) else "", provider if isinstance(provider, str) else None)


@functools.lru_cache(maxsize=1024)
def _provider(model: str, custom_llm_provider: str | None) -> str | None:
    if not model:
        return None
    try:
        import litellm  # noqa: PLC0415 - only where LiteLLM runs

        return label_of(litellm.get_llm_provider(model=model, custom_llm_provider=custom_llm_provider)[1])
    except Exception:
        return None
