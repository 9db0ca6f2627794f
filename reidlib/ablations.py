"""The experiments behind the book's ablation pages, as functions the notebooks call.

A :class:`Study` binds a profile (``reidlib.profiles``), a dataset folder, a device and a cache
folder. Every model it needs is trained through ``reidlib.engine.tasks`` into
``runs/<profile>/<model>-<config hash>/`` and reused by later notebooks with the same
configuration (the hash covers the whole run configuration, the seed and the SPAN it depends on);
an interrupted training resumes from its ``last.pt`` (deleted once the run has finished and written
its ``model.pt``, unless ``keep_state=True``). So ``make reproduce`` trains the baseline
once although Tables 1 and 2 and the viewpoint page all use it.

Tables: one row per variant with R1 / R5 / mAP / mINP in percent, the mean over seeds, the standard
deviation over seeds when there are several, and a bootstrap 95% interval of mAP over queries
(seed 0's queries; a statement about the test set, not about training noise).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from reidlib.experiments import REPO_ROOT, synthveri_root
from reidlib.profiles import get_profile

METRICS = ("R1", "R5", "mAP", "mINP")

#: SPAN Table 1's loss combinations (use_recon, use_area, use_div)
SPAN_LOSS_VARIANTS = {
    "only_recon": dict(use_recon=True, use_area=False, use_div=False),
    "wo_area": dict(use_recon=True, use_area=False, use_div=True),
    "wo_div": dict(use_recon=True, use_area=True, use_div=False),
    "full": dict(use_recon=True, use_area=True, use_div=True),
}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass
class Study:
    """Settings shared by one notebook's experiments. ``overrides`` change single profile keys."""

    profile: str = "smoke"
    device: str = "auto"
    data_root: Optional[str] = None
    seed: int = 0
    cache_dir: Optional[str] = None
    overrides: dict = field(default_factory=dict)
    #: keep each finished run's resumable training state (``last.pt``, ``iter_*.pt``: weights plus
    #: optimiser moments, ~3x the model) next to its ``model.pt``. Off by default: a finished run is
    #: only ever reloaded from ``model.pt``, and the state of a SPAN re-ID model is ~0.5 GB.
    keep_state: bool = False

    def __post_init__(self):
        self.prof = get_profile(self.profile, **self.overrides)
        self.root = synthveri_root(self.profile, self.data_root, seed=self.seed)
        self.cache = Path(self.cache_dir) if self.cache_dir else REPO_ROOT / "runs" / self.profile
        self._dataset = None

    # ---------------------------------------------------------------- data
    @property
    def dataset(self):
        if self._dataset is None:
            from reidlib.data import VeRi776

            self._dataset = VeRi776(self.root)
        return self._dataset

    @property
    def seeds(self) -> list[int]:
        return [self.seed + s for s in self.prof["seeds"]]

    # ---------------------------------------------------------------- configs
    def _base(self, model: str, seed: int, iters: int) -> dict:
        h, w = self.prof["input_size"]
        return {
            "model.name": model,
            "data.root": str(self.root), "data.height": h, "data.width": w,
            "data.num_workers": self.prof.get("num_workers", 0),
            "optim.unit": "iter", "optim.max_iters": iters,
            "optim.milestones": [int(iters * 0.6), int(iters * 0.85)],
            "optim.warmup_iters": max(1, iters // 10),
            "train.seed": seed, "train.device": self.device, "train.progress": False,
            "train.checkpoint_every": max(10, iters // 4), "train.log_every": max(1, iters // 20),
        }

    def reid_config(self, model: str, seed: int, **overrides) -> dict:
        c = self._base(model, seed, self.prof["reid_iters"])
        c.update({"model.backbone": self.prof["reid_backbone"], "model.last_stride": 1,
                  "optim.lr": self.prof["lr"],
                  "data.p": self.prof["batch_p"], "data.k": self.prof["batch_k"],
                  "eval.batch_size": self.prof["eval_batch"]})
        if model == "span":
            c["model.kwargs"] = {"dim": self.prof["feat_dim"]}
        c.update(overrides)
        return c

    def span_config(self, seed: int, **overrides) -> dict:
        c = self._base("span-masks", seed, self.prof["span_iters"])
        c.update({"model.backbone": self.prof["span_backbone"], "span.size": self.prof["input_size"][0],
                  "span.per_view": self.prof["span_per_view"], "data.batch_size": self.prof["span_batch"],
                  "span.fg_source": self.prof.get("fg_source", "synth"),
                  "optim.lr": 1e-3, "optim.milestones": []})
        c.update(overrides)
        return c

    # ---------------------------------------------------------------- cached training
    def _run_dir(self, kind: str, cfg: Mapping[str, Any], extra: Any = None) -> Path:
        """Runs are keyed by the *resolved* configuration (defaults filled in), so two spellings of
        the same run share one folder; settings that cannot change the weights are left out."""
        from reidlib.config import as_config

        resolved = as_config(dict(cfg)).to_dict()
        for section, key in (("train", "progress"), ("train", "out_dir"), ("data", "num_workers"),
                             ("eval", "num_workers"), ("eval", "batch_size"), ("train", "log_every")):
            resolved.get(section, {}).pop(key, None)
        return self.cache / f"{kind}-{_hash([resolved, extra])}"

    def _cached(self, kind: str, cfg: dict, train: Callable, extra: Any = None):
        from reidlib.engine import tasks

        out = self._run_dir(kind, cfg, extra)
        model_file = out / tasks.MODEL_FILE
        if model_file.exists():
            model, state = tasks.load_model(model_file)
            return model.eval(), {"out_dir": str(out), "cached": True}
        cfg = {**cfg, "train.out_dir": str(out)}
        res = train(cfg, resume=(out / "last.pt").exists())
        if not self.keep_state and model_file.exists():
            for p in [out / "last.pt", *out.glob("iter_*.pt")]:
                p.unlink(missing_ok=True)
        return res.model.eval(), {"out_dir": str(out), "cached": False, "seconds": round(res.seconds, 1),
                                  "final_log": res.history[-1] if res.history else None}

    def span_model(self, seed: int, **span_overrides):
        """A trained SPAN (step 1, eq. 6) for this profile; ``span_overrides`` like ``{"span.use_area": False}``."""
        from reidlib.engine import tasks

        cfg = self.span_config(seed, **span_overrides)
        return self._cached("span-masks", cfg, lambda c, resume: tasks.train_span(c, resume=resume))

    def reid_model(self, model: str, seed: int, span=None, span_key: Any = None, **overrides):
        """A trained re-ID model (``baseline`` | ``span`` | ``musp``); SPAN models need ``span``."""
        from reidlib.engine import tasks

        cfg = self.reid_config(model, seed, **overrides)
        return self._cached(model, cfg, lambda c, resume: tasks.train_reid(c, span=span, resume=resume),
                            extra=span_key)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, model, distance: Optional[str] = None, with_features: bool = False) -> dict:
        from reidlib.engine import tasks

        h, w = self.prof["input_size"]
        cfg = {"data.root": str(self.root), "data.height": h, "data.width": w, "data.num_workers": 0,
               "eval.batch_size": self.prof["eval_batch"], "eval.num_workers": 0, "train.device": self.device}
        return tasks.evaluate_reid(model, self.dataset, cfg, distance=distance, return_features=True)

    # ---------------------------------------------------------------- tables
    def table(self, runs: Mapping[str, Sequence[dict]]) -> pd.DataFrame:
        """``{row: [evaluate() result per seed]}`` -> mean (and std over seeds) + mAP 95% CI."""
        from reidlib.metrics.views import bootstrap_ci

        rows = {}
        for name, per_seed in runs.items():
            row = {}
            for m in METRICS:
                vals = np.array([r[m] for r in per_seed], dtype=float)
                row[m] = vals.mean()
                if len(vals) > 1:
                    row[f"{m}_std"] = vals.std(ddof=1)
            rr = per_seed[0].get("rank_result")
            if rr is not None and rr.query_ap is not None:
                lo, hi = bootstrap_ci(rr.query_ap, seed=0)
                row["mAP_ci95"] = f"[{lo * 100:.1f}, {hi * 100:.1f}]"
            row["seeds"] = len(per_seed)
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")


def strip(result: dict) -> dict:
    """An evaluate() result without its arrays (for JSON)."""
    return {k: v for k, v in result.items() if k not in ("rank_result", "query", "gallery")}


# ================================================================================================
# SPAN
# ================================================================================================

def span_mask_quality(study: Study, span, split: str = "gallery", max_images: int = 400) -> dict:
    """Mean IoU of SPAN's thresholded part masks against SynthVeRi's ground-truth part masks
    (front / rear / side), on test images (a quantitative version of the paper's Fig. 6)."""
    from reidlib.data.masks import MaskDataset
    from reidlib.metrics.masks import part_mask_iou
    from reidlib.utils.device import resolve_device

    recs = [r for r in getattr(study.dataset, split) if r.view is not None][:max_images]
    size = tuple(study.prof["input_size"])
    ds = MaskDataset(recs, fg_source="gt", size=size)
    dev = resolve_device(study.device)
    span = span.to(dev).eval()
    preds, gts = [], []
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False, num_workers=0)
    with torch.inference_mode():
        for batch in loader:
            m = span(batch["img"].to(dev)).float().cpu()
            gt = batch["parts"]
            if m.shape[-2:] != gt.shape[-2:]:
                m = torch.nn.functional.interpolate(m, size=gt.shape[-2:], mode="bilinear", align_corners=False)
            preds.append(m)
            gts.append(gt)
    return part_mask_iou(torch.cat(preds), torch.cat(gts))


