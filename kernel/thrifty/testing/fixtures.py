"""pytest fixtures of the thrifty testing kit (loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

import importlib

import pytest

from .. import builtin
from . import fresh_registry

# the module, not the ``thrifty.registry`` function that the package re-exports under its name
registry_module = importlib.import_module("thrifty.registry")


@pytest.fixture
def thrifty_registry():
    """A fresh, strict registry with every installed plugin loaded."""
    return fresh_registry()


@pytest.fixture
def empty_registry():
    """A fresh, strict registry with no plugin loaded."""
    return fresh_registry(load_entry_points=False)


@pytest.fixture
def register_plugin(monkeypatch):
    """``register_plugin(obj, name="...", entry_points=False)`` registers a plugin object for this
    test only and makes the resulting registry the process-wide one (what
    ``thrifty.registry()`` and the CLI see) until the test ends. Returns that registry.

    Without ``entry_points`` no installed plugin loads, except the core's built-in commands
    (``plugins``, ``generate``, ...), so that CLI tests see only the test's plugin."""

    def register(obj, name: str = "test-plugin", entry_points: bool = False):
        plugins = {name: obj}
        if not entry_points:
            plugins = {"core": builtin, **plugins}
        reg = fresh_registry(load_entry_points=entry_points, plugins=plugins)
        monkeypatch.setattr(registry_module, "_default", reg)
        return reg

    return register
