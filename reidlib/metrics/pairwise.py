"""Plain pairwise distances (Euclidean, squared Euclidean, cosine), numpy and torch: the one home
of these formulas and of the matrix-product helpers that CPDM (:mod:`reidlib.metrics.cpdm`) builds on.

Two arithmetic forms of ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b`` are used, each kept exactly as
it has always been computed, so a re-run reproduces earlier numbers bit for bit:

* the *augmented* form (:func:`aug_parts`): rows ``[-2a, |a|^2, 1]`` times rows
  ``[b, 1, |b|^2]``, one GEMM of inner size ``D + 2`` that yields ``||a - b||^2`` directly (with
  per-image weights folded in, SPAN eqs. 4-5 need no extra pass). Used by
  :func:`euclidean_distance` / :func:`cosine_distance` (the triplet loss, SPAN eq. 7) and by the
  named distances of :mod:`reidlib.metrics.distance`; differentiable.
* the *expansion* form (:func:`expansion_distance`): ``(|q|^2 + |g|^2) - 2 q.g`` with the product
  added in place by ``addmm`` (torch), or ``q.g`` scaled and shifted in place (numpy). Used by
  :func:`pairwise_distance` and by ``evaluate_features(distance="euclidean" | "sqeuclidean" |
  "cosine")``.

Both clamp at 0 before the square root, so near-duplicate vectors carry the usual float
cancellation error (about ``sqrt(eps) * |a|``). Half-precision inputs (float16, bfloat16) are
computed in float32: ``|a|^2`` of an ordinary BNNeck feature (norm ~270) is ~73,000, beyond
float16's largest value (65,504), so a float16 computation returns ``inf`` for every pair.
Integer inputs are computed in float32 too; float32 and float64 are kept.
"""
from __future__ import annotations

from numbers import Integral
from typing import Iterator, Optional, Union

import numpy as np
import torch

__all__ = ["ArrayLike", "METRICS", "AUTO_CHUNK_ELEMENTS", "is_torch", "to_numpy", "compute_dtype",
           "as_tensor", "check_chunk_size", "row_blocks", "join_rows", "SafeSqrt", "sqrt_clamped",
           "aug_parts", "aug", "EuclideanOperand", "euclidean_against", "euclidean_distance",
           "CosineOperand", "cosine_against", "cosine_distance", "ExpansionOperand",
           "expansion_distance", "pairwise_distance"]

ArrayLike = Union[torch.Tensor, np.ndarray]

#: names of the plain distances (``pairwise_distance(metric=...)``, ``evaluate_features(distance=...)``)
METRICS = ("euclidean", "sqeuclidean", "cosine")

#: row-blocked paths with ``chunk_size=None``: about this many entries (2**25 = 128 MB of float32)
#: per block of ``rows x n_cols``
AUTO_CHUNK_ELEMENTS = 1 << 25

_HALF = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------------
def is_torch(x) -> bool:
    """True for a torch tensor (checked without importing anything)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy(x) -> np.ndarray:
    """numpy view / copy of ``x`` (a tensor on any device, or anything ``np.asarray`` takes).
    bfloat16 tensors, which numpy cannot hold, become float32."""
    if is_torch(x):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype distances are computed in: float32 for half types (float16, bfloat16) and
    integers, else the input's (float32, float64)."""
    if dtype in _HALF or not dtype.is_floating_point:
        return torch.float32
    return dtype


