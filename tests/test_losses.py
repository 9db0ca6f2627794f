"""SPAN step-1 losses (eqs. 1-3, 6), re-ID losses (ID, batch-hard triplet, criterion) and MUSP eq. 14.
Expected values are computed by hand in the comments."""
import math

import pytest
import torch
import torch.nn.functional as F

from reidlib.cpdm import cpdm_distance
from reidlib.losses import (CrossEntropyLabelSmooth, ReIDCriterion, area_constraint_loss, attention_product_loss,
                            batch_hard_triplet_loss, mask_reconstruction_loss, max_area_table, span_step1_loss,
                            spatial_diversity_loss)


def approx(x, **kw):
    return pytest.approx(x, rel=1e-5, abs=1e-6, **kw)


# ---------------------------------------------------------------------------------------------
# SPAN eq. (1)
# ---------------------------------------------------------------------------------------------
def _masks_1x2():
    # one image, 1 x 2 pixels; channels front, rear, side
    return torch.tensor([[[[1.0, 0.0]], [[0.5, 0.5]], [[0.0, 1.0]]]])        # [1, 3, 1, 2]


def test_mask_reconstruction_hand_case():
    m = _masks_1x2().repeat(2, 1, 1, 1)
    fg = torch.ones(2, 1, 1, 2)
    l = torch.tensor([[1, 0, 1], [0, 1, 0]])
    # image 0: F + S = [1, 1] = V -> 0.  image 1: R = [.5, .5] -> errors .25, .25
    # MSE over pixels and batch: (0 + 0 + .25 + .25) / 4
    assert mask_reconstruction_loss(m, fg, l).item() == approx(0.125)
    assert mask_reconstruction_loss(m, fg[:, 0], l).item() == approx(0.125)     # [B, H, W] fg
    # a full-resolution foreground is resized to the masks' size (all ones stays all ones)
    assert mask_reconstruction_loss(m, torch.ones(2, 1, 4, 8), l).item() == approx(0.125)


# ---------------------------------------------------------------------------------------------
# SPAN eq. (2) and the area caps
# ---------------------------------------------------------------------------------------------
def test_max_area_table():
    views = torch.tensor([0, 1, 2, 3, 4])            # F, R, S, FS, RS
    paper = max_area_table(views)
    assert torch.allclose(paper, torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [.7, 0, .7], [0, .7, .7]]))
    code = max_area_table(views, mode="code")
    assert torch.allclose(code, torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [.7, 0, .4], [0, .7, .4]]))
    # label vectors give the same table; `a` changes the two-view caps
    l = torch.tensor([[1, 0, 0], [0, 1, 1]])
    assert torch.allclose(max_area_table(l, a=0.6), torch.tensor([[1, 0, 0], [0, .6, .6]]))
    with pytest.raises(ValueError):
        max_area_table(views, mode="other")


def test_area_constraint_hand_case():
    m = torch.zeros(2, 3, 2, 2)
    m[0, 0] = 1.0                                    # front area 4
    m[0, 2, 0] = 1.0                                 # side area 2
    fg = torch.ones(2, 1, 2, 2)                      # ||V||_1 = 4
    # image 0 ratios [1, 0, .5]; image 1 all zero
    fs = torch.tensor([[0.7, 0.0, 0.7], [0.7, 0.0, 0.7]])
    # paper caps: [1-.7]_+ + 0 + [.5-.7]_+ = .3 ; image 1: 0 -> mean .15
    assert area_constraint_loss(m, fg, fs).item() == approx(0.15)
    # code caps [.7, 0, .4]: .3 + .1 = .4 -> mean .2
    assert area_constraint_loss(m, fg, max_area_table(torch.tensor([3, 3]), mode="code")).item() == approx(0.2)
    # single front view: cap [1, 0, 0] -> 0 + 0 + .5
    assert area_constraint_loss(m[:1], fg[:1], max_area_table(torch.tensor([0]))).item() == approx(0.5)


# ---------------------------------------------------------------------------------------------
# SPAN eq. (3)
# ---------------------------------------------------------------------------------------------
def test_spatial_diversity_hand_case():
    m = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]], [[0.4, 1.0]]]])          # F, R, S over 2 pixels
    # dots / 2 pixels: F.R = .25/2 = .125, F.S = (.4 + .5)/2 = .45, R.S = .5/2 = .25
    # default margins (0, .04, .04): .125 + .41 + .21 = .745
    assert spatial_diversity_loss(m).item() == approx(0.745)
    assert spatial_diversity_loss(m, {"FS": 0.5}).item() == approx(0.125 + 0.0 + 0.21)
    assert spatial_diversity_loss(m, {(0, 2): 0.5, "R.S": 0.3}).item() == approx(0.125)
    assert spatial_diversity_loss(m, [0.2, 0.5, 0.3]).item() == approx(0.0)
    # batch mean: a second image without overlap adds 0
    m2 = torch.cat([m, torch.zeros_like(m)])
    assert spatial_diversity_loss(m2).item() == approx(0.745 / 2)
    with pytest.raises(ValueError):
        spatial_diversity_loss(m, {"XY": 0.1})


