"""pytest fixtures of the thrifty testing kit (loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

import importlib

import pytest

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
    ``thrifty.registry()`` and the CLI see) until the test ends. Returns that registry."""

    def register(obj, name: str = "test-plugin", entry_points: bool = False):
        reg = fresh_registry(load_entry_points=entry_points, plugins={name: obj})
        monkeypatch.setattr(registry_module, "_default", reg)
        return reg

    return register
