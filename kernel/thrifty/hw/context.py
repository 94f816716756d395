"""The hardware context: every knob a run touches is put back, on every exit path.

Before the first change to a knob, its snapshot goes to a recovery file (written atomically),
then the value is set and read back. Leaving the ``with`` block, an exception, SIGINT and SIGTERM
all restore the snapshots in reverse order; a process killed with SIGKILL cannot, so
``thrifty hw restore`` (:func:`restore_from_file`) rebuilds each knob from the registry with the
same options and restores it from the file.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from ..atomic import write_json_atomically
from ..errors import ConfigError, KnobDomainError, KnobError
from ..files import json_type, read_json, state_dir

RECOVERY_VERSION = 1
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def default_recovery_file() -> Path:
    """``$THRIFTY_STATE_DIR/hw-recovery.json``, else under ``$XDG_STATE_HOME/thrifty`` or
    ``~/.local/state/thrifty``: a per-user place that survives the process."""
    return state_dir() / "hw-recovery.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_BY_HAND = ("the file is kept; restore the hardware by hand (e.g. nvidia-smi -rgc, a reboot), "
            "then delete the file")


def _read_recovery(path: Path) -> dict:
    """The recovery file's content, checked entry by entry. A file that is not exactly what
    :meth:`HardwareContext._save` writes is refused whole and kept: it is the last copy of the
    settings to restore, so guessing at it (or deleting it) could leave hardware changed."""
    try:
        data = read_json(path, "recovery file")
    except ConfigError as exc:
        raise KnobError(f"{exc}; {_BY_HAND}") from None
    problem = _recovery_problem(data)
    if problem:
        raise KnobError(f"recovery file {path} {problem}; {_BY_HAND}")
    return data


def _recovery_problem(data: dict) -> str | None:
    """What makes ``data`` not a recovery file this version wrote, or None."""
    if data.get("version") != RECOVERY_VERSION:
        return (f"has version {data.get('version')!r}; this thrifty reads version "
                f"{RECOVERY_VERSION}")
    pid = data.get("pid")
    if pid is not None and (type(pid) is not int or not 0 < pid < 2**31):
        return f"has pid {pid!r}, not a process id"
    knobs = data.get("knobs")
    if not isinstance(knobs, list):
        return f"has knobs {json_type(knobs)}, expected a list of knob snapshots"
    for i, entry in enumerate(knobs):
        where = f"knob entry {i}"
        if not isinstance(entry, dict):
            return f"{where} is a {json_type(entry)}, expected an object"
        missing = [k for k in ("knob", "spec", "options", "state") if k not in entry]
        if missing:
            return f"{where} lacks {', '.join(missing)}"
        if not isinstance(entry["knob"], str):
            return f"{where} has knob {entry['knob']!r}, expected a name"
        if entry["spec"] is not None and not isinstance(entry["spec"], str):
            return f"{where} has spec {entry['spec']!r}, expected a registered knob name"
        if not isinstance(entry["options"], dict):
            return f"{where} has options {json_type(entry['options'])}, expected an object"
    return None


@attrs.define
class _Touched:
    knob: Any
    spec: str | None
    options: dict
    state: Any

    def as_json(self) -> dict:
        return {"spec": self.spec, "options": self.options, "knob": self.knob.name,
                "state": self.state}


class HardwareContext:
    """Applies knob values and guarantees that every touched knob is restored.

    >>> with HardwareContext() as hw:                                   # doctest: +SKIP
    ...     clocks = hw.knob("nvml.gpu-locked-clocks", device=0)
    ...     hw.apply(clocks, 1410)                                      # read-back returned
    """

    def __init__(self, recovery_file: str | Path | None = None, registry=None) -> None:
        self.recovery_file = Path(recovery_file) if recovery_file else default_recovery_file()
        self._registry = registry
        self._built: dict[int, tuple[Any, str, dict]] = {}
        self._touched: list[_Touched] = []
        self._domains: dict[int, list] = {}
        self._previous: dict[int, Any] = {}
        self._owns_file = False

    # -- building and applying ---------------------------------------------------------------
    def knob(self, spec_name: str, **options: Any) -> Any:
        """Build the knob registered as ``spec_name``; its spec and options are remembered so
        that ``thrifty hw restore`` can rebuild it after a crash."""
        from ..registry import registry as default_registry

        reg = self._registry or default_registry()
        knob = reg.hardware_knob(spec_name).build(**options)
        self._built[id(knob)] = (knob, spec_name, dict(options))
        return knob

    def apply(self, knob: Any, value: Any) -> Any:
        """Set ``value`` (checked against the knob's domain) and return the value read back.

        The knob's first change is preceded by a snapshot saved to the recovery file.
        """
        domain = self._domains.get(id(knob))
        if domain is None:
            domain = self._domains[id(knob)] = list(knob.domain())
        if value not in domain:
            shown = ", ".join(map(repr, domain[:24])) + (" ..." if len(domain) > 24 else "")
            raise KnobDomainError(f"{value!r} is not in the domain of knob {knob.name!r} "
                                  f"({knob.unit or 'no unit'}); allowed: {shown}")
        if not any(t.knob is knob for t in self._touched):
            _, spec, options = self._built.get(id(knob), (knob, None, {}))
            self._claim_file()
            self._touched.append(_Touched(knob, spec, options, knob.snapshot()))
            try:
                self._save()
            except BaseException:
                self._touched.pop()
                raise
        return knob.apply(value)

    @property
    def touched(self) -> list[str]:
        """Names of the knobs changed and not yet restored, in the order they were touched."""
        return [t.knob.name for t in self._touched]

    # -- restoring ---------------------------------------------------------------------------
    def restore(self) -> None:
        """Restore every touched knob, last touched first. Knobs whose restore fails stay in
        the recovery file (for ``thrifty hw restore``) and are named in the KnobError raised
        after all the others were restored."""
        blocked = self._block_signals()
        try:
            failed: list[tuple[_Touched, BaseException]] = []
            for t in reversed(self._touched):
                try:
                    t.knob.restore(t.state)
                except Exception as exc:
                    failed.append((t, exc))
            self._touched = [t for t, _ in reversed(failed)]
            if self._touched:
                self._save()
            elif self._owns_file:
                self.recovery_file.unlink(missing_ok=True)
                self._owns_file = False
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        if failed:
            detail = "; ".join(f"{t.knob.name}: {exc}" for t, exc in failed)
            raise KnobError(f"could not restore {len(failed)} knob(s): {detail}. Their snapshots "
                            f"stay in {self.recovery_file}; fix the cause and run "
                            f"`thrifty hw restore --recovery-file {self.recovery_file}`")

    def _claim_file(self) -> None:
        """Refuse to overwrite another run's snapshots: they hold the real defaults."""
        if self._owns_file or not self.recovery_file.exists():
            self._owns_file = True
            return
        pid = _read_recovery(self.recovery_file).get("pid")
        if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
            why = f"run pid {pid} is changing hardware settings now"
        else:
            why = "a previous run ended without restoring its hardware settings"
        raise KnobError(f"recovery file {self.recovery_file} exists: {why}. Run `thrifty hw "
                        f"restore --recovery-file {self.recovery_file}` first (or stop that run), "
                        f"or give this run its own recovery file")

    def _save(self) -> None:
        write_json_atomically(self.recovery_file, {
            "version": RECOVERY_VERSION, "pid": os.getpid(), "saved": time.time(),
            "knobs": [t.as_json() for t in self._touched]})

    # -- context manager and signals ---------------------------------------------------------
    def __enter__(self) -> "HardwareContext":
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                previous = signal.getsignal(signum)
                if previous is signal.SIG_IGN:
                    continue
                self._previous[signum] = previous
                signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self.restore()
        finally:
            self._put_back_handlers()

    def _put_back_handlers(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        previous = self._previous.get(signum)
        try:
            self.restore()
        finally:
            self._put_back_handlers()
        if callable(previous):  # e.g. Python's default SIGINT handler, which raises
            previous(signum, frame)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    @staticmethod
    def _block_signals() -> bool:
        """Hold SIGINT/SIGTERM while restoring, so a second signal cannot cut a restore short;
        they are delivered (and handled) once it is done."""
        if threading.current_thread() is not threading.main_thread():
            return False
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        return True


def restore_from_file(path: str | Path, registry=None, force: bool = False) -> list[str]:
    """Restore every knob saved in a recovery file (what ``thrifty hw restore`` does after a run
    was killed); return the names restored. The file is removed only once every knob in it
    was restored; one that cannot be read or interpreted is kept and refused with a KnobError.

    Knobs that were not built from a registered spec (process-local software knobs) died with
    their process and are skipped. A file whose run is still alive is left alone unless
    ``force``: that run restores its own knobs when it ends.
    """
    from ..registry import registry as default_registry

    path = Path(path)
    if not path.exists():
        return []
    data = _read_recovery(path)
    pid = data.get("pid")
    if not force and isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
        raise KnobError(f"run pid {pid} that wrote {path} is still running and restores its own "
                        f"knobs on exit; stop it (SIGTERM) or pass --force")
    reg = registry or default_registry()
    restored: list[str] = []
    failed: list[tuple[dict, BaseException]] = []
    for entry in reversed(data["knobs"]):
        if entry["spec"] is None:
            continue
        try:
            knob = reg.hardware_knob(entry["spec"]).build(**entry["options"])
            knob.restore(entry["state"])
            restored.append(entry["knob"])
        except Exception as exc:
            failed.append((entry, exc))
    if failed:
        write_json_atomically(path, {**data, "knobs": [e for e, _ in reversed(failed)]})
        detail = "; ".join(f"{e['knob']}: {exc}" for e, exc in failed)
        raise KnobError(f"restored {len(restored)} knob(s) but not {len(failed)}: {detail}. "
                        f"They stay in {path}; fix the cause and run `thrifty hw restore` again")
    path.unlink()
    return restored
