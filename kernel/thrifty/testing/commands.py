"""Conformance suite for CLI commands. Subclass it in a plugin's tests::

    from thrifty.testing.commands import CommandSuite

    class TestHello(CommandSuite):
        command = "hello"            # the registered name
        argv = ["world"]             # arguments that must parse

The suite finds the command through the registry (as ``thrifty`` does) and checks what every
user of the CLI relies on: the command is registered with a description, ``--help`` prints that
description and exits 0, ``argv`` parses, and an unknown flag is argparse's usage error (exit 2),
never a traceback from inside ``configure``.
"""

from __future__ import annotations

import argparse
from typing import ClassVar

import pytest

from ..records import CommandSpec


class CommandSuite:
    """Contract tests for one registered command."""

    command: ClassVar[str]
    argv: ClassVar[list[str]] = []

    @pytest.fixture
    def spec(self) -> CommandSpec:
        from . import fresh_registry

        return fresh_registry().command(self.command)

    @pytest.fixture
    def parser(self, spec) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=f"thrifty {spec.name}",
                                         description=spec.description)
        spec.configure(parser)
        return parser

    def test_record(self, spec):
        assert isinstance(spec, CommandSpec)
        assert spec.description.strip(), "a command needs a one-line description for --help"
        assert spec.plugin and spec.distribution  # stamped by the core

    def test_help_prints_the_description(self, parser, spec, capsys):
        with pytest.raises(SystemExit) as done:
            parser.parse_args(["--help"])
        assert done.value.code == 0
        assert " ".join(spec.description.split()[:3]) in " ".join(capsys.readouterr().out.split())

    def test_argv_parses(self, parser):
        assert isinstance(parser.parse_args(list(self.argv)), argparse.Namespace)

    def test_unknown_flag_is_a_usage_error(self, parser, capsys):
        with pytest.raises(SystemExit) as done:
            parser.parse_args([*self.argv, "--no-such-flag-anywhere"])
        assert done.value.code == 2
        assert "--no-such-flag-anywhere" in capsys.readouterr().err