def span_example_batch(study: Study, n: int = 6, split: str = "gallery", seed: int = 0):
    """``n`` test images covering the 5 view classes, as a normalised batch ``[n, 3, H, W]`` (+ records)."""
    from reidlib.data.masks import MaskDataset

    recs = [r for r in getattr(study.dataset, split) if r.view is not None]
    rng = np.random.default_rng(seed)
    picked = []
    for v in range(5):
        cand = [r for r in recs if r.view == v]
        if cand:
            picked.append(cand[int(rng.integers(len(cand)))])
    while len(picked) < n and recs:
        picked.append(recs[int(rng.integers(len(recs)))])
    picked = picked[:n]
    ds = MaskDataset(picked, fg_source="gt", size=tuple(study.prof["input_size"]))
    return torch.stack([ds[i]["img"] for i in range(len(ds))]), picked


def _span_switches(variant: str) -> dict:
    return {f"span.{k}": v for k, v in SPAN_LOSS_VARIANTS[variant].items()}


def span_masks_table(study: Study, variants: Sequence[str] = tuple(SPAN_LOSS_VARIANTS)) -> tuple[pd.DataFrame, dict]:
    """Train SPAN step 1 once per loss combination (Table 1's rows) and measure its part masks
    against the ground truth. Returns (IoU table, {variant: trained SPAN})."""
    rows, spans = {}, {}
    for v in variants:
        span, info = study.span_model(study.seed, **_span_switches(v))
        spans[v] = span
        q = span_mask_quality(study, span)
        rows[v] = {"front": q["front"] * 100, "rear": q["rear"] * 100, "side": q["side"] * 100,
                   "mean IoU": q["mean"] * 100}
    return pd.DataFrame.from_dict(rows, orient="index"), spans


