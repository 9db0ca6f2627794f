"""How hard is the benchmark? Training-free baselines on a SynthVeRi folder, overall and per
viewpoint relation: the levels a trained model must beat to show it learned anything.

:func:`difficulty_table` ranks the gallery (``image_test``) for every query with

* ``colour_histogram``: an 8x4x4 HSV histogram of the whole image, L1-normalised, compared by the
  Euclidean distance of the square roots (Hellinger distance);
* ``colour_histogram_fg`` (not a default): the same histogram over the ground-truth foreground
  (``masks/``) only: what a perfect vehicle mask buys a colour descriptor;
* ``random_cnn``: torchvision ``resnet18(weights=None)`` initialised with ``torch.manual_seed(seed)``,
  global-average-pooled 512-d features (ImageNet normalisation, native image size), L2-normalised,
  Euclidean distance,

and evaluates with :func:`reidlib.metrics.evaluate_rank` (market-style protocol: same id AND same
camera is junk; mean-precision AP). Per viewpoint relation (``same`` / ``adjacent`` /
``opposite``, :func:`reidlib.data.views.view_relation` of the 8-way orientations of query and
gallery item) the gallery of each query is restricted to the items in that relation (the others
are excluded, not merely ranked last); queries with no true match left are skipped and counted.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import pandas as pd

from reidlib.ablations.experiment import Experiment, FigureText
from reidlib.metrics import pairwise_distance

METHODS = ("colour_histogram", "random_cnn")
ALL_METHODS = ("colour_histogram", "colour_histogram_fg", "random_cnn")


def _read_split(root: Path, split: str) -> pd.DataFrame:
    meta = pd.read_csv(root / f"meta_{split}.csv")
    names = (root / f"name_{split}.txt").read_text().split()
    if list(meta["name"]) != names:
        raise ValueError(f"{root / f'meta_{split}.csv'} does not list the images of name_{split}.txt in order")
    folder = "image_query" if split == "query" else "image_test"
    meta["path"] = [str(root / folder / n) for n in names]
    return meta


def _load_images(paths: Sequence[str]) -> list[np.ndarray]:
    out = []
    for p in paths:
        im = cv2.imread(p, cv2.IMREAD_COLOR)
        if im is None:
            raise FileNotFoundError(f"cannot read image {p}")
        out.append(im)
    return out


def _load_masks(root: Path, folder: str, names: Sequence[str]) -> list[np.ndarray]:
    out = []
    for n in names:
        p = root / "masks" / folder / (n[:-4] + ".png")
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if m is None:
            raise FileNotFoundError(f"cannot read mask {p}")
        out.append(m)
    return out


def colour_histogram_features(images_bgr: Sequence[np.ndarray],
                              masks: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    """(N, 128) square-rooted, L1-normalised 8x4x4 HSV histograms (over ``masks > 0`` if given)."""
    feats = np.empty((len(images_bgr), 128), np.float32)
    for i, im in enumerate(images_bgr):
        hsv = cv2.cvtColor(im, cv2.COLOR_BGR2HSV)
        m = None if masks is None else (masks[i] > 0).astype(np.uint8)
        h = cv2.calcHist([hsv], [0, 1, 2], m, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        feats[i] = np.sqrt(h / max(h.sum(), 1.0))
    return feats


def random_cnn_features(images_bgr: Sequence[np.ndarray], seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """(N, 512) L2-normalised global-average-pooled features of a randomly initialised ResNet-18."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    net = resnet18(weights=None)
    net.fc = torch.nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images_bgr), batch_size):
            batch = np.stack([cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in images_bgr[i:i + batch_size]])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)     # (B, 3, H, W)
            f = net((x - mean) / std)                                               # (B, 512)
            out.append(torch.nn.functional.normalize(f, dim=1).numpy())
    return np.concatenate(out).astype(np.float32)


