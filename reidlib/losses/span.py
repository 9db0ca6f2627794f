"""SPAN step-1 losses (Chen et al., ECCV 2020, Sec. 3.1 and eq. 6).

Inputs shared by all functions:

* ``masks`` ``[B, 3, h, w]``: predicted part attention masks in ``[0, 1]``, channels
  (front, rear, side) as in :data:`reidlib.data.views.PARTS`;
* ``fg`` ``[B, 1, H, W]`` or ``[B, H, W]``: the foreground mask ``V`` in ``[0, 1]``; resized to
  ``(h, w)`` when its size differs (bilinear with antialiasing, i.e. area-weighted averaging when
  shrinking), so a full-resolution GrabCut mask can be used with feature-map-sized masks;
* ``view_vec`` ``[B, 3]``: the semantic label vector ``l = [front, rear, side]`` in ``{0, 1}``
  (:data:`reidlib.data.views.VIEW5_LABEL`).

Every loss returns a scalar tensor, averaged over the batch unless stated otherwise.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from reidlib.data.views import VIEW5_LABEL

__all__ = ["SUPERVISION", "true_part_mask_loss", "mask_reconstruction_loss", "area_constraint_loss", "spatial_diversity_loss", "span_step1_loss",
           "max_area_table", "DEFAULT_MARGINS", "PAIRS"]

#: the view index pairs P of eq. (3): (front, rear), (front, side), (rear, side)
PAIRS: Tuple[Tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))
#: eq. (3) margins m_ij (Sec. 3.1 and 4.2 of the paper; same values in the public code):
#: mutually exclusive views (front-rear) 0, adjacent views (front-side, rear-side) 0.04
DEFAULT_MARGINS: Dict[str, float] = {"FR": 0.0, "FS": 0.04, "RS": 0.04}
_PAIR_NAMES = {"FR": (0, 1), "FS": (0, 2), "RS": (1, 2)}
#: eq. (2)'s caps: as the paper writes them, or as SPAN's public code sets them
AREA_MODES = ("paper", "code")
#: eq. (2) over the three parts: summed (as written) or averaged (the public code)
AREA_REDUCTIONS = ("sum", "mean")
#: how SPAN step 1 is supervised: "weak" (eq. 6: the foreground and the image-level view label, the
#: paper's) or "true_parts" (SynthVeRi's true part masks, per pixel: our ground-truth row, the
#: upper bound of the part-feature design on this data; not in the paper)
SUPERVISION = ("weak", "true_parts")

#: foreground area (in mask-pixel units) below which ||V||_1 is floored in eq. (2)
_FG_FLOOR = 1.0


def _check_masks(masks: torch.Tensor) -> None:
    if masks.dim() != 4 or masks.shape[1] != 3:
        raise ValueError(f"masks must be [B, 3, h, w] (front, rear, side), got {tuple(masks.shape)}")


def _fg_like(fg: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Foreground ``[B,1,H,W]`` or ``[B,H,W]`` -> ``[B, h, w]`` at the masks' resolution and dtype."""
    if fg.dim() == 4:
        if fg.shape[1] != 1:
            raise ValueError(f"fg must be [B, 1, H, W] or [B, H, W], got {tuple(fg.shape)}")
        fg4 = fg
    elif fg.dim() == 3:
        fg4 = fg.unsqueeze(1)
    else:
        raise ValueError(f"fg must be [B, 1, H, W] or [B, H, W], got {tuple(fg.shape)}")
    if fg4.shape[0] != masks.shape[0]:
        raise ValueError(f"batch sizes differ: fg {fg4.shape[0]} vs masks {masks.shape[0]}")
    fg4 = fg4.to(dtype=masks.dtype, device=masks.device)
    if tuple(fg4.shape[-2:]) != tuple(masks.shape[-2:]):
        fg4 = F.interpolate(fg4, size=tuple(masks.shape[-2:]), mode="bilinear", align_corners=False,
                            antialias=True)
    return fg4[:, 0]


def _view_vec(view_vec, masks: torch.Tensor) -> torch.Tensor:
    l = torch.as_tensor(view_vec, device=masks.device).to(masks.dtype)
    if l.dim() != 2 or l.shape != (masks.shape[0], 3):
        raise ValueError(f"view_vec must be [B, 3] = ({masks.shape[0]}, 3), got {tuple(l.shape)}")
    return l


def mask_reconstruction_loss(masks: torch.Tensor, fg: torch.Tensor, view_vec: torch.Tensor) -> torch.Tensor:
    """Mask reconstruction loss, SPAN eq. (1): ``L_recon = || V - sum_i l_i M_i ||``.

    The equation writes an L2 norm; the text calls it a "mean square error". We implement the
    MSE: the mean over pixels **and** batch of ``(V - sum_i l_i M_i)^2``, so the value does not
    depend on the mask resolution or the batch size.

    Args: ``masks [B, 3, h, w]``, ``fg [B, 1, H, W]`` or ``[B, H, W]``, ``view_vec [B, 3]``.
    """
    _check_masks(masks)
    v = _fg_like(fg, masks)                                          # [B, h, w]
    l = _view_vec(view_vec, masks)                                   # [B, 3]
    recon = (masks * l[:, :, None, None]).sum(dim=1)                 # [B, h, w]
    return ((v - recon) ** 2).mean()