def foreground_net(study: Study, seed: Optional[int] = None):
    """The foreground network of SPAN's public code (ResNet encoder + light decoder) trained on the
    GrabCut masks of the training images; cached like every other run."""
    from reidlib.data.masks import view_balanced_subset
    from reidlib.engine import tasks

    seed = study.seed if seed is None else seed
    # the same view-balanced training subset as SPAN step 1 (its GrabCut masks are cached already)
    labelled = [r for r in study.dataset.train if r.view is not None]
    subset = view_balanced_subset(labelled, study.prof["span_per_view"], seed=seed)
    cfg = study._base("foreground", seed, study.prof["span_iters"])
    cfg.update({"model.backbone": study.prof["span_backbone"], "foreground.size": study.prof["input_size"][0],
                "data.batch_size": study.prof["span_batch"], "foreground.source": "grabcut",
                "optim.lr": 1e-3, "optim.milestones": []})
    return study._cached("foreground", cfg, lambda c, resume: tasks.train_foreground(c, records=subset, resume=resume),
                         extra=("view_balanced", study.prof["span_per_view"]))


def foreground_quality(study: Study, max_images: int = 200, train_net: bool = True) -> pd.DataFrame:
    """IoU against SynthVeRi's true foreground (test images) of the targets SPAN can learn from:
    GrabCut pseudo-masks (the authors' procedure) and the foreground network trained on them."""
    import cv2

    from reidlib.data.grabcut import grabcut_foreground
    from reidlib.data.masks import gt_mask_path
    from reidlib.engine.tasks import predict_foreground
    from reidlib.metrics.masks import foreground_iou

    recs = list(study.dataset.gallery)[:max_images]
    size = study.prof["input_size"][0]
    gts, grab = [], []
    for r in recs:
        img = cv2.cvtColor(cv2.imread(r.path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        gt = (cv2.imread(str(gt_mask_path(r.path)), cv2.IMREAD_GRAYSCALE) > 0).astype(np.float32)
        gts.append(cv2.resize(gt, (size, size), interpolation=cv2.INTER_NEAREST))
        grab.append(cv2.resize(grabcut_foreground(img).astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST))
    gt = np.stack(gts)
    rows = {"GrabCut (pad 32, 5 iterations, two passes)": foreground_iou(np.stack(grab), gt)}
    if train_net:
        net, _ = foreground_net(study)
        pred = predict_foreground(net, recs, size=size, device=study.device)
        rows["foreground network trained on GrabCut masks"] = foreground_iou(np.stack([pred[r.path] for r in recs]), gt)
    return pd.DataFrame({"IoU vs ground truth (%)": {k: v * 100 for k, v in rows.items()}, "test images": len(recs)})


def span_losses_table(study: Study) -> pd.DataFrame:
    """SPAN Table 1: the baseline, then SPAN + CPDM with SPAN trained on each loss combination."""
    runs: dict[str, list] = {"baseline": []}
    for seed in study.seeds:
        base, _ = study.reid_model("baseline", seed)
        runs["baseline"].append(study.evaluate(base))
    for v in SPAN_LOSS_VARIANTS:
        span, _ = study.span_model(study.seed, **_span_switches(v))
        key = ("span", v)
        runs[v] = [study.evaluate(study.reid_model("span", s, span=span, span_key=key)[0]) for s in study.seeds]
    return study.table(runs)


def span_aggregation_table(study: Study) -> pd.DataFrame:
    """SPAN Table 2: baseline; SPAN w/ FC; SPAN w/ Cat (concatenation, Euclidean: trained with the
    triplet on the concatenated features); SPAN w/ CPDM (triplet and ranking on CPDM, eq. 7).
    An extra row ranks the CPDM-trained model with plain Euclidean distance, isolating the metric."""
    span, _ = study.span_model(study.seed, **_span_switches("full"))
    key = ("span", "full")
    runs: dict[str, list] = {k: [] for k in ("baseline", "span_fc", "span_cat", "span_cpdm", "span_cpdm_model_euclidean")}
    for s in study.seeds:
        runs["baseline"].append(study.evaluate(study.reid_model("baseline", s)[0]))
        fc, _ = study.reid_model("span", s, span=span, span_key=key,
                                 **{"model.kwargs": {"dim": study.prof["feat_dim"], "aggregation": "fc"},
                                    "loss.triplet_on": "concat"})
        runs["span_fc"].append(study.evaluate(fc))
        cat, _ = study.reid_model("span", s, span=span, span_key=key,
                                  **{"model.kwargs": {"dim": study.prof["feat_dim"], "distance": "euclidean"},
                                     "loss.triplet_on": "concat"})
        runs["span_cat"].append(study.evaluate(cat, distance="euclidean"))
        full, _ = study.reid_model("span", s, span=span, span_key=key)
        runs["span_cpdm"].append(study.evaluate(full, distance="cpdm"))
        runs["span_cpdm_model_euclidean"].append(study.evaluate(full, distance="euclidean"))
    return study.table(runs)


def span_hyperparam_table(study: Study, areas: Sequence[float] = (0.5, 0.7, 0.9),
                          margins: Sequence[float] = (0.0, 0.04)) -> pd.DataFrame:
    """The paper's supplementary choice of the max area ratio ``a`` (paper mode: both visible views of
    a two-view image capped at ``a``) and the adjacent-view margin ``m``: mask IoU for each value,
    the other held at the paper's choice (a = 0.7, m = 0.04)."""
    rows = {}
    for a in areas:
        span, _ = study.span_model(study.seed, **{"span.area_mode": "paper", "span.a": a})
        rows[("a", a)] = span_mask_quality(study, span)
    for m in margins:
        span, _ = study.span_model(study.seed, **{"span.area_mode": "paper", "span.a": 0.7, "span.margin": m})
        rows[("m", m)] = span_mask_quality(study, span)
    df = pd.DataFrame.from_dict({k: {p: v[p] * 100 for p in ("front", "rear", "side", "mean")}
                                 for k, v in rows.items()}, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["parameter", "value"])
    return df.rename(columns={"mean": "mean IoU"})


# ================================================================================================
# MUSP
# ================================================================================================

def _musp_kwargs(**kw) -> dict:
    return {"model.kwargs": dict(kw)}


def musp_attentions_table(study: Study, ns: Sequence[int] = (2, 3, 4, 5, 6)) -> pd.DataFrame:
    """MUSP Table 5: the number of attentions n (softmax, ESE, n-1 kept parts), plus the baseline."""
    runs: dict[Any, list] = {"baseline": [study.evaluate(study.reid_model("baseline", s)[0]) for s in study.seeds]}
    for n in ns:
        runs[n] = [study.evaluate(study.reid_model("musp", s, **_musp_kwargs(num_attentions=n))[0])
                   for s in study.seeds]
    return study.table(runs)


def musp_ese_table(study: Study, n: int = 5) -> pd.DataFrame:
    """MUSP Table 6: with and without the ESE channel attention (n = 5)."""
    runs = {
        "with_ese": [study.evaluate(study.reid_model("musp", s, **_musp_kwargs(num_attentions=n))[0]) for s in study.seeds],
        "without_ese": [study.evaluate(study.reid_model("musp", s, **_musp_kwargs(num_attentions=n, ese=False))[0])
                        for s in study.seeds],
    }
    return study.table(runs)


def musp_activation_table(study: Study, n: int = 5) -> pd.DataFrame:
    """MUSP Table 7: softmax attention (n = 5, 4 kept parts) vs sigmoid attention (4 parts, no discard)."""
    runs = {
        "softmax": [study.evaluate(study.reid_model("musp", s, **_musp_kwargs(num_attentions=n))[0]) for s in study.seeds],
        "sigmoid": [study.evaluate(study.reid_model("musp", s, **_musp_kwargs(num_attentions=n, attention="sigmoid"))[0])
                    for s in study.seeds],
    }
    return study.table(runs)


# ================================================================================================
# viewpoints
# ================================================================================================

def viewpoint_table(study: Study) -> pd.DataFrame:
    """R1 / mAP by the view relation of query and gallery for the baseline, SPAN + CPDM and MUSP."""
    from reidlib.cpdm import build_distance
    from reidlib.metrics.views import evaluate_by_view_relation

    span, _ = study.span_model(study.seed, **_span_switches("full"))
    models = {
        "baseline": study.reid_model("baseline", study.seed)[0],
        "SPAN + CPDM": study.reid_model("span", study.seed, span=span, span_key=("span", "full"))[0],
        "MUSP (n=5)": study.reid_model("musp", study.seed, **_musp_kwargs(num_attentions=5))[0],
    }
    ds = study.dataset
    q_or = [r.orientation for r in ds.query]
    g_or = [r.orientation for r in ds.gallery]
    frames = []
    for name, model in models.items():
        res = study.evaluate(model)
        q, g = res["query"], res["gallery"]
        dist = build_distance(res["distance"])
        qf = (q["feats"], q["area_ratios"])
        gf = (g["feats"], g["area_ratios"])
        d = dist(qf, gf)
        df = evaluate_by_view_relation(d, q["pids"], g["pids"], q["camids"], g["camids"], q_or, g_or)
        df.insert(0, "model", name)
        frames.append(df.rename_axis("relation").reset_index())
    return pd.concat(frames, ignore_index=True)


# ================================================================================================
# summary
# ================================================================================================

def summary_table(profile: str, results_root: Optional[Path] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every ablation side by side (paper vs ours) and the verdict on each claim, from the results
    files of ``profile`` (``results/<profile>/<experiment>/<table>.csv``)."""
    from reidlib.paper_numbers import MASK_CLAIMS, MASK_TITLES, PAPER_TABLES

    root = Path(results_root) if results_root else REPO_ROOT / "results"
    side, verdicts = [], []
    for exp, (title, paper) in PAPER_TABLES.items():
        csv = root / profile / exp / "table.csv"
        if not csv.exists():
            verdicts.append({"experiment": title, "claim": "(not run for this profile)", "holds": "not measured"})
            continue
        ours = pd.read_csv(csv, index_col=0)
        ours.index = [int(i) if str(i).isdigit() else str(i) for i in ours.index]
        for row, vals in paper.items():
            for metric, pv in vals.items():
                ov = ours.loc[row, metric] if row in ours.index and metric in ours.columns else float("nan")
                side.append({"experiment": title, "row": str(row), "metric": metric, "paper": pv, "ours": ov})
        verdicts += _titled(title, claims_verdict(exp, ours))
    # mask-quality experiments: no published numbers, only claims
    for exp, title in MASK_TITLES.items():
        csv = root / profile / exp / "table.csv"
        if csv.exists():
            df = pd.read_csv(csv)
            ours = df.set_index(["parameter", "value"]) if {"parameter", "value"} <= set(df.columns) \
                else df.set_index(df.columns[0])
            verdicts += _titled(title, claims_verdict(exp, ours))
        else:
            verdicts += [{"experiment": title, "claim": c.text, "holds": "not measured"}
                         for c in MASK_CLAIMS if c.experiment == exp]
    return pd.DataFrame(side), pd.DataFrame(verdicts)


def _titled(title: str, verdict: pd.DataFrame) -> list[dict]:
    return [{"experiment": title, "claim": r["claim"], "holds": r["holds on our data"]}
            for r in verdict.to_dict(orient="records")]


# ================================================================================================
# paper comparisons
# ================================================================================================

def compare_with_paper(experiment: str, ours: pd.DataFrame, metrics: Sequence[str] = ("R1", "mAP")) -> pd.DataFrame:
    """Our table next to the paper's numbers for the same rows (paper: real data, our: SynthVeRi)."""
    from reidlib.paper_numbers import PAPER_TABLES

    _, paper = PAPER_TABLES[experiment]
    rows = {}
    for row in ours.index:
        key = int(row) if str(row).isdigit() else row
        rows[row] = {}
        for m in metrics:
            rows[row][f"paper {m}"] = paper.get(key, {}).get(m, float("nan"))
            rows[row][f"ours {m}"] = ours.loc[row, m] if m in ours.columns else float("nan")
    return pd.DataFrame.from_dict(rows, orient="index")


def claims_verdict(experiment: str, ours: pd.DataFrame) -> pd.DataFrame:
    """Each claim the paper makes with this table, and whether it holds on our numbers."""
    from reidlib.paper_numbers import CLAIMS, MASK_CLAIMS

    if experiment in {c.experiment for c in MASK_CLAIMS}:      # mask-quality tables: every column
        claims = MASK_CLAIMS
        index = [f"{r[0]}={float(r[1]):g}" if isinstance(r, tuple) else str(r) for r in ours.index]
        table = {i: {str(m): float(ours.loc[r, m]) for m in ours.columns} for i, r in zip(index, ours.index)}
    else:
        claims = CLAIMS
        table = {(int(r) if str(r).isdigit() else r): {m: ours.loc[r, m] for m in ours.columns if m in METRICS}
                 for r in ours.index}
    out = []
    for c in claims:
        if c.experiment == experiment:
            try:
                holds = "yes" if c.check(table) else "no"
            except KeyError:
                holds = "not measured"
            out.append({"claim": c.text, "holds on our data": holds})
    return pd.DataFrame(out)


# ================================================================================================
# multi-digit (SPAN Fig. 4)
# ================================================================================================

def multidigit_experiment(study: Study, n_train: Optional[int] = None, n_test: int = 64,
                          iters: Optional[int] = None, lambda_recon: float = 1.0, lambda_area: float = 0.5,
                          lambda_div: float = 1.0, digit_scale: tuple[float, float] = (0.3, 0.45)):
    """SPAN as a weakly supervised localiser (the paper's Fig. 4): images with up to two of the
    digits 0, 1, 2; the only label is which digits are present; the three mask generators should
    each learn to cover one digit. Trains SPAN step 1 (eq. 6, recon + area + div; area cap 1 for a
    present digit when alone, 0.7 when two are present, 0 if absent) and returns (IoU table,
    test images [N,3,H,W], predicted masks [N,3,h,w])."""
    from reidlib.data.multidigit import MultiDigitDataset, make_multidigit
    from reidlib.engine.optim import build_optimizer
    from reidlib.engine.trainer import Trainer, build_loader
    from reidlib.losses.span import span_step1_loss
    from reidlib.metrics.masks import part_mask_iou
    from reidlib.models.span import SPAN
    from reidlib.utils.device import resolve_device, seed_everything

    seed_everything(study.seed)
    size = 64
    iters = iters or study.prof["span_iters"]
    n_train = n_train or max(64, iters * study.prof["span_batch"] // 4)
    train = MultiDigitDataset(make_multidigit(n_train, image_size=size, seed=study.seed, scale=digit_scale))
    test_data = make_multidigit(n_test, image_size=size, seed=study.seed + 10_000, scale=digit_scale)
    test = MultiDigitDataset(test_data)
    loader = build_loader(train, batch_size=study.prof["span_batch"], shuffle=True, drop_last=True, seed=study.seed)
    span = SPAN(backbone=study.prof["span_backbone"])
    opt = build_optimizer("adam", span.parameters(), lr=1e-3, weight_decay=0.0)

    def step(model, batch):
        masks = model(batch["img"])
        # digits never overlap: every pair is "mutually exclusive" (margin 0)
        return span_step1_loss(masks, batch["fg"], batch["view_vec"], area_mode="paper", a=0.7,
                               margins=(0.0, 0.0, 0.0), lambda_recon=lambda_recon,
                               lambda_area=lambda_area, lambda_div=lambda_div)

    trainer = Trainer(span, step, optimizer=opt, data_loader=loader, max_iters=iters,
                      device=study.device, progress=False, seed=study.seed, log_every=max(1, iters // 10))
    trainer.fit()
    dev = resolve_device(study.device)
    span = span.to(dev).eval()
    imgs = torch.stack([test[i]["img"] for i in range(len(test))])
    parts = torch.stack([test[i]["parts"] for i in range(len(test))]).float()
    with torch.inference_mode():
        masks = span(imgs.to(dev)).float().cpu()
    up = torch.nn.functional.interpolate(masks, size=parts.shape[-2:], mode="bilinear", align_corners=False)
    iou = part_mask_iou(up, parts)
    table = pd.DataFrame({"IoU (%)": {f"digit {d}": iou[k] * 100 for d, k in zip((0, 1, 2), ("front", "rear", "side"))}})
    table.loc["mean"] = iou["mean"] * 100
    return table, imgs, masks, trainer.history


#: the multi-digit settings: the paper's loss weights (eq. 6) on digits 0.3-0.45 of the image
#: side, and an adjusted setting (reconstruction weighted 10x, digits 0.45-0.6 of the side). Why
#: adjust: a digit covers a small part of the image, so for an untrained SPAN the area term of eq. 2
#: outweighs reconstruction by an order of magnitude and drives every mask to ~0 before any digit is
#: recognised; :func:`multidigit_initial_terms` measures both terms at initialisation.
MULTIDIGIT_SETTINGS: dict[str, dict] = {
    "paper weights": dict(),
    "recon x10, larger digits": dict(lambda_recon=10.0, digit_scale=(0.45, 0.6)),
}


def multidigit_initial_terms(study: Study, settings: Optional[Mapping[str, dict]] = None,
                             n_images: int = 64) -> pd.DataFrame:
    """Per setting: the digits' share of the image (%) and the *weighted* terms of eq. 6 for an
    untrained SPAN (seeded like :func:`multidigit_experiment`) on ``n_images`` training images."""
    from reidlib.data.multidigit import MultiDigitDataset, make_multidigit
    from reidlib.losses.span import span_step1_loss
    from reidlib.models.span import SPAN
    from reidlib.utils.device import seed_everything

    settings = MULTIDIGIT_SETTINGS if settings is None else settings
    rows = {}
    for name, kw in settings.items():
        seed_everything(study.seed)
        data = make_multidigit(n_images, image_size=64, seed=study.seed, scale=kw.get("digit_scale", (0.3, 0.45)))
        ds = MultiDigitDataset(data)
        batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ("img", "fg", "view_vec")}
        span = SPAN(backbone=study.prof["span_backbone"]).eval()
        weights = {k: kw.get(k, d) for k, d in (("lambda_recon", 1.0), ("lambda_area", 0.5), ("lambda_div", 1.0))}
        with torch.inference_mode():
            _, terms = span_step1_loss(span(batch["img"]), batch["fg"], batch["view_vec"], area_mode="paper",
                                       a=0.7, margins=(0.0, 0.0, 0.0), **weights)
        rows[name] = {"foreground (% of image)": 100 * float(data["fg"].mean()),
                      "λ_recon·L_recon": weights["lambda_recon"] * float(terms["recon"]),
                      "λ_area·L_area": weights["lambda_area"] * float(terms["area"]),
                      "λ_div·L_div": weights["lambda_div"] * float(terms["div"])}
    return pd.DataFrame.from_dict(rows, orient="index")


def multidigit_table(study: Study, settings: Optional[Mapping[str, dict]] = None):
    """SPAN's Fig. 4 under each of :data:`MULTIDIGIT_SETTINGS`: a table of mask IoU (%) per digit
    class (rows ``digit 0..2`` and ``mean``, one column per setting) and, per setting, the test
    images, predicted masks and training log ``{setting: (images, masks, history)}``."""
    settings = MULTIDIGIT_SETTINGS if settings is None else settings
    cols, outputs = {}, {}
    for name, kw in settings.items():
        table, imgs, masks, history = multidigit_experiment(study, **kw)
        cols[name] = table["IoU (%)"]
        outputs[name] = (imgs, masks, history)
    return pd.DataFrame(cols), outputs


def hardest_queries_figure(study: Study, n: int = 4, topk: int = 8):
    """The ``n`` queries with the lowest AP under SPAN + CPDM, each followed by its ``topk`` nearest
    gallery images (``reidlib.viz.ranked_list``: green = same vehicle, red = another vehicle,
    grey = junk, i.e. same vehicle and camera)."""
    from matplotlib.figure import Figure

    from reidlib.cpdm import build_distance
    from reidlib.viz.ranked import ranked_list, worst_queries

    span, _ = study.span_model(study.seed, **_span_switches("full"))
    model, _ = study.reid_model("span", study.seed, span=span, span_key=("span", "full"))
    res = study.evaluate(model)
    q, g = res["query"], res["gallery"]
    worst = worst_queries(res["rank_result"], n=n)
    dist = build_distance(res["distance"])
    fig = Figure(figsize=(1.3 * (topk + 1.5), 2.2 * len(worst)))
    axes = fig.subplots(len(worst), 1, squeeze=False)[:, 0]
    for ax, (qi, ap) in zip(axes, worst):
        row = dist((q["feats"][qi:qi + 1], q["area_ratios"][qi:qi + 1]), (g["feats"], g["area_ratios"]))[0]
        ranked_list(q["paths"][qi], g["paths"], row, int(q["pids"][qi]), g["pids"], int(q["camids"][qi]), g["camids"],
                    topk=topk, ax=ax, tile_size=(64, 64), title=f"query {qi}: AP {ap * 100:.1f}%")
    return fig
