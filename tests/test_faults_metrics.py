"""Evaluation faults that used to give silently wrong numbers (each failed before its fix).

1. float16 features with BNNeck-sized norms (~270: |f|^2 ~ 73,000 > 65,504, float16's largest value)
   gave ``inf`` distances, every gallery item tied, R1 = 0.25 instead of 1.00; bfloat16 raised a
   raw TypeError. Distances are now computed in float32 whatever the feature dtype.
2. ``chunk_size=-1`` ranked nothing and reported "no query has a true match" with NaN metrics;
   fractional or negative block sizes are now a ValueError naming the argument.
3. No valid query gave ``R1 = 0.00`` next to ``mAP = nan``; every metric is now NaN, a warning gives
   the count, and ``as_dict()`` is JSON-safe (``None``, never a bare NaN).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from reidlib.metrics.cpdm import area_ratios, cpdm_distance
from reidlib.errors import ConfigError
from reidlib.metrics import evaluate_features, evaluate_rank, pairwise_distance
from reidlib.metrics.distance import DISTANCES, build_distance

HALF = [torch.float16, torch.bfloat16]


def bnneck_like(n_ids=4, P=4, d=32, norm=270.0, seed=0):
    """One gallery item and one query per id; every part vector has norm ~``norm``; the query is its
    gallery item plus small noise, so in exact arithmetic every query's nearest item is its own."""
    g = torch.Generator().manual_seed(seed)
    gal = torch.randn(n_ids, P, d, generator=g)
    gal = norm * gal / gal.norm(dim=-1, keepdim=True)                      # [n_ids, P, d]
    qry = gal + 2.0 * torch.randn(n_ids, P, d, generator=g)                 # [n_ids, P, d]
    masks = torch.rand(2 * n_ids, P - 1, 4, 4, generator=g) + 0.1
    ar = area_ratios(masks)                                                # [2 n_ids, P]
    ids = np.arange(n_ids)
    return qry, ar[:n_ids], gal, ar[n_ids:], ids, np.zeros(n_ids, int), np.ones(n_ids, int)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", list(DISTANCES))
def test_named_distances_compute_half_features_in_float32(name, dtype):
    qf, qa, gf, ga, ids, qc, gc = bnneck_like()
    q16, g16 = qf.to(dtype), gf.to(dtype)
    dist = build_distance(name)
    got = dist((q16, qa.to(dtype)), (g16, ga.to(dtype)))                   # [Nq, Ng]
    # the same half-precision values, upcast by hand: the float32 result, bit for bit
    want = build_distance(name)((q16.float(), qa.to(dtype).float()), (g16.float(), ga.to(dtype).float()))
    assert got.dtype == torch.float32
    assert torch.equal(got, want)
    res = evaluate_features((q16, qa.to(dtype)), (g16, ga.to(dtype)), ids, ids, qc, gc, distance=dist)
    assert res.rank(1) == 1.0 and res.mAP == 1.0                           # was 0.25 / 0.52 in float16


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_evaluator_metric_names_with_half_features(metric, dtype):
    qf, _, gf, _, ids, qc, gc = bnneck_like(P=1)
    q16, g16 = qf[:, 0].to(dtype), gf[:, 0].to(dtype)                      # [4, 32]
    res = evaluate_features(q16, g16, ids, ids, qc, gc, distance=metric, return_distmat=True)
    assert res.rank(1) == 1.0 and res.mAP == 1.0
    want = pairwise_distance(q16.float(), g16.float(), metric)             # float32 expansion form
    assert res.distmat.dtype == np.float32
    np.testing.assert_array_equal(res.distmat, want.numpy())
    # pairwise_distance itself (torch and numpy float16) computes in float32 too
    assert torch.equal(pairwise_distance(q16, g16, metric), want)
    if dtype == torch.float16:
        np.testing.assert_array_equal(pairwise_distance(q16.numpy(), g16.numpy(), metric),
                                      pairwise_distance(q16.float().numpy(), g16.float().numpy(), metric))


@pytest.mark.parametrize("dtype", HALF)
def test_cpdm_distance_half_features(dtype):
    qf, qa, gf, ga, *_ = bnneck_like()
    got = cpdm_distance(qf.to(dtype), qa, gf.to(dtype), ga)
    want = cpdm_distance(qf.to(dtype).float(), qa, gf.to(dtype).float(), ga)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert torch.equal(got.argmin(1), torch.arange(4))


