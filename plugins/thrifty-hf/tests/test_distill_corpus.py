"""``thrifty distill --corpus files --files DIR``: the text files of a folder as training text.

The files are read in path order as UTF-8 (a file that does not decode is skipped), split 9:1
by a hash of the relative path as the standard library is, and capped by ``--files-tokens``;
``--corpus files`` and ``--files`` are checked together before the verifier loads.
"""

from __future__ import annotations

import argparse
import json
import sysconfig
from pathlib import Path

import pytest

from thrifty.errors import ConfigError
from thrifty_hf.distill import (MANIFEST, configure, corpus_kinds, files_tokens, folder_files,
                                held_out, run, stdlib_files)
from thrifty_hf.drafts import MANIFEST as DRAFT_MANIFEST

SOURCES = {
    "c": ("c", "int add(int a, int b) {\n    return a + b;\n}\n"),
    "rust": ("rs", "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"),
    "go": ("go", "package main\n\nfunc add(a int, b int) int {\n\treturn a + b\n}\n"),
    "docs": ("md", "# Adding\n\nThe function adds two numbers and returns the sum.\n"),
    "js": ("js", "function add(a, b) {\n  return a + b;\n}\n"),
}


def _args(*argv):
    p = argparse.ArgumentParser()
    configure(p)
    return p.parse_args(["--out", "unused", *argv])


@pytest.fixture
def tree(tmp_path):
    """A corpus folder: 40 small files of five languages, a manifest and an undecodable file."""
    root = tmp_path / "corpus"
    for i in range(8):
        for lang, (ext, text) in SOURCES.items():
            path = root / f"pkg-{i}" / lang / f"add_{i}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"// file {i}\n{text}" * (i + 1), encoding="utf-8")
    (root / MANIFEST).write_text('{"packages": []}\n')
    (root / "pkg-0" / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    return root


@pytest.fixture(scope="module")
def tokenizer(family_tokenizer):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(family_tokenizer)


def test_split_is_by_path_hash_deterministic_and_disjoint(tree):
    train, held = folder_files(tree, "train"), folder_files(tree, "heldout")
    assert train and held and not set(train) & set(held)
    assert folder_files(tree, "train") == train  # the same files in the same order every time
    rels = [p.relative_to(tree).as_posix() for p in train]
    assert rels == sorted(rels) and MANIFEST not in rels
    every = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    assert {p.relative_to(tree).as_posix() for p in train + held} == every - {MANIFEST}
    assert all(held_out(p.relative_to(tree).as_posix()) for p in held)
    # the standard library is split by the same rule
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert all(held_out(p.relative_to(stdlib).as_posix()) for p in stdlib_files("heldout"))


def test_tokens_are_the_train_files_in_path_order_capped(tree, tokenizer):
    train = [p for p in folder_files(tree, "train") if p.suffix != ".txt"]
    expect = [t for p in train for t in tokenizer.encode(p.read_text() + "\n\n",
                                                        add_special_tokens=False)]
    assert files_tokens(tokenizer, tree, "train", 10 ** 9) == expect  # latin-1 file skipped
    assert files_tokens(tokenizer, tree, "train", 100) == expect[:100]
    held = files_tokens(tokenizer, tree, "heldout", 10 ** 9)
    assert held and held != expect[: len(held)]


def test_corpus_kinds_need_their_folder(tmp_path, tree):
    assert corpus_kinds(_args("--corpus", "code,chat,files", "--files", str(tree))) == \
        {"code", "chat", "files"}
    assert corpus_kinds(_args("--corpus", "code")) == {"code"}
    with pytest.raises(ConfigError, match="code, files, chat.*'prose'"):
        corpus_kinds(_args("--corpus", "code,prose"))
    with pytest.raises(ConfigError, match="--corpus files and --files DIR go together"):
        corpus_kinds(_args("--corpus", "code,files"))
    with pytest.raises(ConfigError, match="--corpus files and --files DIR go together"):
        corpus_kinds(_args("--corpus", "code", "--files", str(tree)))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    for missing in (tmp_path / "missing", tmp_path / "empty", tree / MANIFEST):
        with pytest.raises(ConfigError, match=f"--files {missing} is not a folder with files.*"
                                              f"bench/draft_corpus.py"):
            corpus_kinds(_args("--corpus", "files", "--files", str(missing)))


def test_chat_prompts_are_a_file_of_requests_or_refused(tmp_path):
    from thrifty_hf.distill import chat_prompts, chat_requests

    mine = tmp_path / "mine.txt"
    mine.write_text("How do I boil an egg?\n\n  What is a haiku?  \n", encoding="utf-8")
    assert chat_requests(_args("--chat-prompts", str(mine))) == ["How do I boil an egg?",
                                                                 "What is a haiku?"]
    assert chat_requests(_args()) == chat_prompts()
    one = tmp_path / "one.txt"
    one.write_text("Only this?\n", encoding="utf-8")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9?\nb?\n".encode("latin-1"))
    for bad, match in [(one, "has 1 request"), (tmp_path / "missing.txt", "not a readable"),
                       (latin, "not a readable UTF-8")]:
        with pytest.raises(ConfigError, match=f"--chat-prompts {bad} .*{match}"):
            corpus_kinds(_args("--corpus", "chat", "--chat-prompts", str(bad)))
    with pytest.raises(ConfigError, match="add chat to --corpus"):
        corpus_kinds(_args("--corpus", "code", "--chat-prompts", str(mine)))


def test_run_checks_the_corpus_before_loading_the_verifier(tmp_path):
    with pytest.raises(ConfigError, match="--files"):
        run(_args("--verifier", str(tmp_path / "no-such-model"), "--corpus", "files"))


def test_distill_on_files_records_their_tokens(tiny_family, tree, tmp_path):
    out = tmp_path / "draft"
    run(_args("--verifier", str(tiny_family("qwen2")), "--out", str(out), "--corpus", "files",
              "--files", str(tree), "--files-tokens", "400", "--batch", "2", "--seq-len", "16",
              "--steps", "2", "--device", "cpu", "--teacher-dtype", "float32", "--quiet"))
    corpus = json.loads((out / DRAFT_MANIFEST).read_text())["training"]["corpus"]
    assert corpus == {"files_tokens": 400}
