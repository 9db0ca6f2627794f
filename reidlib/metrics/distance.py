"""Named inference distances: the name -> implementation table (:data:`DISTANCES`), the
:class:`Distance` object with its cached gallery operand, :func:`build_distance`, and the glue that
turns feature sets into rows of a distance matrix for the evaluator (:func:`distance_rows`).

============================  ===============================================================
name                          distance
============================  ===============================================================
``"euclidean"``               true Euclidean of the flattened ``[N, P*d]`` features (the
                              concatenation; SPAN Table 2 "w/ Cat"; the baseline for P = 1)
``"sqeuclidean"``             its square
``"cosine"``                  ``1 - cos`` of the flattened ``[N, P*d]`` features
``"cpdm"``                    SPAN eqs. (4)-(5), true Euclidean (``squared=True`` allowed)
``"cpdm_musp"``               MUSP text, eqs. (9)-(10): part weights over parts 1..P-1, global
                              weight ``1/(P-1)``, true Euclidean
``"cpdm_musp_code"``          MUSP's public code (see :func:`build_distance`)
============================  ===============================================================

Sub-feature views (:data:`VIEWS`), ``"<name>:<view>"`` for a name that needs no area ratios
(``euclidean``, ``sqeuclidean``, ``cosine``): the same distance on some of the vectors of a
``[N, P, d]`` feature set, so that one trained model gives several rankings (SPAN Table 2's
"global-only" and "parts-only" rows from the "w/ Cat" / "w/ CPDM" models, no new training):

============================  ===============================================================
``"euclidean:blocks"``        Euclidean on every block, each L2-normalised, concatenated
``"euclidean:global"``        Euclidean on block 0 only (the global feature), as it is
``"euclidean:parts"``         Euclidean on blocks 1..P-1 (SPAN: front, rear, side; MUSP: the
                              kept parts), each L2-normalised, concatenated
============================  ===============================================================

The plain formulas live in :mod:`reidlib.metrics.pairwise`, CPDM in :mod:`reidlib.metrics.cpdm`; this
module only says, per name, which options it takes, how the gallery operand is prepared once and
how a chunk of queries is applied to it. Every distance is computed in float32 (float64 for
float64 features) whatever the feature dtype.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from numbers import Real
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Tuple

import numpy as np
import torch

from reidlib.metrics.cpdm import CPDMOperand, cpdm_against, musp_code_ratios
from reidlib.errors import ConfigError
from reidlib.metrics.pairwise import (METRICS, ArrayLike, CosineOperand, EuclideanOperand, ExpansionOperand,
                                      as_tensor, check_chunk_size, compute_dtype, cosine_against,
                                      euclidean_against, expansion_distance, is_torch, to_numpy)

__all__ = ["DISTANCES", "VIEWS", "OPTIONS", "DistanceSpec", "FeatureView", "Option", "Distance",
           "build_distance", "distance_names", "distance_rows", "num_rows", "slice_rows", "concat_rows", "to_device"]

FeatTuple = Tuple[ArrayLike, Optional[ArrayLike]]


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------
def _check_bool(name: str, value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigError(f"{name}={value!r}; expected True or False")


def _check_weight(name: str, value):
    if value is None:
        return None
    if isinstance(value, Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value) and value >= 0:
        return float(value)
    raise ConfigError(f"{name}={value!r}; expected None (the paper's default) or a finite number >= 0")


@dataclass(frozen=True)
class Option:
    """One option of a named distance: its default and its check (``check(name, value)`` returns
    the value to use or raises :class:`~reidlib.errors.ConfigError` naming the option)."""

    default: Any
    check: Callable[[str, Any], Any]
    doc: str


#: every option a named distance may take
OPTIONS: Mapping[str, Option] = MappingProxyType({
    "chunk_size": Option(None, lambda n, v: check_chunk_size(v, name=n, error=ConfigError),
                         "rows of the queries per block; None = auto, 0 = one block"),
    "squared": Option(False, _check_bool, "squared part distances instead of the true Euclidean"),
    "global_weight": Option(None, _check_weight, "weight of the global term (cpdm_musp); None = the "
                            "text's 1/(P-1)"),
    "global_ratio": Option(None, _check_weight, "the global vector's constant area ratio (cpdm_musp_code); "
                           "None = the public code's 1/(P-1)"),
})


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistanceSpec:
    """One named distance.

    ``prepare(feats, ar, opts) -> operand`` builds the gallery operand once (``feats`` a torch
    tensor in the compute dtype, ``ar`` the area ratios as a tensor of the same dtype, or None);
    ``apply(feats, ar, operand, opts, scratch) -> Tensor [n, Ng]`` computes a chunk of queries
    (``feats`` / ``ar`` as given by the caller). ``opts`` holds every option of ``options``
    (defaults filled in)."""

    name: str
    summary: str
    options: Tuple[str, ...]
    needs_area_ratios: bool
    prepare: Callable[..., Any]
    apply: Callable[..., torch.Tensor]


def _parts(fb: torch.Tensor, name: str) -> int:
    if fb.dim() != 3:
        raise ValueError(f"distance {name!r} needs feats [N, P, d], got shape {tuple(fb.shape)}")
    P = int(fb.shape[1])
    if P < 2:
        raise ValueError(f"distance {name!r} needs P >= 2 parts (global + kept parts), got P={P}")
    return P


def _l2n(f: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(f, dim=-1)


def _cpdm_query(fa, ra, side: CPDMOperand):
    fa = as_tensor(fa, like=side.feats)
    return fa, as_tensor(ra, like=fa)


def _apply_cpdm(fa, ra, side, o, scratch):
    fa, ra = _cpdm_query(fa, ra, side)
    return cpdm_against(fa, ra, side, chunk_size=o["chunk_size"], scratch=scratch)


def _code_ratio(P: int, o) -> float:
    g = o["global_ratio"]
    return 1.0 / (P - 1) if g is None else g


def _apply_cpdm_code(fa, ra, side, o, scratch):
    fa, ra = _cpdm_query(fa, ra, side)
    ratios = musp_code_ratios(ra, _code_ratio(int(fa.shape[1]), o))
    return cpdm_against(_l2n(fa), ratios, side, chunk_size=o["chunk_size"], scratch=scratch)


def _prepare_musp(fb, rb, o):
    P = _parts(fb, "cpdm_musp")
    g = o["global_weight"]
    return CPDMOperand(fb, rb, squared=o["squared"], global_weight=1.0 / (P - 1) if g is None else g)


def _prepare_musp_code(fb, rb, o):
    P = _parts(fb, "cpdm_musp_code")
    # SPAN's eq. (4) normalisation over all P entries, with the code's ratios (global: 1/(n-1))
    return CPDMOperand(_l2n(fb), musp_code_ratios(rb, _code_ratio(P, o)), squared=True)


_SPECS = (
    DistanceSpec("euclidean", "true Euclidean of the flattened [N, P*d] features (SPAN Table 2 'w/ Cat')",
                 ("chunk_size",), False,
                 lambda fb, rb, o: EuclideanOperand(fb),
                 lambda fa, ra, side, o, scratch: euclidean_against(fa, side, squared=False,
                                                                    chunk_size=o["chunk_size"])),
    DistanceSpec("sqeuclidean", "squared Euclidean of the flattened features",
                 ("chunk_size",), False,
                 lambda fb, rb, o: EuclideanOperand(fb),
                 lambda fa, ra, side, o, scratch: euclidean_against(fa, side, squared=True,
                                                                    chunk_size=o["chunk_size"])),
    DistanceSpec("cosine", "1 - cos of the flattened features",
                 ("chunk_size",), False,
                 lambda fb, rb, o: CosineOperand(fb),
                 lambda fa, ra, side, o, scratch: cosine_against(fa, side, chunk_size=o["chunk_size"])),
    DistanceSpec("cpdm", "SPAN eqs. (4)-(5)",
                 ("chunk_size", "squared"), True,
                 lambda fb, rb, o: CPDMOperand(fb, rb, squared=o["squared"]),
                 _apply_cpdm),
    DistanceSpec("cpdm_musp", "MUSP eqs. (9)-(10), global weight 1/(P-1)",
                 ("chunk_size", "squared", "global_weight"), True,
                 _prepare_musp, _apply_cpdm),
    DistanceSpec("cpdm_musp_code", "MUSP public code: L2-normalised features, squared, all n products "
                 "L1-normalised, global ratio 1/(P-1)",
                 ("chunk_size", "global_ratio"), True,
                 _prepare_musp_code, _apply_cpdm_code),
)

#: name -> :class:`DistanceSpec` of every distance :func:`build_distance` understands
DISTANCES: Mapping[str, DistanceSpec] = MappingProxyType({s.name: s for s in _SPECS})


# --------------------------------------------------------------------------------------------
# sub-feature views: "<name>:<view>"
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureView:
    """Which vectors of a ``[N, P, d]`` feature set a ``"<name>:<view>"`` distance ranks:
    ``select(feats) -> [N, P', d]`` (a torch tensor in the compute dtype), applied to the query
    and the gallery features alike before the named distance."""

    name: str
    summary: str
    select: Callable[[torch.Tensor], torch.Tensor]


def _blocks(f: torch.Tensor, name: str) -> torch.Tensor:
    if f.dim() != 3:
        raise ValueError(f"distance {name!r} needs feats [N, P, d], got shape {tuple(f.shape)}")
    return f


def _global_block(f: torch.Tensor) -> torch.Tensor:
    return _blocks(f, "<name>:global")[:, :1]                       # [N, 1, d], as it is


def _part_blocks(f: torch.Tensor) -> torch.Tensor:
    _parts(f, "<name>:parts")
    return _l2n(f[:, 1:])                                            # [N, P-1, d], unit blocks


def _all_blocks(f: torch.Tensor) -> torch.Tensor:
    return _l2n(_blocks(f, "<name>:blocks"))                         # [N, P, d], unit blocks


_VIEWS = (
    FeatureView("blocks", "every block, each L2-normalised, concatenated (SPAN Table 2's 'w/ Cat' ranking "
                "of a model trained otherwise: the same features as CPDM, another metric)", _all_blocks),
    FeatureView("global", "block 0 only (the global feature), as it is (SPAN Table 2 'global-only')",
                _global_block),
    FeatureView("parts", "blocks 1..P-1 (the parts), each L2-normalised, concatenated (SPAN Table 2 "
                "'parts-only')", _part_blocks),
)

#: view -> :class:`FeatureView` of the ``"<name>:<view>"`` distances
VIEWS: Mapping[str, FeatureView] = MappingProxyType({v.name: v for v in _VIEWS})


def distance_names() -> list:
    """Every name :func:`build_distance` accepts: :data:`DISTANCES`, then ``"<name>:<view>"`` for
    each name that needs no area ratios and each of :data:`VIEWS`."""
    return list(DISTANCES) + [f"{n}:{v}" for n, s in DISTANCES.items() if not s.needs_area_ratios
                              for v in VIEWS]


def _lookup(name) -> Tuple[Optional[DistanceSpec], Optional[FeatureView]]:
    """``(spec, view)`` of a distance name (``view`` None for a plain name); ``(None, None)`` when
    the name is unknown."""
    if not isinstance(name, str):
        return None, None
    if name in DISTANCES:
        return DISTANCES[name], None
    base, sep, view = name.partition(":")
    spec = DISTANCES.get(base)
    if not sep or spec is None or view not in VIEWS or spec.needs_area_ratios:
        return None, None
    return spec, VIEWS[view]


# --------------------------------------------------------------------------------------------
# Distance
# --------------------------------------------------------------------------------------------
def _unpack(x, name: str):
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return x[0], x[1]
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x, None
    raise TypeError(f"distance {name!r} expects (feats [N,P,d], area_ratios [N,P] or None), got {type(x).__name__}")


def _cache_key(g0, g1):
    """Identity + version key of torch gallery tensors; ``None`` (no caching) for numpy inputs."""
    objs = (g0,) if g1 is None else (g0, g1)
    if not all(isinstance(t, torch.Tensor) for t in objs):
        return None
    return tuple((id(t), t.data_ptr(), tuple(t.shape), t.dtype, t.device, t._version) for t in objs)


class Distance:
    """A named distance ``dist(q, g) -> Tensor[Nq, Ng]`` built by :func:`build_distance`.

    ``q`` and ``g`` are ``(feats [N, P, d], area_ratios [N, P] or None)``; a bare feature array is
    accepted as ``(feats, None)``. The result is float32 (float64 for float64 gallery features)
    whatever the feature dtype; queries are cast to the gallery operand's dtype and device. With
    ``cache=True`` (default) the prepared gallery operand (augmented per-part matrices, about the
    size of the gallery features) is kept between calls while ``g`` is the same torch tensor(s),
    unmodified (identity, storage and version counter); the evaluator passes the same gallery with
    every query chunk. numpy galleries are not cached. :meth:`clear_cache` frees it.
    """

    def __init__(self, name: str, *, cache: bool = True, **options):
        spec, view = _lookup(name)
        if spec is None:
            raise ConfigError(f"unknown distance {name!r}; choose one of {list(DISTANCES)}, or '<name>:<view>' "
                              f"with a name that needs no area ratios and a view of {list(VIEWS)} "
                              "(e.g. 'euclidean:global', 'euclidean:parts')")
        bad = sorted(set(options) - set(spec.options))
        if bad:
            raise ConfigError(f"unknown option(s) {bad} for distance {name!r}; allowed: "
                              f"{sorted(spec.options) + ['cache']}")
        self.name = name
        self.spec = spec
        self.view = view                      # a FeatureView for "<name>:<view>", else None
        self.kwargs = dict(options)
        self.options = {k: OPTIONS[k].check(k, options[k]) if k in options else OPTIONS[k].default
                        for k in spec.options}
        self.cache = bool(cache)
        self._key = None
        self._side = None
        self._refs = ()
        self._scratch: dict = {}

    def clear_cache(self) -> None:
        self._key, self._side, self._refs, self._scratch = None, None, (), {}

    def __repr__(self) -> str:
        kw = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"Distance({self.name!r}{', ' + kw if kw else ''})"

    def _area_ratios(self, ar):
        if ar is None and self.spec.needs_area_ratios:
            raise ValueError(f"distance {self.name!r} needs area ratios; the model returned area_ratios=None "
                             "(use 'euclidean' for models without parts)")
        return ar

    def _prepare(self, g0, g1):
        fb = as_tensor(g0)
        if self.view is not None:
            fb = self.view.select(fb)
        rb = self._area_ratios(g1)
        if rb is not None and self.spec.needs_area_ratios:
            rb = as_tensor(rb, like=fb)
        return self.spec.prepare(fb, rb, self.options)

    def _side_for(self, g0, g1):
        key = _cache_key(g0, g1) if self.cache else None
        if key is not None and key == self._key and all(r() is not None for r in self._refs):
            return self._side
        side = self._prepare(g0, g1)
        if key is not None:
            self._key, self._side = key, side
            self._refs = tuple(weakref.ref(t) for t in (g0, g1) if t is not None)
        return side

    def __call__(self, q: FeatTuple, g: FeatTuple) -> torch.Tensor:
        q0, q1 = _unpack(q, self.name)
        g0, g1 = _unpack(g, self.name)
        side = self._side_for(g0, g1)
        q1 = self._area_ratios(q1)
        if self.view is not None:
            q0 = self.view.select(as_tensor(q0))
        return self.spec.apply(q0, q1, side, self.options, self._scratch if self.cache else None)


def build_distance(name: str, **options) -> Distance:
    """Return the named inference distance ``dist(q, g) -> Tensor[Nq, Ng]`` (a :class:`Distance`).

    ``q`` and ``g`` are tuples ``(feats [N, P, d], area_ratios [N, P] or None)`` (numpy or torch),
    exactly what ``reidlib.metrics.evaluate_features(..., distance=dist)`` passes. Names: the keys
    of :data:`DISTANCES` and the sub-feature views ``"<name>:<view>"`` (:func:`distance_names`;
    see the module docstring).

    ``"euclidean:global"`` / ``"euclidean:parts"`` rank one trained model on some of its vectors
    (SPAN Table 2's "global-only" and "parts-only" rows, from the "w/ Cat" / "w/ CPDM" models):
    with ``f = [f_0, f_1, .., f_{P-1}]`` the ranked vectors (``eval.features``)::

        euclidean:global   D = ||f_a,0 - f_b,0||_2                                (as it is)
        euclidean:parts    D = sqrt( sum_{i=1}^{P-1} ||f^_a,i - f^_b,i||^2 ),   f^_i = f_i / ||f_i||_2

    The parts are normalised block by block so that no part dominates through its norm and the
    parts-only row compares like with like (SPAN Sec. 3.3 on absent parts; see
    :mod:`reidlib.models.part_features`). The global block is not normalised: with
    ``eval.features="post_bn_l2"`` (or a ``cat_norm="block"`` model) it already is.

    ``"cpdm_musp_code"`` implements the distance of MUSP's public code (``train_xent_tri.py``,
    ``vehiclereid/models/resnet.py``)::

        f^_i  = f_i / ||f_i||_2                     (every part, global included)
        AR~_i = AR_i / sum_{j>=1} AR_j              (kept parts i >= 1: attention mass, L1 over them)
        AR~_0 = 1/(n-1)                             (the global vector, every image)
        p_i   = AR~_a,i AR~_b,i,   w_i = p_i / sum_{j=0}^{n-1} p_j      (all n products together)
        D     = sum_{i=0}^{n-1} w_i ||f^_a,i - f^_b,i||^2

    so the global product is ``(1/(n-1))^2`` *before* the normalisation, not a fixed weight after
    it (the text, eqs. 9-10: a fixed global weight ``1/(n-1)`` added to part weights normalised
    over the kept parts only, ``"cpdm_musp"``); ``P = n`` features (global + ``n-1`` kept parts).

    Options (:data:`OPTIONS`): ``chunk_size`` (all; rows of ``q`` per block; ``None`` = auto, ``0``
    = one block, else a positive integer); ``squared`` (``"cpdm"``, ``"cpdm_musp"``; a bool);
    ``global_weight`` (``"cpdm_musp"``: overrides the text's 1/(P-1); a number >= 0);
    ``global_ratio`` (``"cpdm_musp_code"``: overrides the code's 1/(P-1); a number >= 0); ``cache`` (all; see :class:`Distance`). Unknown names, unknown options and bad option
    values raise :class:`reidlib.errors.ConfigError` (a ``ValueError``) naming them.
    """
    return Distance(name, **options)


# --------------------------------------------------------------------------------------------
# feature sets -> rows of the distance matrix (evaluate_features, re_ranking)
# --------------------------------------------------------------------------------------------
def num_rows(feats) -> int:
    """Rows (dim 0) of a feature set: an array / tensor, or a tuple / list of them."""
    if isinstance(feats, (tuple, list)):
        if not feats:
            raise ValueError("feature tuple is empty")
        n = int(feats[0].shape[0])
        for x in feats:
            if int(x.shape[0]) != n:
                raise ValueError("all arrays of a feature tuple must have the same length along dim 0")
        return n
    return int(feats.shape[0])


def slice_rows(feats, i0: int, i1: int):
    """Rows ``i0:i1`` of a feature set (tuples are sliced elementwise)."""
    if isinstance(feats, tuple):
        return tuple(x[i0:i1] for x in feats)
    if isinstance(feats, list):
        return [x[i0:i1] for x in feats]
    return feats[i0:i1]


def to_device(feats, device):
    """A feature set as torch tensors on ``device`` (dtype unchanged)."""
    if isinstance(feats, (tuple, list)):
        out = [to_device(x, device) for x in feats]
        return tuple(out) if isinstance(feats, tuple) else out
    if is_torch(feats):
        return feats.to(device)
    return torch.as_tensor(np.asarray(feats), device=device)


def concat_rows(a, b):
    """Concatenate two feature sets (arrays, tensors or tuples of them) along dim 0."""
    if isinstance(a, (tuple, list)):
        out = [concat_rows(x, y) for x, y in zip(a, b)]
        return tuple(out) if isinstance(a, tuple) else out
    if is_torch(a) or is_torch(b):
        ta = a if is_torch(a) else torch.as_tensor(np.asarray(a))
        return torch.cat([ta, (b if is_torch(b) else torch.as_tensor(np.asarray(b))).to(ta.device)])
    return np.concatenate([np.asarray(a), np.asarray(b)])


def _as_torch(feats):
    """numpy arrays of a feature set -> torch tensors sharing their memory (so a :class:`Distance`
    can cache the gallery operand); tensors unchanged."""
    if isinstance(feats, (tuple, list)):
        out = [_as_torch(x) for x in feats]
        return tuple(out) if isinstance(feats, tuple) else out
    if isinstance(feats, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(feats))
    return feats


def distance_rows(q_feats, g_feats, distance, device):
    """``(q_feats', fn)`` with ``fn(q_chunk) -> numpy [n, Ng]`` distances of a chunk of rows of
    ``q_feats'`` to the whole gallery.

    ``distance``: a plain metric name (:data:`reidlib.metrics.pairwise.METRICS`, computed in torch
    by the expansion form on ``device``, default ``q_feats``' device or CPU, in float32 for
    half-precision or integer features) or a callable ``distance(q_chunk, g_all)`` (a
    :class:`Distance`, or any function; inputs passed unchanged when ``device`` is None, else as
    torch tensors on ``device``). Used by ``evaluate_features`` and ``re_ranking``.
    """
    if callable(distance):
        if device is not None:
            q_feats, g_feats = to_device(q_feats, device), to_device(g_feats, device)
        elif isinstance(distance, Distance):
            q_feats, g_feats = _as_torch(q_feats), _as_torch(g_feats)

        def fn(q_chunk):
            return to_numpy(distance(q_chunk, g_feats))

        return q_feats, fn
    if distance not in METRICS:
        raise ValueError(f"distance={distance!r}; expected one of {METRICS} or a callable "
                         f"(e.g. build_distance(name), name in {list(DISTANCES)})")
    if isinstance(q_feats, (tuple, list)) or isinstance(g_feats, (tuple, list)):
        raise ValueError("tuple features need a callable distance (e.g. a CPDM distance)")
    if device is None:
        device = q_feats.device if is_torch(q_feats) else torch.device("cpu")
    q_feats, g_feats = to_device(q_feats, device), to_device(g_feats, device)
    dt = compute_dtype(torch.promote_types(q_feats.dtype, g_feats.dtype))
    q_feats, g_feats = q_feats.to(dt), g_feats.to(dt)
    if q_feats.dim() != 2 or g_feats.dim() != 2 or q_feats.shape[1] != g_feats.shape[1]:
        raise ValueError(f"feature shapes {tuple(q_feats.shape)} and {tuple(g_feats.shape)}; "
                         f"expected [Nq, D] and [Ng, D]")
    side = ExpansionOperand(g_feats, distance)

    def fn(q_chunk):
        with torch.no_grad():
            return to_numpy(expansion_distance(q_chunk, side))

    return q_feats, fn