def max_area_table(view: Union[torch.Tensor, Sequence], mode: str = "paper", a: float = 0.7,
                   side_cap: float = 0.4) -> torch.Tensor:
    """Per-image maximum area ratios ``a_{l,i}`` ``[B, 3]`` for eq. (2).

    Args:
        view: either the label vectors ``l`` ``[B, 3]`` (front, rear, side in {0, 1}) or SPAN
            view-class indices ``[B]`` into ``VIEW5 = (F, R, S, FS, RS)``.
        mode: ``"paper"`` (Sec. 3.1/4.2 text): a single visible view gets 1, invisible views 0,
            both visible views of a two-view image get ``a`` (0.7). ``"code"`` (the public code,
            ``model.py``): single views one-hot; front-side ``[a, 0, side_cap]`` = [0.7, 0, 0.4],
            rear-side ``[0, a, side_cap]`` = [0, 0.7, 0.4]. Other combinations (front+rear, three
            views; not produced by VIEW5) use the paper rule in both modes.
        a: cap of each visible view of a two-view image (paper) / of the front or rear view of a
            two-view image (code).
        side_cap: cap of the side view of a two-view image in ``"code"`` mode.

    Returns a float32 tensor ``[B, 3]`` (on ``view``'s device when it is a tensor).
    """
    if mode not in AREA_MODES:
        raise ValueError(f"mode must be 'paper' or 'code', got {mode!r}")
    v = torch.as_tensor(view)
    if v.dim() == 1:                                                  # view5 indices
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= len(VIEW5_LABEL)):
            raise ValueError(f"view5 indices must be in 0..{len(VIEW5_LABEL) - 1}")
        l = torch.tensor(VIEW5_LABEL, dtype=torch.float32, device=v.device)[v.long()]
    elif v.dim() == 2 and v.shape[1] == 3:
        l = (v > 0.5).float()
    else:
        raise ValueError(f"view must be [B, 3] label vectors or [B] view5 indices, got {tuple(v.shape)}")
    k = l.sum(dim=1, keepdim=True)                                    # visible views per image
    table = torch.where(k > 1, l * float(a), l)                       # paper rule
    if mode == "code":
        two_with_side = (k[:, 0] == 2) & (l[:, 2] > 0)                # FS or RS
        code = l * float(a)
        code[:, 2] = float(side_cap)
        table = torch.where(two_with_side[:, None], code, table)
    return table


def area_constraint_loss(masks: torch.Tensor, fg: torch.Tensor, max_area: torch.Tensor,
                         reduction: str = "sum") -> torch.Tensor:
    """Area constraint loss, SPAN eq. (2): ``sum_i [ ||M_i||_1 / ||V||_1 - a_{l,i} ]_+``, batch mean.

    ``||.||_1`` is the sum of all elements (masks are non-negative). ``max_area [B, 3]`` holds the
    caps ``a_{l,i}`` (see :func:`max_area_table`). Guard: ``||V||_1`` is floored at one pixel, so an
    empty foreground penalises any predicted mask area instead of dividing by zero.
    ``reduction`` over the three parts: ``"sum"`` (eq. 2 as written) or ``"mean"`` (SPAN's public
    code averages over batch *and* parts, a third of the sum).
    """
    if reduction not in AREA_REDUCTIONS:
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    _check_masks(masks)
    v = _fg_like(fg, masks)                                          # [B, h, w]
    cap = torch.as_tensor(max_area, device=masks.device).to(masks.dtype)
    if tuple(cap.shape) != (masks.shape[0], 3):
        raise ValueError(f"max_area must be [B, 3] = ({masks.shape[0]}, 3), got {tuple(cap.shape)}")
    area = masks.abs().sum(dim=(2, 3))                               # [B, 3]  ||M_i||_1
    fg_area = v.abs().sum(dim=(1, 2)).clamp_min(_FG_FLOOR)           # [B]     ||V||_1
    ratio = area / fg_area[:, None]                                  # [B, 3]
    per_part = F.relu(ratio - cap)                                   # [B, 3]
    return (per_part.sum(dim=1) if reduction == "sum" else per_part.mean(dim=1)).mean()