@pytest.mark.parametrize("dtype", HALF)
def test_evaluate_rank_half_distance_matrix(dtype):
    rng = np.random.default_rng(3)
    d = rng.integers(0, 50, (6, 30)).astype(np.float32)                   # exact in float16 and bfloat16
    qp, gp, qc, gc = rng.integers(0, 5, 6), rng.integers(0, 5, 30), np.zeros(6, int), np.ones(30, int)
    want = evaluate_rank(d, qp, gp, qc, gc)
    got = evaluate_rank(torch.from_numpy(d).to(dtype), qp, gp, qc, gc)     # bfloat16: was a TypeError
    np.testing.assert_array_equal(got.cmc, want.cmc)
    assert got.mAP == want.mAP and got.mINP == want.mINP


# ---------------------------------------------------------------------------------------------
# chunk sizes
# ---------------------------------------------------------------------------------------------
def _small_case():
    rng = np.random.default_rng(0)
    d = rng.random((5, 12))
    qp, gp = np.arange(5), np.arange(12) % 5
    return d, qp, gp, np.zeros(5, int), np.ones(12, int)


@pytest.mark.parametrize("bad", [-1, 0, 2.5, True, "4"])
def test_evaluate_rank_rejects_bad_chunk_size(bad):
    d, qp, gp, qc, gc = _small_case()
    with pytest.raises(ValueError, match=r"chunk_size=.*expected None \(auto\) or a positive integer"):
        evaluate_rank(d, qp, gp, qc, gc, chunk_size=bad)                   # -1 used to give NaN metrics


@pytest.mark.parametrize("bad", [-1, 0, 2.5, True])
def test_evaluate_features_rejects_bad_chunk_size(bad):
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(12, 3)).astype(np.float32)
    _, qp, gp, qc, gc = _small_case()
    with pytest.raises(ValueError, match=r"chunk_size=.*expected None \(auto\) or a positive integer"):
        evaluate_features(q, g, qp, gp, qc, gc, chunk_size=bad)            # 2.5 used to run as 2


@pytest.mark.parametrize("name", list(DISTANCES))
@pytest.mark.parametrize("bad", [-1, 1.5, False])
def test_build_distance_rejects_bad_chunk_size(name, bad):
    with pytest.raises(ConfigError, match=r"chunk_size=.*expected None \(auto\), 0 \(one block\) or a positive"):
        build_distance(name, chunk_size=bad)                              # -1 used to mean "one block"


def test_direct_distances_reject_bad_chunk_size():
    qf, qa, gf, ga, *_ = bnneck_like()
    with pytest.raises(ValueError, match="chunk_size=-2"):
        cpdm_distance(qf, qa, gf, ga, chunk_size=-2)


# ---------------------------------------------------------------------------------------------
# no valid query
# ---------------------------------------------------------------------------------------------
def test_no_valid_query_gives_nan_metrics_a_count_and_json_safe_dict():
    d = np.array([[0.1, 0.2], [0.3, 0.4]])
    # query 0: only a junk item of its id (same camera); query 1: id absent from the gallery
    with pytest.warns(RuntimeWarning, match="0 of 2 queries have a true match"):
        res = evaluate_rank(d, [1, 7], [1, 2], [0, 0], [0, 1], max_rank=5)
    assert res.num_valid_queries == 0 and res.num_skipped_queries == 2
    assert res.cmc.shape == (5,) and np.isnan(res.cmc).all()               # was all 0.0
    assert math.isnan(res.rank(1)) and math.isnan(res.mAP) and math.isnan(res.mINP)
    out = res.as_dict()
    assert {k: out[k] for k in ("R1", "R5", "R10", "mAP", "mINP")} == dict.fromkeys(
        ("R1", "R5", "R10", "mAP", "mINP"))                                 # all None
    assert json.loads(json.dumps(out, allow_nan=False))["num_skipped_queries"] == 2


def test_no_valid_query_from_features():
    q, g = np.zeros((3, 2), np.float32), np.ones((4, 2), np.float32)
    with pytest.warns(RuntimeWarning, match="0 of 3 queries"):
        res = evaluate_features(q, g, [5, 6, 7], [1, 2, 3, 4], [0, 0, 0], [1, 1, 1, 1])
    assert np.isnan(res.cmc).all() and res.as_dict()["R1"] is None
