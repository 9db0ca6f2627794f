"""Co-occurrence Part-attentive Distance Metric (CPDM).

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
(``||a||^2 + ||b||^2 - 2 a.b``, the augmented form of :mod:`reidlib.metrics.pairwise`), with the
pair weight folded into that product (see :func:`cpdm_distance`, "Implementation"). All functions
accept numpy arrays or torch tensors and return torch tensors on the device of the first feature
argument; they are differentiable (CPDM is used inside the triplet loss, SPAN eq. 7).

The plain distances live in :mod:`reidlib.metrics.pairwise`; the named inference distances
(``"cpdm"``, ``"cpdm_musp"``, ...) are built by :func:`reidlib.metrics.distance.build_distance`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from reidlib.metrics.pairwise import (ArrayLike, as_tensor, aug, aug_parts, check_chunk_size, join_rows,
                                      row_blocks, sqrt_clamped)
from reidlib.utils.optional import optional_attr, resolve_backend as resolve_kernel_backend

__all__ = ["area_ratios", "cpdm_distance", "CPDMOperand", "cpdm_against", "musp_code_ratios",
           "BACKENDS", "resolve_backend"]

#: smallest global area (in mask-sum units) treated as non-zero in :func:`area_ratios`.
_AREA_EPS = 1e-12

#: CPDM inference: rows of the first set per tile when ``chunk_size=None``
AUTO_ROWS = 1024
#: CPDM inference: scratch entries per tile (2**23 = 32 MB of float32). With the torch element-wise
#: ops, smaller tiles stay in cache (faster on an idle machine: 2**22 measured 0.87x the plain
#: Euclidean time, 2**23 1.00x, 2**24 1.05x on 2 idle cores) and larger ones mean fewer, larger
#: ops, which holds up better when the cores are shared. With the compiled kernel (one pass per
#: tile) 2**22 and 2**23 measured 0.95x and 0.96x, 2**24 1.03x (median wall, 2 cores, quiet
#: moment). See benchmarks/bench_cpdm.py.
TILE_SCRATCH_ELEMENTS = 1 << 23
#: CPDM inference: fewest columns of the second set per tile (keeps the GEMMs efficient)
MIN_TILE_COLS = 256

#: implementations of the inference tiles' element-wise work (see :func:`resolve_backend`)
BACKENDS = ("auto", "numba", "torch")


def _compiled_kernel():
    """The numba tile kernel (``reidlib.metrics._cpdm_kernel.cpdm_tile``), or None without numba."""
    return optional_attr("reidlib.metrics._cpdm_kernel", "cpdm_tile")


def resolve_backend(backend: str = "auto") -> str:
    """``"auto"`` -> the ``REIDLIB_CPDM_BACKEND`` environment variable if set, else ``"numba"``
    when numba is installed (``pip install reidlib[fast]``), else ``"torch"``.

    The backend only changes the element-wise part of the true-Euclidean inference tiles on the
    CPU (square roots, sum over parts, eq. 4 division): ``"numba"`` does it in one compiled pass,
    ``"torch"`` in four tensor ops (bit for bit the implementation of earlier releases). Both use
    the same matrix products (the compiled path batches MUSP's global one with the parts) and the
    same order of sums; the compiled square root is the correctly rounded one while torch's (MKL's
    vector sqrt) is not, and the eq. (4) denominator is a plain sum instead of a GEMM's fused
    multiply-adds, so results agree within float32 rounding (a few ulp; the tests hold both to a
    float64 per-pair loop, ``benchmarks/bench_cpdm.py`` reports the largest difference). The
    squared variant, autograd (training) and non-CPU tensors always use torch. Set
    ``REIDLIB_CPDM_BACKEND=torch`` to reproduce numbers computed with the torch path bit for bit.
    """
    return resolve_kernel_backend(backend, "REIDLIB_CPDM_BACKEND", BACKENDS, "torch", _compiled_kernel)


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
    m = as_tensor(masks)
    if m.dim() != 4:
        raise ValueError(f"masks must be [N, K, h, w], got shape {tuple(m.shape)}")
    areas = m.abs().sum(dim=(2, 3))                       # [N, K]
    total = areas.sum(dim=1, keepdim=True)                # [N, 1]
    parts = torch.where(total > _AREA_EPS, areas / total.clamp_min(_AREA_EPS), torch.zeros_like(areas))
    return torch.cat([torch.ones_like(total), parts], dim=1)   # [N, K+1]


# --------------------------------------------------------------------------------------------
# CPDM
# --------------------------------------------------------------------------------------------
def cpdm_distance(feats_a: ArrayLike, ar_a: ArrayLike, feats_b: ArrayLike, ar_b: ArrayLike, *,
                  squared: bool = False, global_weight: Optional[float] = None,
                  chunk_size: Optional[int] = None, backend: str = "auto") -> torch.Tensor:
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
        backend: ``"auto"`` / ``"numba"`` / ``"torch"``: who does the element-wise work of the
            true-Euclidean inference tiles on the CPU (:func:`resolve_backend`; same results).

    Disjoint views (every part product ``AR_a,i AR_b,i = 0`` for ``i >= 1``): only the global term
    remains -- in the default variant ``w_0 = 1`` (SPAN Sec. 3.3, "Discussion"), in the MUSP
    variant the part sum is 0 and ``D = g ||f_a,0 - f_b,0||``. The default variant needs
    ``AR_0 > 0`` (a ``ValueError`` otherwise), which makes the eq. (4) denominator positive.

    Returns a torch tensor (``feats_a``'s device and floating dtype; numpy inputs are converted,
    integer and half-precision (float16, bfloat16) inputs are computed in float32: squared norms
    of ordinary features overflow float16). Differentiable w.r.t. features and area ratios; the square
    root has gradient 0 at a zero distance (no NaN).

    Implementation: with non-negative per-image scales ``s`` the product
    ``s_a^2 [-2a, |a|^2, 1] . s_b^2 [b, 1, |b|^2]`` equals ``(s_a s_b)^2 ||a - b||^2``, so
    ``AR_a,i AR_b,i ||f_a,i - f_b,i||`` is one GEMM (inner size ``d + 2``) + clamp at 0 + sqrt per
    part, accumulated in place; the eq. (4) denominator is the small product ``AR_a @ AR_b^T``.
    FLOPs are those of one Euclidean matrix on the concatenated ``P*d`` features; no
    ``[Na, Nb, P]`` or ``[Na, Nb, P, d]`` tensor exists. In the squared variant all parts share a
    single GEMM of inner size ``P (d + 2)`` (weights ``s`` instead of ``s^2``). Per inference tile,
    the true-Euclidean variant's square roots, sum over parts and eq. (4) division run in one
    compiled pass with numba (:mod:`reidlib.metrics._cpdm_kernel`; MUSP's global term is one more
    slice of the same batched GEMM), else as torch ops; the GEMMs are torch's either way
    (``benchmarks/bench_cpdm.py`` times both). Precision is that of
    the matrix-product form (as ``torch.cdist``): in float32, distances of near-identical vectors
    carry an absolute error of order ``sqrt(eps) * ||f||``.
    """
    chunk_size = check_chunk_size(chunk_size)
    fa = as_tensor(feats_a)
    ra = as_tensor(ar_a, like=fa)
    side_b = CPDMOperand(feats_b, ar_b, like=fa, squared=squared, global_weight=global_weight, backend=backend)
    return cpdm_against(fa, ra, side_b, chunk_size=chunk_size, backend=backend)


