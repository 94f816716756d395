"""Plugin discovery and loading: entry points in group ``thrifty``, one try/except each.

Rules (``docs/writing-plugins.md``, "How plugins load"):

* each entry point loads in isolation; a broken one is reported on its row of
  ``thrifty plugins`` and as a one-line warning, and the program goes on, unless
  ``THRIFTY_STRICT_PLUGINS=1`` (then every problem is a :class:`PluginError`, whatever command
  runs);
* ``THRIFTY_PLUGINS=a,b`` loads only those, ``THRIFTY_DISABLE_PLUGINS=a,b`` skips those; a name
  that no installed plugin has is an error (a warning for the deny list);
* hooks that match no spec fail loudly (``check_pending``), so a misspelled hook is not silence;
* two distributions with one entry-point name, or two records with one name in a family (CLI
  commands included): the first keeps it, the later one is refused with a
  :class:`PluginConflictError` on its row that names both distributions.
"""

from __future__ import annotations

import difflib
import os
import warnings
from importlib import metadata
from typing import Callable, Iterable

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, PluginConflictError, PluginError, PluginWarning
from .records import FAMILIES, Record

GROUP = "thrifty"


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var, "").strip()
    return {n.strip() for n in raw.split(",") if n.strip()} if raw else None


def strict_mode() -> bool:
    """True when ``THRIFTY_STRICT_PLUGINS`` asks for broken plugins to be fatal."""
    return os.environ.get("THRIFTY_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


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
        """Plugins by name, loaded or broken: the first distribution to claim a name owns it."""
        self.refused: list[PluginInfo] = []
        """Later distributions that claimed a name already taken; each has an error row."""
        self._records: dict[str, dict[str, Record]] | None = None

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> "PluginManager":
        """Discover and load every entry point of group ``thrifty``, honouring allow/deny lists.

        Entry points load in (name, distribution) order, so which of two distributions that
        claim one name is refused does not depend on the order of ``sys.path``."""
        eps = sorted(metadata.entry_points(group=GROUP), key=lambda e: (e.name, _dist(e)[0]))
        known = sorted({ep.name for ep in eps})
        only = _listed("THRIFTY_PLUGINS", known, fatal=True)
        skip = _listed("THRIFTY_DISABLE_PLUGINS", known, fatal=False) or set()
        for ep in eps:
            if (only is None or ep.name in only) and ep.name not in skip:
                self._load(ep.name, *_dist(ep), ep.load)
        self.check_pending()
        return self

    def register(self, plugin: object, name: str, distribution: str = "(local)",
                 version: str = "0") -> None:
        """Register an in-process plugin object (a module or instance with ``thrifty_*`` hooks)."""
        self._load(name, distribution, version, lambda: plugin)

    def _load(self, name: str, dist: str, version: str, loader: Callable[[], object]) -> None:
        info = PluginInfo(name, dist, version)
        if name in self.info:
            self.refused.append(info)
            self._fail(info, PluginConflictError(
                f"plugin name {name!r} is registered by two distributions: "
                f"{self.info[name].distribution} (loaded) and {dist} (refused); uninstall one of "
                f"them"))
            return
        self.info[name] = info
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
        self._records = None

    def _check_hooks(self, name: str, obj: object) -> None:
        """Reject ``thrifty_*`` attributes that match no hook spec (a misspelled hook)."""
        for caller in self.pm.get_hookcallers(obj) or []:
            if caller.spec is None:
                raise PluginError(
                    f"implements unknown hook {caller.name!r}; known hooks: "
                    + ", ".join(sorted(_hook_names()))
                )

    def check_pending(self) -> None:
        """Fail loudly on hook implementations that match no specification."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{exc}; known hooks: {', '.join(sorted(_hook_names()))}") from exc

    def _fail(self, info: PluginInfo, exc: BaseException) -> None:
        """Record a plugin's problem on its row; fatal in strict mode, else one warning."""
        text = f"{type(exc).__name__}: {exc}"
        message = f"thrifty plugin {info.name!r} ({info.distribution} {info.version}): {text}"
        if self.strict:
            cls = type(exc) if isinstance(exc, PluginError) else PluginError
            raise cls(f"{message} (THRIFTY_STRICT_PLUGINS is set)") from exc
        if info.error and text in info.error:
            return  # reported when the records were first collected
        info.status = "error"
        info.error = text if info.error is None else f"{info.error}; {text}"
        warnings.warn(message, PluginWarning, stacklevel=2)

    # -- records -----------------------------------------------------------------------------
    def records(self, family: str) -> dict[str, Record]:
        """All records of one hook family, by name, validated and stamped with provenance.

        Every family is collected at once, so a broken hook surfaces (and, in strict mode,
        stops the program) whichever family or command was asked for first."""
        if self._records is None:
            self._records = self._collect()
        return self._records[family]

    def _collect(self) -> dict[str, dict[str, Record]]:
        out: dict[str, dict[str, Record]] = {family: {} for family in FAMILIES}
        for info in self.info.values():
            info.provides = {}
        for family, cls in FAMILIES.items():
            caller = getattr(self.pm.hook, f"thrifty_{family}")
            for impl in caller.get_hookimpls():  # in registration order: the first name wins
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
                    first = out[family].get(rec.name)
                    if first is not None:
                        self._fail(info, PluginConflictError(
                            f"{family.replace('_', ' ')[:-1]} {rec.name!r} is registered twice: "
                            f"by {first.distribution} (plugin {first.plugin}), which keeps it, "
                            f"and by {info.distribution} (plugin {info.name}), whose copy is "
                            f"refused; uninstall one of them or skip one with "
                            f"THRIFTY_DISABLE_PLUGINS={info.name}"))
                        continue
                    out[family][rec.name] = attrs.evolve(
                        rec, plugin=info.name, distribution=info.distribution,
                        version=info.version)
                    info.provides.setdefault(family, []).append(rec.name)
        return out

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, loaded, broken or refused, with what it provides."""
        self.records("commands")
        return sorted([*self.info.values(), *self.refused],
                      key=lambda i: (i.name, i.distribution))


def _dist(ep: metadata.EntryPoint) -> tuple[str, str]:
    """(distribution name, version) of an entry point."""
    return (ep.dist.metadata["Name"], ep.dist.version) if ep.dist else ("?", "?")


def _listed(var: str, known: list[str], *, fatal: bool) -> set[str] | None:
    """The plugin names in environment variable ``var``; an unknown one is an error (``fatal``)
    or a warning, naming what is installed and the closest name."""
    names = _names(var)
    unknown = sorted((names or set()) - set(known))
    if unknown:
        close = {n: difflib.get_close_matches(n, known, n=1) for n in unknown}
        hints = "".join(f" Did you mean {c[0]!r} for {n!r}?" for n, c in close.items() if c)
        message = (f"{var} names unknown plugin(s) {unknown}.{hints} Installed plugins: "
                   f"{', '.join(known) or '(none)'}")
        if fatal:
            raise ConfigError(message)
        warnings.warn(message, PluginWarning, stacklevel=3)
    return names


def _hook_names() -> Iterable[str]:
    return [n for n in dir(hookspecs) if n.startswith("thrifty_")]
