"""MUSP model (papers/musp.md eqs. 1-8, 14): shapes, softmax partition, background discard, ESE,
area ratios, train/eval contract and a few optimisation steps. CPU, resnet18, 64x64 inputs."""
import pytest
import torch
import torch.nn.functional as F

from reidlib.models.musp import MUSP, ExtendedSE, soft_partition_pool

C = 4  # identities


def _model(n=5, attention="softmax", **kw):
    torch.manual_seed(0)
    return MUSP(num_classes=C, backbone="resnet18", num_attentions=n, attention=attention, **kw)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 64, 64, generator=g)


@pytest.mark.parametrize("attention", ["softmax", "sigmoid"])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_shapes_train_and_eval(n, attention, images):
    model = _model(n, attention)
    assert model.num_parts == n and model.num_attentions == n
    out = model.train()(images)
    assert out["feats"].shape == (4, n, 512) and out["bn_feats"].shape == (4, n, 512)
    assert out["logits"].shape == (4, n, C)
    assert out["area_ratios"].shape == (4, n)
    assert out["maps"].shape == (4, n - 1, 4, 4)           # output stride 16 -> 64/16
    assert set(out["aux_losses"]) == {"loss_div"} and out["aux_losses"]["loss_div"].dim() == 0
    assert torch.isfinite(out["aux_losses"]["loss_div"])

    with torch.no_grad():
        ev = model.eval()(images)
    assert ev["logits"] is None and ev["aux_losses"] == {}
    assert ev["feats"].shape == (4, n, 512)
    maps = model.attention(images)
    if attention == "softmax":
        assert maps.shape == (4, n, 4, 4)
        torch.testing.assert_close(maps.sum(dim=1), torch.ones(4, 4, 4))
        torch.testing.assert_close(ev["maps"], maps[:, : n - 1])      # background map is last
    else:
        assert maps.shape == (4, n - 1, 4, 4)
        assert bool(((maps > 0) & (maps < 1)).all())
        torch.testing.assert_close(ev["maps"], maps)


def test_area_ratios(images):
    model = _model(5).eval()
    with torch.no_grad():
        out = model(images)
        maps = model.attention(images)
    ar = out["area_ratios"]
    torch.testing.assert_close(ar[:, 0], torch.ones(4))
    assert bool(((ar[:, 1:] >= 0) & (ar[:, 1:] <= 1)).all())
    torch.testing.assert_close(ar[:, 1:], maps[:, :4].mean(dim=(2, 3)))  # eq. 9: mean attention weight
    # kept parts + background share each location's unit mass
    assert bool((ar[:, 1:].sum(dim=1) < 1).all())
    l1 = _model(5, area_ratio="l1").eval()
    with torch.no_grad():
        ar1 = l1(images)["area_ratios"]
    torch.testing.assert_close(ar1[:, 1:].sum(dim=1), torch.ones(4))


def test_soft_partition_pool_matches_definition():
    g = torch.Generator().manual_seed(0)
    value = torch.randn(2, 7, 3, 5, generator=g)
    w = torch.softmax(torch.randn(2, 4, 3, 5, generator=g), dim=1)
    got = soft_partition_pool(value, w)                               # [2, 4, 7]
    ref = torch.einsum("bkhw,bchw->bkc", w, value) / 15.0
    torch.testing.assert_close(got, ref)


def _background_only_perturbation(model, images, scale=10.0):
    """A value-map perturbation dV that changes only the background vector f_n of eq. (4).

    With P = the n attention maps as rows [n, hw], pick delta = the background row minus its
    projection on the span of the kept rows: sum_x a_i(x) delta(x) = 0 for every kept part i, but
    sum_x a_n(x) delta(x) = |delta|^2 > 0. Adding delta(x) * u to V therefore moves f_n by
    |delta|^2 u / hw and leaves f_1..f_{n-1} untouched."""
    with torch.no_grad():
        fmap = model.backbone(images)
        P = model.soft_partition(fmap)["weights"].flatten(2).double()     # [B, n, hw]
    kept, bg = P[:, :-1], P[:, -1:]                                        # [B, n-1, hw], [B, 1, hw]
    coef = torch.linalg.lstsq(kept.transpose(1, 2), bg.transpose(1, 2)).solution  # [B, n-1, 1]
    delta = (bg - coef.transpose(1, 2) @ kept)[:, 0]                       # [B, hw]
    delta = delta / delta.norm(dim=1, keepdim=True)
    B, h, w = fmap.shape[0], fmap.shape[2], fmap.shape[3]
    u = torch.randn(model.feat_dim, generator=torch.Generator().manual_seed(5)).double()
    dV = (scale * delta.view(B, 1, h, w) * u.view(1, -1, 1, 1)).float()   # [B, c, h, w]
    return fmap, dV


