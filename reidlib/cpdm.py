"""Co-occurrence Part-attentive Distance Metric (CPDM) and the other inference distances.

SPAN + CPDM (Chen et al., ECCV 2020), Sec. 3.3:

* area ratios (the inputs of eq. 4): the area of a part mask is its L1 norm, the global area is
  the sum of the front, rear and side areas, ``AR_0 = 1`` and ``AR_i = area_i / global area``
  (:func:`area_ratios`);
* eq. (4): ``w_(a,b),i = AR_a,i * AR_b,i / sum_{j=0..3} AR_a,j * AR_b,j``;
* eq. (5): ``Dist_(a,b) = sum_{i=0..3} w_(a,b),i * ||f_a,i - f_b,i||_2``  (true Euclidean).

MUSP (Lee, Woo, Lee), Sec. 3.4, eqs. (9)-(10): the same weights over the ``n-1`` kept attention
parts only, plus the global feature with a fixed weight ``1/(n-1)``
(:func:`cpdm_distance` with ``global_weight=...``).

Everything here is batched, chunked over the first set, and never materialises an
``[Na, Nb, P, d]`` tensor: each per-part squared distance comes from one matrix product
(``||a||^2 + ||b||^2 - 2 a.b``), with the pair weight folded into that product (see
:func:`cpdm_distance`, "Implementation"). All functions accept numpy arrays or torch tensors and
return torch tensors on the device of the first feature argument; they are differentiable
(CPDM is used inside the triplet loss, SPAN eq. 7).
"""
from __future__ import annotations

import weakref
from typing import Optional, Tuple, Union

import numpy as np
import torch

from reidlib.errors import ConfigError

ArrayLike = Union[torch.Tensor, np.ndarray]

__all__ = ["area_ratios", "cpdm_distance", "euclidean_distance", "cosine_distance", "build_distance",
           "DISTANCES", "Distance"]