def relation_scores(distmat: np.ndarray, q: pd.DataFrame, g: pd.DataFrame) -> list[dict]:
    """Overall and per-relation mAP / R1 / R5 (percent) from a (Nq, Ng) distance matrix, through
    :func:`reidlib.metrics.views.evaluate_by_view_relation`."""
    from reidlib.metrics.views import evaluate_by_view_relation

    df = evaluate_by_view_relation(distmat, q["vid"], g["vid"], q["camid"], g["camid"],
                                   q["orientation"], g["orientation"])
    return [{"relation": "overall" if rel == "all" else rel, "mAP": row["mAP"], "R1": row["R1"], "R5": row["R5"],
             "queries": int(row["valid_queries"])} for rel, row in df.iterrows()]


def difficulty_table(root: str | os.PathLike, methods: Sequence[str] = METHODS, seed: int = 0) -> pd.DataFrame:
    """Baseline mAP / R1 / R5 (in percent) of ``methods`` (some of :data:`ALL_METHODS`) on the
    SynthVeRi folder ``root``,
    overall and per viewpoint relation of query and gallery (``same`` / ``adjacent`` /
    ``opposite``). Columns: method, relation, mAP, R1, R5, queries (valid queries)."""
    root = Path(root)
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected some of {ALL_METHODS}")
    q, g = _read_split(root, "query"), _read_split(root, "test")
    g_images = _load_images(g["path"])
    pos = {n: j for j, n in enumerate(g["name"])}
    # SynthVeRi's queries are byte-identical copies of gallery images: reuse them
    q_images = [g_images[pos[n]] if n in pos else _load_images([p])[0] for n, p in zip(q["name"], q["path"])]
    g_masks = q_masks = None
    if "colour_histogram_fg" in methods:
        g_masks = _load_masks(root, "image_test", g["name"])
        q_masks = _load_masks(root, "image_query", q["name"])
    rows = []
    for m in methods:
        qf, gf = _FEATURES[m](q_images, g_images, q_masks, g_masks, [pos.get(n) for n in q["name"]], seed)
        for row in relation_scores(pairwise_distance(qf, gf, "euclidean"), q, g):
            rows.append({"method": m, **row})
    return pd.DataFrame(rows, columns=["method", "relation", "mAP", "R1", "R5", "queries"])


def _colour(q_images, g_images, q_masks, g_masks, q_in_g, seed):
    return colour_histogram_features(q_images), colour_histogram_features(g_images)


def _colour_fg(q_images, g_images, q_masks, g_masks, q_in_g, seed):
    return colour_histogram_features(q_images, q_masks), colour_histogram_features(g_images, g_masks)


def _random_cnn(q_images, g_images, q_masks, g_masks, q_in_g, seed):
    gf = random_cnn_features(g_images, seed=seed)
    if all(j is not None for j in q_in_g):      # queries are copies of gallery images
        return gf[q_in_g], gf
    return random_cnn_features(q_images, seed=seed), gf


#: method -> ``(query features, gallery features)``
_FEATURES = {"colour_histogram": _colour, "colour_histogram_fg": _colour_fg, "random_cnn": _random_cnn}


#: the relations of :func:`difficulty_table` (``overall``: the whole gallery)
RELATIONS = ("overall", "same", "adjacent", "opposite")

SYNTHVERI = Experiment(
    "synthveri", "SynthVeRi: the benchmark", "benchmark", rows=tuple(f"{m}={r}" for m in METHODS for r in RELATIONS),
    figures={"samples_by_camera": FigureText(
        "Samples per camera: each camera has its own elevation, lighting, colour cast, background and noise. "
        "Overlays: front, rear, side and roof masks.",
        "SynthVeRi samples, one row per camera, with ground-truth part masks overlaid"),
        "samples_by_view": FigureText(
        "Samples per view class (F, R, S, FS, RS) with the ground-truth part masks.",
        "SynthVeRi samples grouped by SPAN view class F, R, S, FS, RS with part masks overlaid")})
