"""The ``thrifty hw`` command (list, read, restore), registered like any plugin."""

from __future__ import annotations

import time

from ..errors import ConfigError, ThriftyError
from ..hookspecs import hookimpl
from ..records import CommandSpec


def _parse_options(pairs: list[str], sysfs_root: str | None) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"-o expects key=value, got {pair!r}")
        out[key.strip().replace("-", "_")] = value
    if sysfs_root:
        out["sysfs_root"] = sysfs_root
    return out


def _typed(spec, raw: dict[str, str]) -> dict:
    """The options ``spec`` declares, read from text by their declared types."""
    return {key: spec.options[key].parse(f"{spec.family} {spec.name!r}", key, text)
            for key, text in raw.items() if key in spec.options}


def _summary(domain: list) -> str:
    if not domain:
        return "(empty)"
    if len(domain) <= 6:
        return ", ".join(map(str, domain))
    return f"{len(domain)} values, {domain[0]} .. {domain[-1]}"


def _configure(p) -> None:
    sub = p.add_subparsers(dest="hw_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="registered hardware knobs and energy meters")
    ls.add_argument("--json", action="store_true")
    rd = sub.add_parser("read", help="read knobs (value and domain) and, with --window, meters")
    rd.add_argument("names", nargs="*", help="knob or meter names (default: every knob)")
    rd.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                    help="option for every part that declares it, e.g. -o device=1")
    rd.add_argument("--sysfs-root", help="read sysfs under this directory instead of /")
    rd.add_argument("--window", type=float, default=0.0,
                    help="also measure each named (or every) meter over this many seconds")
    rd.add_argument("--json", action="store_true")
    rs = sub.add_parser("restore", help="restore knobs saved by a run that was killed")
    rs.add_argument("--recovery-file", help="default: $THRIFTY_STATE_DIR/hw-recovery.json or "
                    "~/.local/state/thrifty/hw-recovery.json")
    rs.add_argument("--force", action="store_true",
                    help="restore even if the run that wrote the file still runs")


def _run(args) -> int:
    return {"list": _list, "read": _read, "restore": _restore}[args.hw_command](args)


def _list(args) -> int:
    from ..cli import print_table
    from ..registry import registry

    reg = registry()
    rows = [{"kind": kind, "name": s.name, "unit": getattr(s, "unit", "J"), "plugin": s.plugin,
             "description": s.description}
            for kind, family in (("knob", "hardware_knobs"), ("meter", "energy_meters"))
            for s in (reg.get(family, n) for n in reg.names(family))]
    print_table(rows, ["kind", "name", "unit", "plugin", "description"], args.json)
    return 0


def _read(args) -> int:
    from ..cli import print_table
    from ..registry import registry

    reg = registry()
    raw = _parse_options(args.option, args.sysfs_root)
    knobs = set(reg.names("hardware_knobs"))
    meters = set(reg.names("energy_meters"))
    names = args.names or sorted(knobs) + (sorted(meters) if args.window > 0 else [])
    for name in names:
        if name not in knobs and name not in meters:
            reg.hardware_knob(name)  # raises with the list of registered names
    rows = []
    for name in names:
        spec = reg.get("hardware_knobs" if name in knobs else "energy_meters", name)
        row = {"name": name, "unit": getattr(spec, "unit", "J")}
        try:
            part = spec.build(**_typed(spec, raw))
            if name in knobs:
                row.update(value=part.read(), domain=_summary(list(part.domain())))
            else:
                part.start()
                time.sleep(args.window)
                r = part.stop()
                row.update(value=f"{r.joules:.3f} J / {r.seconds:.2f} s = {r.watts:.1f} W",
                           domain=f"{r.source}, resolution {r.resolution_j:g} J"
                                  + (", wrapped" if r.wrapped else ""))
        except ThriftyError as exc:
            row.update(value="unavailable", domain=str(exc))
        rows.append(row)
    print_table(rows, ["name", "unit", "value", "domain"], args.json)
    return 0


def _restore(args) -> int:
    from .context import default_recovery_file, restore_from_file

    path = args.recovery_file or default_recovery_file()
    restored = restore_from_file(path, force=args.force)
    if restored:
        print(f"restored {len(restored)} knob(s) from {path}: {', '.join(restored)}")
    else:
        print(f"nothing to restore ({path} has no saved hardware knobs)")
    return 0


@hookimpl
def thrifty_commands():
    return [CommandSpec(name="hw", configure=_configure, run=_run,
                        description="hardware knobs and energy meters: list, read, restore after "
                                    "a crash")]


