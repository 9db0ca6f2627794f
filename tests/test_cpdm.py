"""CPDM (SPAN eqs. 4-5, MUSP eqs. 9-10) of reidlib.metrics.cpdm, and the named distances built on it."""
import math

import pytest
import torch

from reidlib.metrics.cpdm import area_ratios, cpdm_distance
from reidlib.metrics.distance import build_distance
from reidlib.metrics.pairwise import cosine_distance, euclidean_distance
from reidlib.errors import ConfigError

from helpers import backend_fixture, ref_cpdm


#: every test here runs on both implementations of the inference tiles (numba is in the lock)
cpdm_backend = backend_fixture("cpdm_backend", "REIDLIB_CPDM_BACKEND", ["torch", "numba"])


# ---------------------------------------------------------------------------------------------
# reference: a direct per-pair loop (float64)
# ---------------------------------------------------------------------------------------------
def loop_cpdm(fa, ra, fb, rb, squared=False, g=None):
    """:func:`helpers.ref_cpdm` (eqs. 4-5, or 9-10 with the global weight ``g``) as a float64 tensor."""
    return torch.from_numpy(ref_cpdm(fa, ra, fb, rb, global_weight=g, squared=squared))


def random_inputs(na, nb, P, d, seed=0, drop=0.3):
    g = torch.Generator().manual_seed(seed)
    fa, fb = torch.randn(na, P, d, generator=g), torch.randn(nb, P, d, generator=g)
    ma = torch.rand(na, P - 1, 4, 4, generator=g) * (torch.rand(na, P - 1, 1, 1, generator=g) > drop)
    mb = torch.rand(nb, P - 1, 4, 4, generator=g) * (torch.rand(nb, P - 1, 1, 1, generator=g) > drop)
    return fa, area_ratios(ma), fb, area_ratios(mb)


# ---------------------------------------------------------------------------------------------
# area ratios
# ---------------------------------------------------------------------------------------------
def test_area_ratios_hand_case():
    m = torch.zeros(2, 3, 2, 2)
    m[0, 0] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])   # front area 2
    m[0, 2] = torch.tensor([[0.5, 0.5], [0.5, 0.5]])   # side area 2 -> global area 4
    ar = area_ratios(m)                                # image 1: all-zero masks
    assert ar.shape == (2, 4)
    assert torch.allclose(ar[0], torch.tensor([1.0, 0.5, 0.0, 0.5]))
    assert torch.equal(ar[1], torch.tensor([1.0, 0.0, 0.0, 0.0]))   # zero-area guard
    assert torch.allclose(area_ratios(m.numpy()), ar)                # numpy in, torch out


# ---------------------------------------------------------------------------------------------
# CPDM values
# ---------------------------------------------------------------------------------------------
def _hand_pair():
    fa = torch.zeros(1, 4, 1)
    fb = torch.tensor([[[3.0], [1.0], [2.0], [4.0]]])
    ra = torch.tensor([[1.0, 0.5, 0.0, 0.5]])
    rb = torch.tensor([[1.0, 0.5, 0.5, 0.0]])
    return fa, ra, fb, rb


def test_cpdm_hand_case():
    # products AR_a,i AR_b,i = [1, .25, 0, 0] -> w = [.8, .2, 0, 0]; part distances [3, 1, 2, 4]
    fa, ra, fb, rb = _hand_pair()
    assert cpdm_distance(fa, ra, fb, rb).item() == pytest.approx(0.8 * 3 + 0.2 * 1)            # 2.6
    assert cpdm_distance(fa, ra, fb, rb, squared=True).item() == pytest.approx(0.8 * 9 + 0.2 * 1)
    # MUSP: part products [.25, 0, 0] -> w_1 = 1; + g * global distance
    g = 1.0 / 3
    assert cpdm_distance(fa, ra, fb, rb, global_weight=g).item() == pytest.approx(1.0 + g * 3)
    assert cpdm_distance(fa, ra, fb, rb, global_weight=g, squared=True).item() == pytest.approx(1.0 + g * 9)