def _check_ar(ar: torch.Tensor, global_weight: Optional[float]) -> None:
    with torch.no_grad():
        if bool((ar < 0).any()):
            raise ValueError("area ratios must be non-negative")
        if global_weight is None and bool((ar[:, 0] <= 0).any()):
            raise ValueError("the default CPDM (SPAN eq. 4) needs AR_0 > 0 (the global area ratio is 1)")


class CPDMOperand:
    """The second operand of CPDM, prepared once: per-part augmented matrices (see
    :func:`cpdm_distance`, "Implementation"), the transposed area ratios and the global operand.
    :class:`reidlib.metrics.distance.Distance` caches it for the gallery, which the evaluator passes
    with every query chunk."""

    def __init__(self, feats: ArrayLike, ar: ArrayLike, *, like: Optional[torch.Tensor] = None,
                 squared: bool = False, global_weight: Optional[float] = None, backend: str = "auto"):
        fb = as_tensor(feats) if like is None else as_tensor(feats, like=like)
        rb = as_tensor(ar, like=fb)
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
        K = rp.shape[1]
        # the compiled tiles take the MUSP global slice in the same buffer as the parts (one GEMM);
        # the torch tiles keep it apart (as always: bit-identical results)
        fuse = _fuse_global(global_weight, backend, fb)
        self.right_all = None                                                          # [T, d+2, Nb]
        self.right_g = None                                                            # [d+2, Nb]
        if squared:       # one GEMM for all parts: [K(d+2), Nb]
            self.right = aug_parts(fp, rp, left=False, layout="cat").t()
        else:             # one batched GEMM: [K, d+2, Nb]
            stack = _stacked(fp, rp * rp, fb[:, 0] if fuse else None, left=False)     # None under autograd
            if stack is None:
                self.right = aug_parts(fp, rp * rp, left=False, layout="stack").transpose(1, 2)
            else:
                self.right = stack[:K].transpose(1, 2)
                if global_weight is None or fuse:
                    self.right_all = stack.transpose(1, 2)
                if fuse:
                    self.right_g = stack[K].t()
        if global_weight is not None and self.right_g is None:
            self.right_g = aug(fb[:, 0], None, left=False).t()
        self.requires_grad = fb.requires_grad or rb.requires_grad


