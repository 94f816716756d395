"""Knobs over sysfs attribute files, shared by the Linux CPU and Jetson plugins.

Every path is relative to a root (``/`` on a real machine, a temporary tree in tests), so the
same code runs against the kernel and against a fake tree laid out like a given board's.
Errors say which file and what to do: a missing file means the driver does not expose the
knob, a refused write means the process needs root.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import KnobError, NotSupportedError, PermissionDeniedError


class Sysfs:
    """Reads and writes attribute files under ``root``."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching ``pattern``, sorted."""
        found = glob.glob(str(self.path(pattern)))
        return sorted(os.path.relpath(p, self.root) for p in found)

    def read(self, rel: str) -> str:
        path = self.path(rel)
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise NotSupportedError(f"{path} does not exist: this kernel or driver does not expose "
                                    f"it (wrong board generation or sysfs root?)") from None
        except PermissionError:
            raise PermissionDeniedError(f"reading {path} needs root: run as root or make it "
                                        f"readable (sudo chmod o+r {path})") from None

    def write(self, rel: str, value: Any) -> None:
        path = self.path(rel)
        try:
            with open(path, "w") as f:
                f.write(f"{value}\n")
        except FileNotFoundError:
            raise NotSupportedError(f"{path} does not exist: this kernel or driver does not expose "
                                    f"it (wrong board generation or sysfs root?)") from None
        except PermissionError:
            raise PermissionDeniedError(f"writing {path} needs root: run as root (sudo) or "
                                        f"give this user write access to it") from None
        except OSError as exc:
            raise KnobError(f"the kernel refused {value!r} for {path}: {exc}") from None

    def write_range(self, directory: str, min_attr: str, max_attr: str, lo: Any, hi: Any) -> None:
        """Set a min/max pair in the order that never makes min exceed max on the way."""
        current_max = int(self.read(f"{directory}/{max_attr}"))
        if int(lo) > current_max:
            self.write(f"{directory}/{max_attr}", hi)
            self.write(f"{directory}/{min_attr}", lo)
        else:
            self.write(f"{directory}/{min_attr}", lo)
            self.write(f"{directory}/{max_attr}", hi)


def common_values(sysfs: Sysfs, dirs: Sequence[str], attr: str,
                  parse: Callable[[str], Any] = int) -> list:
    """Values listed (space-separated) in ``attr`` of every directory, sorted: a domain that all
    the directories accept (the CPUs of a heterogeneous selection may differ)."""
    sets = [{parse(v) for v in sysfs.read(f"{d}/{attr}").split()} for d in dirs]
    return sorted(set.intersection(*sets)) if sets else []


def own_state(knob: Any, state: Any) -> dict:
    """A snapshot (which may come from a recovery file) that names only the knob's own
    directories: a restore writes where the knob itself would, never elsewhere."""
    if not isinstance(state, dict):
        raise KnobError(f"knob {knob.name!r}: a snapshot is an object of directory: value, "
                        f"got {state!r}")
    foreign = sorted(set(state) - set(knob.dirs))
    if foreign:
        raise KnobError(f"knob {knob.name!r}: the snapshot names {foreign}, which this knob does "
                        f"not control (it controls {knob.dirs})")
    return state


class FileKnob:
    """One attribute written with the same value in every directory of a set (all selected
    CPUs, one devfreq device). ``read()`` reports the first directory; ``apply`` reads back."""

    def __init__(self, name: str, unit: str, sysfs: Sysfs, dirs: Sequence[str], attr: str,
                 domain: Callable[[], list], parse: Callable[[str], Any] = int) -> None:
        if not dirs:
            raise NotSupportedError(f"knob {name!r}: no device directories found under "
                                    f"{sysfs.root}; check the sysfs root and the selection")
        self.name, self.unit, self.sysfs = name, unit, sysfs
        self.dirs, self.attr, self.parse = list(dirs), attr, parse
        self._domain = domain

    def domain(self) -> list:
        return self._domain()

    def read(self) -> Any:
        return self.parse(self.sysfs.read(f"{self.dirs[0]}/{self.attr}"))

    def apply(self, value: Any) -> Any:
        for d in self.dirs:
            self.sysfs.write(f"{d}/{self.attr}", value)
        return self.read()

    def snapshot(self) -> dict:
        return {d: self.sysfs.read(f"{d}/{self.attr}") for d in self.dirs}

    def restore(self, state: dict) -> None:
        for d, raw in own_state(self, state).items():
            self.sysfs.write(f"{d}/{self.attr}", raw)


class RangeLockKnob:
    """Locks a min/max attribute pair to one value (min = max = value) in every directory.

    This is how a frequency is pinned through cpufreq and devfreq. ``read()`` reports the max
    attribute of the first directory: the ceiling in force, which a thermal or power cap lowers.
    """

    def __init__(self, name: str, unit: str, sysfs: Sysfs, dirs: Sequence[str], min_attr: str,
                 max_attr: str, domain: Callable[[], list]) -> None:
        if not dirs:
            raise NotSupportedError(f"knob {name!r}: no device directories found under "
                                    f"{sysfs.root}; check the sysfs root and the selection")
        self.name, self.unit, self.sysfs = name, unit, sysfs
        self.dirs, self.min_attr, self.max_attr = list(dirs), min_attr, max_attr
        self._domain = domain

    def domain(self) -> list:
        return self._domain()

    def read(self) -> int:
        return int(self.sysfs.read(f"{self.dirs[0]}/{self.max_attr}"))

    def apply(self, value: int) -> int:
        for d in self.dirs:
            self.sysfs.write_range(d, self.min_attr, self.max_attr, value, value)
        return self.read()

    def snapshot(self) -> dict:
        return {d: [int(self.sysfs.read(f"{d}/{self.min_attr}")),
                    int(self.sysfs.read(f"{d}/{self.max_attr}"))] for d in self.dirs}

    def restore(self, state: dict) -> None:
        for d, pair in own_state(self, state).items():
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(type(v) is int for v in pair)):
                raise KnobError(f"knob {self.name!r}: snapshot of {d} is {pair!r}, not a "
                                f"[min, max] pair")
            self.sysfs.write_range(d, self.min_attr, self.max_attr, *pair)