# ---------------------------------------------------------------------------------------------
# SPAN eq. (6)
# ---------------------------------------------------------------------------------------------
def test_span_step1_total_and_switches():
    m = _masks_1x2().clone().requires_grad_(True)
    fg = torch.ones(1, 1, 1, 2)
    l = torch.tensor([[0, 1, 0]])                    # rear only
    # recon: R = [.5, .5] vs [1, 1] -> .25
    # area (paper, cap [0, 1, 0]): ratios F .5, R .5, S .5 -> .5 + 0 + .5 = 1
    # div with F = [1, 0], R = [.5, .5], S = [0, 1]: F.R = .5/2 = .25, F.S = 0, R.S = .5/2 = .25
    #     -> [.25 - 0]_+ + [0 - .04]_+ + [.25 - .04]_+ = .46
    total, terms = span_step1_loss(m, fg, l)
    assert terms["recon"].item() == approx(0.25)
    assert terms["area"].item() == approx(1.0)
    assert terms["div"].item() == approx(0.46)
    assert total.item() == approx(0.25 + 0.5 * 1.0 + 0.46)
    total.backward()
    assert m.grad is not None and torch.isfinite(m.grad).all()
    t2, terms2 = span_step1_loss(m, fg, l, use_area=False, lambda_div=2.0)
    assert set(terms2) == {"recon", "div"} and t2.item() == approx(0.25 + 2 * 0.46)
    t3, terms3 = span_step1_loss(m, fg, l, use_recon=False, use_area=False, use_div=False)
    assert terms3 == {} and t3.item() == 0.0 and t3.requires_grad
    # explicit caps override the table
    t4, terms4 = span_step1_loss(m, fg, l, max_area=torch.tensor([[1.0, 1.0, 1.0]]))
    assert terms4["area"].item() == approx(0.0)


# ---------------------------------------------------------------------------------------------
# ID loss
# ---------------------------------------------------------------------------------------------
def test_label_smoothing_hand_case():
    ce = CrossEntropyLabelSmooth(2, epsilon=0.1)
    assert ce(torch.zeros(1, 2), torch.tensor([0])).item() == approx(math.log(2))
    # p = [.75, .25]; q = [.95, .05]
    logits = torch.tensor([[math.log(3.0), 0.0]])
    want = -(0.95 * math.log(0.75) + 0.05 * math.log(0.25))
    assert ce(logits, torch.tensor([0])).item() == approx(want)
    # same definition as torch's label_smoothing
    x, y = torch.randn(5, 7), torch.tensor([0, 3, 6, 2, 2])
    assert CrossEntropyLabelSmooth(7, 0.1)(x, y).item() == approx(F.cross_entropy(x, y, label_smoothing=0.1).item())
    assert CrossEntropyLabelSmooth(7, 0.0)(x, y).item() == approx(F.cross_entropy(x, y).item())


# ---------------------------------------------------------------------------------------------
# batch-hard triplet
# ---------------------------------------------------------------------------------------------
DIST = torch.tensor([[0.0, 1.0, 3.0, 4.0],
                     [1.0, 0.0, 2.0, 5.0],
                     [3.0, 2.0, 0.0, 1.5],
                     [4.0, 5.0, 1.5, 0.0]])
PIDS = torch.tensor([0, 0, 1, 1])


def test_batch_hard_hand_case():
    # hardest (positive, negative) per anchor: (1, 3), (1, 2), (1.5, 2), (1.5, 4)
    assert batch_hard_triplet_loss(DIST, PIDS, margin=0.3).item() == approx(0.0)
    # margin 1: [1+1-3]_+ = 0, [1+1-2]_+ = 0, [1+1.5-2]_+ = .5, [1+1.5-4]_+ = 0 -> .125
    assert batch_hard_triplet_loss(DIST, PIDS, margin=1.0).item() == approx(0.125)
    soft = sum(math.log1p(math.exp(x)) for x in (-2.0, -1.0, -0.5, -2.5)) / 4
    assert batch_hard_triplet_loss(DIST, PIDS, margin=None).item() == approx(soft)
    # an anchor without another positive is skipped: drop image 3 -> anchor 2 has no positive
    d3, p3 = DIST[:3, :3], PIDS[:3]
    # anchors 0, 1 with margin 1: 0 and 0; anchor 2 skipped
    assert batch_hard_triplet_loss(d3, p3, margin=1.0).item() == approx(0.0)
    assert batch_hard_triplet_loss(d3, p3, margin=2.5).item() == approx(((2.5 + 1 - 3) + (2.5 + 1 - 2)) / 2)
    # all one id: no negatives at all -> 0, still differentiable
    d = DIST.clone().requires_grad_(True)
    out = batch_hard_triplet_loss(d, torch.zeros(4, dtype=torch.long))
    out.backward()
    assert out.item() == 0.0 and d.grad is not None


