"""Figures of SynthVeRi samples with their ground-truth part masks overlaid (any layout)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import pandas as pd

from reidlib.data.synth.layouts import META_FILE, mask_file
from reidlib.data.views import PART_LABELS, VIEW5

#: overlay colour (RGB) of each part label
PART_COLOURS = {"front": (230, 50, 50), "rear": (40, 90, 240), "side": (40, 200, 60), "roof": (245, 200, 30)}
_FOLDERS = {"train": "image_train", "query": "image_query", "test": "image_test"}


def overlay_parts(image_rgb: np.ndarray, parts: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the part colours of the label map ``parts`` (H, W) into ``image_rgb`` (H, W, 3)."""
    lut = np.zeros((256, 3), np.float32)
    for name, colour in PART_COLOURS.items():
        lut[PART_LABELS[name]] = colour
    fg = (parts > 0)[..., None]
    blend = (1 - alpha) * image_rgb.astype(np.float32) + alpha * lut[parts]
    return np.where(fg, blend, image_rgb).astype(np.uint8)


def _read_meta(root: Path, split: str) -> pd.DataFrame:
    """The metadata of ``split`` with a ``path`` column relative to ``root``, in any layout."""
    if (root / f"meta_{split}.csv").is_file():                      # VeRi-776 layout
        meta = pd.read_csv(root / f"meta_{split}.csv")
        return meta.assign(path=_FOLDERS[split] + "/" + meta["name"])
    if (root / META_FILE).is_file():                                # VehicleID / VERI-Wild layouts
        meta = pd.read_csv(root / META_FILE, dtype={"path": str})
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test' in this layout, got {split!r}")
        return meta[meta["split"] == split].reset_index(drop=True)
    raise FileNotFoundError(f"{root} has neither meta_{split}.csv nor {META_FILE}: not a SynthVeRi folder")


def sample_grid(root: str | os.PathLike, by: str = "camera", n: int = 6, overlay_masks: bool = True,
                split: str = "train", groups: Optional[Sequence] = None, max_groups: int = 6, seed: int = 0,
                alpha: float = 0.45):
    """A grid of samples of ``split``: one row per camera (``by="camera"``) or per SPAN view class
    (``by="view"``: F, R, S, FS, RS), ``n`` random (seeded) images a row, with the ground-truth part
    masks overlaid (``overlay_masks``) and a legend of the part colours. ``groups`` picks the rows
    (camera ids or view names / indices); by default the first ``max_groups`` cameras or all 5 views.
    In the VehicleID / VERI-Wild layouts (``synthveri_meta.csv``) ``split`` is ``"train"`` or
    ``"test"``, and VehicleID's has no cameras (``by="view"`` only).
    Returns a matplotlib Figure."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if by not in ("camera", "view"):
        raise ValueError(f"by must be 'camera' or 'view', got {by!r}")
    if split not in _FOLDERS:
        raise ValueError(f"split must be one of {sorted(_FOLDERS)}, got {split!r}")
    root = Path(root)
    meta = _read_meta(root, split)
    col = "camid" if by == "camera" else "view"
    if col not in meta.columns:
        raise ValueError(f"{root} has no cameras (VehicleID layout): use by='view'")
    if groups is None:
        keys = sorted(meta[col].unique())[:max_groups] if by == "camera" else list(range(len(VIEW5)))
    else:
        keys = [VIEW5.index(k) if isinstance(k, str) else int(k) for k in groups]
    rng = np.random.default_rng(seed)
    # object-oriented API (no pyplot): the figure is shown once, where the caller returns it
    fig = Figure(figsize=(1.5 * n, 1.55 * len(keys) + 0.5))
    axes = fig.subplots(len(keys), n, squeeze=False)
    for r, key in enumerate(keys):
        rows = meta[meta[col] == key]
        pick = rows.iloc[np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))] if len(rows) else rows
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(pick):
                rel = pick.iloc[c]["path"]
                img = cv2.cvtColor(cv2.imread(str(root / rel)), cv2.COLOR_BGR2RGB)
                if overlay_masks:
                    parts = cv2.imread(str(root / mask_file(rel)), cv2.IMREAD_UNCHANGED)
                    img = overlay_parts(img, parts, alpha)
                ax.imshow(img)
                ax.set_title(f"{int(pick.iloc[c]['vid']):04d} {pick.iloc[c]['yaw']:.0f}°", fontsize=7)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(f"c{int(key):03d}" if by == "camera" else VIEW5[key], fontsize=9)
    if overlay_masks:
        fig.legend(handles=[Patch(color=np.array(c) / 255, label=k) for k, c in PART_COLOURS.items()],
                   loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"SynthVeRi {split} samples by {by}" + (" (ground-truth part masks)" if overlay_masks else ""),
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.05 if overlay_masks else 0, 1, 0.97))
    return fig
