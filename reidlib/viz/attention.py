"""Part masks and attention maps over images: SPAN's Figs. 4, 6, 7 and MUSP's Figs. 1, 5.

* :func:`mask_overlay`: one RGB array with K masks blended in distinct colours.
* :func:`attention_maps`: a matplotlib figure, one row per image: the image, then one heat-map
  overlay per map (maps upsampled bilinearly to the image size).

Only the object-oriented matplotlib API is used (``matplotlib.figure.Figure``, no ``pyplot``
state), so this works headless with any backend.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: colours (RGB 0..1) for the part names SPAN uses; other names cycle through _PALETTE.
PART_COLOURS = {"front": (0.95, 0.15, 0.15), "rear": (0.15, 0.35, 0.95), "side": (0.15, 0.85, 0.25),
                "global": (0.9, 0.9, 0.9), "roof": (0.95, 0.8, 0.1)}
_PALETTE = ((0.95, 0.15, 0.15), (0.15, 0.35, 0.95), (0.15, 0.85, 0.25), (0.95, 0.8, 0.1), (0.8, 0.2, 0.9),
            (0.1, 0.85, 0.9), (0.95, 0.5, 0.1), (0.5, 0.5, 0.5))


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def to_uint8_image(image, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """``uint8 [H, W, 3]`` from a normalised float ``[3, H, W]`` tensor/array (de-normalised with
    ``mean``/``std``; pass ``mean=(0,0,0), std=(1,1,1)`` for [0, 1] images) or a ``uint8`` HWC array."""
    is_tensor = hasattr(image, "detach")
    a = _np(image)
    if a.dtype == np.uint8:
        if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
            a = a.transpose(1, 2, 0)
        return np.ascontiguousarray(a)
    if a.ndim != 3:
        raise ValueError(f"image must be [3, H, W] or [H, W, 3], got {a.shape}")
    if a.shape[0] == 3 and (is_tensor or a.shape[-1] != 3):
        a = a * np.asarray(std, np.float32).reshape(3, 1, 1) + np.asarray(mean, np.float32).reshape(3, 1, 1)
        a = a.transpose(1, 2, 0)
    elif a.max() > 1.0:              # float HWC in 0..255
        a = a / 255.0
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _resize(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    if m.shape == hw:
        return m.astype(np.float32)
    return cv2.resize(m.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def _colour(k: int, names: Optional[Sequence[str]]) -> tuple:
    if names is not None and k < len(names) and str(names[k]).lower() in PART_COLOURS:
        return PART_COLOURS[str(names[k]).lower()]
    return _PALETTE[k % len(_PALETTE)]


def mask_overlay(image, masks, names: Optional[Sequence[str]] = None, alpha: float = 0.5,
                 normalize: bool = False) -> np.ndarray:
    """Blend ``masks [K, h, w]`` (values in [0, 1]) over ``image`` in one colour per mask.

    Colours: by name for ``front`` (red), ``rear`` (blue), ``side`` (green), else a palette. Each
    pixel becomes ``(1 - alpha * a) * image + alpha * a * colour`` with ``a = min(1, sum_k m_k)``
    and ``colour`` the mask-weighted mean of the mask colours. ``normalize``: scale each mask to
    max 1 first (for soft attention maps). Returns ``uint8 [H, W, 3]`` RGB.
    """
    img = to_uint8_image(image).astype(np.float32) / 255.0
    H, W = img.shape[:2]
    ms = _np(masks).astype(np.float32)
    if ms.ndim == 2:
        ms = ms[None]
    ms = np.stack([_resize(m, (H, W)) for m in ms]) if len(ms) else np.zeros((0, H, W), np.float32)
    if normalize:
        ms = ms / np.maximum(ms.reshape(len(ms), -1).max(1), 1e-12).reshape(-1, 1, 1)
    ms = np.clip(ms, 0.0, 1.0)
    cols = np.asarray([_colour(k, names) for k in range(len(ms))], np.float32).reshape(-1, 3)
    total = ms.sum(0)                                                   # [H, W]
    colour = np.einsum("khw,kc->hwc", ms, cols) / np.maximum(total, 1e-6)[..., None]
    a = (alpha * np.clip(total, 0.0, 1.0))[..., None]
    out = (1.0 - a) * img + a * colour
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _heat(image_u8: np.ndarray, m: np.ndarray, alpha: float, cmap, vmax: float) -> np.ndarray:
    H, W = image_u8.shape[:2]
    m = _resize(m, (H, W)) / max(vmax, 1e-12)
    rgb = cmap(np.clip(m, 0.0, 1.0))[..., :3].astype(np.float32)
    out = (1.0 - alpha) * image_u8.astype(np.float32) / 255.0 + alpha * rgb
    return np.clip(out, 0.0, 1.0)


def attention_maps(images, maps, names: Optional[Sequence[str]] = None, ncols: Optional[int] = None,
                   titles: Optional[Sequence[str]] = None, alpha: float = 0.5, normalize: bool = False,
                   composite: bool = False, cmap: str = "jet", panel_size: float = 1.8):
    """Grid figure of maps over images.

    Args:
        images: ``[N, 3, H, W]`` normalised tensor/array, or a sequence of ``uint8 [H, W, 3]``.
        maps: ``[N, K, h, w]`` (SPAN masks in [0, 1], MUSP attention maps, ...).
        names: K column names (e.g. ``("front", "rear", "side")``), shown as panel titles.
        ncols: image groups per figure row (each group = image + K maps); default 1, i.e. one
            image per row.
        titles: N titles for the image panels (e.g. view labels or ids).
        alpha: heat-map opacity; normalize: scale each map to its own max (for soft attention);
            otherwise the colour scale is [0, 1] (or [0, max] when a map exceeds 1).
        composite: add a panel with :func:`mask_overlay` of all K maps.

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    import matplotlib
    from matplotlib.figure import Figure

    colormap = matplotlib.colormaps[cmap]
    imgs = [to_uint8_image(im) for im in images]
    mp = _np(maps).astype(np.float32)
    if mp.ndim == 3:
        mp = mp[:, None]
    N, K = mp.shape[:2]
    if len(imgs) != N:
        raise ValueError(f"{len(imgs)} images but {N} map sets")
    group = 1 + K + int(composite)
    ncols = 1 if ncols is None else max(1, int(ncols))
    nrows = int(np.ceil(N / ncols))
    fig = Figure(figsize=(panel_size * group * ncols, panel_size * 1.15 * nrows))
    axes = fig.subplots(nrows, group * ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(N):
        r, c0 = divmod(i, ncols)
        c0 *= group
        ax = axes[r, c0]
        ax.imshow(imgs[i])
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=8)
        for k in range(K):
            m = mp[i, k]
            vmax = float(m.max()) if normalize else max(1.0, float(m.max()))
            axes[r, c0 + 1 + k].imshow(_heat(imgs[i], m, alpha, colormap, vmax))
            if names is not None and k < len(names) and r == 0:
                axes[r, c0 + 1 + k].set_title(str(names[k]), fontsize=8)
        if composite:
            axes[r, c0 + 1 + K].imshow(mask_overlay(imgs[i], mp[i], names=names, alpha=alpha, normalize=normalize))
            if r == 0:
                axes[r, c0 + 1 + K].set_title("all", fontsize=8)
    fig.tight_layout()
    return fig