@pytest.mark.parametrize("P", [4, 6])
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("g", [None, 0.25])
def test_cpdm_matches_loop(P, squared, g):
    fa, ra, fb, rb = random_inputs(7, 9, P, 5, seed=P)
    got = cpdm_distance(fa, ra, fb, rb, squared=squared, global_weight=g, chunk_size=3)
    want = loop_cpdm(fa, ra, fb, rb, squared=squared, g=g)
    assert got.shape == (7, 9) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_cpdm_float64_is_tight():
    fa, ra, fb, rb = random_inputs(5, 6, 4, 8, seed=3)
    got = cpdm_distance(fa.double(), ra.double(), fb.double(), rb.double())
    torch.testing.assert_close(got, loop_cpdm(fa, ra, fb, rb), rtol=1e-10, atol=1e-10)


def test_disjoint_views_only_global_remains():
    g = torch.Generator().manual_seed(1)
    fa, fb = torch.randn(1, 4, 6, generator=g), torch.randn(1, 4, 6, generator=g)
    ra = torch.tensor([[1.0, 1.0, 0.0, 0.0]])      # front only
    rb = torch.tensor([[1.0, 0.0, 1.0, 0.0]])      # rear only
    d0 = (fa[0, 0] - fb[0, 0]).norm().item()
    assert cpdm_distance(fa, ra, fb, rb).item() == pytest.approx(d0, rel=1e-5)                # w_0 = 1
    assert cpdm_distance(fa, ra, fb, rb, squared=True).item() == pytest.approx(d0 ** 2, rel=1e-5)
    assert cpdm_distance(fa, ra, fb, rb, global_weight=0.5).item() == pytest.approx(0.5 * d0, rel=1e-5)
    # changing the (non-co-occurring) part features does not change the distance
    fb2 = fb.clone()
    fb2[0, 1:] += 10.0
    assert cpdm_distance(fa, ra, fb2, rb).item() == pytest.approx(d0, rel=1e-5)


@pytest.mark.parametrize("g", [None, 1.0 / 3])
@pytest.mark.parametrize("squared", [False, True])
def test_chunked_equals_unchunked(g, squared):
    fa, ra, fb, rb = random_inputs(13, 11, 4, 6, seed=5)
    full = cpdm_distance(fa, ra, fb, rb, squared=squared, global_weight=g, chunk_size=0)
    for cs in (1, 4, 13, 100, None):
        torch.testing.assert_close(cpdm_distance(fa, ra, fb, rb, squared=squared, global_weight=g,
                                                 chunk_size=cs), full)
    # the autograd path gives the same values
    fa_g = fa.clone().requires_grad_(True)
    torch.testing.assert_close(cpdm_distance(fa_g, ra, fb, rb, squared=squared, global_weight=g,
                                             chunk_size=4).detach(), full)


@pytest.mark.parametrize("g", [None, 0.5])
@pytest.mark.parametrize("squared", [False, True])
def test_column_tiles_equal_one_block(monkeypatch, g, squared):
    import reidlib.metrics.cpdm as cpdm_mod
    fa, ra, fb, rb = random_inputs(9, 23, 4, 5, seed=11)
    full = cpdm_distance(fa, ra, fb, rb, squared=squared, global_weight=g, chunk_size=0)
    monkeypatch.setattr(cpdm_mod, "MIN_TILE_COLS", 2)
    monkeypatch.setattr(cpdm_mod, "TILE_SCRATCH_ELEMENTS", 60)   # -> tiles of 2..6 columns
    for cs in (None, 2, 4, 0):
        torch.testing.assert_close(cpdm_distance(fa, ra, fb, rb, squared=squared, global_weight=g,
                                                 chunk_size=cs), full)
    torch.testing.assert_close(full.double(), loop_cpdm(fa, ra, fb, rb, squared=squared, g=g),
                               rtol=1e-5, atol=1e-5)


def test_gradients_flow_and_are_finite_with_zero_distances():
    fa, ra, _, _ = random_inputs(6, 1, 4, 5, seed=7)
    f = fa.clone().requires_grad_(True)
    r = ra.clone().requires_grad_(True)
    d = cpdm_distance(f, r, f, r)                       # diagonal ~ 0 (sqrt at or near 0)
    # the matrix-product form leaves float32 cancellation noise of order sqrt(eps * |f|^2)
    assert torch.all(d.diagonal().abs() < 2e-3)
    d.sum().backward()
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    assert r.grad is not None and torch.isfinite(r.grad).all()