def as_tensor(x: ArrayLike, *, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    """numpy / torch -> floating torch tensor in :func:`compute_dtype` (on ``like``'s device and
    dtype when given). Differentiable (a dtype change is an autograd op)."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if like is not None:
        return t.to(device=like.device, dtype=like.dtype)
    dt = compute_dtype(t.dtype)
    return t if dt == t.dtype else t.to(dt)


def check_chunk_size(chunk_size, *, name: str = "chunk_size", allow_zero: bool = True,
                     error: type = ValueError):
    """Validate a block-size argument: ``None`` (auto), a positive int, or ``0`` (one block) where
    ``allow_zero``. Raises ``error`` naming the argument and the expected value otherwise (a
    negative or fractional block size used to fall through to an empty loop or one block)."""
    if chunk_size is None:
        return None
    ok = isinstance(chunk_size, Integral) and not isinstance(chunk_size, bool)
    if ok and (int(chunk_size) > 0 or (allow_zero and int(chunk_size) == 0)):
        return int(chunk_size)
    want = "None (auto), 0 (one block) or a positive integer" if allow_zero else \
        "None (auto) or a positive integer"
    raise error(f"{name}={chunk_size!r}; expected {want}")


# --------------------------------------------------------------------------------------------
# matrix-product helpers (shared with CPDM)
# --------------------------------------------------------------------------------------------
def row_blocks(n: int, chunk_size: Optional[int], n_cols: int = 1) -> Iterator[tuple]:
    """Row blocks ``(start, end)``. ``chunk_size``: ``None`` = auto (about
    :data:`AUTO_CHUNK_ELEMENTS` scratch entries per block for rows of ``n_cols`` entries, at least
    64 rows), ``0`` = one block."""
    if chunk_size is None:
        step = max(64, AUTO_CHUNK_ELEMENTS // max(int(n_cols), 1))
    else:
        step = n if int(chunk_size) <= 0 else int(chunk_size)
    for s in range(0, n, max(step, 1)):
        yield s, min(n, s + step)


def join_rows(blocks, empty: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Concatenate row blocks (``empty`` when there are none)."""
    if not blocks:
        return empty
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, 0)


class SafeSqrt(torch.autograd.Function):
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


def sqrt_clamped(x: torch.Tensor) -> torch.Tensor:
    """Clamp-at-0 square root; in place (fast) when no gradient is needed, :class:`SafeSqrt` else."""
    if x.requires_grad:
        return SafeSqrt.apply(x)
    return x.clamp_min_(0).sqrt_()


def aug_parts(f: torch.Tensor, w: Optional[torch.Tensor], left: bool, layout: str = "stack",
              out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Augmented operands of the matrix-product distance form, all parts at once.

    ``f [N, K, d]`` (K parts), ``w [N, K]`` per-image, per-part weights (``None`` = 1).
    Per part, ``left`` rows are ``w [-2x, |x|^2, 1]`` and right rows ``w [x, 1, |x|^2]``, so
    ``left(a) . right(b) = w_a w_b ||a - b||^2``; with ``w = s^2`` that is
    ``(s_a s_b)^2 ||a - b||^2``, whose square root is ``s_a s_b ||a - b||`` (``s >= 0``).

    ``layout="stack"`` -> ``[K, N, d+2]`` (one batched GEMM per block gives every part's matrix);
    ``layout="cat"`` -> ``[N, K(d+2)]`` (one GEMM gives the sum over parts).

    Without autograd the result is written in place into one buffer with a handful of vectorised
    ops (large temporaries and many small ops both cost more than the arithmetic here); ``out``
    (``layout="stack"``, no autograd) is that buffer, ``[K, N, d+2]``, e.g. a slice of a larger one.
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
    if out is not None:
        if layout != "stack" or tuple(out.shape) != (K, N, d + 2):
            raise ValueError(f"out must be [K, N, d+2] = {(K, N, d + 2)} with layout='stack'")
        buf = v = out
    elif layout == "stack":
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


def aug(x: torch.Tensor, w: Optional[torch.Tensor], left: bool) -> torch.Tensor:
    """One feature set ``x [N, d]`` -> ``[N, d+2]`` (see :func:`aug_parts`)."""
    return aug_parts(x.unsqueeze(1), None if w is None else w.unsqueeze(1), left, layout="cat")


# --------------------------------------------------------------------------------------------
# torch, augmented form: (squared) Euclidean and cosine of flattened features
# --------------------------------------------------------------------------------------------
class EuclideanOperand:
    """Flattened, augmented second operand of the (squared) Euclidean matrix:
    ``feats [Nb, D]`` (``D = P*d``) and ``right [D+2, Nb]``."""

    def __init__(self, feats: ArrayLike):
        b = as_tensor(feats)
        self.feats = b.reshape(b.shape[0], -1)                                   # [Nb, D]
        self.right = aug(self.feats, None, left=False).t()                       # [D+2, Nb]


def euclidean_against(a: ArrayLike, side: EuclideanOperand, *, squared: bool,
                      chunk_size: Optional[int]) -> torch.Tensor:
    """``[Na, Nb]`` (squared) Euclidean distances of ``a [Na, ...]`` (flattened, cast to the
    operand's dtype and device) to a prepared second operand; differentiable."""
    b = side.feats
    a = as_tensor(a, like=b)
    a = a.reshape(a.shape[0], -1)                                                # [Na, D]
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    left = aug(a, None, left=True)                                               # [Na, D+2]
    if not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)):
        res = torch.empty(a.shape[0], b.shape[0], dtype=a.dtype, device=a.device)   # [Na, Nb]
        for s, e in row_blocks(a.shape[0], chunk_size, b.shape[0]):
            r = torch.mm(left[s:e], side.right, out=res[s:e]).clamp_min_(0)
            if not squared:
                r.sqrt_()
        return res
    out = []
    for s, e in row_blocks(a.shape[0], chunk_size, b.shape[0]):
        d2 = left[s:e] @ side.right                                              # [n, Nb]
        out.append(d2.clamp_min(0) if squared else sqrt_clamped(d2))
    return join_rows(out, a.new_zeros(0, b.shape[0]))


