"""Re-ID evaluation: CMC, mAP (two AP definitions), mINP; chunked feature evaluation; re-ranking;
the plain pairwise distances (:mod:`.pairwise`) and the named distances (:mod:`.distance`)."""
from reidlib.utils.lazy import lazy_exports

_EXPORTS = {
    "RankResult": "rank",
    "evaluate_rank": "rank",
    "evaluate_features": "rank",
    "pairwise_distance": "pairwise",
    "re_ranking": "rerank",
    "build_distance": "distance",
    "Distance": "distance",
    "DISTANCES": "distance",
    "foreground_reference_masks": "masks",
    "view_classifier_reference_masks": "masks",
    "split_by_views": "masks",
    "failure_modes": "masks",
    "attention_variation": "attention",
    "best_face_iou": "attention",
    "view_dependence": "attention",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
