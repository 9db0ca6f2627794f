"""SPAN (Sec. 3.1), part features (Sec. 3.2), the strong baseline and the foreground net: shapes,
mask usage, gradient flow, a few optimisation steps. resnet18 at 64x64, batch 4, CPU only."""
from __future__ import annotations

import pytest
import torch

from reidlib.models.baseline import StrongBaseline
from reidlib.models.foreground import ForegroundNet, foreground_loss
from reidlib.models.part_features import SPANReID
from reidlib.engine.artifacts import load_span
from reidlib.losses.span import span_step1_loss
from reidlib.models.span import SPAN

B, C, D = 4, 7, 32
BK = "resnet18"


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(0)
    return torch.randn(B, 3, 64, 64)


@pytest.fixture(scope="module")
def span():
    torch.manual_seed(1)
    return SPAN(BK)


def test_baseline_shapes(x):
    m = StrongBaseline(C, backbone=BK)
    assert m.distance == "euclidean" and m.num_parts == 1
    out = m.train()(x)
    assert out["feats"].shape == (B, 1, 512) and out["bn_feats"].shape == (B, 1, 512)
    assert out["logits"].shape == (B, 1, C) and out["area_ratios"] is None and out["maps"] is None
    out = m.eval()(x)
    assert out["logits"] is None and out["bn_feats"].shape == (B, 1, 512)
    m2 = StrongBaseline(C, backbone=BK, neck_dim=D)
    assert m2(x)["feats"].shape == (B, 1, D)


def test_span_masks_shape_and_range(x, span):
    m = span.train()(x).detach()
    assert m.shape == (B, 3, 16, 16)                       # input / 4
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    assert span(x, size=(24, 12)).shape == (B, 3, 24, 12)
    p = span.predict_masks(x, (8, 8))
    assert p.shape == (B, 3, 8, 8) and not p.requires_grad and span.training   # mode restored
    assert SPAN(BK, out_size=(10, 20))(x[:2]).shape == (2, 3, 10, 20)


def test_span_defaults_are_the_earlier_network():
    """stride 16 + bilinear decoder = torchvision's conv1..layer3 and three MaskGenerators, built in
    that order: same parameter names, same seeded initialisation."""
    from reidlib.models.backbones import split_resnet
    from reidlib.models.span import MaskGenerator

    torch.manual_seed(7)
    new = SPAN(BK).state_dict()
    torch.manual_seed(7)
    ref = torch.nn.Module()
    ref.cnn_mask, _ = split_resnet(BK, None, last_stride=2)
    ref.g_front, ref.g_rear, ref.g_side = MaskGenerator(256), MaskGenerator(256), MaskGenerator(256)
    old = ref.state_dict()
    assert list(new) == list(old) and all(torch.equal(new[k], old[k]) for k in old)
    torch.manual_seed(7)
    s8 = SPAN(BK, stride=8).state_dict()                   # the max-pool has no weights: same tensors
    assert list(s8) == list(old) and all(torch.equal(s8[k], old[k]) for k in old)


@pytest.mark.parametrize("stride, decoder, side, feat", [(16, "bilinear", 16, 4), (16, "transposed", 32, 4),
                                                         (8, "bilinear", 32, 8), (8, "transposed", 64, 8)])
def test_span_stride_and_decoder_shapes(x, stride, decoder, side, feat):
    m = SPAN(BK, stride=stride, decoder=decoder).eval()
    with torch.no_grad():
        assert m.cnn_mask(x).shape == (B, 256, feat, feat)
        out = m(x)
    assert out.shape == (B, 3, side, side) and m.mask_stride == 64 // side
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert m(x[:1], size=(10, 12)).shape == (1, 3, 10, 12)
    assert m.config["stride"] == stride and m.config["decoder"] == decoder