def euclidean_distance(a: ArrayLike, b: ArrayLike, *, squared: bool = False,
                       chunk_size: Optional[int] = None) -> torch.Tensor:
    """Pairwise (squared) Euclidean distances ``[Na, Nb]`` of ``a [Na, D]`` and ``b [Nb, D]``.

    Augmented matrix-product form ``||a||^2 + ||b||^2 - 2 a.b`` (one GEMM per chunk of
    ``chunk_size`` rows of ``a``; ``None`` = auto, ``0`` = one block), clamped at 0 before the
    square root. Inputs with more than two dimensions are flattened after the first
    (``[N, P, d] -> [N, P*d]``: Table 2's "w/ Cat" of SPAN). Half-precision inputs are computed in
    float32; differentiable (used by the triplet loss, SPAN eq. 7).
    """
    chunk_size = check_chunk_size(chunk_size)
    a = as_tensor(a)
    return euclidean_against(a, EuclideanOperand(as_tensor(b, like=a)), squared=squared,
                             chunk_size=chunk_size)


class CosineOperand:
    """L2-normalised, flattened, transposed second operand of the cosine distance ``[D, Nb]``."""

    def __init__(self, feats: ArrayLike):
        b = as_tensor(feats)
        self.right = torch.nn.functional.normalize(b.reshape(b.shape[0], -1), dim=1).t()   # [D, Nb]


def cosine_against(a: ArrayLike, side: CosineOperand, *, chunk_size: Optional[int]) -> torch.Tensor:
    """``1 - cos`` ``[Na, Nb]`` of ``a [Na, ...]`` (flattened) against a prepared operand."""
    right = side.right
    a = as_tensor(a, like=right)
    a = torch.nn.functional.normalize(a.reshape(a.shape[0], -1), dim=1)          # [Na, D]
    out = [1.0 - a[s:e] @ right for s, e in row_blocks(a.shape[0], chunk_size, right.shape[1])]
    return join_rows(out, a.new_zeros(0, right.shape[1]))


def cosine_distance(a: ArrayLike, b: ArrayLike, *, chunk_size: Optional[int] = None) -> torch.Tensor:
    """``1 - cos(a, b)`` ``[Na, Nb]`` of the flattened features (``[N, P, d] -> [N, P*d]``)."""
    chunk_size = check_chunk_size(chunk_size)
    a = as_tensor(a)
    return cosine_against(a, CosineOperand(as_tensor(b, like=a)), chunk_size=chunk_size)


# --------------------------------------------------------------------------------------------
# expansion form: pairwise_distance and the evaluator's plain metric names
# --------------------------------------------------------------------------------------------
def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; expected one of {METRICS}")


