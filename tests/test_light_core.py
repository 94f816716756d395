"""The core imports, and `thrifty plugins` runs, with no torch (or other heavy library)
installed: an import blocker stands in for their absence, in a fresh interpreter. Every
installed plugin must load under it too, since heavy imports belong inside factories."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ["torch", "transformers", "onnxruntime", "onnx", "pynvml", "scipy", "matplotlib",
         "safetensors", "gguf", "optuna", "sklearn"]

BLOCKER = f"""
import sys
from importlib.abc import MetaPathFinder

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
        return None

sys.meta_path.insert(0, Block())
"""


def run_blocked(tmp_path, code: str, strict: bool = True) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("THRIFTY_")}
    env["PYTHONPATH"] = str(tmp_path)
    if strict:
        env["THRIFTY_STRICT_PLUGINS"] = "1"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


def test_blocker_really_blocks(tmp_path):
    out = run_blocked(tmp_path, "import torch")
    assert out.returncode != 0 and "blocked by the test" in out.stderr


def test_core_and_plugin_listing_without_heavy_libraries(tmp_path):
    code = (
        "import json, sys, thrifty\n"
        "from thrifty.cli import main\n"
        "infos = thrifty.registry().plugins()\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'plugins': [i.as_dict() for i in infos], 'heavy': loaded}))\n"
    )
    out = run_blocked(tmp_path, code)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    broken = [p for p in result["plugins"] if p["status"] != "ok"]
    assert broken == [], broken
    names = {p["name"] for p in result["plugins"]}
    assert {"core", "ngram"} <= names


def test_thrifty_plugins_command_without_heavy_libraries(tmp_path):
    out = run_blocked(tmp_path, "from thrifty.cli import main; raise SystemExit(main(['plugins']))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[:2] == ["NAME", "DISTRIBUTION"]