def test_span_options_are_checked():
    from reidlib.errors import ConfigError
    from reidlib.models.registry import check_options, model_options

    opts = model_options("span-masks")
    assert opts["stride"][1] == 16 and opts["decoder"][1] == "bilinear"
    assert check_options("span-masks", {"stride": "8", "decoder": "transposed"}) == {"stride": 8, "decoder": "transposed"}
    with pytest.raises(ConfigError, match="stride"):
        check_options("span-masks", {"stride": 4})
    with pytest.raises(ConfigError, match="decoder"):
        check_options("span-masks", {"decoder": "nearest"})
    with pytest.raises(ValueError):
        SPAN(BK, stride=32)


def test_span_stride8_loads_torchvision_weights(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(11)
    state = resnet18(weights=None).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    m = SPAN(BK, weights=tmp_path / "r18.pth", stride=8, decoder="transposed")
    assert isinstance(m.cnn_mask[3], torch.nn.Identity)
    assert torch.equal(m.cnn_mask[0].weight, state["conv1.weight"])
    assert torch.equal(m.cnn_mask[6][1].conv2.weight, state["layer3.1.conv2.weight"])


def test_span_checkpoint_round_trip(tmp_path, x, span):
    span.eval()
    torch.save({"state_dict": span.state_dict(), "config": span.config}, tmp_path / "span.pt")
    loaded = load_span(tmp_path / "span.pt").eval()
    assert torch.allclose(loaded(x), span(x))


def test_spanreid_concat_shapes_and_frozen_span(x, span):
    m = SPANReID(C, backbone=BK, dim=D, span=span).train()
    assert not span.training and all(not p.requires_grad for p in span.parameters())
    assert m.num_parts == 4 and m.distance == "cpdm"
    out = m(x)
    assert out["feats"].shape == (B, 4, D) and out["bn_feats"].shape == (B, 4, D)
    assert out["logits"].shape == (B, 4, C)
    ar = out["area_ratios"]
    assert ar.shape == (B, 4) and torch.allclose(ar[:, 0], torch.ones(B))
    assert torch.allclose(ar[:, 1:].sum(1), torch.ones(B), atol=1e-5)
    assert out["maps"].shape == (B, 3, 16, 16)
    assert m.eval()(x)["logits"] is None


def test_part_features_use_masks(x):
    torch.manual_seed(2)
    m = SPANReID(C, backbone=BK, dim=D).eval()
    with torch.no_grad():
        ma = torch.zeros(B, 3, 16, 16)
        ma[:, 0, :, :8] = 1.0
        ma[:, 1, :8, :] = 0.5
        ma[:, 2, :, 8:] = 1.0
        mb = ma.flip(-1)
        oa, ob = m(x, masks=ma), m(x, masks=mb)
    assert torch.allclose(oa["feats"][:, 0], ob["feats"][:, 0])            # global untouched
    assert not torch.allclose(oa["feats"][:, 1], ob["feats"][:, 1])        # front changed
    assert torch.allclose(oa["feats"][:, 2], ob["feats"][:, 2], atol=1e-5)  # rear mask is symmetric
    assert not torch.allclose(oa["feats"][:, 3], ob["feats"][:, 3])        # side changed
    assert torch.allclose(oa["area_ratios"], ob["area_ratios"])            # same areas


def test_each_branch_sees_stage1_times_its_own_mask(x):
    """Branch i (1 front, 2 rear, 3 side) gets the stage-1 map times mask channel i-1, resized
    bilinearly to the stage-1 map; branch 0 the plain map. Recomputed branch by branch with three
    different masks, so exchanging two masks (or branches) changes the features."""
    import torch.nn.functional as F

    torch.manual_seed(5)
    m = SPANReID(C, backbone=BK, dim=D).eval()
    g = torch.Generator().manual_seed(6)
    masks = torch.rand(B, 3, 16, 16, generator=g)
    masks[:, 0, :, 8:] = 0.0                     # front on the left, rear on top, side everywhere
    masks[:, 1, 8:, :] = 0.0
    with torch.no_grad():
        out = m(x, masks=masks)
        f1 = m.stage1(x)                                                   # [B, 256, 4, 4]
        m1 = F.interpolate(masks, size=f1.shape[-2:], mode="bilinear", align_corners=False)
        inputs = [f1, f1 * m1[:, 0:1], f1 * m1[:, 1:2], f1 * m1[:, 2:3]]
        want = torch.stack([m.projs[i](m.branches[i](inputs[i]).mean(dim=(2, 3))) for i in range(4)], dim=1)
        # the features with the front and rear masks exchanged differ in both branches
        swapped = m(x, masks=masks[:, [1, 0, 2]])["feats"]
    torch.testing.assert_close(out["feats"], want, rtol=1e-5, atol=1e-5)
    for i in (1, 2):
        assert (swapped[:, i] - out["feats"][:, i]).abs().max() > 1e-3
    # area ratios of the given masks (eq. 4 inputs): AR_i = |M_i|_1 / sum_j |M_j|_1
    areas = masks.sum(dim=(2, 3))
    torch.testing.assert_close(out["area_ratios"][:, 1:], areas / areas.sum(1, keepdim=True))
    torch.testing.assert_close(out["maps"], masks)


def test_gradients_reach_stage1(x):
    torch.manual_seed(3)
    m = SPANReID(C, backbone=BK, dim=D).train()
    masks = torch.rand(B, 3, 16, 16)
    out = m(x, masks=masks)
    (out["feats"].pow(2).mean() + out["logits"].logsumexp(-1).mean()).backward()
    g = m.stage1[0].weight.grad
    assert g is not None and g.abs().sum() > 0
    for br in m.branches:
        assert next(br.parameters()).grad.abs().sum() > 0


def test_fc_aggregation(x, span):
    m = SPANReID(C, backbone=BK, dim=D, aggregation="fc", span=span).train()
    assert m.num_parts == 1 and m.distance == "euclidean"
    out = m(x)
    assert out["feats"].shape == (B, 1, D) and out["logits"].shape == (B, 1, C)
    assert out["area_ratios"] is None and out["maps"].shape == (B, 3, 16, 16)
    small = SPANReID(C, backbone=BK, dim=D, span=span, span_input_size=(32, 32)).eval()
    assert small(x)["maps"].shape == (B, 3, 8, 8)                          # SPAN run at its own size


def test_spanreid_needs_masks_or_span(x):
    m = SPANReID(C, backbone=BK, dim=D)
    with pytest.raises(ValueError):
        m(x)
    with pytest.raises(ValueError):
        SPANReID(C, backbone=BK, aggregation="sum")


def test_registry_builds_models():
    from reidlib.models.registry import build_model

    assert isinstance(build_model("baseline", C, backbone=BK), StrongBaseline)
    assert isinstance(build_model("span", C, backbone=BK, dim=D), SPANReID)


def test_foreground_net_shapes_and_loss(x):
    net = ForegroundNet(BK)
    logits = net(x)
    assert logits.shape == (B, 1, 16, 16)
    target = (torch.rand(B, 64, 64) > 0.5).float()
    loss = foreground_loss(logits, target)
    assert loss.ndim == 0 and loss.item() > 0
    p = net.predict(x, (32, 32))
    assert p.shape == (B, 1, 32, 32) and float(p.min()) >= 0 and float(p.max()) <= 1


def test_span_optimisation_lowers_loss():
    torch.manual_seed(4)
    x = torch.randn(B, 3, 32, 32)
    span = SPAN(BK).train()
    fg = torch.zeros(B, 1, 8, 8)
    fg[:, :, 2:6, 1:7] = 1.0                                     # the "vehicle"
    view_vec = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.float32)

    def loss_of(masks):
        return span_step1_loss(masks, fg, view_vec)[0]            # eq. (6), all three terms

    opt = torch.optim.Adam(span.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = loss_of(span(x))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
