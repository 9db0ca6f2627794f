"""Wiring: run configuration -> task -> model, loss, checkpoint and evaluation, end to end.

Each test trains through the public task functions (``train_reid``, ``train_span``) on the tiny
VeRi-layout fixture ``tiny_veri`` (tests/conftest.py) and compares what the run did with a computation written
here from the papers' equations: the loss of the first training step (recomputed from a copy of the
model and the batch the trainer actually used), the ranking of the evaluation, and exact resumption
(bit-identical weights, and proof that the second call resumed instead of starting over).
CPU only, resnet18 at 32 x 32, a few iterations each.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_ranked_by, ref_cpdm
from helpers import tiny_cfg as _tiny_cfg

from reidlib.engine.trainer import Trainer
from reidlib.models.registry import MODELS

@pytest.fixture
def steps(monkeypatch):
    """Counts the optimiser steps of every Trainer and keeps, for the first one, a copy of the model
    as it was before the update and the batch it was given."""
    spy = {"calls": 0, "model": None, "batch": None}
    original = Trainer.train_step

    def train_step(self, batch):
        if spy["calls"] == 0:
            spy["model"] = copy.deepcopy(self.model)
            spy["batch"] = copy.deepcopy(batch)
        spy["calls"] += 1
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    return spy


def _batch_hard(dist: torch.Tensor, pids: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet (Hermans et al.), anchor by anchor."""
    per = []
    for a in range(len(pids)):
        pos = [dist[a, j] for j in range(len(pids)) if j != a and pids[j] == pids[a]]
        neg = [dist[a, j] for j in range(len(pids)) if pids[j] != pids[a]]
        if pos and neg:
            per.append(torch.clamp(margin + torch.stack(pos).max() - torch.stack(neg).min(), min=0))
    return torch.stack(per).mean()


def _pairwise(x: torch.Tensor) -> torch.Tensor:
    return ((x[:, None] - x[None]) ** 2).sum(-1).clamp_min(0).sqrt()


def _log_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------
# MUSP through the configuration: model.kwargs reach the model, loss.* reach the criterion
# ------------------------------------------------------------------------------------------------

def test_musp_trained_through_the_config_path(tiny_veri, tmp_path, steps):
    """``train_reid`` with ``model.name=musp``: ``model.kwargs`` build the model (n = 3 maps, eq. 14
    weight 2.5), ``loss.*`` and MUSP's run defaults (per-part triplet, eq. 13; ID losses summed,
    eq. 12) reach the criterion: the first logged loss equals eqs. (11)-(14) recomputed from the
    batch the trainer used. model.pt rebuilds the same MUSP, and evaluation ranks with MUSP's CPDM
    (eqs. 9-10, global weight 1/(n-1))."""
    from reidlib.engine.artifacts import load_model
    from reidlib.engine.evaluation import evaluate_reid
    from reidlib.engine.training import train_reid
    from reidlib.models.musp import MUSP

    cfg = _tiny_cfg(tiny_veri, tmp_path / "musp", "musp", **{
        "model.kwargs.num_attentions": 3, "model.kwargs.div_weight": 2.5, "loss.margin": 0.7,
        "loss.label_smoothing": 0.2, "loss.id_weight": 1.3, "loss.triplet_weight": 0.6, "optim.max_iters": 2,
        "train.amp": "off"})
    assert (cfg.loss.triplet_on, cfg.loss.id_reduction) == ("per_part", "sum")      # MUSP's run defaults
    res = train_reid(cfg)
    assert isinstance(res.model, MUSP) and res.model.num_attentions == 3 and res.model.div_weight == 2.5
    assert steps["calls"] == 2 and res.iterations == 2

    # the first step, recomputed
    model, batch = steps["model"].train(), steps["batch"]
    img, pids = batch["img"], batch["pid"]
    with torch.no_grad():
        out = model(img)
        maps = model.attention(img)                                          # [B, 3, h, w], background last
    n = 3
    want_id = sum(F.cross_entropy(out["logits"][:, h], pids, label_smoothing=0.2) for h in range(n))
    want_tri = sum(_batch_hard(_pairwise(out["feats"][:, i]), pids, 0.7) for i in range(n))
    want_div = 2.5 * maps[:, : n - 1].prod(dim=1).sum()
    first = res.history[0]
    assert first["iter"] == 1
    assert first["loss_id"] == pytest.approx(float(want_id), rel=1e-5)
    assert first["loss_triplet"] == pytest.approx(float(want_tri), rel=1e-5)
    assert first["loss_div"] == pytest.approx(float(want_div), rel=1e-5)
    assert float(want_tri) > 0.1 and float(want_div) > 0
    assert first["loss"] == pytest.approx(float(1.3 * want_id + 0.6 * want_tri + want_div), rel=1e-5)

    # model.pt: the same architecture and weights
    loaded, state = load_model(res.checkpoint)
    assert isinstance(loaded, MUSP) and loaded.num_attentions == 3 and loaded.div_weight == 2.5
    assert state["meta"]["model_kwargs"]["num_attentions"] == 3
    assert all(torch.equal(a, b.cpu()) for a, b in zip(loaded.state_dict().values(),
                                                      res.model.state_dict().values()))
    m = evaluate_reid(res.checkpoint, tiny_veri, return_features=True, return_distmat=True)
    q, g = m["query"], m["gallery"]
    assert m["distance"] == "cpdm_musp" and q["feats"].shape[1:] == (3, 512) and q["area_ratios"].shape == (3, 3)
    assert_ranked_by(m, ref_cpdm(q["feats"], q["area_ratios"], g["feats"], g["area_ratios"], global_weight=0.5))


