"""The output contract shared by every re-ID model (baseline, SPAN part features, MUSP).

``model(images)`` with ``images: [B, 3, H, W]`` returns a plain ``dict``:

===================  ===================  ========================================================
key                  shape                meaning
===================  ===================  ========================================================
``feats``            ``[B, P, d]``        embeddings before BNNeck, one per "part"; index 0 is the
                                          global feature, 1..P-1 the parts (SPAN: front, rear,
                                          side; MUSP: the n-1 kept attention parts). Triplet loss
                                          uses these (unless ``triplet_vectors`` says otherwise).
``bn_feats``         ``[B, P, d]``        the same after BNNeck; used at inference (Luo et al.).
``logits``           ``[B, L, C]``        ID logits of L classifier heads (L = P for one BNNeck
                                          classifier per part, 1 for a classifier on an
                                          aggregate); training only.
``area_ratios``      ``[B, P]`` or None   AR_i for CPDM (eq. 4); column 0 is the global part (1.0
                                          for SPAN). ``None`` for models without parts (baseline).
``maps``             ``[B, P-1, h, w]``   part masks (SPAN) / attention maps (MUSP) or ``None``.
``aux_losses``       ``dict[str, Tensor]`` scalar, already-weighted model-specific regularisers
                                          (MUSP's attention product loss, eq. 14); empty if none.
``triplet_vectors``  ``str``              the name (:data:`VECTORS`) of the vectors the triplet
                                          loss is computed on: ``"pre_bn"`` (``feats``, every model
                                          by default, Luo et al.'s BNNeck) or, for SPAN's
                                          ``cat_norm="block"``, ``"post_bn_l2"`` (the ranked
                                          vectors). A name, not a tensor, so that it survives the
                                          gather of :func:`reidlib.engine.distributed.gather_outputs`.
===================  ===================  ========================================================

Each model also exposes ``model.distance`` (the name of its inference metric, see
:func:`reidlib.metrics.distance.build_distance`), ``model.num_parts`` (P) and
``model.eval_features`` (the vectors it ranks by default, one of :data:`EVAL_VECTORS`;
``"post_bn"`` for every model except SPAN's ``cat_norm="block"``).

**Which vectors are ranked** (``eval.features``, :func:`ranked_features`). The papers and their
codes rank different vectors of the same network:

* ``"post_bn"``: ``bn_feats`` as they are (after the BNNeck, un-normalised): SPAN's text and this
  library's default for every model (what every cached evaluation used);
* ``"post_bn_l2"``: ``bn_feats``, each of the P vectors L2-normalised (Luo et al.'s strong-baseline
  code, ``feat_norm='yes'``);
* ``"pre_bn_l2"``: ``feats`` (before the BNNeck), each of the P vectors L2-normalised (MUSP's public
  code ranks the global and part vectors normalised before their BNNeck).

For multi-vector models (SPAN's 4 blocks, MUSP's global + n-1 parts) the normalisation is per
vector (per block), never over the concatenation.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from reidlib.errors import ConfigError

KEYS = ("feats", "bn_feats", "logits", "area_ratios", "maps", "aux_losses", "triplet_vectors")

#: name -> (output key, L2-normalised per vector): every set of vectors a model output carries
VECTORS = {"pre_bn": ("feats", False), "pre_bn_l2": ("feats", True),
           "post_bn": ("bn_feats", False), "post_bn_l2": ("bn_feats", True)}
#: the vectors an evaluation may rank (``eval.features``; ``reidlib.config.EVAL_FEATURES`` minus "")
EVAL_VECTORS = ("post_bn", "post_bn_l2", "pre_bn_l2")
#: what every model ranks unless it says otherwise (``model.eval_features``)
DEFAULT_EVAL_VECTORS = "post_bn"


def make_output(feats: torch.Tensor, bn_feats: torch.Tensor, logits: Optional[torch.Tensor] = None,
                area_ratios: Optional[torch.Tensor] = None, maps: Optional[torch.Tensor] = None,
                aux_losses: Optional[dict] = None, triplet_vectors: str = "pre_bn") -> dict:
    """Build and shape-check a model output dict."""
    if feats.dim() != 3 or bn_feats.shape != feats.shape:
        raise ValueError(f"feats/bn_feats must both be [B, P, d], got {tuple(feats.shape)} / {tuple(bn_feats.shape)}")
    B, P, _ = feats.shape
    if logits is not None and (logits.dim() != 3 or logits.shape[0] != B):
        raise ValueError(f"logits must be [B, L, C] with B={B}, got {tuple(logits.shape)}")
    if area_ratios is not None and tuple(area_ratios.shape) != (B, P):
        raise ValueError(f"area_ratios must be [B, P]=({B}, {P}), got {tuple(area_ratios.shape)}")
    if triplet_vectors not in VECTORS:
        raise ValueError(f"triplet_vectors must be one of {tuple(VECTORS)}, got {triplet_vectors!r}")
    return {"feats": feats, "bn_feats": bn_feats, "logits": logits, "area_ratios": area_ratios,
            "maps": maps, "aux_losses": dict(aux_losses or {}), "triplet_vectors": triplet_vectors}


def select_vectors(out: dict, name: str) -> torch.Tensor:
    """The ``[B, P, d]`` vectors ``name`` (:data:`VECTORS`) of a model output: ``feats`` or
    ``bn_feats``, as they are or each of the P vectors L2-normalised along ``d``
    (``F.normalize(v, dim=-1)``; differentiable). The un-normalised choices return the output's
    own tensor (no copy)."""
    if name not in VECTORS:
        raise ValueError(f"unknown vectors {name!r}; expected one of {tuple(VECTORS)}")
    key, l2 = VECTORS[name]
    v = out[key]
    return F.normalize(v, dim=-1) if l2 else v


def triplet_features(out: dict) -> torch.Tensor:
    """The ``[B, P, d]`` vectors the triplet loss sees: ``out["triplet_vectors"]`` (default
    ``"pre_bn"``: ``out["feats"]``, also for hand-made output dicts without the key)."""
    return select_vectors(out, out.get("triplet_vectors") or "pre_bn")


def resolve_features(model: Any, features: Optional[str] = None) -> str:
    """The vectors an evaluation ranks: ``features`` (``eval.features``) when given and not ``""``,
    else the model's own ``model.eval_features`` (:data:`DEFAULT_EVAL_VECTORS` if it has none).
    Raises :class:`reidlib.errors.ConfigError` (a ``ValueError``) for a name outside :data:`EVAL_VECTORS`."""
    name = features or getattr(model, "eval_features", None) or DEFAULT_EVAL_VECTORS
    if name not in EVAL_VECTORS:
        raise ConfigError(f"features={name!r}; expected one of {EVAL_VECTORS} (or '' for the model's own, "
                         f"{getattr(model, 'eval_features', DEFAULT_EVAL_VECTORS)!r})")
    return name


def ranked_features(out: dict, features: str = DEFAULT_EVAL_VECTORS) -> torch.Tensor:
    """The ``[B, P, d]`` vectors ranked at test time, in float32: :func:`select_vectors` of
    ``features`` (one of :data:`EVAL_VECTORS`), the L2 normalisation done in float32 (so a bf16
    autocast forward normalises as a float32 one would). ``"post_bn"`` is ``out["bn_feats"].float()``,
    exactly the features every evaluation ranked before ``eval.features`` existed."""
    if features not in EVAL_VECTORS:
        raise ValueError(f"features={features!r}; expected one of {EVAL_VECTORS}")
    key, l2 = VECTORS[features]
    v = out[key].float()
    return F.normalize(v, dim=-1) if l2 else v
