"""Config (defaults, YAML, dotted overrides with type coercion, unknown keys) and the CLI
(``--help`` without torch; a tiny ``train`` + ``--resume`` + ``evaluate``: the resumed run ends with
the weights of an uninterrupted one, bit for bit, and the evaluation's numbers are those of an
independent ranking of the checkpoint's features)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from reidlib.config import (Config, as_config, default_config, load_config, to_yaml, valid_keys)
from reidlib.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reidlib", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------

def test_model_defaults_follow_the_papers():
    musp = default_config("musp")
    assert (musp.data.p, musp.data.k, musp.optim.lr, musp.optim.weight_decay) == (16, 4, 3.5e-4, 5e-4)
    assert (musp.optim.unit, musp.optim.max_iters, musp.optim.milestones, musp.optim.warmup_iters) == \
        ("epoch", 90, [30, 60], 10)
    span = default_config("span")
    assert (span.data.p, span.data.k, span.optim.max_iters) == (8, 4, 30000) and span.loss.triplet_on == "cpdm"
    s1 = default_config("span-masks")
    assert (s1.model.backbone, s1.span.size, s1.optim.lr, s1.data.batch_size, s1.optim.max_iters) == \
        ("resnet34", 192, 1e-4, 32, 10)
    assert (s1.span.lambda_recon, s1.span.lambda_area, s1.span.lambda_div) == (1.0, 0.5, 1.0)
    assert default_config("musp").loss.triplet_on == "per_part" and default_config("baseline").loss.triplet_on == "global"
    with pytest.raises(ConfigError, match="unknown model"):
        default_config("resnet")


def test_overrides_are_type_coerced():
    cfg = load_config(model="musp", overrides=["optim.lr=1e-4", "data.p=8", "train.channels_last=false",
                                               "optim.milestones=[10, 20]", "model.weights=none",
                                               "model.kwargs.num_attentions=4", "optim.grad_clip=5"])
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.data.p == 8 and isinstance(cfg.data.p, int)
    assert cfg.train.channels_last is False and cfg.optim.milestones == [10, 20]
    assert cfg.model.weights is None and cfg.model.kwargs == {"num_attentions": 4} and cfg.optim.grad_clip == 5
    with pytest.raises(ConfigError, match="data.p"):
        load_config(overrides=["data.p=eight"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["optim.lr"])
    # Config.override / as_config with dotted dicts
    c2 = default_config("baseline").override("optim.lr=0.01", **{"data.k": 2})
    assert (c2.optim.lr, c2.data.k) == (0.01, 2)
    c3 = as_config({"model": {"name": "span", "kwargs": {"aggregation": "fc"}}, "optim.lr": 2e-4})
    assert c3.model.kwargs == {"dim": 1024, "aggregation": "fc"} and c3.optim.lr == 2e-4


def test_unknown_key_names_the_key_and_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["optim.lrr=1"])
    msg = str(err.value)
    assert "optim.lrr" in msg and "optim.lr" in msg and "optim.warmup_iters" in msg
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["optimizer.lr=1"])
    assert "optimizer" in str(err.value) and "optim" in str(err.value)
    with pytest.raises(ConfigError, match="sub-keys"):
        load_config(overrides=["optim.lr.x=1"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(overrides=["data.dataset=market"])
    assert "span.lambda_area" in valid_keys()


def test_yaml_file_and_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  name: musp\n  kwargs: {num_attentions: 3}\noptim:\n  lr: 0.001\ndata.p: 4\n")
    cfg = load_config(f, overrides=["optim.lr=0.002"])
    assert cfg.model.name == "musp" and cfg.model.kwargs == {"num_attentions": 3}
    assert cfg.optim.lr == 0.002 and cfg.data.p == 4 and cfg.optim.milestones == [30, 60]
    # the file's MUSP options do not fit another model: refused when the config is built, naming them
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['num_attentions'\] for model 'baseline'"):
        load_config(f, model="baseline")
    # round trip through YAML
    g = tmp_path / "g.yaml"
    g.write_text(to_yaml(cfg))
    assert load_config(g) == cfg
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*optim.learning_rate"):
        load_config(bad)
    assert isinstance(Config.from_dict(cfg.to_dict()), Config)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def test_help_does_not_import_torch():
    code = ("import sys\nfrom reidlib.__main__ import main\n"
            "for argv in (['--help'], ['train', '--help'], ['evaluate', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "TORCH False" in out.stdout
    assert "--resume" in out.stdout and "--checkpoint" in out.stdout and "--distance" in out.stdout


def test_cli_config_and_errors():
    out = _run("config", "--model", "musp", "optim.lr=1e-4")
    assert out.returncode == 0 and "lr: 0.0001" in out.stdout
    bad = _run("config", "optim.nope=1")
    assert bad.returncode == 2 and "optim.nope" in bad.stderr and "optim.lr" in bad.stderr


def _tiny_data(tmp_path: Path) -> Path:
    """SynthVeRi ``tiny`` at 32 x 32 (the package's own generator)."""
    from reidlib.data.synth import generate

    return Path(generate(tmp_path / "data", preset="tiny", image_size=32, seed=0, workers=1, progress=False))


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_cli_train_resume_evaluate(tmp_path, capsys, monkeypatch):
    """``train`` and ``evaluate`` through subprocesses, ``--resume`` in-process: 2 iterations +
    ``--resume`` to 3 end with the weights of 3 uninterrupted iterations, bit for bit, after exactly
    one more step; the evaluation's numbers are those of the checkpoint's features ranked here."""
    from helpers import ref_euclidean, ref_metrics

    from reidlib.__main__ import main
    from reidlib.engine.evaluation import evaluate_reid
    from reidlib.engine.trainer import Trainer

    data = _tiny_data(tmp_path)
    out_dir, ref_dir = tmp_path / "run", tmp_path / "straight"

    def common(out: Path) -> list[str]:
        return ["--model", "baseline", "--data", str(data), "--out", str(out), "--no-progress",
                "model.backbone=resnet18", "data.height=32", "data.width=32", "data.p=2", "data.k=2",
                "data.num_workers=0", "optim.unit=iter", "optim.milestones=[2]", "optim.warmup_iters=1",
                "train.checkpoint_every=2", "train.log_every=1", "eval.num_workers=0"]

    r = _run("train", *common(out_dir), "optim.max_iters=2")
    assert r.returncode == 0, r.stderr
    assert "2 iterations" in r.stdout and f"model: {out_dir / 'model.pt'}" in r.stdout
    assert (out_dir / "last.pt").is_file() and (out_dir / "model.pt").is_file()
    first_rows = _log(out_dir / "log.jsonl")
    assert [row["iter"] for row in first_rows] == [1, 2]

    calls = {"n": 0}
    step = Trainer.train_step

    def counting(self, batch):
        calls["n"] += 1
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", counting)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                  # as the subprocess (OMP_NUM_THREADS=1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["train", *common(out_dir), "optim.max_iters=3", "--resume"]) == 0
        assert calls["n"] == 1, "--resume must continue from iteration 2"
        assert not [w for w in caught if "starting a fresh run" in str(w.message)]
        assert "3 iterations" in capsys.readouterr().out
        assert main(["train", *common(ref_dir), "optim.max_iters=3"]) == 0      # uninterrupted
        assert calls["n"] == 4
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    rows = _log(out_dir / "log.jsonl")
    assert [row["iter"] for row in rows] == [1, 2, 3]
    assert rows[:2] == first_rows                         # the first run's lines kept as written
    assert [row["loss"] for row in rows] == [row["loss"] for row in _log(ref_dir / "log.jsonl")]
    resumed, straight = _weights(out_dir / "model.pt"), _weights(ref_dir / "model.pt")
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in resumed)

    metrics = tmp_path / "m.json"
    e = _run("evaluate", "--checkpoint", str(out_dir / "model.pt"), "--data", str(data), "--json", str(metrics))
    assert e.returncode == 0, e.stderr
    for key in ("R1", "R5", "mAP", "mINP"):
        assert key in e.stdout
    m = json.loads(metrics.read_text())
    assert m["distance"] == "euclidean"
    # the same numbers from the checkpoint's features, ranked by an independent loop
    feats = evaluate_reid(out_dir / "model.pt", data, return_features=True)
    q, g = feats["query"], feats["gallery"]
    ref = ref_metrics(ref_euclidean(q["feats"], g["feats"]), q["pids"], g["pids"], q["camids"], g["camids"])
    assert m["num_query"] == len(q["pids"]) and m["num_gallery"] == len(g["pids"])
    for key in ("R1", "mAP", "mINP"):
        assert m[key] == pytest.approx(ref[key], abs=1e-4), key
        assert f"{key} {m[key]:.2f}" in e.stdout
    assert main(["evaluate", "--checkpoint", str(out_dir), "--data", str(data), "--distance", "nope"]) == 2
    assert "unknown distance" in capsys.readouterr().err