# ------------------------------------------------------------------------------------------------
# SPAN step 1: span.* switches reach eq. (6)
# ------------------------------------------------------------------------------------------------

def _caps(l: torch.Tensor, mode: str, a: float) -> torch.Tensor:
    """Eq. (2)'s maximum area ratios a_{l,i}: one visible view 1; two visible views a each (paper),
    or [a, 0, 0.4] / [0, a, 0.4] for front-side / rear-side (the public code)."""
    caps = []
    for row in l.tolist():
        if sum(row) == 1:
            caps.append(row)
        elif mode == "code" and row[2] == 1:
            caps.append([a * row[0], a * row[1], 0.4])
        else:
            caps.append([a * v for v in row])
    return torch.tensor(caps)


def _span_eq6(masks, fg, l, o) -> dict:
    """SPAN eqs. (1)-(3), (6) written out: ``masks [B, 3, h, w]``, ``fg [B, 1, h, w]`` (same size)."""
    v = fg[:, 0]
    terms = {}
    if o["use_recon"]:
        terms["recon"] = ((v - (masks * l[:, :, None, None]).sum(1)) ** 2).mean()
    if o["use_area"]:
        ratio = masks.sum(dim=(2, 3)) / v.sum(dim=(1, 2)).clamp_min(1.0)[:, None]
        terms["area"] = (ratio - _caps(l, o["area_mode"], o["a"])).clamp_min(0).sum(1).mean()
    if o["use_div"]:
        m = o["margin"]
        dots = torch.stack([(masks[:, i] * masks[:, j]).mean(dim=(1, 2)) for i, j in ((0, 1), (0, 2), (1, 2))], 1)
        terms["div"] = (dots - torch.tensor([0.0, m, m])).clamp_min(0).sum(1).mean()
    weights = {"recon": o["lambda_recon"], "area": o["lambda_area"], "div": o["lambda_div"]}
    terms["loss"] = sum(weights[k] * t for k, t in terms.items())
    return terms


SPAN_OPTIONS = {
    "no-area": {"use_recon": True, "use_area": False, "use_div": True, "lambda_recon": 2.0, "lambda_area": 0.5,
                "lambda_div": 3.0, "area_mode": "paper", "a": 0.7, "margin": 0.01},
    "code-caps": {"use_recon": False, "use_area": True, "use_div": True, "lambda_recon": 1.0, "lambda_area": 0.25,
                  "lambda_div": 0.5, "area_mode": "code", "a": 0.3, "margin": 0.2},
    "paper-caps": {"use_recon": True, "use_area": True, "use_div": False, "lambda_recon": 0.5, "lambda_area": 2.0,
                   "lambda_div": 1.0, "area_mode": "paper", "a": 0.2, "margin": 0.04},
}


