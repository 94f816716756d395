"""Shared helpers for cross-package tests: fake installed distributions with entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


class FakeSite:
    """A folder on sys.path holding fake distributions, as if pip had installed them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, dist: str, entry_points: dict[str, str], modules: dict[str, str],
            version: str = "1.0") -> None:
        for name, source in modules.items():
            (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[thrifty]\n{lines}")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("THRIFTY_")}
        env["PYTHONPATH"] = str(self.root)
        env.update(extra)
        return env

    def thrifty(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """Run the ``thrifty`` CLI in a subprocess that sees the fake distributions."""
        return subprocess.run([sys.executable, "-m", "thrifty.cli", *args], capture_output=True,
                              text=True, env=self.env(**env), timeout=120)

    def activate(self, monkeypatch) -> None:
        """Make the fake distributions visible in this process."""
        monkeypatch.syspath_prepend(str(self.root))
        for var in ("THRIFTY_PLUGINS", "THRIFTY_DISABLE_PLUGINS", "THRIFTY_STRICT_PLUGINS"):
            monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake_site(tmp_path) -> FakeSite:
    site = tmp_path / "site"
    site.mkdir()
    return FakeSite(site)


TOY_PLUGIN = """
from thrifty import Option, VerifierSpec, hookimpl

def _toy(model, vocab):
    from thrifty.testing.toy import ToyVerifier
    return ToyVerifier(vocab=vocab, seed=0)

@hookimpl
def thrifty_verifiers():
    return [VerifierSpec(name="toy", factory=_toy, description="trigram table",
                         options={"model": Option(str, "toy"), "vocab": Option(int, 6)})]
"""


HELLO_PLUGIN = """
from thrifty import CommandSpec, hookimpl

def _configure(parser):
    parser.add_argument("name")

def _run(args):
    print(f"hello, {args.name}")

@hookimpl
def thrifty_commands():
    return [CommandSpec(name="hello", configure=_configure, run=_run,
                        description="greet someone")]
"""