def _fuse_global(global_weight: Optional[float], backend: str, f: torch.Tensor) -> bool:
    """Whether the MUSP global operand shares the parts' buffer (compiled tiles on the CPU)."""
    return global_weight is not None and f.device.type == "cpu" and resolve_backend(backend) == "numba"


def _stacked(fp: torch.Tensor, w: torch.Tensor, f0: Optional[torch.Tensor], left: bool) -> Optional[torch.Tensor]:
    """Augmented operands ``[T, N, d+2]`` of the true-Euclidean variant in ONE buffer: the ``K``
    weighted parts of ``fp [N, K, d]`` (weights ``w [N, K]``), then (``f0 [N, d]`` given, MUSP)
    the unweighted global feature, so one batched GEMM yields all ``T = K (+1)`` matrices (an even
    batch splits evenly over the BLAS threads; 3 parts + a separate global GEMM do not). Each
    slice holds exactly what :func:`aug_parts` / :func:`aug` give alone. ``None`` under autograd."""
    if torch.is_grad_enabled() and (fp.requires_grad or w.requires_grad or (f0 is not None and f0.requires_grad)):
        return None
    N, K, d = fp.shape
    buf = torch.empty(K + (f0 is not None), N, d + 2, dtype=fp.dtype, device=fp.device)
    aug_parts(fp, w, left=left, layout="stack", out=buf[:K])
    if f0 is not None:
        aug_parts(f0.unsqueeze(1), None, left=left, layout="stack", out=buf[K:])
    return buf


