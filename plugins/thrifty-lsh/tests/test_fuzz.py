"""Fuzz and property tests: random or mutated XC lines and files and damaged checkpoints give a
correct result or a clean ThriftyError - never another exception, a hang or a NaN (issue 21)."""

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from thrifty.errors import DatasetFormatError, ModelFormatError
from thrifty_lsh import checkpoint
from thrifty_lsh.data import Header, load, parse_line, write
from thrifty_lsh.synthetic import generate
from thrifty_lsh.train import TrainConfig, Trainer

HEADER = Header(3, 50, 20)
FAST = settings(max_examples=60, deadline=2000,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
_FLOAT32_MAX = 3.4028234663852886e38

tokens = st.sampled_from(["0", "1", "7", "19", "20", "49", "50", "-1", "+3", "1e3", "nan",
                          "inf", "-inf", "1e39", "0.5", "1_0", ",", ":", " ", "  ", "\t", "x",
                          "\u00e9", "\u0661", "\r", "3.4e38"])


def _sound(point):
    """What every point the parser returns must satisfy."""
    assert all(0 <= f < HEADER.n_features for f in point.features)
    assert all(0 <= lab < HEADER.n_labels for lab in point.labels)
    assert len(set(point.labels)) == len(point.labels)
    assert all(math.isfinite(v) and abs(v) <= _FLOAT32_MAX for v in point.values)
    assert len(point.features) == len(point.values)


@FAST
@given(st.lists(tokens, max_size=12).map("".join))
def test_fuzz_random_lines_parse_soundly_or_fail_cleanly(line):
    try:
        point = parse_line(line + "\n", HEADER, 2, "f.txt")
    except DatasetFormatError as exc:
        assert str(exc).startswith("f.txt:2: ")
        return
    _sound(point)


@FAST
@given(st.lists(st.integers(0, 19), unique=True, max_size=4),
       st.lists(st.tuples(st.integers(0, 49),
                          st.floats(-3e38, 3e38, allow_nan=False)), max_size=5))
def test_fuzz_valid_lines_parse_to_what_they_say(labels, features):
    assume(labels or features)  # a blank line is refused: the file ended early
    line = ",".join(map(str, labels)) + " " + " ".join(f"{f}:{v!r}" for f, v in features)
    point = parse_line(line + "\n", HEADER)
    assert point.labels == labels
    assert point.features == [f for f, _ in features]
    assert point.values == [v for _, v in features]


@pytest.fixture(scope="module")
def xc_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("xc") / "d.txt"
    write(path, generate(6, 50, 20, seed=4))
    return path.read_bytes()


@FAST
@given(data=st.data())
def test_fuzz_mutated_files_load_soundly_or_fail_cleanly(tmp_path, xc_file, data):
    blob = bytearray(xc_file)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    blob = blob[:data.draw(st.integers(0, len(blob)))]
    path = tmp_path / "m.txt"
    path.write_bytes(bytes(blob))
    try:
        d = load(path)
    except DatasetFormatError as exc:
        assert str(path) in str(exc)
        return
    assert torch.isfinite(torch.from_numpy(d.values)).all()
    assert d.indices.max(initial=0) < d.header.n_features
    assert d.labels.max(initial=0) < max(d.header.n_labels, 1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real checkpoint of a tiny SLIDE run and the state it holds."""
    ck = tmp_path_factory.mktemp("ck")
    cfg = TrainConfig(train="synthetic:30x40", n_train=32, n_test=8, hidden=4, batch_size=16,
                      checkpoint=str(ck), slide={"k": 2, "l": 2})
    trainer = Trainer(cfg, 30, 40)
    path = trainer.save(ck)
    return path.read_bytes(), checkpoint.load(path)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _lengths(blob):
    """Truncation points of every length class: inside the 8-byte size, inside the JSON
    header, inside the tensors, one byte short."""
    header = 8 + int.from_bytes(blob[:8], "little")
    return st.one_of(st.integers(0, 7), st.integers(8, header - 1),
                     st.integers(header, len(blob) - 1), st.just(len(blob) - 1))


@FAST
@given(data=st.data())
def test_fuzz_truncated_checkpoints_are_refused_by_name(tmp_path, saved, data):
    blob, _ = saved
    cut = data.draw(_lengths(blob))
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(blob[:cut])
    with pytest.raises(ModelFormatError, match=str(path)):
        checkpoint.load(path)


@FAST
@given(data=st.data())
def test_fuzz_flipped_checkpoint_bytes_are_refused_or_harmless(tmp_path, saved, data):
    blob, state = saved
    mutated = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(bytes(mutated))
    try:
        back = checkpoint.load(path)
    except ModelFormatError as exc:
        assert str(path) in str(exc)
        return
    assert _same(back, state)  # e.g. a space of the header's padding became another space