@pytest.mark.parametrize("g", [None, 0.5])
def test_gradcheck(g):
    fa, ra, fb, rb = random_inputs(3, 4, 4, 3, seed=9, drop=0.0)
    fa = fa.double().requires_grad_(True)
    fb = fb.double().requires_grad_(True)
    ra, rb = ra.double(), rb.double()
    assert torch.autograd.gradcheck(lambda a, b: cpdm_distance(a, ra, b, rb, global_weight=g), (fa, fb))


def test_numpy_inputs_return_torch():
    fa, ra, fb, rb = random_inputs(3, 4, 4, 5)
    out = cpdm_distance(fa.numpy(), ra.numpy(), fb.numpy(), rb.numpy())
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, cpdm_distance(fa, ra, fb, rb))


def test_input_validation():
    fa, ra, fb, rb = random_inputs(2, 3, 4, 5)
    with pytest.raises(ValueError):
        cpdm_distance(fa, -ra, fb, rb)
    bad = ra.clone()
    bad[:, 0] = 0
    with pytest.raises(ValueError):                      # AR_0 must be > 0 for eq. (4)
        cpdm_distance(fa, bad, fb, rb)
    cpdm_distance(fa, bad, fb, rb, global_weight=0.3)    # ... but column 0 is ignored by MUSP's
    with pytest.raises(ValueError):
        cpdm_distance(fa, ra[:, :3], fb, rb)
    with pytest.raises(ValueError):
        cpdm_distance(fa[:, :3], ra[:, :3], fb, rb)