def cpdm_against(fa: torch.Tensor, ra: torch.Tensor, side: CPDMOperand, *,
                 chunk_size: Optional[int], scratch: Optional[dict] = None,
                 backend: str = "auto") -> torch.Tensor:
    """CPDM (SPAN eqs. 4-5 / MUSP eqs. 9-10) of ``fa [Na,P,d]`` / ``ra [Na,P]`` (torch, the
    operand's dtype and device) against a prepared second operand -> ``[Na, Nb]``. ``chunk_size``
    and ``backend`` as in :func:`cpdm_distance`; ``scratch``: a dict that keeps the inference tile
    buffer between calls."""
    backend = resolve_backend(backend)
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
    left_all = left_g = None                                                           # [T, Na, d+2], [Na, d+2]
    if squared:
        left = aug_parts(fp, rp, left=True, layout="cat")                             # [Na, K(d+2)]
    elif not grad:
        fuse = _fuse_global(g, backend, fa) and side.right_all is not None
        stack = _stacked(fp, rp * rp, fa[:, 0] if fuse else None, left=True)
        left = stack[:K]                                                               # [K, Na, d+2]
        if g is None or fuse:
            left_all = stack
        if fuse:
            left_g = stack[K]
    else:
        left = aug_parts(fp, rp * rp, left=True, layout="stack")                      # [K, Na, d+2]
    if g is not None and left_g is None:
        left_g = aug(fa[:, 0], None, left=True)

    if not grad:
        return _cpdm_inference(left, left_g, rp, side, Na, chunk_size, scratch, backend, left_all)

    # Training path (autograd): functional ops, safe square root, chunks concatenated.
    out = []
    for s, e in row_blocks(Na, chunk_size, (1 if squared else K) * Nb):
        den = rp[s:e] @ side.ar_t                                                         # [n, Nb] eq. (4)/(9)
        if squared:
            num = (left[s:e] @ side.right).clamp_min(0)
        else:
            num = sqrt_clamped(torch.bmm(left[:, s:e], side.right)).sum(0)
        if g is None:
            d = num / den
        else:
            d = num / den.clamp_min(tiny)
            dg = left_g[s:e] @ side.right_g
            d = d + g * (dg.clamp_min(0) if squared else sqrt_clamped(dg))
        out.append(d)
    return join_rows(out, fa.new_zeros(0, Nb))


def _tile_buffer(scratch: Optional[dict], need: int, dtype, device) -> torch.Tensor:
    """A flat scratch buffer of at least ``need`` entries, reused from ``scratch`` when possible."""
    buf = None if scratch is None else scratch.get("buf")
    if buf is None or buf.numel() < need or buf.dtype != dtype or buf.device != device:
        buf = torch.empty(need, dtype=dtype, device=device)
        if scratch is not None:
            scratch["buf"] = buf
    return buf