def _margins(margins) -> torch.Tensor:
    """margins -> [3] tensor in PAIRS order (F.R, F.S, R.S)."""
    if margins is None:
        margins = DEFAULT_MARGINS
    if isinstance(margins, Mapping):
        vals = dict(zip(("FR", "FS", "RS"), (DEFAULT_MARGINS[k] for k in ("FR", "FS", "RS"))))
        for key, val in margins.items():
            if isinstance(key, str):
                name = key.upper().replace("·", "").replace(".", "").replace("-", "").replace("_", "")
                if name in ("RF", "SF", "SR"):
                    name = name[::-1]
            else:
                pair = tuple(sorted(int(x) for x in key))
                name = {v: k for k, v in _PAIR_NAMES.items()}.get(pair)
            if name not in _PAIR_NAMES:
                raise ValueError(f"unknown margin key {key!r}; use 'FR', 'FS', 'RS' or index pairs (0,1), (0,2), (1,2)")
            vals[name] = float(val)
        return torch.tensor([vals["FR"], vals["FS"], vals["RS"]])
    vals = [float(x) for x in margins]
    if len(vals) != 3:
        raise ValueError("margins must be a mapping or 3 numbers (F.R, F.S, R.S)")
    return torch.tensor(vals)


def spatial_diversity_loss(masks: torch.Tensor, margins=None) -> torch.Tensor:
    """Spatial diversity loss, SPAN eq. (3): ``sum_{(i,j) in P} [ M_i . M_j - m_ij ]_+``, batch mean.

    ``P = {(F,R), (F,S), (R,S)}``. ``M_i . M_j`` is the dot product of the two masks divided by the
    number of pixels ``h*w`` (the mean of the elementwise product). Why normalise: the raw dot
    product grows with the mask resolution, while the paper's margins (0.04 for adjacent views)
    only make sense as a fraction of the image; normalised, the term is in [0, 1] and a margin of
    0.04 tolerates an overlap of about 4% of the image area at any resolution.

    ``margins``: ``None`` = :data:`DEFAULT_MARGINS` ``{FR: 0, FS: 0.04, RS: 0.04}``; a mapping with
    keys ``"FR"``, ``"FS"``, ``"RS"`` (or index pairs like ``(0, 2)``; missing keys keep the
    defaults), or three numbers in the order (F.R, F.S, R.S).
    """
    _check_masks(masks)
    m = _margins(margins).to(device=masks.device, dtype=masks.dtype)            # [3]
    dots = torch.stack([(masks[:, i] * masks[:, j]).mean(dim=(1, 2)) for i, j in PAIRS], dim=1)  # [B, 3]
    return F.relu(dots - m).sum(dim=1).mean()


def span_step1_loss(masks: torch.Tensor, fg: torch.Tensor, view_vec: torch.Tensor, *,
                    lambda_recon: float = 1.0, lambda_area: float = 0.5, lambda_div: float = 1.0,
                    use_recon: bool = True, use_area: bool = True, use_div: bool = True,
                    area_mode: str = "paper", a: float = 0.7, margins=None,
                    max_area: Optional[torch.Tensor] = None,
                    area_reduction: str = "sum") -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """SPAN step-1 objective, eq. (6): ``l_recon L_recon + l_area L_area + l_div L_div``.

    Defaults are the paper's (Sec. 4.1): ``lambda_recon = lambda_div = 1``, ``lambda_area = 0.5``.
    ``use_*`` switch terms off for the Table 1 ablation. The area caps come from
    :func:`max_area_table` ``(view_vec, mode=area_mode, a=a)`` unless ``max_area [B, 3]`` is given.

    Returns ``(total, terms)``: ``total`` is a scalar tensor (connected to ``masks`` even when every
    term is off, then 0); ``terms`` maps ``"recon"``, ``"area"``, ``"div"`` (enabled ones only) to
    the **unweighted**, detached scalar values.
    """
    _check_masks(masks)
    total = masks.sum() * 0.0
    terms: Dict[str, torch.Tensor] = {}
    if use_recon:
        t = mask_reconstruction_loss(masks, fg, view_vec)
        total = total + lambda_recon * t
        terms["recon"] = t.detach()
    if use_area:
        cap = max_area if max_area is not None else max_area_table(
            torch.as_tensor(view_vec).to(masks.device), mode=area_mode, a=a)
        t = area_constraint_loss(masks, fg, cap, reduction=area_reduction)
        total = total + lambda_area * t
        terms["area"] = t.detach()
    if use_div:
        t = spatial_diversity_loss(masks, margins)
        total = total + lambda_div * t
        terms["div"] = t.detach()
    return total, terms


def true_part_mask_loss(masks: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """Per-pixel binary cross-entropy of ``masks [B, 3, h, w]`` against SynthVeRi's true part masks
    as SPAN defines its masks (``target [B, 3, h, w]``, :func:`reidlib.data.masks.span_target`),
    over the pixels that are not "don't care" (``ignore [B, 1, h, w]`` = 1 there).

    Not in the paper (our addition): SPAN learns its masks from image-level view labels (eq. 6);
    a mask network trained on the true masks instead gives the part-feature model (Sec. 3.2) and
    CPDM (eqs. 4-5) masks as good as a network can make them, so its row separates "the idea
    fails on this data" from "our step 1 did not learn the masks"."""
    _check_masks(masks)
    keep = (1.0 - ignore).expand_as(masks)                                          # [B, 3, h, w]
    bce = torch.nn.functional.binary_cross_entropy(masks.clamp(1e-6, 1 - 1e-6), target, reduction="none")
    return (bce * keep).sum() / keep.sum().clamp_min(1.0)
