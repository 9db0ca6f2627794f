"""Which vectors a re-ID model ranks and trains its triplet loss on.

* SPAN's ``cat_norm="block"`` (Table 2 "w/ Cat"): the ranked feature is the four post-BNNeck blocks
  each L2-normalised, then concatenated, and the triplet loss sees that same feature;
* sub-feature distances ``"euclidean:global"`` / ``"euclidean:parts"`` (Table 2's global-only /
  parts-only rows from one trained model);
* ``eval.features`` (``"post_bn"`` default, ``"post_bn_l2"``, ``"pre_bn_l2"``), per vector, checked
  against hand computations on tiny models in eval mode; the default bit-identical to the
  features every evaluation ranked before the option existed.

resnet18, 64 x 64 inputs, a handful of classes, CPU only.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidlib.errors import ConfigError
from reidlib.losses.reid import ReIDCriterion, batch_hard_triplet_loss
from reidlib.metrics.distance import DISTANCES, VIEWS, build_distance, distance_names
from reidlib.models.baseline import StrongBaseline
from reidlib.models.musp import MUSP
from reidlib.models.output import (EVAL_VECTORS, KEYS, ranked_features, resolve_features, select_vectors,
                                   triplet_features)
from reidlib.models.part_features import SPANReID
from reidlib.models.registry import build_model, check_options
from reidlib.models.span import SPAN

BK, C, D, SIZE = "resnet18", 4, 16, 64
CFG = {"data.height": SIZE, "data.width": SIZE, "eval.num_workers": 0, "eval.batch_size": 8,
       "train.device": "cpu", "eval.amp": "off"}


@pytest.fixture(scope="module")
def x():
    return torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def pids():
    return torch.tensor([0, 0, 1, 1])


def span_reid(**kw) -> SPANReID:
    torch.manual_seed(1)
    span = SPAN(BK)
    torch.manual_seed(2)
    return SPANReID(C, backbone=BK, dim=D, span=span, **kw)


# ------------------------------------------------------------------------------------------------
# cat_norm: the option, its ranked feature and its triplet loss
# ------------------------------------------------------------------------------------------------

def test_cat_norm_option_defaults_and_checks():
    none, block = span_reid(), span_reid(cat_norm="block")
    assert none.cat_norm == "none" and none.eval_features == "post_bn" and none.triplet_vectors == "pre_bn"
    assert block.cat_norm == "block" and block.eval_features == "post_bn_l2"
    assert block.triplet_vectors == "post_bn_l2"
    # same architecture and the same seeded weights: the option changes no parameter
    sa, sb = none.state_dict(), block.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(ValueError, match="cat_norm must be one of"):
        span_reid(cat_norm="global")
    with pytest.raises(ValueError, match="needs aggregation='concat'"):
        span_reid(cat_norm="block", aggregation="fc")
    # a run configuration's model.kwargs (the registry reads the option off the constructor)
    assert check_options("span", {"cat_norm": "block"}) == {"cat_norm": "block"}
    with pytest.raises(ConfigError, match="cat_norm"):
        check_options("span", {"cat_norm": "l2"})
    assert build_model("span", C, backbone=BK, dim=D, span=SPAN(BK), cat_norm="block").eval_features == "post_bn_l2"


def test_block_normalised_blocks_are_unit_and_euclidean_is_the_sum_of_block_distances(x):
    m = span_reid(cat_norm="block").eval()
    with torch.no_grad():
        out = m(x)
    assert tuple(out) == KEYS and out["triplet_vectors"] == "post_bn_l2"
    f = ranked_features(out, resolve_features(m, ""))                  # the model's own: post_bn_l2
    assert f.shape == (4, 4, D) and f.dtype == torch.float32
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(4, 4), rtol=0, atol=1e-6)
    torch.testing.assert_close(f, F.normalize(out["bn_feats"], dim=-1), rtol=0, atol=0)
    got = build_distance("euclidean")((f, out["area_ratios"]), (f, out["area_ratios"])).double()
    fd = f.double()
    want = torch.stack([torch.stack([sum(((fd[a, i] - fd[b, i]) ** 2).sum() for i in range(4)).sqrt()
                                     for b in range(4)]) for a in range(4)])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=5e-3)        # expansion form, float32
    assert float(got.max()) <= 4.0 + 1e-4                               # <= sqrt(4 * 2^2): 4 unit blocks


def test_block_distance_on_a_hand_case():
    """Two images, 4 blocks of d = 2 with exact unit directions: block distances 0, sqrt 2, 2, 0."""
    a = torch.tensor([[[3.0, 4.0], [0.0, 5.0], [2.0, 0.0], [0.0, 0.5]]])      # unit: .6 .8 | 0 1 | 1 0 | 0 1
    b = torch.tensor([[[6.0, 8.0], [7.0, 0.0], [-1.0, 0.0], [0.0, 9.0]]])     # unit: .6 .8 | 1 0 | -1 0 | 0 1
    out_a = {"feats": a, "bn_feats": a}
    out_b = {"feats": b, "bn_feats": b}
    fa, fb = ranked_features(out_a, "post_bn_l2"), ranked_features(out_b, "post_bn_l2")
    torch.testing.assert_close(fa.norm(dim=-1), torch.ones(1, 4))
    d = build_distance("euclidean", cache=False)(fa, fb)
    torch.testing.assert_close(d, torch.tensor([[math.sqrt(0.0 + 2.0 + 4.0 + 0.0)]]), rtol=1e-6, atol=1e-6)
    # un-normalised, the same pair is dominated by the blocks with large norms
    raw = build_distance("euclidean", cache=False)(a, b)
    assert float(raw) == pytest.approx(math.sqrt(25 + 74 + 9 + 72.25), rel=1e-6)


def test_triplet_loss_of_a_block_model_is_on_the_normalised_post_bn_blocks(x, pids):
    crit = ReIDCriterion(C, triplet_on="concat")
    m = span_reid(cat_norm="block").train()
    out = m(x)
    ranked = F.normalize(out["bn_feats"], dim=-1).flatten(1)            # [B, 4d]: the ranked feature
    want = batch_hard_triplet_loss(torch.cdist(ranked.double(), ranked.double()), pids, 0.3)
    got = crit.triplet_loss(out, pids)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    pre = out["feats"].flatten(1).double()
    assert not torch.isclose(got.double(), batch_hard_triplet_loss(torch.cdist(pre, pre), pids, 0.3))
    torch.testing.assert_close(triplet_features(out), F.normalize(out["bn_feats"], dim=-1), rtol=0, atol=0)
    # the gradient reaches the BNNeck's affine weight through the normalised blocks
    got.backward()
    assert m.necks[1].bn.weight.grad is not None and m.necks[1].bn.weight.grad.abs().sum() > 0
    # the whole criterion uses the same triplet term
    _, logs = ReIDCriterion(C, triplet_on="concat")(m(x), pids)
    assert logs["loss_triplet"] == pytest.approx(float(crit.triplet_loss(m(x), pids).detach()), rel=1e-5)


def test_triplet_loss_of_the_default_model_stays_on_the_pre_bn_features(x, pids):
    crit = ReIDCriterion(C, triplet_on="concat")
    out = span_reid().train()(x)
    assert out["triplet_vectors"] == "pre_bn" and triplet_features(out) is out["feats"]
    pre = out["feats"].flatten(1).double()
    torch.testing.assert_close(crit.triplet_loss(out, pids).double(),
                               batch_hard_triplet_loss(torch.cdist(pre, pre), pids, 0.3), rtol=1e-4, atol=1e-5)
    # a hand-made output without the key (as tests and tools build them): pre-BN, as before
    bare = {"feats": out["feats"], "bn_feats": out["bn_feats"], "logits": None}
    assert torch.equal(crit.triplet_loss(bare, pids), crit.triplet_loss(out, pids))


def test_select_vectors_names():
    f, bn = torch.randn(3, 2, 5), torch.randn(3, 2, 5)
    out = {"feats": f, "bn_feats": bn}
    assert select_vectors(out, "pre_bn") is f and select_vectors(out, "post_bn") is bn
    torch.testing.assert_close(select_vectors(out, "pre_bn_l2"), f / f.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(select_vectors(out, "post_bn_l2"), bn / bn.norm(dim=-1, keepdim=True))
    with pytest.raises(ValueError, match="unknown vectors"):
        select_vectors(out, "post")
    assert EVAL_VECTORS == ("post_bn", "post_bn_l2", "pre_bn_l2")
    from reidlib.config import EVAL_FEATURES

    assert set(EVAL_FEATURES) == {""} | set(EVAL_VECTORS), "the config's choices are the vectors an output ranks"


# ------------------------------------------------------------------------------------------------
# sub-feature distances
# ------------------------------------------------------------------------------------------------

def test_euclidean_global_is_euclidean_on_block_0_only():
    g = torch.Generator().manual_seed(3)
    qf, gf = torch.randn(5, 4, 6, generator=g) * 7, torch.randn(9, 4, 6, generator=g) * 7
    qa, ga = torch.rand(5, 4, generator=g), torch.rand(9, 4, generator=g)
    d = build_distance("euclidean:global")((qf, qa), (gf, ga))
    want = torch.cdist(qf[:, 0].double(), gf[:, 0].double())
    torch.testing.assert_close(d.double(), want, rtol=1e-5, atol=1e-4)
    assert torch.equal(d, build_distance("euclidean")(qf[:, :1], gf[:, :1]))
    gf2 = gf.clone()
    gf2[:, 1:] = torch.randn(9, 3, 6, generator=g)                      # the parts do not matter
    assert torch.equal(build_distance("euclidean:global")(qf, gf2), d)
    assert repr(build_distance("euclidean:global")) == "Distance('euclidean:global')"


def test_euclidean_parts_is_the_unit_part_blocks_concatenated():
    a = torch.tensor([[[9.0, 9.0], [3.0, 4.0], [0.0, 2.0], [5.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [2.0, 0.0], [-5.0, 0.0]]])     # part distances 0, sqrt 2, 2
    d = build_distance("euclidean:parts")(a, b)
    torch.testing.assert_close(d, torch.tensor([[math.sqrt(0.0 + 2.0 + 4.0)]]), rtol=1e-6, atol=1e-6)
    g = torch.Generator().manual_seed(4)
    qf, gf = torch.randn(6, 4, 8, generator=g) * 20, torch.randn(7, 4, 8, generator=g)
    n = F.normalize
    want = torch.cdist(n(qf[:, 1:].double(), dim=-1).flatten(1), n(gf[:, 1:].double(), dim=-1).flatten(1))
    torch.testing.assert_close(build_distance("euclidean:parts", chunk_size=2)(qf, gf).double(), want,
                               rtol=1e-5, atol=1e-4)
    # numpy and half features, as the evaluator may pass them
    torch.testing.assert_close(build_distance("euclidean:parts")(qf.numpy(), gf.numpy()).double(), want,
                               rtol=1e-5, atol=1e-4)
    assert build_distance("euclidean:parts")(qf.half(), gf.half()).dtype == torch.float32


def test_blocks_view_is_the_block_normalised_concatenation():
    torch.manual_seed(0)
    qf, gf = torch.randn(3, 4, 5), torch.randn(4, 4, 5)
    n = torch.nn.functional.normalize
    want = torch.cdist(n(qf.double(), dim=-1).flatten(1), n(gf.double(), dim=-1).flatten(1))
    torch.testing.assert_close(build_distance("euclidean:blocks")(qf, gf).double(), want, rtol=1e-5, atol=1e-4)


def test_view_names_and_errors():
    names = distance_names()
    assert names[:len(DISTANCES)] == list(DISTANCES)
    assert {"euclidean:blocks", "euclidean:global", "euclidean:parts"} <= set(names)
    assert set(VIEWS) == {"blocks", "global", "parts"}
    assert not any(n.startswith("cpdm") and ":" in n for n in names)
    for bad in ("euclidean:side", "cpdm:parts", "manhattan:global", "euclidean:"):
        with pytest.raises(ConfigError, match="unknown distance"):
            build_distance(bad)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['squared'\]"):
        build_distance("euclidean:parts", squared=True)
    with pytest.raises(ValueError, match="P >= 2"):
        build_distance("euclidean:parts")(torch.randn(2, 1, 3), torch.randn(3, 1, 3))
    with pytest.raises(ValueError, match=r"needs feats \[N, P, d\]"):
        build_distance("euclidean:global")(torch.randn(2, 3), torch.randn(3, 3))


# ------------------------------------------------------------------------------------------------
# eval.features through the evaluation
# ------------------------------------------------------------------------------------------------

def _hand_outputs(model, root):
    """The model's eval-mode outputs on the test images, batched as the evaluator batches them
    (query then gallery, ``eval.batch_size`` = 8): the computation every evaluation did before
    ``eval.features`` existed (``out["bn_feats"].float()``)."""
    from reidlib.data.dataset import ImageDataset, build_transforms
    from reidlib.data.registry import load_dataset

    ds = load_dataset("veri776", root)
    tf = build_transforms(SIZE, SIZE, train=False)
    res = {}
    model.eval()
    with torch.no_grad():
        for split in ("query", "gallery"):
            recs = list(ds.query if split == "query" else ds.gallery)
            imgs = ImageDataset(recs, tf)
            outs = []
            for s in range(0, len(recs), 8):
                batch = torch.stack([imgs[i]["img"] for i in range(s, min(s + 8, len(recs)))])
                outs.append(model(batch))
            res[split] = {k: torch.cat([o[k] for o in outs]).float() for k in ("feats", "bn_feats")}
    return res


def _neck_stats(model):
    """``model`` with the BNNecks' statistics and scales of a trained model (seeded): an untrained
    BNNeck in eval mode is the identity up to ``1/sqrt(1 + eps)``, so before and after it would
    only differ by a scale."""
    from reidlib.models.heads import BNNeck

    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for neck in (mod for mod in model.modules() if isinstance(mod, BNNeck)):
            bn = neck.bn
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return model


def _baseline():
    torch.manual_seed(0)
    return _neck_stats(StrongBaseline(C, backbone=BK).eval())


def _musp():
    torch.manual_seed(0)
    return _neck_stats(MUSP(C, backbone=BK, num_attentions=3, ese_hidden=8).eval())


@pytest.mark.parametrize("make", [_baseline, _musp], ids=["baseline", "musp"])
def test_default_features_are_the_post_bn_vectors_bit_for_bit(tiny_veri, make):
    from reidlib.engine.evaluation import evaluate_reid

    model = make()
    hand = _hand_outputs(model, tiny_veri)
    m = evaluate_reid(model, tiny_veri, CFG, return_features=True)
    assert m["features"] == "post_bn" and m["query"]["features"] == "post_bn"
    for split in ("query", "gallery"):
        assert torch.equal(m[split]["feats"], hand[split]["bn_feats"]), split
    explicit = evaluate_reid(model, tiny_veri, {**CFG, "eval.features": "post_bn"}, return_features=True)
    assert torch.equal(explicit["query"]["feats"], m["query"]["feats"])
    assert torch.equal(explicit["gallery"]["feats"], m["gallery"]["feats"])
    assert explicit["mAP"] == m["mAP"] and explicit["R1"] == m["R1"]


@pytest.mark.parametrize("make", [_baseline, _musp], ids=["baseline", "musp"])
def test_pre_bn_l2_features_are_unit_vectors_taken_before_the_bnneck(tiny_veri, make):
    from reidlib.engine.evaluation import evaluate_reid

    model = make()
    hand = _hand_outputs(model, tiny_veri)
    for via in ({"eval.features": "pre_bn_l2"}, {}):
        kw = {} if via else {"features": "pre_bn_l2"}                    # config key or keyword
        m = evaluate_reid(model, tiny_veri, {**CFG, **via}, return_features=True, **kw)
        assert m["features"] == "pre_bn_l2"
        for split in ("query", "gallery"):
            f, pre = m[split]["feats"], hand[split]["feats"]
            assert f.shape == pre.shape and f.shape[1] == model.num_parts
            torch.testing.assert_close(f.norm(dim=-1), torch.ones(f.shape[:2]), rtol=0, atol=1e-6)
            torch.testing.assert_close(f, pre / pre.norm(dim=-1, keepdim=True), rtol=1e-6, atol=1e-7)
            assert not torch.allclose(f, F.normalize(hand[split]["bn_feats"], dim=-1), atol=1e-3)


def test_post_bn_l2_features_and_the_keyword_override(tiny_veri):
    from reidlib.engine.evaluation import evaluate_reid

    model = _musp()
    hand = _hand_outputs(model, tiny_veri)
    # the keyword wins over the config key
    m = evaluate_reid(model, tiny_veri, {**CFG, "eval.features": "pre_bn_l2"}, features="post_bn_l2",
                      return_features=True)
    assert m["features"] == "post_bn_l2"
    for split in ("query", "gallery"):
        bn = hand[split]["bn_feats"]
        torch.testing.assert_close(m[split]["feats"], bn / bn.norm(dim=-1, keepdim=True), rtol=1e-6, atol=1e-7)
    with pytest.raises(ConfigError, match="features='pre_bn'"):
        evaluate_reid(model, tiny_veri, CFG, features="pre_bn")


def test_block_model_ranks_its_normalised_blocks_and_sub_feature_rows(tiny_veri):
    """A cat_norm="block" SPAN model, its own features ("" = post_bn_l2), Euclidean ("w/ Cat") and
    the global-only / parts-only rankings of the same model, each matching a hand ranking."""
    from helpers import assert_ranked_by

    from reidlib.engine.evaluation import evaluate_reid

    model = _neck_stats(span_reid(cat_norm="block", distance="euclidean").eval())
    hand = _hand_outputs(model, tiny_veri)
    m = evaluate_reid(model, tiny_veri, CFG, return_features=True, return_distmat=True)
    assert m["features"] == "post_bn_l2" and m["distance"] == "euclidean"
    q, g = m["query"]["feats"], m["gallery"]["feats"]
    torch.testing.assert_close(q, F.normalize(hand["query"]["bn_feats"], dim=-1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(q.shape[:2]), rtol=0, atol=1e-6)
    assert_ranked_by(m, torch.cdist(q.flatten(1).double(), g.flatten(1).double()).numpy())
    glob = evaluate_reid(model, tiny_veri, CFG, distance="euclidean:global", return_features=True,
                         return_distmat=True)
    assert glob["distance"] == "euclidean:global"
    assert_ranked_by(glob, torch.cdist(q[:, 0].double(), g[:, 0].double()).numpy())
    parts = evaluate_reid(model, tiny_veri, {**CFG, "eval.distance": "euclidean:parts"}, return_features=True,
                          return_distmat=True)
    assert parts["distance"] == "euclidean:parts"
    assert_ranked_by(parts, torch.cdist(q[:, 1:].flatten(1).double(), g[:, 1:].flatten(1).double()).numpy())
    # the default SPAN model still ranks the un-normalised post-BN blocks
    plain = _neck_stats(span_reid().eval())
    m0 = evaluate_reid(plain, tiny_veri, CFG, return_features=True)
    assert m0["features"] == "post_bn" and m0["distance"] == "cpdm"
    assert torch.equal(m0["query"]["feats"], _hand_outputs(plain, tiny_veri)["query"]["bn_feats"])
