"""The output contract shared by every re-ID model (baseline, SPAN part features, MUSP).

``model(images)`` with ``images: [B, 3, H, W]`` returns a plain ``dict``:

=================  ===================  ==========================================================
key                shape                meaning
=================  ===================  ==========================================================
``feats``          ``[B, P, d]``        embeddings before BNNeck, one per "part"; index 0 is the
                                        global feature, 1..P-1 the parts (SPAN: front, rear, side;
                                        MUSP: the n-1 kept attention parts). Triplet loss uses these.
``bn_feats``       ``[B, P, d]``        the same after BNNeck; used at inference (Luo et al.).
``logits``         ``[B, L, C]``        ID logits of L classifier heads (L = P for one BNNeck classifier
                                        per part, 1 for a classifier on an aggregate); training only.
``area_ratios``    ``[B, P]`` or None   AR_i for CPDM (eq. 4); column 0 is the global part (1.0 for
                                        SPAN). ``None`` for models without parts (baseline).
``maps``           ``[B, P-1, h, w]``   part masks (SPAN) / attention maps (MUSP) or ``None``.
``aux_losses``     ``dict[str, Tensor]`` scalar, already-weighted model-specific regularisers
                                        (MUSP's attention product loss, eq. 14); empty if none.
=================  ===================  ==========================================================

Each model also exposes ``model.distance`` (the name of its inference metric, see
:func:`reidlib.metrics.distance.build_distance`) and ``model.num_parts`` (P).
"""
from __future__ import annotations

from typing import Optional

import torch

KEYS = ("feats", "bn_feats", "logits", "area_ratios", "maps", "aux_losses")


def make_output(feats: torch.Tensor, bn_feats: torch.Tensor, logits: Optional[torch.Tensor] = None,
                area_ratios: Optional[torch.Tensor] = None, maps: Optional[torch.Tensor] = None,
                aux_losses: Optional[dict] = None) -> dict:
    """Build and shape-check a model output dict."""
    if feats.dim() != 3 or bn_feats.shape != feats.shape:
        raise ValueError(f"feats/bn_feats must both be [B, P, d], got {tuple(feats.shape)} / {tuple(bn_feats.shape)}")
    B, P, _ = feats.shape
    if logits is not None and (logits.dim() != 3 or logits.shape[0] != B):
        raise ValueError(f"logits must be [B, L, C] with B={B}, got {tuple(logits.shape)}")
    if area_ratios is not None and tuple(area_ratios.shape) != (B, P):
        raise ValueError(f"area_ratios must be [B, P]=({B}, {P}), got {tuple(area_ratios.shape)}")
    return {"feats": feats, "bn_feats": bn_feats, "logits": logits, "area_ratios": area_ratios,
            "maps": maps, "aux_losses": dict(aux_losses or {})}
