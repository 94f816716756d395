"""Checkpoints hold no pickle, carry their run's settings, and resume only that run (issue 21)."""

import json
import pickle
import threading
from pathlib import Path

import attrs
import pytest
import torch

from thrifty.cli import main
from thrifty.errors import ConfigError, ModelFormatError
from thrifty_lsh import checkpoint
from thrifty_lsh.data import write
from thrifty_lsh.resume import agreed_step, refuse_foreign
from thrifty_lsh.synthetic import generate
from thrifty_lsh.train import TrainConfig, Trainer, load_data

SMALL = ["train", "--train", "synthetic:64x40", "--n-train", "64", "--n-test", "16",
         "--hidden", "8", "--batch-size", "16", "--eval-every", "2", "--eval-points", "16",
         "--hashes-per-table", "3", "--tables", "4", "--json"]


def _train(capsys, *extra):
    code = main([*SMALL, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def _untimed(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


class _Touch:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name, writer", [
    ("checkpoint.safetensors", lambda p, obj: p.write_bytes(pickle.dumps(obj))),
    ("checkpoint.safetensors", lambda p, obj: torch.save({"net": obj}, p)),
    ("checkpoint.pt", lambda p, obj: torch.save({"net": obj}, p)),
])
def test_malicious_pickle_runs_nothing_and_is_named(tmp_path, capsys, name, writer):
    marker = tmp_path / "pwned"
    ck = tmp_path / "ck"
    ck.mkdir()
    writer(ck / name, _Touch(marker))
    code, out, err = _train(capsys, "--checkpoint", str(ck))
    assert code == 2 and out == ""
    assert not marker.exists()
    assert str(ck / name) in err and "pickle" in err


def test_malicious_pickle_in_a_distributed_shard_is_refused_by_name(tmp_path):
    marker, shard = tmp_path / "pwned", tmp_path / "ck" / "rank0-of-2"
    shard.mkdir(parents=True)
    torch.save({"net": _Touch(marker)}, shard / "step-4.pt")
    with pytest.raises(ConfigError, match=r"rank0-of-2/step-4.pt is a pickled checkpoint"):
        refuse_foreign(tmp_path / "ck", 2)
    (shard / "step-4.pt").rename(shard / "step-4.safetensors")
    with pytest.raises(ModelFormatError, match=r"step-4.safetensors is a pickle"):
        checkpoint.load(shard / "step-4.safetensors")
    assert not marker.exists()


def test_checkpoint_round_trips_every_kind_of_value(tmp_path):
    state = {"w": torch.randn(3, 4), "opt": {0: {"step": 3, "m": torch.ones(2)}},
             "pos": {"epoch": 1, "batch": 2}, "betas": (0.9, 0.99), "none": None,
             "rng": torch.get_rng_state(), "flags": torch.tensor([True, False])}
    checkpoint.save(tmp_path / "c.safetensors", state)
    back = checkpoint.load(tmp_path / "c.safetensors")
    assert torch.equal(back["w"], state["w"]) and torch.equal(back["rng"], state["rng"])
    assert back["opt"][0]["step"] == 3 and torch.equal(back["opt"][0]["m"], torch.ones(2))
    assert back["pos"] == state["pos"] and back["betas"] == [0.9, 0.99]
    assert back["none"] is None and back["flags"].tolist() == [True, False]
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed into place


def test_resume_refuses_other_settings_naming_each(tmp_path, capsys):
    ck = str(tmp_path / "ck")
    assert _train(capsys, "--checkpoint", ck)[0] == 0
    code, out, err = _train(capsys, "--checkpoint", ck, "--batch-size", "32", "--lr", "0.01",
                            "--tables", "5")
    assert code == 2 and out == ""
    assert "batch_size: 16 in the checkpoint, 32 now" in err
    assert "lr: 0.001 in the checkpoint, 0.01 now" in err
    assert "slide.l: 4 in the checkpoint, 5 now" in err
    assert "--allow-change lr " in err and "--overwrite" in err
    code, _, err = _train(capsys, "--checkpoint", ck, "--batch-size", "32",
                          "--allow-change", "batch_size")
    assert code == 2 and "--allow-change: ['batch_size'] cannot change" in err


def test_resume_of_a_finished_run_is_refused_and_prints_no_history(tmp_path, capsys):
    ck = str(tmp_path / "ck")
    code, first, _ = _train(capsys, "--checkpoint", ck)
    assert code == 0 and [h["step"] for h in json.loads(first)] == [2, 4]
    code, out, err = _train(capsys, "--checkpoint", ck)
    assert code == 2 and out == ""
    assert "is the checkpoint of a finished run (4 steps, final P@1" in err
    # --overwrite starts over: the same history as a fresh run in an empty folder
    code, again, _ = _train(capsys, "--checkpoint", ck, "--overwrite")
    assert code == 0 and _untimed(json.loads(again)) == _untimed(json.loads(first))


def test_resume_with_an_allowed_change_states_it_and_applies_it(tmp_path, capsys):
    ck = str(tmp_path / "ck")
    assert _train(capsys, "--checkpoint", ck)[0] == 0
    code, out, err = _train(capsys, "--checkpoint", ck, "--epochs", "2", "--lr", "0.01",
                            "--allow-change", "epochs,lr")
    assert code == 0
    assert "resuming with epochs changed from 1 to 2" in err
    assert "resuming with lr changed from 0.001 to 0.01" in err
    assert [h["step"] for h in json.loads(out)] == [2, 4, 6, 8]
    cfg = TrainConfig.from_dict(dict(train="synthetic:64x40", n_train=64, n_test=16, hidden=8,
                                     batch_size=16, epochs=3, lr=0.05, checkpoint=ck,
                                     eval_points=16, slide={"k": 3, "l": 4}))
    trainer = Trainer(cfg, 64, 40)
    assert trainer.load(ck, frozenset({"epochs", "lr"}))
    assert all(g["lr"] == 0.05 for o in trainer.optimizers for g in o.param_groups)


def test_resume_refuses_changed_data(tmp_path, capsys):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    write(train, generate(48, 30, 20, seed=1))
    write(test, generate(8, 30, 20, seed=2))
    files = ["--train", str(train), "--test", str(test), "--checkpoint", str(tmp_path / "ck"),
             "--epochs", "2", "--checkpoint-every", "1"]
    assert _train(capsys, *files)[0] == 0
    write(test, generate(8, 30, 20, seed=3))
    code, _, err = _train(capsys, *files)
    assert code == 2 and "test data: a " in err and "-byte file with digest" in err
    assert "train data" not in err


def test_resume_continues_a_killed_run_exactly(tmp_path):
    cfg = TrainConfig.from_dict(dict(train="synthetic:64x40", n_train=64, n_test=16, hidden=8,
                                     batch_size=16, epochs=2, eval_every=2, eval_points=16,
                                     checkpoint=str(tmp_path / "ck"), checkpoint_every=1,
                                     slide={"k": 3, "l": 4, "refill_every": 32}))
    train, test = load_data(cfg)
    whole = Trainer(attrs.evolve(cfg, checkpoint=None), 64, 40)
    whole.run(train, test)
    Trainer(cfg, 64, 40).run(train, test, stop_after_steps=5)  # "killed" after step 5
    resumed = Trainer(cfg, 64, 40)
    assert resumed.load(cfg.checkpoint) and (resumed.epoch, resumed.batch) == (1, 1)
    resumed.run(train, test)
    assert _untimed(resumed.history) == _untimed(whole.history)
    for a, b in zip(whole.net.parameters(), resumed.net.parameters()):
        assert torch.equal(a, b)


def test_resume_refuses_a_distributed_folder_and_a_legacy_one(tmp_path, capsys):
    ck = tmp_path / "ck"
    (ck / "rank1-of-4").mkdir(parents=True)
    (ck / "rank1-of-4" / "step-8.safetensors").write_bytes(b"x")
    code, _, err = _train(capsys, "--checkpoint", str(ck))
    assert code == 2 and "holds a distributed run on 4 ranks" in err
    assert "this run is not distributed" in err
    with pytest.raises(ConfigError, match="on 4 ranks and this run has 2 ranks"):
        refuse_foreign(ck, 2)
    refuse_foreign(ck, 4)  # its own world size is fine


def test_a_checkpoint_path_that_is_a_file_fails_before_training(tmp_path, capsys):
    for target in (tmp_path / "file", tmp_path / "file" / "ck"):
        (tmp_path / "file").write_text("not a folder")
        code, out, err = _train(capsys, "--checkpoint", str(target))
        assert code == 2 and out == "" and "step " not in err
        assert f"--checkpoint {target}" in err
        assert (tmp_path / "file").read_text() == "not a folder"


def test_ranks_agree_on_the_newest_step_all_hold_intact():
    def agree(per_rank):
        barrier, values, out = threading.Barrier(len(per_rank)), {}, {}

        def rank(r):
            def all_min(v):
                values[r] = v
                barrier.wait()
                low = min(values.values())
                barrier.wait()
                return low
            out[r] = agreed_step(per_rank[r], all_min)

        threads = [threading.Thread(target=rank, args=(r,)) for r in range(len(per_rank))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(set(out.values())) == 1
        return out[0]

    assert agree([[4, 6], [4, 6]]) == 6
    assert agree([[4, 6], [4], [2, 4, 6]]) == 4  # rank 1's step 6 was damaged
    assert agree([[4, 6], [2, 6]]) == 6
    assert agree([[6], [4]]) == -1  # no common step: start over
    assert agree([[], [2]]) == -1


def test_a_state_that_cannot_be_stored_is_refused_before_training():
    with pytest.raises(ConfigError, match=r"cannot store set at '.slide.ids' in a checkpoint; "
                                          r"train without --checkpoint"):
        checkpoint.check_storable({"slide": {"ids": {1, 2}}})


def test_resume_flags_need_a_checkpoint_folder(capsys):
    for flags in (["--overwrite"], ["--allow-change", "lr"]):
        code, out, err = _train(capsys, *flags)
        assert code == 2 and out == "" and "add --checkpoint DIR" in err