@pytest.mark.parametrize("name", list(SPAN_OPTIONS))
def test_span_step1_config_switches_reach_the_loss(tiny_veri, tmp_path, steps, name):
    """``span.lambda_*``, ``span.use_*``, ``span.area_mode``, ``span.a`` and ``span.margin`` of the
    run configuration decide eq. (6) of the first training step of ``train_span``."""
    from reidlib.engine.training import train_span

    o = SPAN_OPTIONS[name]
    cfg = _tiny_cfg(tiny_veri, tmp_path / "span1", "span-masks", **{f"span.{k}": v for k, v in o.items()},
                    **{"optim.max_iters": 1, "span.fg_source": "gt", "train.amp": "off", "model.weights": None})
    res = train_span(cfg)
    assert steps["calls"] == 1
    model, batch = steps["model"].train(), steps["batch"]
    with torch.no_grad():
        masks = model(batch["img"])
    fg, l = batch["fg"], batch["view_vec"]
    assert fg.shape[-2:] == masks.shape[-2:]                     # targets at the masks' native size
    two_view = l.sum(1) == 2
    assert bool(two_view.any()) and bool((~two_view).any())      # the caps a / 0.4 / 1 all matter here
    want = _span_eq6(masks, fg, l, o)
    first = res.history[0]
    assert set(first) & {"recon", "area", "div"} == set(want) - {"loss"}
    for key, value in want.items():
        assert first[key] == pytest.approx(float(value), rel=1e-5, abs=1e-7), key
    assert all(float(value) > 1e-3 for value in want.values())   # every enabled term is active
    assert list(res.meta["loss"]["margins"]) == [0.0, o["margin"], o["margin"]]


# ------------------------------------------------------------------------------------------------
# exact resumption of every task: 2N straight == N + resume + N, and the second call did resume
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def span_checkpoint(tiny_veri, tmp_path_factory) -> Path:
    from reidlib.engine.training import train_span

    out = tmp_path_factory.mktemp("span-step1") / "run"
    res = train_span(_tiny_cfg(tiny_veri, out, "span-masks", **{"optim.max_iters": 1, "span.fg_source": "gt"}))
    return res.checkpoint


def _resume_cfg(tiny_veri, out: Path, model: str, span_ckpt: Path, iters: int, checkpoint_every: int = 2):
    extra = {"optim.max_iters": iters, "train.checkpoint_every": checkpoint_every, "optim.milestones": [3]}
    if model == "span-masks":
        extra.update({"span.fg_source": "gt", "data.batch_size": 2})
    elif model == "span":
        # four conv5 branches: plain SGD keeps each checkpoint at the size of the weights (Adam's
        # state is resumed in the other two cases; the warm-up / step schedule is resumed here)
        extra.update({"model.span_checkpoint": str(span_ckpt), "model.kwargs.dim": 16, "optim.name": "sgd",
                      "optim.momentum": 0.0, "optim.lr": 0.01})
    elif model == "musp":
        extra.update({"model.kwargs.num_attentions": 3})
    elif model == "foreground":
        extra.update({"foreground.source": "gt"})       # the fixture's label maps, not GrabCut
    return _tiny_cfg(tiny_veri, out, model, **extra)


@pytest.mark.parametrize("model", list(MODELS))
def test_resume_is_exact_for_every_task(tiny_veri, tmp_path, span_checkpoint, steps, model):
    """Every model of the registry through its task (``run_training``: SPAN step 1, the re-ID
    models incl. SPAN step 2, the foreground network): 4
    iterations straight give the same weights, bit for bit, as 2 + resume + 2 (checkpoint in the
    middle of an epoch); the resumed call runs 2 steps, not 4, keeps the first run's log lines as
    written, and does not warn about overwriting a checkpoint."""
    from reidlib.engine.training import run_training

    full = run_training(_resume_cfg(tiny_veri, tmp_path / "full", model, span_checkpoint, 4, checkpoint_every=0))
    assert steps["calls"] == 4
    run_training(_resume_cfg(tiny_veri, tmp_path / "split", model, span_checkpoint, 2))
    before = _log_rows(tmp_path / "split" / "log.jsonl")
    steps["calls"] = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rest = run_training(_resume_cfg(tiny_veri, tmp_path / "split", model, span_checkpoint, 4), resume=True)
    assert steps["calls"] == 2, "the resumed run must continue from iteration 2, not start over"
    assert not [w for w in caught if "starting a fresh run" in str(w.message)]
    assert rest.iterations == 4
    a, b = full.model.state_dict(), rest.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = _log_rows(tmp_path / "split" / "log.jsonl")
    assert [r["iter"] for r in rows] == [1, 2, 3, 4]
    assert rows[:2] == before                                    # the interrupted run's lines, verbatim
    assert [r["loss"] for r in rows] == [r["loss"] for r in _log_rows(tmp_path / "full" / "log.jsonl")]
