"""reidlib.metrics: the fast evaluator must equal a plain per-query reference loop exactly."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from reidlib.metrics import (RankResult, evaluate_features, evaluate_rank, pairwise_distance,
                             re_ranking)

from helpers import backend_fixture


# ---------------------------------------------------------------------------------------------
# plain reference: stable argsort, drop junk, cumulative sums (and the MATLAB kit's AP loop)
# ---------------------------------------------------------------------------------------------
def reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    distmat = np.asarray(distmat)
    cmcs, ap_mean, ap_trap, inps, firsts = [], [], [], [], []
    skipped = 0
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        same = g_pids[order] == q_pids[i]
        junk = same & (g_cams[order] == q_cams[i])
        match = same[~junk]
        if not match.any():
            skipped += 1
            firsts.append(-1)
            continue
        hit = (np.cumsum(match) >= 1).astype(float)
        hit = np.concatenate([hit, np.ones(max(0, max_rank - len(hit)))])[:max_rank]
        cmcs.append(hit)
        pos = np.flatnonzero(match)
        m = len(pos)
        firsts.append(pos[0])
        ap_mean.append(np.mean((np.arange(m) + 1) / (pos + 1)))
        # literal port of the VeRi / Market-1501 MATLAB compute_AP loop
        old_recall, old_precision, ap, inter, j = 0.0, 1.0, 0.0, 0, 0
        for flag in match:
            inter += int(flag)
            recall, precision = inter / m, inter / (j + 1)
            ap += (recall - old_recall) * ((old_precision + precision) / 2)
            old_recall, old_precision = recall, precision
            j += 1
            if inter == m:
                break
        ap_trap.append(ap)
        inps.append(m / (pos[-1] + 1))
    valid = distmat.shape[0] - skipped
    return {"cmc": np.mean(cmcs, axis=0) if cmcs else None, "mean_precision": np.mean(ap_mean) if cmcs else None,
            "trapezoid": np.mean(ap_trap) if cmcs else None, "mINP": np.mean(inps) if cmcs else None,
            "valid": valid, "skipped": skipped, "first": np.array(firsts),
            "ap_lists": {"mean_precision": ap_mean, "trapezoid": ap_trap}}


def assert_same(res: RankResult, ref: dict, ap: str):
    assert res.num_valid_queries == ref["valid"]
    assert res.num_skipped_queries == ref["skipped"]
    assert res.ap == ap
    np.testing.assert_array_equal(res.cmc, ref["cmc"])
    assert res.mAP == pytest.approx(ref[ap], rel=0, abs=1e-12)
    assert res.mINP == pytest.approx(ref["mINP"], rel=0, abs=1e-12)
    np.testing.assert_array_equal(res.query_first_rank, ref["first"])
    valid = ~np.isnan(res.query_ap)
    np.testing.assert_allclose(res.query_ap[valid], ref["ap_lists"][ap], rtol=0, atol=1e-12)


#: every test here runs on both ranking implementations (numba is in the lock, so CI has it)
rank_backend = backend_fixture("rank_backend", "REIDLIB_RANK_BACKEND", ["numpy", "numba"])


def test_backend_switch(rank_backend):
    from reidlib.metrics.rank import resolve_backend

    assert resolve_backend("auto") == rank_backend
    assert resolve_backend("numpy") == "numpy"
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("cuda")


def random_case(rng, kind, nq=None, ng=None, n_ids=None, n_cams=None):
    nq = nq or int(rng.integers(1, 40))
    ng = ng or int(rng.integers(1, 160))
    n_ids = n_ids or int(rng.integers(1, 12))
    n_cams = n_cams or int(rng.integers(1, 4))
    q_pids, g_pids = rng.integers(0, n_ids, nq), rng.integers(0, n_ids, ng)
    q_cams, g_cams = rng.integers(0, n_cams, nq), rng.integers(0, n_cams, ng)
    if kind == "float":
        d = rng.random((nq, ng))
    elif kind == "float32":
        d = rng.random((nq, ng)).astype(np.float32)
    elif kind == "ties":                 # integer-valued: many exact ties
        d = rng.integers(0, 4, (nq, ng)).astype(np.float32)
    elif kind == "int":
        d = rng.integers(-3, 3, (nq, ng))
    elif kind == "inf":
        d = rng.integers(0, 3, (nq, ng)).astype(np.float64)
        d[rng.random((nq, ng)) < 0.3] = np.inf
        d[rng.random((nq, ng)) < 0.1] = -np.inf
    elif kind == "const":
        d = np.full((nq, ng), 0.25, dtype=np.float32)
    elif kind == "float16":
        d = rng.integers(0, 6, (nq, ng)).astype(np.float16)
    else:
        raise ValueError(kind)
    return d, q_pids, g_pids, q_cams, g_cams


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["float", "float32", "ties", "int", "inf", "const", "float16"])
@pytest.mark.parametrize("ap", ["mean_precision", "trapezoid"])
def test_matches_reference_loop(kind, ap):
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{ap}".encode()))
    checked = 0
    for trial in range(15):
        d, qp, gp, qc, gc = random_case(rng, kind)
        ref = reference(d, qp, gp, qc, gc, max_rank=10)
        if ref["valid"] == 0:
            continue
        res = evaluate_rank(d, qp, gp, qc, gc, max_rank=10, ap=ap,
                            chunk_size=int(rng.integers(1, 8)))
        assert_same(res, ref, ap)
        checked += 1
    assert checked >= 5


def test_larger_case_with_skipped_and_junk():
    rng = np.random.default_rng(7)
    d, qp, gp, qc, gc = random_case(rng, "ties", nq=120, ng=900, n_ids=60, n_cams=6)
    qp[:5] = 999                                    # ids absent from the gallery -> skipped
    ref = reference(d, qp, gp, qc, gc)
    assert ref["skipped"] >= 5 and ref["valid"] > 50
    for ap in ("mean_precision", "trapezoid"):
        assert_same(evaluate_rank(d, qp, gp, qc, gc, ap=ap), ref, ap)


def test_threads_never_change_results():
    """Chunks ranked on 1, 2 or 5 threads: every per-query field identical; errors still surface."""
    rng = np.random.default_rng(11)
    d, qp, gp, qc, gc = random_case(rng, "ties", nq=97, ng=400, n_ids=30, n_cams=4)
    one = evaluate_rank(d, qp, gp, qc, gc, chunk_size=3, num_threads=1)
    for threads in (2, 5, None):
        other = evaluate_rank(d, qp, gp, qc, gc, chunk_size=3, num_threads=threads)
        for name in ("cmc", "query_ap", "query_inp", "query_first_rank", "query_num_matches"):
            np.testing.assert_array_equal(getattr(other, name), getattr(one, name))
        assert other.mAP == one.mAP and other.mINP == one.mINP
    d_nan = d.copy()
    d_nan[90, 17] = np.nan                          # in one of the last chunks
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(d_nan, qp, gp, qc, gc, chunk_size=3, num_threads=4)
    with pytest.raises(ValueError, match="num_threads"):
        evaluate_rank(d, qp, gp, qc, gc, num_threads=0, chunk_size=3)


def test_torch_inputs_and_string_labels():
    rng = np.random.default_rng(3)
    d, qp, gp, qc, gc = random_case(rng, "ties", nq=30, ng=200, n_ids=8, n_cams=3)
    ref = reference(d, qp, gp, qc, gc)
    res_t = evaluate_rank(torch.from_numpy(d), torch.from_numpy(qp), torch.from_numpy(gp),
                          torch.from_numpy(qc), torch.from_numpy(gc))
    assert_same(res_t, ref, "mean_precision")
    res_s = evaluate_rank(d, [f"v{p}" for p in qp], [f"v{p}" for p in gp],
                          [f"c{c:03d}" for c in qc], [f"c{c:03d}" for c in gc])
    assert_same(res_s, ref, "mean_precision")
    if torch.cuda.is_available():                  # only where a GPU exists; never required
        assert_same(evaluate_rank(torch.from_numpy(d).to("cuda"), qp, gp, qc, gc), ref,
                    "mean_precision")


def test_junk_is_removed_and_rank_counts_after_removal():
    # gallery: 0 = same id + same cam (junk, closest), 1 = other id, 2 = true match
    d = np.array([[0.1, 0.2, 0.3]])
    res = evaluate_rank(d, [1], [1, 2, 1], [0], [0, 5, 3], max_rank=3)
    assert res.query_first_rank[0] == 1                         # junk does not count
    np.testing.assert_array_equal(res.cmc, [0.0, 1.0, 1.0])
    assert res.mAP == pytest.approx(0.5)


def test_queries_without_true_match_are_skipped_and_counted():
    d = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    # query 0: only a junk item of its id; query 1: id absent; query 2: one true match
    res = evaluate_rank(d, [1, 7, 2], [1, 2], [0, 0, 0], [0, 1], max_rank=2)
    assert res.num_valid_queries == 1 and res.num_skipped_queries == 2
    assert np.isnan(res.query_ap[0]) and np.isnan(res.query_ap[1])
    np.testing.assert_array_equal(res.cmc, [0.0, 1.0])
    with pytest.warns(RuntimeWarning):
        empty = evaluate_rank(d[:2], [1, 7], [1, 2], [0, 0], [0, 1])
    assert empty.num_valid_queries == 0 and math.isnan(empty.mAP)


def test_hand_computed_ap_inp():
    # after sorting: g0 (match, rank 0), g1 (wrong), g2 (wrong), g3 (match, rank 3), g4 (wrong)
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    args = ([5], [5, 1, 2, 5, 3], [0], [1, 1, 1, 2, 1])
    res_m = evaluate_rank(d, *args, max_rank=5)
    # AP (a) = mean(1/1, 2/4) = 0.75
    assert res_m.mAP == pytest.approx(0.75, abs=1e-15)
    # AP (b) = 1/2 * (1 + 1)/2 + 1/2 * (1/3 + 2/4)/2 = 0.5 + 0.208333...
    res_t = evaluate_rank(d, *args, max_rank=5, ap="trapezoid")
    assert res_t.mAP == pytest.approx(0.5 + (1 / 3 + 0.5) / 4, abs=1e-15)
    assert res_t.mAP < res_m.mAP
    # INP = 2 matches / rank 4 of the last match
    assert res_m.mINP == pytest.approx(0.5, abs=1e-15)
    np.testing.assert_array_equal(res_m.cmc, [1, 1, 1, 1, 1])
    out = res_m.as_dict()
    assert out["R1"] == 1.0 and out["R5"] == 1.0
    assert out["R10"] is None and math.isnan(res_m.rank(10))     # beyond max_rank: undefined, JSON-safe
    assert out["ap_definition"] == "mean_precision" and out["num_valid_queries"] == 1


def test_tie_rule_is_gallery_index():
    # all distances equal: the stable order is the gallery order
    d = np.zeros((1, 4))
    res = evaluate_rank(d, [3], [0, 3, 1, 3], [0], [1, 1, 1, 1], max_rank=4)
    assert res.query_first_rank[0] == 1
    assert res.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_nan_rejected_and_bad_ap():
    d = np.array([[0.1, np.nan]])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(d, [1], [1, 2], [0], [1, 1])
    with pytest.raises(ValueError, match="AP definition"):
        evaluate_rank(np.zeros((1, 2)), [1], [1, 2], [0], [1, 1], ap="area")
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(np.zeros((1, 2)), [1], [1, 2, 3], [0], [1, 2])


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_evaluate_features_equals_full_matrix(metric):
    rng = np.random.default_rng(11)
    # integer-valued features: exact distances (and many ties) whatever the chunking
    q = rng.integers(0, 3, (37, 6)).astype(np.float32)
    g = rng.integers(0, 3, (211, 6)).astype(np.float32)
    qp, gp = rng.integers(0, 9, 37), rng.integers(0, 9, 211)
    qc, gc = rng.integers(0, 3, 37), rng.integers(0, 3, 211)
    full = pairwise_distance(torch.from_numpy(q), torch.from_numpy(g), metric)
    ref = reference(full.numpy(), qp, gp, qc, gc)
    for ap in ("mean_precision", "trapezoid"):
        a = evaluate_rank(full, qp, gp, qc, gc, ap=ap)
        assert_same(a, ref, ap)
        for cs in (1, 5, None):
            b = evaluate_features(q, torch.from_numpy(g), qp, gp, qc, gc, distance=metric,
                                  chunk_size=cs, ap=ap)
            assert b.as_dict() == a.as_dict()
            np.testing.assert_array_equal(b.cmc, a.cmc)


def test_evaluate_features_tuple_and_callable():
    rng = np.random.default_rng(5)
    qf, gf = rng.integers(0, 3, (20, 3, 4)).astype(np.float32), rng.integers(0, 3, (90, 3, 4)).astype(np.float32)
    qa, ga = rng.integers(1, 3, (20, 3)).astype(np.float32), rng.integers(1, 3, (90, 3)).astype(np.float32)
    qp, gp, qc, gc = rng.integers(0, 6, 20), rng.integers(0, 6, 90), rng.integers(0, 2, 20), rng.integers(0, 2, 90)
    calls = []

    def part_distance(q, g):                       # a CPDM-like weighted part distance
        (fq, aq), (fg, ag) = q, g
        calls.append(len(fq))
        diff = ((fq[:, None] - fg[None]) ** 2).sum(-1)        # [n, Ng, P]
        w = aq[:, None, :] * ag[None, :, :]
        return (w * diff).sum(-1) / w.sum(-1)

    full = part_distance((qf, qa), (gf, ga))
    calls.clear()
    a = evaluate_rank(full, qp, gp, qc, gc)
    b = evaluate_features((qf, qa), (gf, ga), qp, gp, qc, gc, distance=part_distance, chunk_size=6)
    assert calls == [6, 6, 6, 2]
    assert a.as_dict() == b.as_dict()
    c = evaluate_features((qf, qa), (gf, ga), qp, gp, qc, gc,
                          distance=lambda q, g: part_distance(q, g), chunk_size=7, device="cpu")
    assert c.as_dict() == a.as_dict()
    with pytest.raises(ValueError, match="callable"):
        evaluate_features((qf, qa), (gf, ga), qp, gp, qc, gc)


def test_evaluate_features_auto_chunk_is_bounded():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(400, 8)).astype(np.float32)
    qp, gp, qc, gc = rng.integers(0, 20, 50), rng.integers(0, 20, 400), np.zeros(50, int), np.ones(400, int)
    seen = []

    def dist(qq, gg):
        seen.append(len(qq))
        return pairwise_distance(qq, gg)

    # a budget of 40 bytes x 400 gallery x 10 rows
    evaluate_features(q, g, qp, gp, qc, gc, distance=dist, memory_budget_mb=40 * 400 * 10 / 2**20)
    assert max(seen) == 10 and sum(seen) == 50


def test_pairwise_distance_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(7, 4))
    true = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    np.testing.assert_allclose(pairwise_distance(a, b), true, atol=1e-10)
    np.testing.assert_allclose(pairwise_distance(a, b, "sqeuclidean"), true ** 2, atol=1e-10)
    cos = 1 - (a @ b.T) / np.linalg.norm(a, axis=1)[:, None] / np.linalg.norm(b, axis=1)[None]
    np.testing.assert_allclose(pairwise_distance(a, b, "cosine"), cos, atol=1e-10)
    t = pairwise_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), true, atol=1e-10)
    assert isinstance(pairwise_distance(a, b), np.ndarray)
    with pytest.raises(ValueError):
        pairwise_distance(a, b, "manhattan")


# ---------------------------------------------------------------------------------------------
def clustered(rng, n_ids=25, per_gallery=8, per_query=2, dim=16, noise=0.9):
    centres = rng.normal(size=(n_ids, dim))

    def draw(k):
        ids = np.repeat(np.arange(n_ids), k)
        x = centres[ids] + noise * rng.normal(size=(len(ids), dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), ids

    (q, qp), (g, gp) = draw(per_query), draw(per_gallery)
    return q, g, qp, gp, np.zeros(len(qp), int), np.ones(len(gp), int)


def test_re_ranking_valid_and_improves_map():
    rng = np.random.default_rng(0)
    q, g, qp, gp, qc, gc = clustered(rng)
    base = evaluate_rank(pairwise_distance(q, g), qp, gp, qc, gc)
    rr = re_ranking(q, g, k1=6, k2=3, lambda_value=0.3)
    assert rr.shape == (len(q), len(g)) and rr.dtype == np.float32
    assert np.isfinite(rr).all() and (rr >= 0).all()
    after = evaluate_rank(rr, qp, gp, qc, gc)
    assert after.mAP > base.mAP + 0.03
    # same result from precomputed distance matrices
    rr2 = re_ranking(pairwise_distance(q, g), pairwise_distance(q, q), pairwise_distance(g, g),
                     k1=6, k2=3, lambda_value=0.3)
    np.testing.assert_allclose(rr2, rr, atol=1e-3)   # float32 cancellation in d(p, p) differs
    # lambda = 1 gives back the original distances
    np.testing.assert_allclose(re_ranking(q, g, k1=6, k2=3, lambda_value=1.0),
                               pairwise_distance(q, g), atol=1e-6)


def reference_re_ranking(d, nq, k1, k2, lam, stats=None):
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) written out with sets on a dense
    all-vs-all matrix ``d`` (queries first): ``N(p, k)`` = the k + 1 nearest (ties -> lower index),
    ``R(p, k)`` = the k-reciprocal ones, ``R*`` = R(p, k1) plus every R(q, round(k1/2)) of its
    members q sharing at least 2/3 of its items with R(p, k1), ``V[p] = exp(-d(p, .))`` on R*
    normalised, averaged over the k2 nearest, Jaccard distance, mixed with the original by lam."""
    n = d.shape[0]
    order = [sorted(range(n), key=lambda j: (d[i, j], j)) for i in range(n)]

    def nearest(p, k):
        return set(order[p][:k + 1])

    def reciprocal(p, k):
        return {x for x in nearest(p, k) if p in nearest(x, k)}

    k_half = int(np.around(k1 / 2))
    v = np.zeros((n, n))
    for p in range(n):
        rp = reciprocal(p, k1)
        star = set(rp)
        for q in rp:
            rq = reciprocal(q, k_half)
            inter = len(rp & rq)
            if 3 * inter >= 2 * len(rq):
                if stats is not None:
                    stats["expanded"] += len(rq - star)
                    stats["at_two_thirds"] += int(3 * inter == 2 * len(rq) and bool(rq - rp))
                star |= rq
        idx = sorted(star)
        w = np.exp(-d[p, idx])
        v[p, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[order[p][:k2]].mean(axis=0) for p in range(n)])
    jac = np.array([[1.0 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum() for j in range(nq, n)]
                    for i in range(nq)])
    return (1.0 - lam) * jac + lam * d[:nq, nq:]


