"""Ranked-list figures: a query and its top-k gallery images with true / wrong / junk marks,
and a helper to find the queries worth looking at (lowest AP first)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

__all__ = ["ranked_list", "worst_queries"]

GREEN = (40, 170, 60)
RED = (215, 40, 40)
GREY = (150, 150, 150)
BLUE = (40, 90, 200)


def _read_rgb(item) -> np.ndarray:
    """An image path (read with OpenCV, BGR -> RGB) or an HxW[x3|4] array, as HxWx3 uint8 RGB."""
    if isinstance(item, (str, os.PathLike)):
        import cv2

        path = os.fspath(item)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: image not found")
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{path}: cannot be decoded as an image; expected a JPEG/PNG file")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    arr = np.asarray(item)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image array of shape {arr.shape}; expected HxW, HxWx3 or HxWx4 (RGB)")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return arr


def _tile(img: np.ndarray, size: tuple[int, int], border: int, color, grey: bool) -> np.ndarray:
    import cv2

    h, w = size
    inner = cv2.resize(img, (w - 2 * border, h - 2 * border), interpolation=cv2.INTER_AREA)
    if grey:
        g = inner.mean(axis=2, keepdims=True)
        inner = (0.35 * g + 0.65 * 200).astype(np.uint8).repeat(3, axis=2)
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[:] = color
    out[border:h - border, border:w - border] = inner
    return out


def ranked_list(query_path, gallery_paths: Sequence, distances_row, q_pid, g_pids, q_camid,
                g_camids, *, topk: int = 10, ax=None, skip_junk: bool = False,
                tile_size: tuple[int, int] = (128, 128), title: str | None = None):
    """Figure of a query (blue border) and its ``topk`` nearest gallery images.

    Borders: green = true match (same id, other camera), red = wrong id, grey (and the image
    greyed) = junk (same id and same camera, ignored by the protocol). Each tile is labelled with
    its rank after junk removal (junk tiles with "junk") and its distance. Ties are ordered by
    gallery index, as in ``reidlib.metrics.evaluate_rank``. ``skip_junk=True`` leaves junk out
    instead of greying it. Images are paths (read with OpenCV) or RGB arrays. ``distances_row``
    is the query's row of the distance matrix (numpy or torch). Draws into ``ax`` when given,
    else into a new figure; returns the ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    from reidlib.metrics.pairwise import to_numpy as _to_numpy

    dist = _to_numpy(distances_row).reshape(-1)
    g_pids = _to_numpy(g_pids).reshape(-1)
    g_camids = _to_numpy(g_camids).reshape(-1)
    if not (len(dist) == len(g_pids) == len(g_camids) == len(gallery_paths)):
        raise ValueError(f"distances_row ({len(dist)}), g_pids ({len(g_pids)}), g_camids "
                         f"({len(g_camids)}) and gallery_paths ({len(gallery_paths)}) must have "
                         f"the same length")
    if topk < 1:
        raise ValueError(f"topk={topk}; expected a positive integer")
    order = np.argsort(dist, kind="stable")
    same = g_pids[order] == q_pid
    junk = same & (g_camids[order] == q_camid)
    valid_rank = np.cumsum(~junk)                    # 1-based rank after junk removal
    if skip_junk:
        order, same, junk, valid_rank = order[~junk], same[~junk], junk[~junk], valid_rank[~junk]
    order, same, junk, valid_rank = order[:topk], same[:topk], junk[:topk], valid_rank[:topk]

    border = max(3, tile_size[0] // 24)
    tiles = [_tile(_read_rgb(query_path), tile_size, border, BLUE, False)]
    labels = ["query"]
    for gi, s, j, r in zip(order, same, junk, valid_rank):
        color = GREY if j else (GREEN if s else RED)
        tiles.append(_tile(_read_rgb(gallery_paths[gi]), tile_size, border, color, bool(j)))
        labels.append(("junk" if j else f"#{r}") + f"\n{dist[gi]:.3g}")
    gap = np.full((tile_size[0], max(4, tile_size[1] // 8), 3), 255, dtype=np.uint8)
    strip = np.concatenate([tiles[0], gap] + [np.concatenate([t, gap[:, : gap.shape[1] // 2]], axis=1)
                                              for t in tiles[1:]], axis=1)
    band = max(24, tile_size[0] // 4)                # white band under the tiles for the labels
    strip = np.concatenate([strip, np.full((band, strip.shape[1], 3), 255, np.uint8)], axis=0)

    if ax is None:
        width = max(4.0, 1.3 * (len(tiles) + 0.5))
        fig = Figure(figsize=(width, 2.2))  # no pyplot: shown once, where the caller returns it
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.imshow(strip)
    ax.set_axis_off()
    # label centres along the strip
    x = tile_size[1] / 2
    centres = [x]
    x = tile_size[1] + gap.shape[1]
    for _ in tiles[1:]:
        centres.append(x + tile_size[1] / 2)
        x += tile_size[1] + gap.shape[1] // 2
    for cx, lab in zip(centres, labels):
        ax.text(cx, tile_size[0] + 2, lab, ha="center", va="top", fontsize=7)
    ax.set_title(title if title is not None else f"query id {q_pid}, camera {q_camid}", fontsize=9)
    return fig


def worst_queries(distmat_or_result, q_pids=None, g_pids=None, q_camids=None, g_camids=None, *,
                  n: int = 10, ap: str = "mean_precision") -> list[tuple[int, float]]:
    """The ``n`` valid queries with the lowest AP, worst first, as ``(query_index, AP)``.

    Pass a ``RankResult`` (from ``evaluate_rank`` / ``evaluate_features``; its per-query APs are
    used) or a distance matrix with the ids and cameras (evaluated here with ``ap``). Skipped
    queries (no true match) are left out; equal APs keep query order.
    """
    from reidlib.metrics.rank import RankResult, evaluate_rank

    if isinstance(distmat_or_result, RankResult):
        res = distmat_or_result
        if res.query_ap is None:
            raise ValueError("this RankResult carries no per-query APs")
    else:
        if any(x is None for x in (q_pids, g_pids, q_camids, g_camids)):
            raise ValueError("with a distance matrix, pass q_pids, g_pids, q_camids and g_camids")
        res = evaluate_rank(distmat_or_result, q_pids, g_pids, q_camids, g_camids, ap=ap, max_rank=1)
    aps = np.asarray(res.query_ap, dtype=np.float64)
    idx = np.flatnonzero(~np.isnan(aps))
    idx = idx[np.argsort(aps[idx], kind="stable")][:n]
    return [(int(i), float(aps[i])) for i in idx]