def _tile_shape(Na: int, Nb: int, chunk_size: Optional[int], slots: int, scratch_elements: int):
    """``(rows, cols)`` of the inference tiles: ``chunk_size`` rows (``None``: :data:`AUTO_ROWS`,
    ``0``: all) x as many columns as fit ``scratch_elements`` in ``slots`` matrices."""
    rows = AUTO_ROWS if chunk_size is None else (Na if int(chunk_size) <= 0 else int(chunk_size))
    rows = max(1, min(rows, Na))
    cols = max(MIN_TILE_COLS, scratch_elements // (slots * rows))
    return rows, min(cols, Nb)


def _cpdm_inference(left, left_g, rp, side: CPDMOperand, Na: int, chunk_size: Optional[int],
                    scratch: Optional[dict] = None, backend: str = "torch", left_all=None) -> torch.Tensor:
    """No-autograd CPDM: 2-D tiles (rows of the first set x columns of the second).

    Each tile's per-part matrices come from one batched GEMM into one reused scratch buffer
    (bounded memory, no large temporary faulted in per block), the eq. (4)/(9) weights and the sum
    over parts follow, and the tile is written once into the preallocated ``[Na, Nb]`` result.
    The GEMM FLOPs equal one concatenated Euclidean matrix. ``chunk_size`` = rows per tile
    (``None``: :data:`AUTO_ROWS`, ``0``: all rows). ``scratch``: a dict in which the buffer is kept
    for the next call (``Distance`` passes one, so repeated query chunks do not fault in a fresh
    buffer each time).

    ``backend="numba"`` (true Euclidean, CPU, float32/float64, stacked operands ``left_all`` /
    ``side.right_all``): :func:`_tiles_numba`; else :func:`_tiles_torch` (bit for bit the
    implementation of earlier releases).
    """
    Nb = side.shape[0]
    res = torch.empty(Na, Nb, dtype=rp.dtype, device=rp.device)                 # [Na, Nb]
    if Na == 0 or Nb == 0:
        return res
    if (backend == "numba" and left_all is not None and side.right_all is not None
            and rp.device.type == "cpu" and rp.dtype in (torch.float32, torch.float64)):
        _tiles_numba(res, left_all, rp, side, chunk_size, scratch)
    else:
        _tiles_torch(res, left, left_g, rp, side, chunk_size, scratch)
    return res


def _tiles_numba(res, left_all, rp, side: CPDMOperand, chunk_size, scratch) -> None:
    """Per tile: ONE batched GEMM of the K weighted parts (+ the global slice for MUSP) into one
    scratch buffer ``[T, n, m]``, then :func:`reidlib.metrics._cpdm_kernel.cpdm_tile` computes the
    eq. (4)/(9) denominators, square roots, sum and division in one pass, into ``res``. The
    tiles hold about :data:`TILE_SCRATCH_ELEMENTS` entries of scratch, as in :func:`_tiles_torch`."""
    Na, Nb = res.shape
    g = side.global_weight
    K = rp.shape[1]
    T = K + (g is not None)                                   # per-part matrices (+ global)
    dtype = rp.dtype
    rows, cols = _tile_shape(Na, Nb, chunk_size, T, TILE_SCRATCH_ELEMENTS)
    buf = _tile_buffer(scratch, T * rows * cols, dtype, rp.device)
    kernel = _compiled_kernel()
    res_np = res.numpy()
    ar_a = rp.detach().contiguous().numpy()                                             # [Na, K]
    ar_b_t = side.ar_t.detach().contiguous().numpy()                                    # [K, Nb]
    floor = (np.float32 if dtype == torch.float32 else np.float64)(0 if g is None else torch.finfo(dtype).tiny)
    for s, e in row_blocks(Na, rows):
        n = e - s
        for c0, c1 in row_blocks(Nb, cols):
            m = c1 - c0
            parts = buf[: T * n * m].view(T, n, m)
            # (AR_a,i AR_b,i)^2 ||f_a,i - f_b,i||^2 for i < K, and (MUSP) ||f_a,0 - f_b,0||^2 last
            torch.bmm(left_all[:, s:e], side.right_all[:, :, c0:c1], out=parts)
            kernel(parts.numpy(), ar_a, ar_b_t, floor, 0.0 if g is None else g, res_np, s, c0)


def _tiles_torch(res, left, left_g, rp, side: CPDMOperand, chunk_size, scratch) -> None:
    """Per tile: GEMM(s) into a scratch buffer of about :data:`TILE_SCRATCH_ELEMENTS` entries,
    then clamp / sqrt / sum / denominator GEMM / divide as torch ops."""
    Na, Nb = res.shape
    squared, g = side.squared, side.global_weight
    K = rp.shape[1]
    dtype, device = rp.dtype, rp.device
    tiny = torch.finfo(dtype).tiny
    slots = (1 if squared else K) + 1                        # per-part matrices + one accumulator
    rows, cols = _tile_shape(Na, Nb, chunk_size, slots, TILE_SCRATCH_ELEMENTS)
    buf = _tile_buffer(scratch, slots * rows * cols, dtype, device)
    for s, e in row_blocks(Na, rows):
        n = e - s
        for c0, c1 in row_blocks(Nb, cols):
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


def musp_code_ratios(ar: torch.Tensor, global_ratio: float) -> torch.Tensor:
    """The area ratios of MUSP's public code (``vehiclereid/models/resnet.py``, ``train_xent_tri.py``)
    ``[N, P]``: each kept part's attention mass L1-normalised over the kept parts (columns 1..),
    and, in column 0, the constant ``global_ratio`` (``1/(n-1)``) for the global vector. With
    SPAN's weights (eq. 4, every product normalised by the sum over all P entries) these give the
    code's ``w_i = p_i / sum_j p_j``, ``p_i = AR_a,i AR_b,i``: the global product is
    ``(1/(n-1))^2`` *before* the normalisation."""
    kept = ar[:, 1:]
    kept = kept / kept.sum(1, keepdim=True).clamp_min(torch.finfo(ar.dtype).tiny)
    return torch.cat([torch.full_like(ar[:, :1], float(global_ratio)), kept], dim=1)