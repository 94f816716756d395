import json

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