#: smallest global area (in mask-sum units) treated as non-zero in :func:`area_ratios`.
_AREA_EPS = 1e-12


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _as_tensor(x: ArrayLike, *, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    """numpy / torch -> floating torch tensor (on ``like``'s device and dtype when given)."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if like is not None:
        return t.to(device=like.device, dtype=like.dtype)
    if not t.is_floating_point():
        t = t.float()
    return t


class _SafeSqrt(torch.autograd.Function):
    """``sqrt(max(x, 0))`` whose gradient is 0 (not NaN/inf) where the result is 0.

    ``torch.sqrt`` back-propagates ``g / (2 sqrt(x))``, which is ``0/0 = NaN`` for a zero distance
    (e.g. an image against itself in a training batch) even when ``g = 0``, and the NaN then spreads
    through the matrix product. Using the sub-gradient 0 at 0 keeps the forward value exact.
    """

    @staticmethod
    def forward(ctx, x):  # noqa: D401
        y = x.clamp_min(0).sqrt()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (g / (2 * y)).masked_fill_(y <= 0, 0.0)


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """Clamp-at-0 square root; in place (fast) when no gradient is needed."""
    if x.requires_grad:
        return _SafeSqrt.apply(x)
    return x.clamp_min_(0).sqrt_()


#: row-blocked paths (autograd CPDM, plain distances) with ``chunk_size=None``: about this many
#: entries (2**25 = 128 MB of float32) per block of ``rows x n_cols``
AUTO_CHUNK_ELEMENTS = 1 << 25
#: CPDM inference: rows of the first set per tile when ``chunk_size=None``
AUTO_ROWS = 1024
#: CPDM inference: scratch entries per tile (2**23 = 32 MB of float32). Smaller tiles stay in cache
#: (faster on an idle machine: 2**22 measured 0.87x the plain Euclidean time, 2**23 1.00x, 2**24
#: 1.05x on 2 idle cores); larger ones mean fewer, larger ops, which holds up better when the cores
#: are shared with other processes. See benchmarks/bench_cpdm.py.
TILE_SCRATCH_ELEMENTS = 1 << 23
#: CPDM inference: fewest columns of the second set per tile (keeps the GEMMs efficient)
MIN_TILE_COLS = 256


def _chunks(n: int, chunk_size: Optional[int], n_cols: int = 1):
    """Row blocks ``(start, end)``. ``chunk_size``: ``None`` = auto (about
    :data:`AUTO_CHUNK_ELEMENTS` scratch entries per block for rows of ``n_cols`` entries, at least
    64 rows), ``0`` = one block."""
    if chunk_size is None:
        step = max(64, AUTO_CHUNK_ELEMENTS // max(int(n_cols), 1))
    else:
        step = n if int(chunk_size) <= 0 else int(chunk_size)
    for s in range(0, n, max(step, 1)):
        yield s, min(n, s + step)


def _join(blocks, empty: Optional[torch.Tensor] = None) -> torch.Tensor:
    if not blocks:
        return empty
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, 0)


def _aug_parts(f: torch.Tensor, w: Optional[torch.Tensor], left: bool, layout: str = "stack") -> torch.Tensor:
    """Augmented operands of the matrix-product distance form, all parts at once.

    ``f [N, K, d]`` (K parts), ``w [N, K]`` per-image, per-part weights (``None`` = 1).
    Per part, ``left`` rows are ``w [-2x, |x|^2, 1]`` and right rows ``w [x, 1, |x|^2]``, so
    ``left(a) . right(b) = w_a w_b ||a - b||^2``; with ``w = s^2`` that is
    ``(s_a s_b)^2 ||a - b||^2``, whose square root is ``s_a s_b ||a - b||`` (``s >= 0``).

    ``layout="stack"`` -> ``[K, N, d+2]`` (one batched GEMM per block gives every part's matrix);
    ``layout="cat"`` -> ``[N, K(d+2)]`` (one GEMM gives the sum over parts).

    Without autograd the result is written in place into one buffer with a handful of vectorised
    ops (large temporaries and many small ops both cost more than the arithmetic here).
    """
    N, K, d = f.shape
    ft = f.transpose(0, 1)                                                 # [K, N, d] view
    wt = None if w is None else w.t()                                      # [K, N]
    if torch.is_grad_enabled() and (f.requires_grad or (w is not None and w.requires_grad)):
        n2 = (ft * ft).sum(-1, keepdim=True)                               # [K, N, 1]
        one = torch.ones_like(n2)
        o = torch.cat([-2.0 * ft, n2, one] if left else [ft, one, n2], dim=2)
        if wt is not None:
            o = o * wt.unsqueeze(-1)
        return o if layout == "stack" else o.transpose(0, 1).reshape(N, K * (d + 2))
    if layout == "stack":
        buf = torch.empty(K, N, d + 2, dtype=f.dtype, device=f.device)
        v = buf
    else:
        buf = torch.empty(N, K, d + 2, dtype=f.dtype, device=f.device)
        v = buf.transpose(0, 1)                                            # [K, N, d+2] view
    n2 = torch.linalg.vector_norm(ft, dim=2).square_()                     # [K, N]
    c = -2.0 if left else 1.0
    i_n2, i_one = (d, d + 1) if left else (d + 1, d)
    if wt is None:
        torch.mul(ft, c, out=v[:, :, :d])
        v[:, :, i_n2].copy_(n2)
        v[:, :, i_one].fill_(1.0)
    else:
        torch.mul(ft, (wt * c).unsqueeze(-1), out=v[:, :, :d])
        torch.mul(n2, wt, out=v[:, :, i_n2])
        v[:, :, i_one].copy_(wt)
    return buf if layout == "stack" else buf.view(N, K * (d + 2))


def _aug(x: torch.Tensor, w: Optional[torch.Tensor], left: bool) -> torch.Tensor:
    """One feature set ``x [N, d]`` -> ``[N, d+2]`` (see :func:`_aug_parts`)."""
    return _aug_parts(x.unsqueeze(1), None if w is None else w.unsqueeze(1), left, layout="cat")


# --------------------------------------------------------------------------------------------
# area ratios (eq. 4 inputs)
# --------------------------------------------------------------------------------------------
def area_ratios(masks: ArrayLike) -> torch.Tensor:
    """Area ratios ``[N, K+1]`` of part masks ``[N, K, h, w]`` (SPAN Sec. 3.3, inputs of eq. 4).

    For SPAN, ``K = 3`` (front, rear, side) and the result is ``[N, 4]``. The area of a mask is its
    L1 norm (sum of absolute values); the global area is the sum of the K part areas;
    ``AR_0 = 1`` (the global view) and ``AR_i = area_i / global area`` for ``i = 1..K``.

    Zero-area guard: an image whose masks are all zero gets ``[1, 0, ..., 0]`` (global only), so
    CPDM falls back to the global distance for it. numpy or torch in, torch out (same device).
    """
    m = _as_tensor(masks)
    if m.dim() != 4:
        raise ValueError(f"masks must be [N, K, h, w], got shape {tuple(m.shape)}")
    areas = m.abs().sum(dim=(2, 3))                       # [N, K]
    total = areas.sum(dim=1, keepdim=True)                # [N, 1]
    parts = torch.where(total > _AREA_EPS, areas / total.clamp_min(_AREA_EPS), torch.zeros_like(areas))
    return torch.cat([torch.ones_like(total), parts], dim=1)   # [N, K+1]


# --------------------------------------------------------------------------------------------
# plain distances
# --------------------------------------------------------------------------------------------
def euclidean_distance(a: ArrayLike, b: ArrayLike, *, squared: bool = False,
                       chunk_size: Optional[int] = None) -> torch.Tensor:
    """Pairwise (squared) Euclidean distances ``[Na, Nb]`` of ``a [Na, D]`` and ``b [Nb, D]``.

    Matrix-product form ``||a||^2 + ||b||^2 - 2 a.b`` (one GEMM per chunk of ``chunk_size`` rows of
    ``a``), clamped at 0 before the square root. Inputs with more than two dimensions are flattened
    after the first (``[N, P, d] -> [N, P*d]``: Table 2's "w/ Cat" of SPAN).
    """
    a = _as_tensor(a)
    return _euclid_against(a, _EuclidSide(_as_tensor(b, like=a)), squared=squared, chunk_size=chunk_size)


def cosine_distance(a: ArrayLike, b: ArrayLike, *, chunk_size: Optional[int] = None) -> torch.Tensor:
    """``1 - cos(a, b)`` ``[Na, Nb]`` of the flattened features (``[N, P, d] -> [N, P*d]``)."""
    a = _as_tensor(a)
    b = _as_tensor(b, like=a)
    a = torch.nn.functional.normalize(a.reshape(a.shape[0], -1), dim=1)
    b = torch.nn.functional.normalize(b.reshape(b.shape[0], -1), dim=1).t()
    out = [1.0 - a[s:e] @ b for s, e in _chunks(a.shape[0], chunk_size, b.shape[1])]
    return _join(out, a.new_zeros(0, b.shape[1]))


# --------------------------------------------------------------------------------------------
# CPDM
# --------------------------------------------------------------------------------------------
def cpdm_distance(feats_a: ArrayLike, ar_a: ArrayLike, feats_b: ArrayLike, ar_b: ArrayLike, *,
                  squared: bool = False, global_weight: Optional[float] = None,
                  chunk_size: Optional[int] = None) -> torch.Tensor:
    """CPDM distance matrix ``[Na, Nb]`` (SPAN eqs. 4-5; MUSP eqs. 9-10 with ``global_weight``).

    Args:
        feats_a: ``[Na, P, d]`` features, part 0 = global, 1..P-1 = parts (P = 4 for SPAN).
        ar_a: ``[Na, P]`` area ratios ``AR_a,i`` (column 0 = global, 1 for SPAN; see
            :func:`area_ratios`). Must be non-negative.
        feats_b, ar_b: the same for the second set, ``[Nb, P, d]`` and ``[Nb, P]``.
        squared: use ``||f_a,i - f_b,i||_2^2`` instead of the true Euclidean norm of eq. (5).
        global_weight: ``None`` (default) = SPAN eqs. (4)-(5) literally::

                w_i = AR_a,i AR_b,i / sum_{j=0}^{P-1} AR_a,j AR_b,j ,   D = sum_{i=0}^{P-1} w_i ||f_a,i - f_b,i||

            A number ``g`` = MUSP eqs. (9)-(10)::

                w_i = AR_a,i AR_b,i / sum_{j=1}^{P-1} AR_a,j AR_b,j  (i >= 1),
                D = sum_{i=1}^{P-1} w_i ||f_a,i - f_b,i|| + g ||f_a,0 - f_b,0||

            (column 0 of the area ratios is ignored). MUSP's text uses ``g = 1/(P-1)``.
        chunk_size: rows of ``feats_a`` per block; ``None`` (default) = auto, ``0`` = one block.
            Without autograd the work runs in tiles of ``chunk_size`` (auto: :data:`AUTO_ROWS`)
            rows x as many columns as fit :data:`TILE_SCRATCH_ELEMENTS` scratch entries, so the
            extra memory beyond the ``[Na, Nb]`` result is bounded (32 MB by default). With
            autograd (training) row blocks are used and concatenated.

    Disjoint views (every part product ``AR_a,i AR_b,i = 0`` for ``i >= 1``): only the global term
    remains -- in the default variant ``w_0 = 1`` (SPAN Sec. 3.3, "Discussion"), in the MUSP
    variant the part sum is 0 and ``D = g ||f_a,0 - f_b,0||``. The default variant needs
    ``AR_0 > 0`` (a ``ValueError`` otherwise), which makes the eq. (4) denominator positive.

    Returns a torch tensor (``feats_a``'s device and floating dtype; numpy inputs are converted,
    integer inputs become float32). Differentiable w.r.t. features and area ratios; the square
    root has gradient 0 at a zero distance (no NaN).

    Implementation: with non-negative per-image scales ``s`` the product
    ``s_a^2 [-2a, |a|^2, 1] . s_b^2 [b, 1, |b|^2]`` equals ``(s_a s_b)^2 ||a - b||^2``, so
    ``AR_a,i AR_b,i ||f_a,i - f_b,i||`` is one GEMM (inner size ``d + 2``) + clamp at 0 + sqrt per
    part, accumulated in place; the eq. (4) denominator is the small product ``AR_a @ AR_b^T``.
    FLOPs are those of one Euclidean matrix on the concatenated ``P*d`` features; no
    ``[Na, Nb, P]`` or ``[Na, Nb, P, d]`` tensor exists. In the squared variant all parts share a
    single GEMM of inner size ``P (d + 2)`` (weights ``s`` instead of ``s^2``). Precision is that of
    the matrix-product form (as ``torch.cdist``): in float32, distances of near-identical vectors
    carry an absolute error of order ``sqrt(eps) * ||f||``.
    """
    fa = _as_tensor(feats_a)
    ra = _as_tensor(ar_a, like=fa)
    side_b = _CPDMSide(feats_b, ar_b, like=fa, squared=squared, global_weight=global_weight)
    return _cpdm_against(fa, ra, side_b, chunk_size=chunk_size)


def _check_ar(ar: torch.Tensor, global_weight: Optional[float]) -> None:
    with torch.no_grad():
        if bool((ar < 0).any()):
            raise ValueError("area ratios must be non-negative")
        if global_weight is None and bool((ar[:, 0] <= 0).any()):
            raise ValueError("the default CPDM (SPAN eq. 4) needs AR_0 > 0 (the global area ratio is 1)")


class _CPDMSide:
    """The second operand of CPDM, prepared once: per-part augmented matrices (see
    :func:`cpdm_distance`, "Implementation"), the transposed area ratios and the global operand.
    :class:`Distance` caches it for the gallery, which the evaluator passes with every query chunk."""

    def __init__(self, feats: ArrayLike, ar: ArrayLike, *, like: Optional[torch.Tensor] = None,
                 squared: bool = False, global_weight: Optional[float] = None):
        fb = _as_tensor(feats) if like is None else _as_tensor(feats, like=like)
        rb = _as_tensor(ar, like=fb)
        if fb.dim() != 3:
            raise ValueError(f"feats must be [N, P, d], got {tuple(fb.shape)}")
        Nb, P, _ = fb.shape
        if tuple(rb.shape) != (Nb, P):
            raise ValueError(f"area ratios must be [N, P] = {(Nb, P)}, got {tuple(rb.shape)}")
        if P < 1 or (global_weight is not None and P < 2):
            raise ValueError(f"need P >= 1 (P >= 2 with global_weight), got P={P}")
        if global_weight is not None and float(global_weight) < 0:
            raise ValueError(f"global_weight must be >= 0, got {global_weight}")
        _check_ar(rb, global_weight)
        self.feats, self.ar = fb, rb
        self.shape = tuple(fb.shape)
        self.squared = squared
        self.global_weight = None if global_weight is None else float(global_weight)
        # eq. (4): weights over i = 0..P-1; eq. (9): over the kept parts 1..P-1 only
        self.parts = slice(0, P) if global_weight is None else slice(1, P)
        fp, rp = fb[:, self.parts], rb[:, self.parts]                                  # [Nb, K, d], [Nb, K]
        self.ar_t = rp.t()                                                             # [K, Nb]
        if squared:       # one GEMM for all parts: [K(d+2), Nb]
            self.right = _aug_parts(fp, rp, left=False, layout="cat").t()
        else:             # one batched GEMM: [K, d+2, Nb]
            self.right = _aug_parts(fp, rp * rp, left=False, layout="stack").transpose(1, 2)
        self.right_g = _aug(fb[:, 0], None, left=False).t() if global_weight is not None else None
        self.requires_grad = fb.requires_grad or rb.requires_grad


def _cpdm_against(fa: torch.Tensor, ra: torch.Tensor, side: _CPDMSide, *,
                  chunk_size: Optional[int], scratch: Optional[dict] = None) -> torch.Tensor:
    """CPDM of ``fa [Na,P,d]`` / ``ra [Na,P]`` against a prepared second operand -> ``[Na, Nb]``."""
    if fa.dim() != 3 or tuple(fa.shape[1:]) != side.shape[1:]:
        raise ValueError(f"feats must be [N, P, d] with equal P, d; got {tuple(fa.shape)} and {side.shape}")
    Na, P, _ = fa.shape
    Nb = side.shape[0]
    if tuple(ra.shape) != (Na, P):
        raise ValueError(f"area ratios must be [N, P] = {(Na, P)}, got {tuple(ra.shape)}")
    _check_ar(ra, side.global_weight)
    squared, g = side.squared, side.global_weight
    fp, rp = fa[:, side.parts], ra[:, side.parts]                                      # [Na, K, d], [Na, K]
    K = rp.shape[1]
    tiny = torch.finfo(fa.dtype).tiny
    grad = torch.is_grad_enabled() and (fa.requires_grad or ra.requires_grad or side.requires_grad)
    # left operands for all rows at once (small: Na x K x (d+2))
    if squared:
        left = _aug_parts(fp, rp, left=True, layout="cat")                             # [Na, K(d+2)]
    else:
        left = _aug_parts(fp, rp * rp, left=True, layout="stack")                      # [K, Na, d+2]
    left_g = _aug(fa[:, 0], None, left=True) if g is not None else None                # [Na, d+2]

    if not grad:
        return _cpdm_inference(left, left_g, rp, side, Na, chunk_size, scratch)

    # Training path (autograd): functional ops, safe square root, chunks concatenated.
    out = []
    for s, e in _chunks(Na, chunk_size, (1 if squared else K) * Nb):
        den = rp[s:e] @ side.ar_t                                                         # [n, Nb] eq. (4)/(9)
        if squared:
            num = (left[s:e] @ side.right).clamp_min(0)
        else:
            num = _sqrt(torch.bmm(left[:, s:e], side.right)).sum(0)
        if g is None:
            d = num / den
        else:
            d = num / den.clamp_min(tiny)
            dg = left_g[s:e] @ side.right_g
            d = d + g * (dg.clamp_min(0) if squared else _sqrt(dg))
        out.append(d)
    return _join(out, fa.new_zeros(0, Nb))


def _cpdm_inference(left, left_g, rp, side: _CPDMSide, Na: int, chunk_size: Optional[int],
                    scratch: Optional[dict] = None) -> torch.Tensor:
    """No-autograd CPDM: 2-D tiles (rows of the first set x columns of the second).

    Each tile's per-part matrices come from one batched GEMM into one reused scratch buffer
    (about :data:`TILE_SCRATCH_ELEMENTS` entries: bounded memory, no large temporary faulted in
    per block), followed by clamp / sqrt / sum / divide, and the tile is written once into the
    preallocated ``[Na, Nb]`` result. The GEMM FLOPs equal one concatenated Euclidean matrix.
    ``chunk_size`` = rows per tile (``None``: :data:`AUTO_ROWS`, ``0``: all rows). ``scratch``: a
    dict in which the buffer is kept for the next call (:class:`Distance` passes one, so repeated
    query chunks do not fault in a fresh buffer each time).
    """
    Nb = side.shape[0]
    squared, g = side.squared, side.global_weight
    K = rp.shape[1]
    dtype, device = rp.dtype, rp.device
    tiny = torch.finfo(dtype).tiny
    res = torch.empty(Na, Nb, dtype=dtype, device=device)
    if Na == 0 or Nb == 0:
        return res
    rows = AUTO_ROWS if chunk_size is None else (Na if int(chunk_size) <= 0 else int(chunk_size))
    rows = max(1, min(rows, Na))
    slots = (1 if squared else K) + 1                        # per-part matrices + one accumulator
    cols = max(MIN_TILE_COLS, TILE_SCRATCH_ELEMENTS // (slots * rows))
    cols = min(cols, Nb)
    need = slots * rows * cols
    buf = None if scratch is None else scratch.get("buf")
    if buf is None or buf.numel() < need or buf.dtype != dtype or buf.device != device:
        buf = torch.empty(need, dtype=dtype, device=device)
        if scratch is not None:
            scratch["buf"] = buf
    for s, e in _chunks(Na, rows):
        n = e - s
        for c0, c1 in _chunks(Nb, cols):
            m = c1 - c0
            acc = buf[: n * m].view(n, m)
            work = buf[n * m: n * m * slots]
            if squared:                                       # sum_i AR_a,i AR_b,i ||f_a,i - f_b,i||^2
                torch.mm(left[s:e], side.right[:, c0:c1], out=acc).clamp_min_(0)
            else:
                b3 = work.view(K, n, m)
                torch.bmm(left[:, s:e], side.right[:, :, c0:c1], out=b3)   # (AR_a,i AR_b,i)^2 ||.||^2
                b3.clamp_min_(0).sqrt_()                                   # AR_a,i AR_b,i ||.||_2
                torch.sum(b3, dim=0, out=acc)
            den = work[: n * m].view(n, m)
            torch.mm(rp[s:e], side.ar_t[:, c0:c1], out=den)                # eq. (4)/(9) denominator
            r = res[s:e, c0:c1]
            if g is None:
                torch.div(acc, den, out=r)                                 # den >= AR_a,0 AR_b,0 > 0
            else:
                torch.div(acc, den.clamp_min_(tiny), out=r)                # disjoint views: 0 / tiny = 0
                glob = torch.mm(left_g[s:e], side.right_g[:, c0:c1], out=den).clamp_min_(0)
                if not squared:
                    glob.sqrt_()
                r.add_(glob, alpha=g)                                      # + g ||f_a,0 - f_b,0||
    return res


# --------------------------------------------------------------------------------------------
# named distances for the evaluator
# --------------------------------------------------------------------------------------------
FeatTuple = Tuple[ArrayLike, Optional[ArrayLike]]

#: distance names understood by :func:`build_distance`
DISTANCES = ("euclidean", "sqeuclidean", "cosine", "cpdm", "cpdm_musp", "cpdm_musp_code")

_OPTIONS = {
    "euclidean": ("chunk_size",),
    "sqeuclidean": ("chunk_size",),
    "cosine": ("chunk_size",),
    "cpdm": ("chunk_size", "squared"),
    "cpdm_musp": ("chunk_size", "squared", "global_weight"),
    "cpdm_musp_code": ("chunk_size", "global_weight"),
}


def _unpack(x, name: str):
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return x[0], x[1]
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x, None
    raise TypeError(f"distance {name!r} expects (feats [N,P,d], area_ratios [N,P] or None), got {type(x).__name__}")


def _need_ar(ar, name: str):
    if ar is None:
        raise ValueError(f"distance {name!r} needs area ratios; the model returned area_ratios=None "
                         "(use 'euclidean' for models without parts)")
    return ar


def _l1_kept(ar: torch.Tensor) -> torch.Tensor:
    """Area ratios with columns 1.. L1-normalised per image (MUSP code); column 0 kept."""
    kept = ar[:, 1:]
    kept = kept / kept.sum(1, keepdim=True).clamp_min(torch.finfo(ar.dtype).tiny)
    return torch.cat([ar[:, :1], kept], dim=1)


class _EuclidSide:
    """Flattened, augmented second operand of the (squared) Euclidean matrix, ``[P*d+2, Nb]``."""

    def __init__(self, feats: ArrayLike):
        b = _as_tensor(feats)
        self.feats = b.reshape(b.shape[0], -1)
        self.right = _aug(self.feats, None, left=False).t()


def _euclid_against(a: ArrayLike, side: _EuclidSide, *, squared: bool, chunk_size: Optional[int]) -> torch.Tensor:
    b = side.feats
    a = _as_tensor(a, like=b)
    a = a.reshape(a.shape[0], -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    left = _aug(a, None, left=True)                          # [Na, D+2]
    if not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)):
        res = torch.empty(a.shape[0], b.shape[0], dtype=a.dtype, device=a.device)
        for s, e in _chunks(a.shape[0], chunk_size, b.shape[0]):
            r = torch.mm(left[s:e], side.right, out=res[s:e]).clamp_min_(0)
            if not squared:
                r.sqrt_()
        return res
    out = []
    for s, e in _chunks(a.shape[0], chunk_size, b.shape[0]):
        d2 = left[s:e] @ side.right                           # [n, Nb]
        out.append(d2.clamp_min(0) if squared else _sqrt(d2))
    return _join(out, a.new_zeros(0, b.shape[0]))


def _cache_key(g0, g1):
    """Identity + version key of torch gallery tensors; ``None`` (no caching) for numpy inputs."""
    objs = (g0,) if g1 is None else (g0, g1)
    if not all(isinstance(t, torch.Tensor) for t in objs):
        return None
    return tuple((id(t), t.data_ptr(), tuple(t.shape), t.dtype, t.device, t._version) for t in objs)


class Distance:
    """A named distance ``dist(q, g) -> Tensor[Nq, Ng]`` built by :func:`build_distance`.

    ``q`` and ``g`` are ``(feats [N, P, d], area_ratios [N, P] or None)``; a bare feature array is
    accepted as ``(feats, None)``. With ``cache=True`` (default) the prepared gallery operand
    (augmented per-part matrices, about the size of the gallery features) is kept between calls
    while ``g`` is the same torch tensor(s), unmodified (identity, storage and version counter);
    the evaluator passes the same gallery with every query chunk. numpy galleries are not cached.
    :meth:`clear_cache` frees it.
    """

    def __init__(self, name: str, *, cache: bool = True, **kw):
        if name not in _OPTIONS:
            raise ConfigError(f"unknown distance {name!r}; choose one of {list(DISTANCES)}")
        bad = sorted(set(kw) - set(_OPTIONS[name]))
        if bad:
            raise ConfigError(f"unknown option(s) {bad} for distance {name!r}; allowed: "
                              f"{sorted(_OPTIONS[name]) + ['cache']}")
        self.name = name
        self.kwargs = dict(kw)
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

    # -- gallery preparation ---------------------------------------------------------------
    def _prepare(self, g0, g1):
        name, kw = self.name, self.kwargs
        if name in ("euclidean", "sqeuclidean"):
            return _EuclidSide(g0)
        if name == "cosine":
            b = _as_tensor(g0)
            return torch.nn.functional.normalize(b.reshape(b.shape[0], -1), dim=1).t()
        fb = _as_tensor(g0)
        rb = _as_tensor(_need_ar(g1, name), like=fb)
        P = fb.shape[1]
        if name == "cpdm":
            return _CPDMSide(fb, rb, squared=kw.get("squared", False))
        if P < 2:
            raise ValueError(f"distance {name!r} needs P >= 2 parts (global + kept parts), got P={P}")
        if name == "cpdm_musp":
            return _CPDMSide(fb, rb, squared=kw.get("squared", False),
                             global_weight=kw.get("global_weight", 1.0 / (P - 1)))
        # cpdm_musp_code: L2-normalised features, L1-normalised kept area ratios, squared distance
        return _CPDMSide(_l2n(fb), _l1_kept(rb), squared=True,
                         global_weight=kw.get("global_weight", (1.0 / (P - 1)) ** 2))

    def _side_for(self, g0, g1):
        key = _cache_key(g0, g1) if self.cache else None
        if key is not None and key == self._key and all(r() is not None for r in self._refs):
            return self._side
        side = self._prepare(g0, g1)
        if key is not None:
            self._key, self._side = key, side
            self._refs = tuple(weakref.ref(t) for t in (g0, g1) if t is not None)
        return side

    # -- call ----------------------------------------------------------------------------------
    def __call__(self, q: FeatTuple, g: FeatTuple) -> torch.Tensor:
        q0, q1 = _unpack(q, self.name)
        g0, g1 = _unpack(g, self.name)
        side = self._side_for(g0, g1)
        cs = self.kwargs.get("chunk_size")
        name = self.name
        if name in ("euclidean", "sqeuclidean"):
            return _euclid_against(q0, side, squared=name == "sqeuclidean", chunk_size=cs)
        if name == "cosine":
            a = _as_tensor(q0, like=side)
            a = torch.nn.functional.normalize(a.reshape(a.shape[0], -1), dim=1)
            out = [1.0 - a[s:e] @ side for s, e in _chunks(a.shape[0], cs, side.shape[1])]
            return _join(out, a.new_zeros(0, side.shape[1]))
        fa = _as_tensor(q0, like=side.feats)
        ra = _as_tensor(_need_ar(q1, name), like=fa)
        if name == "cpdm_musp_code":
            fa, ra = _l2n(fa), _l1_kept(ra)
        return _cpdm_against(fa, ra, side, chunk_size=cs, scratch=self._scratch if self.cache else None)


def _l2n(f: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(f, dim=-1)


def build_distance(name: str, **kw) -> Distance:
    """Return the named inference distance ``dist(q, g) -> Tensor[Nq, Ng]`` (a :class:`Distance`).

    ``q`` and ``g`` are tuples ``(feats [N, P, d], area_ratios [N, P] or None)`` (numpy or torch),
    exactly what ``reidlib.metrics.rank.evaluate_features(..., distance=dist)`` passes.

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
    ``"cpdm_musp_code"``          MUSP public code as described in REFERENCE.md (see below)
    ============================  ===============================================================

    ``"cpdm_musp_code"`` implements::

        f^_i  = f_i / ||f_i||_2                          (every part, global included)
        AR~_i = AR_i / sum_{j>=1} AR_j                   (L1 over the kept parts, i >= 1)
        w_i   = AR~_a,i AR~_b,i / sum_{j>=1} AR~_a,j AR~_b,j
        D     = sum_{i>=1} w_i ||f^_a,i - f^_b,i||^2 + (1/(P-1))^2 ||f^_a,0 - f^_b,0||^2

    i.e. L2-normalised features, squared Euclidean, and the effective global weight
    ``(1/(n-1))^2`` that REFERENCE.md reports for the code (the text says ``1/(n-1)``), with
    ``P - 1 = n - 1`` kept parts. The L1 normalisation of the area ratios leaves ``w_i`` unchanged
    (eq. 9 is invariant to a per-image scale of the ratios); it is applied so that intermediate
    ratios match the code's. This follows REFERENCE.md's description of the code; we did not
    re-derive it from the code line by line.

    Options: ``chunk_size`` (all; rows of ``q`` per block; default ``None`` = auto, about 8M matrix entries per block); ``squared`` (``"cpdm"``,
    ``"cpdm_musp"``); ``global_weight`` (``"cpdm_musp"``, ``"cpdm_musp_code"``: overrides the
    default); ``cache`` (all; see :class:`Distance`). Unknown names or options raise
    :class:`reidlib.errors.ConfigError`.
    """
    return Distance(name, **kw)
