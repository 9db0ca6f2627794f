"""Losses of both papers (SPAN eqs. 1-3, 6; MUSP eqs. 12-14) and the strong baseline's."""
from reidlib.utils.lazy import lazy_exports

_EXPORTS = {
    # SPAN step 1 (reidlib/losses/span.py)
    "mask_reconstruction_loss": "span",
    "area_constraint_loss": "span",
    "spatial_diversity_loss": "span",
    "span_step1_loss": "span",
    "max_area_table": "span",
    # re-ID losses (reidlib/losses/reid.py)
    "CrossEntropyLabelSmooth": "reid",
    "batch_hard_triplet_loss": "reid",
    "ReIDCriterion": "reid",
    # MUSP (reidlib/losses/musp.py)
    "attention_product_loss": "musp",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
