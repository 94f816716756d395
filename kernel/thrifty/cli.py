"""The ``thrifty`` command line. Every sub-command, built-in or not, is a ``CommandSpec`` record
from a plugin's ``thrifty_commands`` hook, so third-party commands are first-class."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any, Sequence

from .errors import ThriftyError


def build_parser(reg=None) -> argparse.ArgumentParser:
    from . import __version__
    from .registry import registry

    reg = reg or registry()
    parser = argparse.ArgumentParser(
        prog="thrifty", description="Do less work in machine learning: speculative decoding, "
        "energy tuning under an SLO, LSH-sparse training, PairConnect layers.")
    parser.add_argument("--version", action="version", version=f"thrifty {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in sorted(reg.commands().items()):
        p = sub.add_parser(name, help=cmd.description, description=cmd.description)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each: a user of the CLI needs the message, not our source lines."""
    from .errors import PluginWarning

    kind = "" if issubclass(category, PluginWarning) else f"{category.__name__}: "
    print(f"thrifty: warning: {kind}{message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _warn_one_line
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        return int(args._run(args) or 0)
    except ThriftyError as exc:
        print(f"thrifty: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thrifty: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a lost permission: the system names the file
        where = f": {exc.filename}" if exc.filename else ""
        print(f"thrifty: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except Exception as exc:
        # a bug, in thrifty or a plugin: one line for the user, the traceback on request
        if os.environ.get("THRIFTY_DEBUG"):
            raise
        print(f"thrifty: internal error: {type(exc).__name__}: {exc}. This is a bug in thrifty "
              f"or a plugin; run again with THRIFTY_DEBUG=1 for the traceback and report it",
              file=sys.stderr)
        return 1


def print_table(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """Print rows as JSON (``--json``) or as an aligned text table."""
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def print_record(record: dict[str, Any], as_json: bool) -> None:
    """Print one result as JSON (``--json``) or as aligned ``key: value`` lines."""
    if as_json:
        print(json.dumps(record, indent=2, default=str))
        return
    for key, value in record.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