@pytest.mark.parametrize("seed, k1, k2, lam", [(0, 5, 3, 0.3), (1, 6, 1, 0.3), (1, 4, 4, 0.0), (2, 20, 6, 0.5)])
def test_re_ranking_equals_a_plain_reference(seed, k1, k2, lam):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(14, 4)).astype(np.float32)
    x = np.concatenate([q, g]).astype(np.float64)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    stats = {"expanded": 0, "at_two_thirds": 0}
    want = reference_re_ranking(d, 6, k1, k2, lam, stats)
    if k1 < 20:   # the example exercises the expansion, including its boundary case (exactly 2/3)
        assert stats["expanded"] > 0 and stats["at_two_thirds"] > 0
    got = re_ranking(d[:6, 6:], d[:6, :6], d[6:, 6:], k1=k1, k2=k2, lambda_value=lam)   # the same matrices
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    small = re_ranking(d[:6, 6:], d[:6, :6], d[6:, 6:], k1=k1, k2=k2, lambda_value=lam, chunk_size=3,
                       max_pairs=7)                                          # chunking never changes results
    np.testing.assert_allclose(small, got, rtol=0, atol=1e-6)
    feats = re_ranking(q, g, k1=k1, k2=k2, lambda_value=lam)                 # distances computed in float32
    np.testing.assert_allclose(feats, want, rtol=0, atol=2e-4)
    assert np.abs(want - d[:6, 6:]).max() > 0.1 or lam == 1.0               # re-ranking changed the distances


def test_re_ranking_refuses_big_inputs():
    q, g = np.zeros((10, 2), np.float32), np.zeros((30, 2), np.float32)
    with pytest.raises(ValueError, match="max_items"):
        re_ranking(q, g, max_items=20)