def test_background_vector_never_reaches_features(images, attention_gain=8.0):
    """Perturbing only the background vector f_n (eq. 4) leaves every output feature unchanged
    (eq. 5 discards it before ESE), while the same perturbation does leak into the parts with the
    public-code ESE over all n vectors - so the test can see a leak when there is one."""
    results = {}
    for over_all in (False, True):
        model = _model(5, ese_over_all=over_all).eval()
        with torch.no_grad():
            model.attn.weight.mul_(attention_gain)     # sharper, more distinct maps than at init
        fmap, dV = _background_only_perturbation(model, images)
        with torch.no_grad():
            base_sp = model.soft_partition(fmap)
            base = model(images)
            hook = model.value.register_forward_hook(lambda m, inp, out: out + dV)
            try:
                pert_sp = model.soft_partition(fmap)
                pert = model(images)
            finally:
                hook.remove()
        # the perturbation hits the background vector hard and the kept vectors not at all
        bg_change = (pert_sp["vectors"][:, -1] - base_sp["vectors"][:, -1]).norm(dim=1)
        assert bool((bg_change > 1e-2).all())
        torch.testing.assert_close(pert_sp["vectors"][:, :-1], base_sp["vectors"][:, :-1], atol=1e-5, rtol=1e-5)
        results[over_all] = (base, pert)

    base, pert = results[False]
    torch.testing.assert_close(pert["feats"], base["feats"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pert["bn_feats"], base["bn_feats"], atol=1e-5, rtol=1e-5)
    base, pert = results[True]
    assert (pert["feats"][:, 1:] - base["feats"][:, 1:]).abs().max() > 1e-4


def test_background_logit_acts_only_through_softmax_normaliser(images):
    """The discarded background enters F_d only through the softmax normaliser of eq. (4).

    For L = sum_i <g_i, f_i> over the kept parts, autograd through the model must give
    dL/dA_bg(x) = -a_bg(x) s(x) with s(x) = sum_i a_i(x) <g_i, V(x)> / hw (no "own value" term
    a_bg(x) <g_bg, V(x)>, which a leaked background vector would add), while a kept logit has the
    extra own term: dL/dA_j(x) = a_j(x) (<g_j, V(x)> / hw - s(x))."""
    model = _model(4, ese=False).eval()
    with torch.no_grad():
        fmap = model.backbone(images)
    leaf = {}

    def capture(module, inp, out):                    # make the attention logits a leaf tensor
        leaf["A"] = out.detach().requires_grad_(True)
        return leaf["A"]

    hook = model.attn.register_forward_hook(capture)
    try:
        sp = model.soft_partition(fmap)
    finally:
        hook.remove()
    parts = sp["parts"]                                               # [B, 3, c]
    g = torch.randn(parts.shape, generator=torch.Generator().manual_seed(7))
    (grad_A,) = torch.autograd.grad((parts * g).sum(), leaf["A"])     # [B, 4, h, w]

    with torch.no_grad():
        V = sp["value"]                                               # [B, c, h, w]
        a = torch.softmax(leaf["A"], dim=1)                           # [B, 4, h, w]
        hw = V.shape[2] * V.shape[3]
        gv = torch.einsum("bkc,bchw->bkhw", g, V) / hw                # <g_i, V(x)> / hw, [B, 3, h, w]
        s = (a[:, :3] * gv).sum(dim=1)                                # [B, h, w]
    torch.testing.assert_close(grad_A[:, 3], -a[:, 3] * s, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(grad_A[:, :3], a[:, :3] * (gv - s.unsqueeze(1)), atol=1e-6, rtol=1e-4)
    assert grad_A[:, 3].abs().max() > 0                               # the normaliser path is real


def test_ese_gate_in_open_unit_interval(images):
    model = _model(5).eval()
    assert isinstance(model.ese, ExtendedSE)
    assert model.ese.fc1.in_features == 4 * 512 and model.ese.fc1.out_features == 128
    with torch.no_grad():
        sp = model.soft_partition(model.backbone(images))
        gate = model.ese.gate(sp["vectors"][:, :4])
    assert gate.shape == (4, 4, 512)
    assert bool(((gate > 0) & (gate < 1)).all())
    torch.testing.assert_close(sp["parts"], sp["vectors"][:, :4] * gate)
    over = _model(5, ese_over_all=True)
    assert over.ese.fc1.in_features == 5 * 512


def test_ese_off(images):
    model = _model(5, ese=False).eval()
    assert model.ese is None
    with torch.no_grad():
        fmap = model.backbone(images)
        sp = model.soft_partition(fmap)
        out = model(images)
    torch.testing.assert_close(out["feats"][:, 1:], sp["vectors"][:, :4])
    torch.testing.assert_close(out["feats"][:, 0], fmap.mean(dim=(2, 3)))   # f_g = GAP(M)


def test_variants(images):
    m = _model(3, global_from="value", depthwise_value=True, output_stride=32).eval()
    assert m.value.groups == 512
    with torch.no_grad():
        out = m(images)
        sp = m.soft_partition(m.backbone(images))
    assert out["maps"].shape == (4, 2, 2, 2)
    torch.testing.assert_close(out["feats"][:, 0], sp["value"].mean(dim=(2, 3)))
    assert _model(5, distance="cpdm_musp_code").distance == "cpdm_musp_code"
    assert _model(5).distance == "cpdm_musp"
    with pytest.raises(ValueError):
        _model(1)
    with pytest.raises(ValueError):
        _model(5, attention="tanh")
    with pytest.raises(ValueError):
        _model(5, value_channels=256)          # global GAP(M) is 512-d, parts would be 256-d
    assert _model(5, value_channels=256, global_from="value")(images)["feats"].shape == (4, 5, 256)


@pytest.mark.parametrize("n, attention, reduction", [(3, "softmax", None), (5, "softmax", None),
                                                      (5, "softmax", "mean"), (4, "sigmoid", None)])
def test_div_loss_is_eq14_on_the_kept_maps(n, attention, reduction, images):
    """``aux_losses["loss_div"]`` is eq. (14) on a_1 .. a_{n-1} (the kept maps; the background map
    of the softmax variant excluded): ``sum_images sum_x prod_k a_k(x)``, computed here from the
    model's own attention maps."""
    kw = {} if reduction is None else {"div_reduction": reduction}
    model = _model(n, attention, div_weight=1.5, **kw).train()
    with torch.no_grad():
        model.attn.weight.mul_(4.0)                      # maps far from uniform: products differ
        got = model(images)["aux_losses"]["loss_div"]
        maps = model.attention(images)                   # softmax: [B, n, h, w], background last
    kept = maps[:, : n - 1]
    per_image = kept.prod(dim=1).sum(dim=(1, 2))         # [B]
    want = 1.5 * (per_image.mean() if reduction == "mean" else per_image.sum())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    if attention == "softmax":                           # the background map would change the value
        with_bg = 1.5 * maps.prod(dim=1).sum(dim=(1, 2))
        with_bg = with_bg.mean() if reduction == "mean" else with_bg.sum()
        assert abs(float(with_bg) - float(want)) > 1e-3 * float(want)
    else:
        assert maps.shape[1] == n - 1                    # sigmoid: every map is a kept part


def test_div_loss_weight(images):
    a = _model(5, div_weight=1.0).train()(images)["aux_losses"]["loss_div"]
    b = _model(5, div_weight=3.0).train()(images)["aux_losses"]["loss_div"]
    torch.testing.assert_close(b, 3.0 * a)
    assert float(_model(2).train()(images)["aux_losses"]["loss_div"]) == 0.0   # one kept map: no eq. 14


def test_registry_builds_musp():
    from reidlib.models.registry import build_model
    m = build_model("musp", num_classes=3, backbone="resnet18", num_attentions=3)
    assert isinstance(m, MUSP) and m.num_parts == 3


def test_few_adam_steps_lower_the_loss():
    torch.manual_seed(0)
    model = MUSP(num_classes=C, backbone="resnet18", num_attentions=4).train()
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    y = torch.arange(C).repeat_interleave(2)                          # 4 ids x 2 images
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-4)

    def loss_fn(out):
        logits = out["logits"]                                        # [B, n, C]
        ce = F.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(logits.shape[1]))
        return ce + sum(out["aux_losses"].values())

    losses = []
    for _ in range(4):
        loss = loss_fn(model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses
