"""Plugin discovery and loading: entry points in group ``thrifty``, one try/except each.

Rules (DESIGN.md, "Plugin mechanics"):

* each entry point loads in isolation; a broken one is reported and the program goes on,
  unless ``THRIFTY_STRICT_PLUGINS=1`` (then it re-raises as :class:`PluginError`);
* ``THRIFTY_PLUGINS=a,b`` loads only those, ``THRIFTY_DISABLE_PLUGINS=a,b`` skips those;
* hooks that match no spec fail loudly (``check_pending``), so a misspelled hook is not silence;
* two distributions with one entry-point name, or two records with one name in a family, are a
  :class:`PluginConflictError` that names both distributions.
"""

from __future__ import annotations

import os
import warnings
from importlib import metadata
from typing import Any, Callable, Iterable

import attrs
import pluggy

from . import hookspecs
from .errors import PluginConflictError, PluginError
from .records import FAMILIES, Spec

GROUP = "thrifty"


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var, "").strip()
    return {n.strip() for n in raw.split(",") if n.strip()} if raw else None


def strict_mode() -> bool:
    """True when ``THRIFTY_STRICT_PLUGINS`` asks for broken plugins to be fatal."""
    return os.environ.get("THRIFTY_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


@attrs.frozen
class CommandSpec:
    """A CLI sub-command added by a plugin through ``thrifty_commands``."""

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int | None]
    plugin: str | None = None
    distribution: str | None = None
    version: str | None = None


@attrs.define
class PluginInfo:
    """What ``thrifty plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    status: str = "ok"
    error: str | None = None
    provides: dict[str, list[str]] = attrs.field(factory=dict)

    def as_dict(self) -> dict:
        return attrs.asdict(self)


class CommandCollector:
    """The ``cli`` object handed to ``thrifty_commands``: collects sub-commands by name."""

    def __init__(self) -> None:
        self.commands: list[CommandSpec] = []

    def add(self, name: str, help: str, configure: Callable, run: Callable) -> None:
        self.commands.append(CommandSpec(name, help, configure, run))


class PluginManager:
    """Loads plugins and collects their records, with provenance and conflict checks.

    Use :func:`thrifty.registry` for the process-wide instance; tests build their own
    (``thrifty.testing.fresh_registry``) so nothing leaks between them.
    """

    def __init__(self, *, strict: bool | None = None) -> None:
        self.strict = strict_mode() if strict is None else strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self._records: dict[str, dict[str, Spec]] | None = None
        self._commands: dict[str, CommandSpec] | None = None

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> "PluginManager":
        """Discover and load every entry point of group ``thrifty``, honouring allow/deny lists."""
        only, skip = _names("THRIFTY_PLUGINS"), _names("THRIFTY_DISABLE_PLUGINS")
        seen: dict[str, str] = {}
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
            if (only is not None and ep.name not in only) or (skip and ep.name in skip):
                continue
            dist = ep.dist.metadata["Name"] if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if ep.name in seen and seen[ep.name] != dist:
                self._fail(
                    PluginInfo(ep.name, dist, version),
                    PluginConflictError(
                        f"plugin name {ep.name!r} is registered by two distributions: "
                        f"{seen[ep.name]} and {dist}; uninstall one of them or disable it with "
                        f"THRIFTY_DISABLE_PLUGINS"
                    ),
                )
                continue
            seen[ep.name] = dist
            self._load(ep.name, dist, version, ep.load)
        self.check_pending()
        return self

    def register(self, plugin: object, name: str, distribution: str = "(local)",
                 version: str = "0") -> None:
        """Register an in-process plugin object (a module or instance with ``thrifty_*`` hooks)."""
        self._load(name, distribution, version, lambda: plugin)

    def _load(self, name: str, dist: str, version: str, loader: Callable[[], object]) -> None:
        info = PluginInfo(name, dist, version)
        if name in self.info:
            other = self.info[name].distribution
            self._fail(info, PluginConflictError(
                f"plugin name {name!r} is registered by two distributions: {other} and {dist}"))
            return
        obj = None
        try:
            obj = loader()
            self.pm.register(obj, name=name)
            self._check_hooks(name, obj)
        except Exception as exc:  # isolation: one plugin's failure must not stop the program
            if obj is not None and self.pm.is_registered(obj):
                self.pm.unregister(obj)
            self._fail(info, exc)
            return
        self.info[name] = info
        self._records = None

    def _check_hooks(self, name: str, obj: object) -> None:
        """Reject ``thrifty_*`` attributes that match no hook spec (a misspelled hook)."""
        for caller in self.pm.get_hookcallers(obj) or []:
            if caller.spec is None:
                raise PluginError(
                    f"plugin {name!r} implements unknown hook {caller.name!r}; known hooks: "
                    + ", ".join(sorted(_hook_names()))
                )

    def check_pending(self) -> None:
        """Fail loudly on hook implementations that match no specification."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{exc}; known hooks: {', '.join(sorted(_hook_names()))}") from exc

    def _fail(self, info: PluginInfo, exc: BaseException) -> None:
        info.status, info.error = "error", f"{type(exc).__name__}: {exc}"
        self.info[info.name] = info
        message = f"thrifty plugin {info.name!r} ({info.distribution} {info.version}) " \
                  f"failed to load: {info.error}"
        if self.strict:
            if isinstance(exc, PluginError):
                raise exc
            raise PluginError(message + " (THRIFTY_STRICT_PLUGINS is set)") from exc
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- records -----------------------------------------------------------------------------
    def records(self, family: str) -> dict[str, Spec]:
        """All records of one hook family, by name, validated and stamped with provenance."""
        if self._records is None:
            self._records = self._collect()
        return self._records[family]

    def _collect(self) -> dict[str, dict[str, Spec]]:
        out: dict[str, dict[str, Spec]] = {family: {} for family in FAMILIES}
        for family, cls in FAMILIES.items():
            caller = getattr(self.pm.hook, f"thrifty_{family}")
            for impl in caller.get_hookimpls():
                info = self.info[impl.plugin_name]
                try:
                    records = list(impl.function() or ())
                    for rec in records:
                        if not isinstance(rec, cls):
                            raise PluginError(
                                f"thrifty_{family} must yield {cls.__name__} records, "
                                f"got {type(rec).__name__}"
                            )
                except Exception as exc:
                    self._fail(info, exc)
                    continue
                for rec in records:
                    stamped = attrs.evolve(rec, plugin=info.name,
                                           distribution=info.distribution, version=info.version)
                    if rec.name in out[family]:
                        first = out[family][rec.name]
                        raise PluginConflictError(
                            f"{family} name {rec.name!r} is registered twice: by "
                            f"{first.distribution} (plugin {first.plugin}) and by "
                            f"{info.distribution} (plugin {info.name}); disable one with "
                            f"THRIFTY_DISABLE_PLUGINS"
                        )
                    out[family][rec.name] = stamped
                    info.provides.setdefault(family, []).append(rec.name)
        return out

    def commands(self) -> dict[str, CommandSpec]:
        """CLI sub-commands that plugins add, by name, with provenance."""
        if self._commands is None:
            found: dict[str, CommandSpec] = {}
            for impl in self.pm.hook.thrifty_commands.get_hookimpls():
                info = self.info[impl.plugin_name]
                collector = CommandCollector()
                try:
                    impl.function(cli=collector)
                except Exception as exc:
                    self._fail(info, exc)
                    continue
                for cmd in collector.commands:
                    if cmd.name in found:
                        raise PluginConflictError(
                            f"command {cmd.name!r} is added twice: by "
                            f"{found[cmd.name].distribution} and by {info.distribution}"
                        )
                    found[cmd.name] = attrs.evolve(cmd, plugin=info.name,
                                                   distribution=info.distribution,
                                                   version=info.version)
                    info.provides.setdefault("commands", []).append(cmd.name)
            self._commands = found
        return self._commands

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, loaded or broken, with what it provides."""
        for family in FAMILIES:
            self.records(family)
        self.commands()
        return sorted(self.info.values(), key=lambda i: i.name)


def _hook_names() -> Iterable[str]:
    return [n for n in dir(hookspecs) if n.startswith("thrifty_")]
