"""SPAN step-1 losses (eqs. 1-3, 6), re-ID losses (ID, batch-hard triplet, criterion) and MUSP eq. 14.
Expected values are computed by hand in the comments, or by plain loops written here (the
criterion in every mode and option: distances pair by pair, batch-hard anchor by anchor)."""
import math

import pytest
import torch
import torch.nn.functional as F

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


def test_mask_reconstruction_resizes_the_foreground_antialiased():
    """A 1 x 4 foreground [1, 1, 0, 0] shrunk to the masks' 1 x 2 (bilinear with antialiasing =
    PIL's triangle filter of support 2 input pixels): output pixel 0 is centred at input x = 1 and
    weighs pixels 0, 1, 2 by 0.75, 0.75, 0.25 (normalised by 1.75), so V = [6/7, 1/7]. A nearest or
    plain bilinear resize would give [1, 0]."""
    m = _masks_1x2().repeat(2, 1, 1, 1)                     # F = [1, 0], R = [.5, .5], S = [0, 1]
    fg = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 4).repeat(2, 1, 1, 1)
    l = torch.tensor([[1, 0, 1], [0, 1, 0]])
    # image 0: F + S = [1, 1] vs [6/7, 1/7] -> errors 1/49, 36/49
    # image 1: R = [.5, .5] vs [6/7, 1/7]   -> errors (5/14)^2 twice = 25/196 each
    want = (4 / 196 + 144 / 196 + 25 / 196 + 25 / 196) / 4
    assert mask_reconstruction_loss(m, fg, l).item() == approx(want)
    # two rows [1, 1, 1, 0] and [1, 1, 0, 0] -> one row: the mean of [1, 4/7] and [6/7, 1/7]
    fg2 = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]).view(1, 1, 2, 4)
    v = torch.tensor([13 / 14, 5 / 14])
    want2 = float(((v - torch.tensor([1.0, 1.0])) ** 2).mean())   # l = [1, 0, 1]: F + S = [1, 1]
    assert mask_reconstruction_loss(m[:1], fg2, l[:1]).item() == approx(want2)
    # the area term sees the same resized foreground: ||V||_1 = 1 for image 0, front ratio 1 / 1
    assert area_constraint_loss(m[:1], fg[:1], torch.zeros(1, 3)).item() == approx(1.0 + 1.0 + 1.0)


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


# independent references: plain loops over pairs / anchors, no reidlib code
def _ref_euclid(a, b, squared=False):
    d = torch.tensor([[float(((x - y) ** 2).sum()) for y in b] for x in a], dtype=torch.float64)
    return d if squared else d.sqrt()


def _ref_cpdm(f, ar, global_weight=None, squared=False):
    """SPAN eqs. (4)-(5) (global_weight None) or MUSP eqs. (9)-(10), pair by pair."""
    B, P, _ = f.shape
    out = torch.zeros(B, B, dtype=torch.float64)
    first = 0 if global_weight is None else 1
    for a in range(B):
        for b in range(B):
            dist = [float(((f[a, i] - f[b, i]) ** 2).sum()) for i in range(P)]
            dist = dist if squared else [x ** 0.5 for x in dist]
            co = [float(ar[a, i] * ar[b, i]) for i in range(P)]
            den = sum(co[first:])
            val = sum(co[i] / den * dist[i] for i in range(first, P))
            out[a, b] = val + (0.0 if global_weight is None else global_weight * dist[0])
    return out


def _ref_batch_hard(dist, pids, margin):
    per = []
    for a in range(len(pids)):
        pos = [float(dist[a, j]) for j in range(len(pids)) if j != a and pids[j] == pids[a]]
        neg = [float(dist[a, j]) for j in range(len(pids)) if pids[j] != pids[a]]
        if pos and neg:
            per.append(max(0.0, margin + max(pos) - min(neg)))
    return sum(per) / len(per)


def _ref_id(logits, pids, eps, reduction="mean"):
    heads = [F.cross_entropy(logits[:, l].double(), pids, label_smoothing=eps) for l in range(logits.shape[1])]
    return float(sum(heads) / (len(heads) if reduction == "mean" else 1))


def _ref_acc(logits, pids):
    mean = logits.mean(dim=1)
    return sum(int(mean[b].argmax()) == int(pids[b]) for b in range(len(pids))) / len(pids)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("mode", ["concat", "per_part", "global", "cpdm"])