# ---------------------------------------------------------------------------------------------
# plain distances and build_distance
# ---------------------------------------------------------------------------------------------
def test_euclidean_and_cosine():
    fa, _, fb, _ = random_inputs(5, 7, 4, 3)
    ca, cb = fa.reshape(5, -1), fb.reshape(7, -1)
    torch.testing.assert_close(euclidean_distance(fa, fb, chunk_size=2), torch.cdist(ca, cb), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(euclidean_distance(fa, fb, squared=True), torch.cdist(ca, cb) ** 2,
                               rtol=1e-5, atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(ca[:, None], cb[None], dim=2)
    torch.testing.assert_close(cosine_distance(fa, fb, chunk_size=3), 1 - cos, rtol=1e-5, atol=1e-5)


def test_build_distance_names():
    fa, ra, fb, rb = random_inputs(5, 7, 4, 3, seed=2)
    q, g = (fa, ra), (fb, rb)
    ca, cb = fa.reshape(5, -1), fb.reshape(7, -1)
    torch.testing.assert_close(build_distance("euclidean")(q, g), torch.cdist(ca, cb), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(build_distance("euclidean")((fa, None), (fb, None)), torch.cdist(ca, cb),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(build_distance("sqeuclidean", chunk_size=2)(q, g), torch.cdist(ca, cb) ** 2,
                               rtol=1e-5, atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(ca[:, None], cb[None], dim=2)
    torch.testing.assert_close(build_distance("cosine")(q, g), 1 - cos, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(build_distance("cpdm")(q, g), loop_cpdm(fa, ra, fb, rb).float(),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(build_distance("cpdm", squared=True)(q, g),
                               loop_cpdm(fa, ra, fb, rb, squared=True).float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(build_distance("cpdm_musp")(q, g), loop_cpdm(fa, ra, fb, rb, g=1 / 3).float(),
                               rtol=1e-5, atol=1e-5)
    # MUSP code: L2-normalised features, squared, SPAN's normalisation over all P entries with
    # the kept ratios L1-normalised and the global ratio 1/(P-1)
    na, nb = torch.nn.functional.normalize(fa, dim=-1), torch.nn.functional.normalize(fb, dim=-1)
    code = lambda r: torch.cat([torch.full_like(r[:, :1], 1 / 3), r[:, 1:] / r[:, 1:].sum(1, keepdim=True)], 1)  # noqa: E731
    want = loop_cpdm(na, code(ra), nb, code(rb), squared=True).float()
    torch.testing.assert_close(build_distance("cpdm_musp_code")(q, g), want, rtol=1e-5, atol=1e-5)
    # numpy tuples work too
    torch.testing.assert_close(build_distance("cpdm")((fa.numpy(), ra.numpy()), (fb.numpy(), rb.numpy())),
                               build_distance("cpdm")(q, g))


def _musp_public_code_distance(fa, ra, fb, rb):
    """MUSP's public code, step by step as it is written (``train_xent_tri.py``,
    ``vehiclereid/models/resnet.py``), in plain Python for one pair: features ``[n][d]`` (global
    first), attention masses ``[n-1]`` of the kept parts."""
    n = len(fa)
    unit = lambda v: [x / math.sqrt(sum(y * y for y in v)) for x in v]  # noqa: E731
    fa, fb = [unit(v) for v in fa], [unit(v) for v in fb]
    sq = [sum((x - y) ** 2 for x, y in zip(fa[i], fb[i])) for i in range(n)]
    ara = [m / sum(ra) for m in ra]                      # kept parts: L1-normalised mass
    arb = [m / sum(rb) for m in rb]
    p = [(1 / (n - 1)) * (1 / (n - 1))] + [a * b for a, b in zip(ara, arb)]   # global: 1/(n-1) each
    w = [x / sum(p) for x in p]                          # all n products L1-normalised together
    return sum(wi * di for wi, di in zip(w, sq))


def test_build_distance_musp_code_is_the_public_code_formula():
    # P = n = 3 (global + 2 kept parts), d = 2. Unit vectors so L2 normalisation is a no-op.
    fa = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    fb = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]])
    ra = torch.tensor([[1.0, 0.2, 0.6]])       # kept masses -> [.25, .75]
    rb = torch.tensor([[1.0, 0.5, 0.5]])       # -> [.5, .5]
    # p = [(1/2)^2, .125, .375] = [.25, .125, .375], w = p / .75; squared distances [2, 2, 0]
    d = build_distance("cpdm_musp_code")((fa, ra), (fb, rb)).item()
    assert d == pytest.approx((0.25 * 2 + 0.125 * 2 + 0.375 * 0) / 0.75)
    assert d == pytest.approx(_musp_public_code_distance(fa[0].tolist(), [0.2, 0.6], fb[0].tolist(), [0.5, 0.5]))
    # random inputs, several n: the same as the step-by-step code
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 5):
        A, B = torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g)
        ma, mb = torch.rand(n - 1, generator=g) + 0.1, torch.rand(n - 1, generator=g) + 0.1
        ar = torch.cat([torch.ones(1), ma])[None]
        br = torch.cat([torch.ones(1), mb])[None]
        got = build_distance("cpdm_musp_code")((A[None], ar), (B[None], br)).item()
        assert got == pytest.approx(_musp_public_code_distance(A.tolist(), ma.tolist(), B.tolist(), mb.tolist()),
                                    rel=1e-5)
    # the text variant: true Euclidean, g = 1/2
    d_text = build_distance("cpdm_musp")((fa, ra), (fb, rb)).item()
    assert d_text == pytest.approx(0.25 * math.sqrt(2) + 0.5 * math.sqrt(2))


def test_build_distance_errors_and_cache():
    fa, ra, fb, rb = random_inputs(4, 5, 4, 3)
    with pytest.raises(ConfigError):
        build_distance("manhattan")
    with pytest.raises(ConfigError):
        build_distance("euclidean", squared=True)
    with pytest.raises(ValueError):
        build_distance("cpdm")((fa, None), (fb, None))
    dist = build_distance("cpdm")
    first = dist((fa[:2], ra[:2]), (fb, rb))
    torch.testing.assert_close(dist((fa[2:], ra[2:]), (fb, rb)), cpdm_distance(fa[2:], ra[2:], fb, rb))
    assert dist._side is not None                        # gallery operand cached
    fb.add_(1.0)                                         # in-place change invalidates the cache
    torch.testing.assert_close(dist((fa[:2], ra[:2]), (fb, rb)), cpdm_distance(fa[:2], ra[:2], fb, rb))
    assert not torch.allclose(first, dist((fa[:2], ra[:2]), (fb, rb)))
    assert "cpdm" in repr(dist)


# ---------------------------------------------------------------------------------------------
# the two backends of the inference tiles
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("g", [None, 1.0 / 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_agree_with_the_loop_and_each_other(g, dtype):
    fa, ra, fb, rb = random_inputs(29, 41, 4, 6, seed=13, drop=0.5)      # many absent parts: zeros
    fb[:3], rb[:3] = fa[:3], ra[:3]                                      # duplicates: zero distances
    fa, ra, fb, rb = (x.to(dtype) for x in (fa, ra, fb, rb))
    want = loop_cpdm(fa, ra, fb, rb, g=g)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    dup = torch.zeros(29, 41, dtype=torch.bool)
    dup[torch.arange(3), torch.arange(3)] = True
    got = {}
    for backend in ("torch", "numba"):
        got[backend] = cpdm_distance(fa, ra, fb, rb, global_weight=g, chunk_size=7, backend=backend)
        assert got[backend].dtype == dtype
        torch.testing.assert_close(got[backend].double()[~dup], want[~dup], rtol=tol, atol=tol)
        # duplicates: 0 up to the matrix-product form's cancellation, sqrt(eps) * |f| (docstring)
        assert torch.all(got[backend][dup].abs() < 8 * torch.finfo(dtype).eps ** 0.5)
    # same GEMMs, same order of sums: only the square root's / denominator's last bit may differ
    eps = torch.finfo(dtype).eps
    assert torch.all((got["numba"] - got["torch"]).abs() <= 8 * eps * got["torch"].abs().clamp_min(1e-30))


@pytest.mark.parametrize("g", [None, 0.5])
def test_nan_features_give_nan_distances(g):
    fa, ra, fb, rb = random_inputs(3, 5, 4, 3, seed=2)
    fb[1, 2, 0] = float("nan")
    d = cpdm_distance(fa, ra, fb, rb, global_weight=g)
    assert torch.isnan(d[:, 1]).all()                    # NaN * weight 0 is NaN: never a finite distance
    assert torch.isfinite(d[:, [0, 2, 3, 4]]).all()


def test_backend_resolution(monkeypatch):
    import reidlib.metrics.cpdm as cpdm_mod
    monkeypatch.delenv("REIDLIB_CPDM_BACKEND")
    assert cpdm_mod.resolve_backend("torch") == "torch"
    assert cpdm_mod.resolve_backend("auto") == "numba"                  # numba is in the lock
    with pytest.raises(ValueError, match="backend='cuda'"):
        cpdm_mod.resolve_backend("cuda")
    monkeypatch.setenv("REIDLIB_CPDM_BACKEND", "fast")
    with pytest.raises(ValueError, match="REIDLIB_CPDM_BACKEND='fast'"):
        cpdm_mod.resolve_backend("auto")
    monkeypatch.delenv("REIDLIB_CPDM_BACKEND")
    monkeypatch.setattr(cpdm_mod, "_compiled_kernel", lambda: None)    # as if numba were missing
    assert cpdm_mod.resolve_backend("auto") == "torch"
    with pytest.raises(ImportError, match="numba"):
        cpdm_mod.resolve_backend("numba")
    fa, ra, fb, rb = random_inputs(4, 6, 4, 3, seed=4)
    torch.testing.assert_close(cpdm_distance(fa, ra, fb, rb).double(), loop_cpdm(fa, ra, fb, rb),
                               rtol=1e-5, atol=1e-5)


def test_jit_falls_back_to_no_cache_without_a_writable_location(monkeypatch):
    numba = pytest.importorskip("numba")
    from numba.core import caching

    from reidlib.metrics.jit import njit_cached

    def twice(x):
        return 2 * x

    with monkeypatch.context() as mp:
        mp.setattr(caching.CacheImpl, "_locator_classes", [])             # nowhere to write
        mp.setattr(numba.config, "CACHE_LOCATOR_CLASSES", "", raising=False)
        with pytest.raises(RuntimeError, match="cannot cache"):
            numba.njit(cache=True)(twice)
        fn = njit_cached()(twice)
        assert fn(21) == 42 and type(fn._cache).__name__ == "NullCache"
    cached = njit_cached()(twice)                                         # tests/ is writable here
    assert type(cached._cache).__name__ == "FunctionCache"
