"""Import paths of the 0.1 layout that deployed LiteLLM configs still name (deprecated).

Before the package was flattened, the proxy plugin lived at `spendpipe.services.gateway.proxy`,
and proxy configs in the field say `callbacks: spendpipe.services.gateway.proxy.handler`. This
finder keeps that one path importable for one release: it hands back the module at its new home
(`spendpipe.gateway.proxy`, the very same object, so there is still one handler) and warns once.
No folder of that name exists; only the names in `OLD_PATHS` resolve, so nothing else of the old
layout is kept alive by accident. Remove in 0.3.
"""

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import types
import warnings
from collections.abc import Sequence

log = logging.getLogger(__name__)

OLD_PATHS = {"spendpipe.services.gateway.proxy": "spendpipe.gateway.proxy"}
"""Deprecated module path -> where it lives now."""


def _parents_of(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


_PARENTS = {parent for old in OLD_PATHS for parent in _parents_of(old)}


class _LegacyLoader(importlib.abc.Loader):
    def __init__(self) -> None:
        self._own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        new = OLD_PATHS.get(spec.name)
        if new is None:
            return None  # an empty package on the way to the old path
        message = f"`{spec.name}` is deprecated and goes away in spendpipe 0.3: name `{new}` in your config"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        log.warning(message)
        module = importlib.import_module(new)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ in _PARENTS:
            module.__path__ = []  # a package, so the import system looks for its children here
        elif self._own_spec is not None:
            # the import system stamped the old name's spec on the module; give it back its own,
            # so a reload of the module goes to its new home, not through this finder
            module.__spec__ = self._own_spec


class LegacyPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in OLD_PATHS:
            return importlib.machinery.ModuleSpec(fullname, _LegacyLoader())
        if fullname in _PARENTS:
            return importlib.machinery.ModuleSpec(fullname, _LegacyLoader(), is_package=True)
        return None


def install() -> None:
    """Add the finder once (importing `spendpipe` does this)."""
    if not any(isinstance(finder, LegacyPathFinder) for finder in sys.meta_path):
        sys.meta_path.append(LegacyPathFinder())
