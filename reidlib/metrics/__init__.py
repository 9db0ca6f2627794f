"""Re-ID evaluation: CMC, mAP (two AP definitions), mINP; chunked feature evaluation; re-ranking."""
from reidlib._lazy import lazy_exports

_EXPORTS = {
    "RankResult": "rank",
    "evaluate_rank": "rank",
    "evaluate_features": "rank",
    "pairwise_distance": "rank",
    "re_ranking": "rerank",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
