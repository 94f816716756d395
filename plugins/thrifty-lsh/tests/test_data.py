from pathlib import Path

import numpy as np
import pytest

from thrifty.errors import DatasetFormatError
from thrifty_lsh.data import load, read_points, write
from thrifty_lsh.train import TrainConfig, load_data
from thrifty_lsh.synthetic import PRESETS, generate


def _file(tmp_path, text):
    p = tmp_path / "d.txt"
    p.write_text(text)
    return p


def test_parses_labels_features_a_label_less_line_and_a_trailing_space(tmp_path):
    header, points = read_points(_file(tmp_path, "3 10 5\n0,4 1:0.5 9:2\n 3:1.5\n2 0:1 \n"))
    pts = list(points)
    assert (header.n_points, header.n_features, header.n_labels) == (3, 10, 5)
    assert pts[0].labels == [0, 4] and pts[0].features == [1, 9] and pts[0].values == [0.5, 2.0]
    assert pts[1].labels == [] and pts[1].features == [3]
    assert pts[2].labels == [2] and pts[2].features == [0]


@pytest.mark.parametrize("text, message", [
    ("3 10\n0 1:1\n", r"d.txt:1: the header must be three"),
    ("2 10 5\n0 1:1 10:2\n1 2:1\n", r"d.txt:2: feature index 10 outside 0..9.*'0 1:1 10:2'"),
    ("1 10 5\n7 1:1\n", r"d.txt:2: label 7 outside 0..4"),
    ("3 10 5\n0 1:1\n1 2:1\n", r"promises 3 points but the file ends after 2"),
    ("3 10 5\n0 1:1\n1 2:", r"d.txt:3: file ends in the middle of a line"),
    ("2 10 5\n0 1:1\n1:2 3:1\n", r"d.txt:3: the line starts with a feature"),
    ("2 10 5\n0 1:1\n\n", r"d.txt:3: empty line"),
    ("1 10 5\n0 1-1\n", r"feature '1-1' is not 'index:value'"),
    ("2 10 5\n0 1:1\n1 2:nan\n", r"d.txt:3: feature value 'nan' is not a finite float32"),
    ("1 10 5\n0 1:-inf\n", r"d.txt:2: feature value '-inf' is not a finite float32"),
    ("1 10 5\n0 1:1e39\n", r"d.txt:2: feature value '1e39' is not a finite float32"),
    ("1 10 5\n0,3,0 1:1\n", r"d.txt:2: label 0 appears twice on the line"),
    ("1 10 5\n0 1_0:1\n", r"feature '1_0:1' is not 'index:value'"),
    ("1 3000000000 5\n0 1:1\n", r"d.txt:1: a count above 2147483647"),
])
def test_malformed_files_name_the_line(tmp_path, text, message):
    with pytest.raises(DatasetFormatError, match=message):
        list(read_points(_file(tmp_path, text))[1])


def test_reading_is_lazy(tmp_path):
    _, points = read_points(_file(tmp_path, "3 10 5\n0 1:1\n1 99:1\n2 0:1\n"))
    assert next(points).labels == [0]  # the bad second line is not read yet


def test_synthetic_shape_power_law_and_round_trip(tmp_path):
    d = generate(3000, 500, 2000, labels_per_point=4, features_per_point=30, seed=1)
    n_lab = np.diff(d.label_ptr)
    assert abs(n_lab.mean() - 4) < 0.3 and abs(np.diff(d.indptr).mean() - 30) < 6
    freq = np.sort(np.bincount(d.labels, minlength=2000))[::-1]
    assert freq[0] > 20 * max(freq[200], 1)  # a few labels are far more common: a power law
    write(tmp_path / "s.txt", d)
    back = load(tmp_path / "s.txt")
    assert np.array_equal(back.labels, d.labels) and np.array_equal(back.indices, d.indices)
    assert np.allclose(back.values, d.values, rtol=1e-5)
    assert PRESETS["amazon-670k"].n_labels == 670_091


def test_batches_resume_where_they_stopped():
    d = generate(50, 40, 30, seed=2)
    full = [b.labels for b in d.batches(8, seed=3)]
    rest = [b.labels for b in d.batches(8, seed=3, start=4)]
    assert len(rest) == len(full) - 4 and all(np.array_equal(a, b) for a, b in zip(full[4:], rest))


def test_non_utf8_data_is_refused_by_file_and_line(tmp_path):
    p = tmp_path / "d.txt"
    p.write_bytes(b"2 10 5\n0 1:1\n1 2:\xff1\n")
    with pytest.raises(DatasetFormatError, match=r"d.txt:3: not UTF-8 text \(byte 0xff at "
                                                 r"column 5\)"):
        load(p)


def _files(tmp_path, test_text):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("2 10 5\n0 1:1\n4 9:2\n")
    test.write_text(test_text)
    return TrainConfig(train=str(train), test=str(test))


@pytest.mark.parametrize("test_text, message", [
    ("1 20 5\n0 15:1\n", r"test.txt:2: feature index 15 outside 0..9 \(the train file "
                          r".*train.txt's num_features"),
    ("1 10 8\n6 1:1\n", r"test.txt:2: label 6 outside 0..4 \(the train file .*train.txt's "
                         r"num_labels"),
    ("0 10 5\n", r"test.txt holds no points"),
])
def test_test_files_are_checked_against_the_train_file(tmp_path, test_text, message):
    with pytest.raises(DatasetFormatError, match=message):
        load_data(_files(tmp_path, test_text))


def test_a_header_claiming_a_huge_model_is_refused_before_allocating(tmp_path, capsys):
    from thrifty.cli import main

    cfg = _files(tmp_path, "1 10 5\n0 1:1\n")
    Path(cfg.train).write_text("2 1000000000 5\n0 1:1\n4 9:2\n")
    assert main(["train", "--train", cfg.train, "--test", cfg.test]) == 2
    err = capsys.readouterr().err
    assert "train.txt: 1000000000 features and 5 labels with hidden 128 make a network of" in err
    assert "check the data file's header" in err


def test_fewer_labels_than_p_at_5_needs_trains_and_evaluates(tmp_path, capsys):
    import json

    from thrifty.cli import main

    cfg = _files(tmp_path, "1 10 3\n2 3:1\n")
    Path(cfg.train).write_text("2 10 3\n0 1:1\n1,2 9:2\n")
    for layer in ("dense", "slide"):
        assert main(["train", "--train", cfg.train, "--test", cfg.test, "--layer", layer,
                     "--hidden", "4", "--json"]) == 0
        history = json.loads(capsys.readouterr().out)
        assert len(history) == 1 and 0 <= history[0]["p5"] <= 1
