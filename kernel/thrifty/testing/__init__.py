"""The testing kit for plugin authors (and for thrifty's own plugins).

* pytest fixtures, active wherever thrifty is installed (``pytest11`` entry point):
  ``thrifty_registry`` (a fresh registry with installed plugins, strict), ``empty_registry``
  (a fresh registry with nothing loaded) and ``register_plugin`` (register a plugin object for
  this test only; it becomes what :func:`thrifty.registry` returns until the test ends);
* :func:`fresh_registry`, the same outside pytest;
* conformance suites, one per hook family, to subclass in a plugin's tests:
  :class:`thrifty.testing.drafts.DraftModelSuite`, :class:`thrifty.testing.drafts.VerifierSuite`;
* :mod:`thrifty.testing.toy`: tiny exact models (needs torch) for engine and suite tests.
"""

from __future__ import annotations

from ..plugins import PluginManager
from ..registry import Registry


def fresh_registry(*, load_entry_points: bool = True, strict: bool = True,
                   plugins: dict[str, object] | None = None) -> Registry:
    """A registry of its own, nothing shared with the process-wide one.

    ``plugins`` maps names to plugin objects (modules or instances with ``thrifty_*`` hooks) to
    register in-process, as if they had been installed.
    """
    manager = PluginManager(strict=strict)
    if load_entry_points:
        manager.load_entry_points()
    for name, obj in (plugins or {}).items():
        manager.register(obj, name=name)
    manager.check_pending()
    return Registry(manager)


__all__ = ["fresh_registry"]
