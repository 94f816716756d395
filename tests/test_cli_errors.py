"""What reaches a user of the CLI when something goes wrong: one line, never a traceback."""

from __future__ import annotations

import importlib

import pytest
from thrifty import hookimpl
from thrifty.cli import main
from thrifty.records import CommandSpec


class Broken:
    """A command with a bug in it, and one that hits the file system."""

    @hookimpl
    def thrifty_commands(self):
        def bug(args):
            raise ValueError("a plugin bug")

        def disk(args):
            raise PermissionError(13, "Permission denied", "/root/out.json")

        return [CommandSpec(name="bug", description="raises a ValueError",
                            configure=lambda p: None, run=bug),
                CommandSpec(name="disk", description="raises a PermissionError",
                            configure=lambda p: None, run=disk)]


@pytest.fixture
def broken(monkeypatch):
    from thrifty.testing import fresh_registry

    reg = fresh_registry(load_entry_points=False, plugins={"broken": Broken()})
    monkeypatch.setattr(importlib.import_module("thrifty.registry"), "_default", reg)
    monkeypatch.delenv("THRIFTY_DEBUG", raising=False)


def test_a_bug_is_one_line_and_the_traceback_comes_on_request(broken, capsys, monkeypatch):
    assert main(["bug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("thrifty: internal error: ValueError: a plugin bug")
    assert "THRIFTY_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("THRIFTY_DEBUG", "1")
    with pytest.raises(ValueError, match="a plugin bug"):
        main(["bug"])


def test_an_os_error_names_the_file(broken, capsys):
    assert main(["disk"]) == 2
    assert capsys.readouterr().err == "thrifty: error: Permission denied: /root/out.json\n"