class ExpansionOperand:
    """The gallery ``g [M, D]`` (torch) prepared for :func:`expansion_distance`: L2-normalised
    rows for ``"cosine"``, else the squared norms ``g_sq [M]`` alongside ``g``."""

    def __init__(self, g: torch.Tensor, metric: str):
        _check_metric(metric)
        self.metric = metric
        if metric == "cosine":
            self.g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)            # [M, D]
            self.g_sq = None
        else:
            self.g = g                                                           # [M, D]
            self.g_sq = (g * g).sum(1)                                           # [M]


def expansion_distance(q: torch.Tensor, side: ExpansionOperand) -> torch.Tensor:
    """``[n, M]`` torch distances of ``q [n, D]`` to a prepared gallery (expansion form)."""
    g = side.g
    if side.metric == "cosine":
        qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (qn @ g.T).neg_().add_(1.0)
    d = (q * q).sum(1, keepdim=True) + side.g_sq[None, :]                        # [n, M]
    d.addmm_(q, g.T, alpha=-2.0)                  # one [n, M] buffer: |q|^2 + |g|^2 - 2 q.g
    d.clamp_min_(0.0)
    return d.sqrt_() if side.metric == "euclidean" else d


def _numpy_distance(na: np.ndarray, nb: np.ndarray, metric: str) -> np.ndarray:
    """``[N, M]`` numpy distances of ``na [N, D]`` and ``nb [M, D]`` (expansion form)."""
    if metric == "cosine":
        an = na / np.maximum(np.linalg.norm(na, axis=1, keepdims=True), 1e-12)
        bn = nb / np.maximum(np.linalg.norm(nb, axis=1, keepdims=True), 1e-12)
        d = an @ bn.T
        np.subtract(1.0, d, out=d)
        return d
    d = na @ nb.T
    d *= -2.0
    d += (na * na).sum(1, keepdims=True)
    d += (nb * nb).sum(1)[None, :]
    np.maximum(d, 0.0, out=d)
    if metric == "euclidean":
        np.sqrt(d, out=d)
    return d


def pairwise_distance(a, b, metric: str = "euclidean"):
    """Distances between the rows of ``a`` [N, D] and ``b`` [M, D] -> [N, M].

    ``metric``: ``"euclidean"`` (the true, square-rooted distance), ``"sqeuclidean"`` (squared),
    or ``"cosine"`` (1 - cosine similarity). Numpy in -> numpy out; torch in -> torch out (on the
    first tensor's device). Uses the ``|a|^2 + |b|^2 - 2 a.b`` expansion (one matrix product),
    clamped at 0 before the square root: for near-duplicate vectors the result carries the usual
    float cancellation error (about ``sqrt(eps) * |a|``). Integer and half-precision inputs
    (float16, bfloat16) are computed in float32.
    """
    _check_metric(metric)
    if is_torch(a) or is_torch(b):
        ta = a if is_torch(a) else torch.as_tensor(np.asarray(a))
        tb = b if is_torch(b) else torch.as_tensor(np.asarray(b))
        if ta.dim() != 2 or tb.dim() != 2 or ta.shape[1] != tb.shape[1]:
            raise ValueError(f"shapes {tuple(ta.shape)} and {tuple(tb.shape)}; expected [N, D] and [M, D]")
        dt = compute_dtype(torch.promote_types(ta.dtype, tb.dtype))
        ta, tb = ta.to(dt), tb.to(device=ta.device, dtype=dt)
        return expansion_distance(ta, ExpansionOperand(tb, metric))
    na, nb_ = np.asarray(a), np.asarray(b)
    if na.ndim != 2 or nb_.ndim != 2 or na.shape[1] != nb_.shape[1]:
        raise ValueError(f"shapes {na.shape} and {nb_.shape}; expected [N, D] and [M, D]")
    dt = np.result_type(na.dtype, nb_.dtype)
    if dt.kind != "f" or dt.itemsize < 4:
        dt = np.dtype(np.float32)
    na, nb_ = na.astype(dt, copy=False), nb_.astype(dt, copy=False)
    return _numpy_distance(na, nb_, metric)