# ---------------------------------------------------------------------------------------------
# ReIDCriterion
# ---------------------------------------------------------------------------------------------
def _fake_out(B=6, P=4, d=3, C=3, L=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, P, d, generator=g).requires_grad_(True)
    logits = torch.randn(B, L, C, generator=g).requires_grad_(True)
    ar = torch.cat([torch.ones(B, 1), torch.rand(B, P - 1, generator=g)], dim=1)
    ar[:, 1:] /= ar[:, 1:].sum(1, keepdim=True)
    out = {"feats": feats, "bn_feats": feats.detach(), "logits": logits, "area_ratios": ar, "maps": None,
           "aux_losses": {"loss_div": torch.tensor(0.5, requires_grad=True)}}
    return out, torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("mode", ["concat", "per_part", "global", "cpdm"])
def test_reid_criterion_modes(mode):
    out, pids = _fake_out()
    crit = ReIDCriterion(3, triplet_on=mode, margin=0.3, id_weight=1.0, triplet_weight=2.0)
    loss, logs = crit(out, pids)
    f = out["feats"].detach()
    ce = CrossEntropyLabelSmooth(3, 0.1)
    want_id = sum(ce(out["logits"][:, l].detach(), pids) for l in range(4)) / 4
    if mode == "concat":
        want_tri = batch_hard_triplet_loss(torch.cdist(f.reshape(6, -1), f.reshape(6, -1)), pids, 0.3)
    elif mode == "global":
        want_tri = batch_hard_triplet_loss(torch.cdist(f[:, 0], f[:, 0]), pids, 0.3)
    elif mode == "per_part":
        want_tri = sum(batch_hard_triplet_loss(torch.cdist(f[:, i], f[:, i]), pids, 0.3) for i in range(4))
    else:
        ar = out["area_ratios"]
        want_tri = batch_hard_triplet_loss(cpdm_distance(f, ar, f, ar), pids, 0.3)
    assert logs["loss_id"] == approx(want_id.item())
    assert logs["loss_triplet"] == pytest.approx(want_tri.item(), rel=1e-4, abs=1e-4)
    assert logs["loss_div"] == approx(0.5)
    assert loss.item() == pytest.approx(want_id.item() + 2.0 * want_tri.item() + 0.5, rel=1e-4, abs=1e-4)
    assert logs["total"] == approx(loss.item())
    assert 0.0 <= logs["acc"] <= 1.0
    loss.backward()
    assert torch.isfinite(out["feats"].grad).all() and out["logits"].grad is not None


def test_reid_criterion_options_and_errors():
    out, pids = _fake_out()
    _, logs_mean = ReIDCriterion(3)(out, pids)
    _, logs_sum = ReIDCriterion(3, id_reduction="sum")(out, pids)
    assert logs_sum["loss_id"] == approx(4 * logs_mean["loss_id"])               # 4 heads
    out_noar = dict(out, area_ratios=None, logits=None, aux_losses={})
    loss, logs = ReIDCriterion(3)(out_noar, pids)
    assert logs["loss_id"] == 0.0 and "acc" not in logs and logs["total"] == approx(logs["loss_triplet"])
    with pytest.raises(ValueError):
        ReIDCriterion(3, triplet_on="cpdm")(out_noar, pids)
    with pytest.raises(ValueError):
        ReIDCriterion(3, triplet_on="bogus")
    with pytest.raises(ValueError):
        ReIDCriterion(3, triplet_on="concat", distance_kwargs={"global_weight": 0.5})
    # MUSP-style CPDM in the triplet
    loss, _ = ReIDCriterion(3, triplet_on="cpdm", distance_kwargs={"global_weight": 1 / 3})(out, pids)
    assert torch.isfinite(loss)


# ---------------------------------------------------------------------------------------------
# MUSP eq. (14)
# ---------------------------------------------------------------------------------------------
def test_attention_product_hand_case():
    a = torch.tensor([[[[0.5, 0.2]], [[0.4, 0.1]]],          # image 0: products .2, .02 -> .22
                      [[[1.0, 0.0]], [[0.3, 0.7]]]])         # image 1: .3, 0 -> .3
    assert attention_product_loss(a).item() == approx(0.52)                   # paper: sum over images
    assert attention_product_loss(a, reduction="mean").item() == approx(0.26)
    torch.testing.assert_close(attention_product_loss(a, reduction="none"), torch.tensor([0.22, 0.3]))
    # three maps: product of all three
    b = torch.full((1, 3, 2, 2), 0.5)
    assert attention_product_loss(b).item() == approx(4 * 0.125)
    with pytest.raises(ValueError):
        attention_product_loss(a, reduction="max")
