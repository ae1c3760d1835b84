"""The deprecated import path of the 0.1 layout: only the listed names resolve, each to the very
module at its new home, with a DeprecationWarning naming that home. (That a LiteLLM proxy config
naming the old callback loads is tests/integration/test_legacy_callback_path.py.)"""

import importlib
import sys
from collections.abc import Iterator

import pytest

from spendpipe import legacy_paths
from spendpipe.legacy_paths import OLD_PATHS, LegacyPathFinder

OLD = "spendpipe.services.gateway.proxy"


@pytest.fixture(autouse=True)
def forget_old_modules() -> Iterator[None]:
    """Each test imports the old names afresh; none of them stays behind in sys.modules."""
    yield
    for name in [n for n in sys.modules if n == "spendpipe.services" or n.startswith("spendpipe.services.")]:
        del sys.modules[name]


def test_the_finder_is_installed_by_importing_spendpipe() -> None:
    assert sum(isinstance(finder, LegacyPathFinder) for finder in sys.meta_path) == 1


def test_the_old_callback_path_is_listed() -> None:
    assert OLD_PATHS == {OLD: "spendpipe.gateway.proxy"}


@pytest.mark.parametrize("name", ["spendpipe.services", "spendpipe.services.gateway"])
def test_the_folders_on_the_way_to_the_old_path_are_empty_packages(name: str) -> None:
    spec = LegacyPathFinder().find_spec(name, None)
    assert spec is not None
    assert spec.submodule_search_locations == []


@pytest.mark.parametrize(
    "name",
    [
        "spendpipe.services.aggregator",
        "spendpipe.services.enforcer.app",
        "spendpipe.services.gateway.plugin",
        "spendpipe.services.gateway.proxy.handler",
        "spendpipe.schemas",
        "spendpipe.gateway.proxy",
        "services",
    ],
)
def test_nothing_else_resolves(name: str) -> None:
    assert LegacyPathFinder().find_spec(name, None) is None


def test_a_module_of_the_old_layout_that_is_not_listed_is_not_found() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"spendpipe\.services\.aggregator"):
        importlib.import_module("spendpipe.services.aggregator")


def test_the_old_name_is_the_module_at_its_new_home_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    # a new home without import-time I/O (the real one starts the plugin: see the integration test)
    monkeypatch.setitem(legacy_paths.OLD_PATHS, OLD, "spendpipe.contracts.topics")
    with pytest.warns(DeprecationWarning, match=r"`spendpipe\.contracts\.topics`"):
        old = importlib.import_module(OLD)
    assert old is importlib.import_module("spendpipe.contracts.topics")
    assert sys.modules[OLD] is old
    assert old.__spec__ is not None
    assert old.__spec__.name == "spendpipe.contracts.topics"  # a reload goes to the new home
