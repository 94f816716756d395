import json

import pytest
import torch

from thrifty.cli import main
from thrifty_lsh.train import TrainConfig, Trainer, load_data


def _cfg(tmp_path, **kw):
    base = dict(train="synthetic:amazon-670k", n_train=96, n_test=32, hidden=8, batch_size=32,
                eval_every=2, eval_points=32, epochs=2, checkpoint=str(tmp_path / "ck"),
                checkpoint_every=1, slide={"k": 4, "l": 4, "budget": 64})
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_resume_continues_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr("thrifty_lsh.synthetic.PRESETS", {
        "amazon-670k": __import__("thrifty_lsh.synthetic", fromlist=["Shape"]).Shape(
            300, 500, 96, 32, 3.0, 10.0)})
    cfg = _cfg(tmp_path)
    train, test = load_data(cfg)
    whole = Trainer(_cfg(tmp_path / "a", checkpoint=None), 300, 500)
    whole.run(train, test)
    part = Trainer(cfg, 300, 500)
    part.run(train, test, stop_after_steps=4)  # "killed" mid-second-epoch after a checkpoint
    resumed = Trainer(cfg, 300, 500)
    assert resumed.load(cfg.checkpoint) and (resumed.epoch, resumed.batch) == (1, 1)
    resumed.run(train, test)
    assert resumed.step_count == whole.step_count == 6
    for a, b in zip(whole.net.parameters(), resumed.net.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_cli_trains_from_toml_with_flag_override(tmp_path, capsys):
    (tmp_path / "t.toml").write_text(
        "[train]\ntrain = 'synthetic:delicious-200k'\nn_train = 64\nn_test = 16\nhidden = 8\n"
        "batch_size = 32\neval_every = 1\neval_points = 16\n[train.slide]\nk = 4\nl = 2\n")
    assert main(["train", "--config", str(tmp_path / "t.toml"), "--epochs", "1", "--json",
                 "--budget", "128"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [h["step"] for h in history] == [1, 2]
    assert all(0 <= h["p1"] <= 1 and 0 <= h["p5"] <= 1 for h in history)


def test_cli_rejects_unknown_keys(tmp_path, capsys):
    (tmp_path / "t.toml").write_text("[train]\nbatchsize = 3\n")
    assert main(["train", "--config", str(tmp_path / "t.toml")]) == 2
    assert "unknown [train] key(s) ['batchsize']" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, problem", [
    ("--eval-every", "0", "must be an integer >= 1, got '0'"),
    ("--eval-every", "-3", "must be an integer >= 1, got '-3'"),
    ("--epochs", "0", "must be an integer >= 1"),
    ("--batch-size", "-1", "must be an integer >= 1"),
    ("--lr", "nan", "must be a finite number > 0 and at most 1e6, got 'nan'"),
    ("--lr", "inf", "must be a finite number > 0 and at most 1e6, got 'inf'"),
    ("--lr", "-0.1", "must be a finite number > 0"),
    ("--lr", "1e38", "must be a finite number > 0 and at most 1e6"),
    ("--eval-every", "1.5", "invalid integer value: '1.5'"),
])
def test_bad_option_values_fail_before_anything_runs(capsys, flag, value, problem):
    with pytest.raises(SystemExit) as exit_:
        main(["train", flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: {problem}" in capsys.readouterr().err


@pytest.mark.parametrize("toml, problem", [
    ("eval_every = 0", "[train] eval_every = 0: eval_every must be an integer >= 1"),
    ("lr = nan", "[train] lr = nan: lr must be a finite number > 0"),
    ("lr = inf", "[train] lr = inf: lr must be a finite number > 0"),
    ("batch_size = '32'", "[train] batch_size = '32': batch_size must be an integer >= 1"),
    ("slide = 3", "[train] and [train.slide] must be tables"),
])
def test_bad_toml_values_are_refused(tmp_path, capsys, toml, problem):
    (tmp_path / "t.toml").write_text(f"[train]\n{toml}\n")
    assert main(["train", "--config", str(tmp_path / "t.toml")]) == 2
    assert problem in capsys.readouterr().err


def test_a_nan_loss_stops_the_run_before_the_step_is_applied(tmp_path):
    from thrifty.errors import ConfigError

    cfg = _cfg(tmp_path, train="synthetic:30x40", checkpoint=None)
    train, test = load_data(cfg)
    trainer = Trainer(cfg, 30, 40)
    before = [p.detach().clone() for p in trainer.net.parameters()]
    real = trainer.net.loss
    trainer.net.loss = lambda batch: real(batch) * float("nan")  # a diverged network's loss
    with pytest.raises(ConfigError, match=r"the loss became nan at step 1: training diverged; "
                                          r"lower the learning rate \(--lr, now 0.001\)"):
        trainer.run(train, test)
    assert trainer.step_count == 0 and trainer.history == []
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.net.parameters()))
