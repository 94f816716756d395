"""thrifty.atomic: atomic, durable writes; thrifty.files: reads and folders that name the file."""

import json
import os

import pytest

from thrifty.errors import ConfigError
from thrifty.atomic import atomic_path, replace_folder, write_atomically, write_json_atomically
from thrifty.files import (cache_dir, check_writable, ensure_folder, read_json, read_text,
                           read_toml, state_dir)


def test_write_atomically_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_atomically(target, "old")
    write_json_atomically(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_an_atomic_file_has_the_mode_of_a_plain_one(tmp_path):
    """Not the private 0600 of the temporary file it was written as."""
    old = os.umask(0o027)
    try:
        write_atomically(tmp_path / "out.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    modes = {n: (tmp_path / n).stat().st_mode & 0o777 for n in ("out.json", "plain.json")}
    assert modes["out.json"] == modes["plain.json"] == 0o640


def test_atomic_path_keeps_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "ck.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["ck.bin"]


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """The paths ``os.fsync`` is called on, in order (it still syncs them)."""
    paths: list[str] = []
    real = os.fsync

    def spy(fd):
        paths.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return paths


def test_atomic_path_fsyncs_file_and_folder(tmp_path, synced):
    write_atomically(tmp_path / "x", b"data")
    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / ".x."))  # the file, before its rename
    assert synced[1] == str(tmp_path)                   # then the folder, after it


def test_replace_folder_syncs_every_file_then_swaps_the_whole_folder(tmp_path, synced):
    target = tmp_path / "model"
    (target / "old").mkdir(parents=True)
    (target / "old" / "weights").write_bytes(b"old")
    finished = tmp_path / ".model.partial"
    (finished / "sub").mkdir(parents=True)
    (finished / "config.json").write_text("{}")
    (finished / "sub" / "weights").write_bytes(b"new")
    replace_folder(finished, target)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == \
        ["config.json", "sub", "sub/weights"]
    assert not finished.exists()
    # every file and the finished folder before the rename, the parent after it
    assert {str(finished / "config.json"), str(finished / "sub" / "weights"),
            str(finished)} <= set(synced[:-1])
    assert synced[-1] == str(tmp_path)


def test_write_json_atomically_refuses_nan(tmp_path):
    with pytest.raises(ConfigError, match="NaN or infinite"):
        write_json_atomically(tmp_path / "x.json", {"v": float("nan")})
    assert not (tmp_path / "x.json").exists()


def test_folder_that_is_a_file_is_named(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match=r"THRIFTY_CACHE: .*f.* is a file"):
        ensure_folder(tmp_path / "f" / "models", "THRIFTY_CACHE")
    with pytest.raises(ConfigError, match="is a file"):
        write_atomically(tmp_path / "f" / "out", "x")


def test_check_writable_refuses_missing_folder_and_folder_target(tmp_path):
    with pytest.raises(ConfigError, match=r"--log .*nope.* does not exist"):
        check_writable(tmp_path / "nope" / "log.jsonl", "--log")
    with pytest.raises(ConfigError, match="is a folder"):
        check_writable(tmp_path, "--plot")
    assert check_writable(tmp_path / "ok.png", "--plot") == tmp_path / "ok.png"


def test_read_text_names_file_line_and_encoding(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_bytes("ok\nsecond line caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"prompts.txt:2 is not UTF-8 \(byte 0xe9"):
        read_text(p, "prompt file")
    p.write_bytes(b"\xef\xbb\xbfwith bom")
    assert read_text(p) == "with bom"
    with pytest.raises(ConfigError, match="cannot read file .*missing: it does not exist"):
        read_text(tmp_path / "missing")
    with pytest.raises(ConfigError, match="is a folder"):
        read_text(tmp_path)


def test_read_json_checks_shape_syntax_and_nan(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="holds a JSON list, expected a JSON object"):
        read_json(p, "table")
    assert read_json(p, expect=list) == [1, 2]
    p.write_text('{\n "a": 1,\n}')
    with pytest.raises(ConfigError, match=r"t.json:3:1 is not valid JSON"):
        read_json(p)
    p.write_text('{"a": NaN}')
    with pytest.raises(ConfigError, match="NaN is not a JSON number"):
        read_json(p)


def test_read_toml_names_the_line(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text("[a]\nx = = 1\n")
    with pytest.raises(ConfigError, match=r"p.toml is not valid TOML: .*line 2"):
        read_toml(p)


@pytest.mark.parametrize("env, folder", [("THRIFTY_CACHE", cache_dir),
                                         ("THRIFTY_STATE_DIR", state_dir)])
def test_env_folder_that_is_a_file_is_refused_by_name(tmp_path, monkeypatch, env, folder):
    monkeypatch.setenv(env, str(tmp_path))
    assert folder() == tmp_path
    (tmp_path / "f").write_text("")
    monkeypatch.setenv(env, str(tmp_path / "f" / "sub"))
    with pytest.raises(ConfigError, match=rf"{env}=.*f/sub: .*f is a file, not a folder; set "
                                          rf"{env} to a folder"):
        folder()


def test_hw_restore_names_a_state_dir_that_is_a_file(tmp_path, monkeypatch, capsys):
    from thrifty.cli import main

    (tmp_path / "state").write_text("")
    monkeypatch.setenv("THRIFTY_STATE_DIR", str(tmp_path / "state"))
    assert main(["hw", "restore"]) == 2
    err = capsys.readouterr().err
    assert "THRIFTY_STATE_DIR=" in err and "is a file, not a folder" in err
