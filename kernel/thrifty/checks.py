"""Checks shared by every input kind (TOML tables, CLI options, profiles, tables, recovery
files): unknown keys with a "did you mean", numbers that must be finite and in range.

Each raises a :class:`ConfigError` whose message starts with ``where`` (a file and table, a
flag, an option), so that the user learns which input was wrong, not only which value.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

from .errors import ConfigError


def did_you_mean(name: Any, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_keys(where: str, given: Iterable[str], known: Iterable[str],
               noun: str = "key") -> None:
    """Refuse keys not in ``known``: a typo must fail, not be ignored."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known), key=str)
    if unknown:
        hint = did_you_mean(unknown[0], known)
        raise ConfigError(f"{where}: unknown {noun}(s) {unknown}.{hint} It accepts: "
                          f"{', '.join(known) or '(none)'}")


def is_number(value: Any) -> bool:
    """An int or float, not a bool (``True`` is an int to Python, never a number to a user)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(where: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 integer: bool = False) -> Any:
    """``value`` if it is a finite number (an int where ``integer``) in [low, high] (``low``
    excluded where ``low_open``); else a ConfigError that states the rule."""
    rule = "an integer" if integer else "a finite number"
    if low is not None:
        rule += f" {'>' if low_open else '>='} {low}"
    if high is not None:
        rule += f"{' and' if low is not None else ''} <= {high}"
    ok = isinstance(value, int) if integer else is_number(value) and math.isfinite(value)
    if ok and not isinstance(value, bool):
        ok = ((low is None or (value > low if low_open else value >= low))
              and (high is None or value <= high))
    else:
        ok = False
    if not ok:
        raise ConfigError(f"{where} must be {rule}; got {value!r}")
    return value
