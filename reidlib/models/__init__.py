"""Models. Every re-ID model returns the same output dict (see ``reidlib/models/README`` in the
package docstring of :mod:`reidlib.models.output`) so one engine, criterion and evaluator serve all."""
from reidlib.utils.lazy import lazy_exports

_EXPORTS = {
    "build_resnet": "backbones",
    "split_resnet": "backbones",
    "StrongBaseline": "baseline",
    "SPAN": "span",
    "SPANReID": "part_features",
    "ForegroundNet": "foreground",
    "MUSP": "musp",
    "build_model": "registry",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