def test_reid_criterion_modes(mode, squared):
    out, pids = _fake_out()
    crit = ReIDCriterion(3, triplet_on=mode, margin=0.3, id_weight=0.5, triplet_weight=2.0, label_smoothing=0.2,
                         distance_kwargs={"squared": True} if squared else None)
    loss, logs = crit(out, pids)
    f = out["feats"].detach()
    want_id = _ref_id(out["logits"].detach(), pids, 0.2)
    if mode == "concat":
        want_tri = _ref_batch_hard(_ref_euclid(f.reshape(6, -1), f.reshape(6, -1), squared), pids, 0.3)
    elif mode == "global":
        want_tri = _ref_batch_hard(_ref_euclid(f[:, 0], f[:, 0], squared), pids, 0.3)
    elif mode == "per_part":
        want_tri = sum(_ref_batch_hard(_ref_euclid(f[:, i], f[:, i], squared), pids, 0.3) for i in range(4))
    else:
        want_tri = _ref_batch_hard(_ref_cpdm(f, out["area_ratios"], squared=squared), pids, 0.3)
    assert want_tri > 0.05                      # margins active: a wrong distance changes the value
    assert logs["loss_id"] == approx(want_id)
    assert logs["loss_triplet"] == pytest.approx(want_tri, rel=1e-4, abs=1e-4)
    assert logs["loss_div"] == approx(0.5)
    assert loss.item() == pytest.approx(0.5 * want_id + 2.0 * want_tri + 0.5, rel=1e-4, abs=1e-4)
    assert logs["total"] == approx(loss.item())
    assert logs["acc"] == approx(_ref_acc(out["logits"].detach(), pids))
    loss.backward()
    assert torch.isfinite(out["feats"].grad).all() and out["logits"].grad is not None


def test_reid_criterion_accuracy_is_top1_of_the_mean_logits():
    out, pids = _fake_out()
    logits = torch.zeros(6, 2, 3)
    logits[:, 0] = torch.tensor([[5., 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5], [0, 0, 5], [5, 0, 0]])
    logits[:, 1] = torch.tensor([[0., 0, 0], [9, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    # mean over the two heads: argmax 0, 0 (4.5 > 2.5), 1, 2, 2, 0 vs pids 0 0 1 1 2 2 -> 4 of 6 right
    # (head 0 alone: 0, 1, 1, 2, 2, 0 -> 3 of 6)
    _, logs = ReIDCriterion(3, triplet_on="global")(dict(out, logits=logits), pids)
    assert logs["acc"] == pytest.approx(4 / 6)
    # one head ([B, C]) is a head axis of 1
    _, logs1 = ReIDCriterion(3, triplet_on="global")(dict(out, logits=logits[:, 0]), pids)
    assert logs1["acc"] == pytest.approx(3 / 6)


def test_reid_criterion_options_and_errors():
    out, pids = _fake_out()
    _, logs_mean = ReIDCriterion(3)(out, pids)
    _, logs_sum = ReIDCriterion(3, id_reduction="sum")(out, pids)
    assert logs_sum["loss_id"] == approx(4 * logs_mean["loss_id"])               # 4 heads
    assert logs_sum["loss_id"] == approx(_ref_id(out["logits"].detach(), pids, 0.1, "sum"))
    out_noar = dict(out, area_ratios=None, logits=None, aux_losses={})
    loss, logs = ReIDCriterion(3)(out_noar, pids)
    assert logs["loss_id"] == 0.0 and "acc" not in logs and logs["total"] == approx(logs["loss_triplet"])
    with pytest.raises(ValueError):
        ReIDCriterion(3, triplet_on="cpdm")(out_noar, pids)
    with pytest.raises(ValueError):
        ReIDCriterion(3, triplet_on="bogus")
    with pytest.raises(ValueError):
        ReIDCriterion(3, triplet_on="concat", distance_kwargs={"global_weight": 0.5})
    # triplet_weight 0: no triplet term at all
    loss0, logs0 = ReIDCriterion(3, triplet_weight=0.0)(out, pids)
    assert logs0["loss_triplet"] == 0.0 and loss0.item() == approx(logs0["loss_id"] + 0.5)


@pytest.mark.parametrize("global_weight, squared", [(0.25, False), (1 / 3, True)])
def test_reid_criterion_musp_cpdm_global_weight(global_weight, squared):
    """MUSP-style CPDM in the triplet (eqs. 9-10): the criterion with ``global_weight`` equals the ID
    loss + the batch-hard triplet on a CPDM computed pair by pair, global term weighted by g."""
    out, pids = _fake_out(seed=3)
    kw = {"global_weight": global_weight, "squared": squared}
    loss, logs = ReIDCriterion(3, triplet_on="cpdm", margin=0.5, distance_kwargs=kw)(out, pids)
    f, ar = out["feats"].detach(), out["area_ratios"]
    want_tri = _ref_batch_hard(_ref_cpdm(f, ar, global_weight=global_weight, squared=squared), pids, 0.5)
    spanlike = _ref_batch_hard(_ref_cpdm(f, ar, squared=squared), pids, 0.5)
    assert abs(want_tri - spanlike) > 1e-3                   # the option changes the value
    want_id = _ref_id(out["logits"].detach(), pids, 0.1)
    assert logs["loss_triplet"] == pytest.approx(want_tri, rel=1e-4, abs=1e-5)
    assert loss.item() == pytest.approx(want_id + want_tri + 0.5, rel=1e-4, abs=1e-5)


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
