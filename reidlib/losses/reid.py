"""Re-ID training losses: label-smoothed ID loss, batch-hard triplet loss, and the combined
criterion used by the baseline, SPAN (step 2, eq. 7) and MUSP (eqs. 11-13).

* :class:`CrossEntropyLabelSmooth`: Szegedy et al.'s label smoothing as used by Luo et al.'s
  "strong baseline" (BoT); one instance per feature head gives MUSP eq. (12).
* :func:`batch_hard_triplet_loss`: Hermans et al.'s batch-hard triplet loss on any distance
  matrix (Euclidean, per-part, or CPDM for SPAN eq. 7).
* :class:`ReIDCriterion`: ``loss(out, pids)`` on a model output dict
  (:mod:`reidlib.models.output`).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from reidlib.metrics.cpdm import cpdm_distance
from reidlib.metrics.pairwise import euclidean_distance
from reidlib.models.output import triplet_features

__all__ = ["CrossEntropyLabelSmooth", "batch_hard_triplet_loss", "hard_example_mining", "ReIDCriterion",
           "TRIPLET_MODES", "ID_REDUCTIONS"]

TRIPLET_MODES = ("concat", "per_part", "global", "cpdm")
#: how the ID losses of several heads combine (mean, or MUSP eq. 12: sum)
ID_REDUCTIONS = ("mean", "sum")
_RESERVED_LOGS = ("loss_id", "loss_triplet", "total", "acc")


class CrossEntropyLabelSmooth(nn.Module):
    """Cross entropy with label smoothing (Szegedy et al. 2016; Luo et al. 2019's BoT).

    Target distribution ``q = (1 - epsilon) * onehot(y) + epsilon / C``;
    ``loss = mean_over_batch( -sum_j q_j log softmax(logits)_j )``. ``epsilon = 0`` is the plain
    cross entropy of MUSP eq. (12) for one feature.

    ``forward(logits [B, C], targets LongTensor [B]) -> scalar``.
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.num_classes = int(num_classes)
        self.epsilon = float(epsilon)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be [B, {self.num_classes}], got {tuple(logits.shape)}")
        log_p = F.log_softmax(logits, dim=1)                                     # [B, C]
        t = targets.to(device=logits.device, dtype=torch.long)
        nll = -log_p.gather(1, t[:, None])[:, 0]                                 # [B]
        uniform = -log_p.mean(dim=1)                                             # [B] = -sum_j log p_j / C
        return ((1.0 - self.epsilon) * nll + self.epsilon * uniform).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, epsilon={self.epsilon}"


def hard_example_mining(dist: torch.Tensor, pids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-hard mining on ``dist [B, B]``: ``(d_ap [B], d_an [B], valid [B] bool)``.

    ``d_ap`` = largest distance to another image of the same id (the anchor itself excluded),
    ``d_an`` = smallest distance to an image of another id. ``valid`` is False for anchors with no
    other positive or no negative in the batch (their ``d_ap``/``d_an`` are 0 there).
    """
    if dist.dim() != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"dist must be a square [B, B] matrix, got {tuple(dist.shape)}")
    B = dist.shape[0]
    p = pids.to(dist.device).view(-1)
    if p.numel() != B:
        raise ValueError(f"pids must have B={B} entries, got {p.numel()}")
    same = p[:, None] == p[None, :]
    eye = torch.eye(B, dtype=torch.bool, device=dist.device)
    pos = same & ~eye
    neg = ~same
    has_pos, has_neg = pos.any(1), neg.any(1)
    d_ap = dist.masked_fill(~pos, float("-inf")).max(dim=1).values
    d_an = dist.masked_fill(~neg, float("inf")).min(dim=1).values
    valid = has_pos & has_neg
    zero = dist.new_zeros(())
    d_ap = torch.where(has_pos, d_ap, zero)
    d_an = torch.where(has_neg, d_an, zero)
    return d_ap, d_an, valid


def batch_hard_triplet_loss(dist: torch.Tensor, pids: torch.Tensor, margin: Optional[float] = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans, Beyer, Leibe 2017) on a distance matrix ``dist [B, B]``.

    For each anchor ``a``: ``[margin + max_p d(a, p) - min_n d(a, n)]_+`` with ``p`` over the other
    images of the same id and ``n`` over images of other ids; mean over the anchors that have both
    (the others are skipped; 0 if none, still connected to ``dist``). ``margin=None`` gives the
    soft-margin version ``softplus(d_ap - d_an)``. Any metric plugs in (Euclidean, per part, CPDM).
    """
    d_ap, d_an, valid = hard_example_mining(dist, pids)
    if margin is None:
        per = F.softplus(d_ap - d_an)
    else:
        per = F.relu(float(margin) + d_ap - d_an)
    if not bool(valid.any()):
        return dist.sum() * 0.0
    return per[valid].mean()


class ReIDCriterion(nn.Module):
    """ID + triplet (+ the model's auxiliary) loss on a model output dict.

    ``loss, logs = criterion(out, pids)`` with ``out`` per :mod:`reidlib.models.output` and
    ``pids`` ``LongTensor [B]`` (labels in ``0..num_classes-1``).

    * **ID loss** (``out["logits"] [B, L, C]``): label-smoothed cross entropy of every head. With
      ``id_reduction="mean"`` (default) the heads are averaged, so ``id_weight`` means the same for
      1 or L heads; ``"sum"`` adds them, which is MUSP eq. (12) literally (``sum_l``, batch mean).
      Skipped (0) when ``logits`` is ``None``.
    * **triplet** (batch-hard, margin ``margin``; on the pre-BNNeck ``out["feats"] [B, P, d]``, or
      on the vectors the model names in ``out["triplet_vectors"]``: SPAN's ``cat_norm="block"``
      names ``"post_bn_l2"``, its ranked vectors, see :func:`reidlib.models.output.triplet_features`):

      - ``"concat"``: Euclidean distance of the flattened ``[B, P*d]`` features;
      - ``"per_part"``: sum over the P parts of a batch-hard loss per part (MUSP eq. 13, which
        sums over features ``i = 1..n``);
      - ``"global"``: part 0 only (the baseline);
      - ``"cpdm"``: :func:`reidlib.metrics.cpdm.cpdm_distance` ``(feats, area_ratios)`` (SPAN eq. 7).

      ``distance_kwargs`` go to the distance: ``squared`` (all modes), ``global_weight`` (cpdm).
    * **aux**: ``sum(out["aux_losses"].values())``, added as is (already weighted by the model).

    ``total = id_weight * L_id + triplet_weight * L_tri + sum(aux)``. ``logs`` (floats):
    ``loss_id``, ``loss_triplet`` (unweighted), every aux term under its own key, ``total``,
    ``acc`` (ID accuracy: top-1 of the logits averaged over the heads; absent without logits).
    An aux key that collides with one of these names is logged as ``aux_<key>``.
    """

    def __init__(self, num_classes: int, *, label_smoothing: float = 0.1, margin: Optional[float] = 0.3,
                 id_weight: float = 1.0, triplet_weight: float = 1.0, triplet_on: str = "concat",
                 distance_kwargs: Optional[dict] = None, id_reduction: str = "mean"):
        super().__init__()
        if triplet_on not in TRIPLET_MODES:
            raise ValueError(f"triplet_on must be one of {TRIPLET_MODES}, got {triplet_on!r}")
        if id_reduction not in ID_REDUCTIONS:
            raise ValueError(f"id_reduction must be one of {ID_REDUCTIONS}, got {id_reduction!r}")
        self.num_classes = int(num_classes)
        self.xent = CrossEntropyLabelSmooth(num_classes, epsilon=label_smoothing)
        self.margin = margin
        self.id_weight = float(id_weight)
        self.triplet_weight = float(triplet_weight)
        self.triplet_on = triplet_on
        self.distance_kwargs = dict(distance_kwargs or {})
        self.id_reduction = id_reduction
        allowed = {"squared", "global_weight"} if triplet_on == "cpdm" else {"squared"}
        bad = set(self.distance_kwargs) - allowed
        if bad:
            raise ValueError(f"distance_kwargs {sorted(bad)} not supported with triplet_on={triplet_on!r}; "
                             f"allowed: {sorted(allowed)}")

    # -- pieces -------------------------------------------------------------------------------
    def id_loss(self, logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """``logits [B, L, C]`` -> mean (or sum) over the L heads of the label-smoothed CE."""
        if logits.dim() == 2:
            logits = logits[:, None]
        per_head = torch.stack([self.xent(logits[:, l], pids) for l in range(logits.shape[1])])
        return per_head.mean() if self.id_reduction == "mean" else per_head.sum()

    def triplet_loss(self, out: dict, pids: torch.Tensor) -> torch.Tensor:
        feats = triplet_features(out)                    # [B, P, d]: out["feats"] unless the model says
        sq = bool(self.distance_kwargs.get("squared", False))
        m = self.margin
        if self.triplet_on == "concat":
            return batch_hard_triplet_loss(euclidean_distance(feats, feats, squared=sq, chunk_size=0), pids, m)
        if self.triplet_on == "global":
            return batch_hard_triplet_loss(euclidean_distance(feats[:, 0], feats[:, 0], squared=sq, chunk_size=0),
                                           pids, m)
        if self.triplet_on == "per_part":
            return sum(batch_hard_triplet_loss(euclidean_distance(feats[:, i], feats[:, i], squared=sq,
                                                                  chunk_size=0), pids, m)
                       for i in range(feats.shape[1]))
        ar = out.get("area_ratios")
        if ar is None:
            raise ValueError("triplet_on='cpdm' needs out['area_ratios'] [B, P]; this model returns None")
        dist = cpdm_distance(feats, ar, feats, ar, chunk_size=0, **self.distance_kwargs)
        return batch_hard_triplet_loss(dist, pids, m)

    # -- call ---------------------------------------------------------------------------------
    def forward(self, out: dict, pids: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        feats = out["feats"]
        pids = torch.as_tensor(pids, device=feats.device).long()
        logs: Dict[str, float] = {}
        total = feats.sum() * 0.0

        logits = out.get("logits")
        if logits is not None:
            l_id = self.id_loss(logits, pids)
            total = total + self.id_weight * l_id
            logs["loss_id"] = float(l_id.detach())
            with torch.no_grad():
                lg = logits if logits.dim() == 3 else logits[:, None]
                logs["acc"] = float((lg.mean(dim=1).argmax(dim=1) == pids).float().mean())
        else:
            logs["loss_id"] = 0.0

        if self.triplet_weight != 0.0:
            l_tri = self.triplet_loss(out, pids)
            total = total + self.triplet_weight * l_tri
            logs["loss_triplet"] = float(l_tri.detach())
        else:
            logs["loss_triplet"] = 0.0

        for name, val in (out.get("aux_losses") or {}).items():
            total = total + val
            key = f"aux_{name}" if name in _RESERVED_LOGS else name
            logs[key] = float(val.detach())
        logs["total"] = float(total.detach())
        return total, logs

    def extra_repr(self) -> str:
        return (f"triplet_on={self.triplet_on!r}, margin={self.margin}, id_weight={self.id_weight}, "
                f"triplet_weight={self.triplet_weight}, id_reduction={self.id_reduction!r}, "
                f"distance_kwargs={self.distance_kwargs}")
