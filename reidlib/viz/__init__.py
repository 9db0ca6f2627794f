"""Figures the book uses: ranked lists, part masks and attention maps, sample grids, results with
their intervals and the claims' forest plot."""
from reidlib.utils.lazy import lazy_exports

_EXPORTS = {
    "ranked_list": "ranked",
    "attention_maps": "attention",
    "mask_overlay": "attention",
    "intervals_figure": "results",
    "forest_figure": "results",
    "show_table": "results",
    "learning_curves_figure": "results",
    "curves_figure": "results",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
