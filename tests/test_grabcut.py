"""GrabCut foreground (SPAN Sec. 3.1's target V), its disk cache, the step-1 MaskDataset, the mask
IoU metrics and the attention/mask figures."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from reidlib.data.grabcut import GrabCutCache, compute_masks, grabcut_foreground
from reidlib.data.masks import MaskDataset, gt_mask_path, view_balanced_subset
from reidlib.data.records import Record
from reidlib.errors import ConfigError
from reidlib.metrics.masks import foreground_iou, part_mask_iou


def synthetic_vehicle(h=64, w=80, seed=0):
    """A red rectangle (the "vehicle") on a grey checkerboard-and-noise background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((h, w))
    bg = rng.integers(0, 60, (h, w, 3)) + (((yy // 4 + xx // 4) % 2) * 60)[..., None]
    img = bg.astype(np.uint8)
    gt = np.zeros((h, w), bool)
    gt[12:52, 16:64] = True
    img[gt] = np.clip(np.array([220, 40, 40]) + rng.integers(-15, 15, (int(gt.sum()), 3)), 0, 255)
    return img, gt


def iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max((a | b).sum(), 1)


def test_grabcut_recovers_rectangle():
    img, gt = synthetic_vehicle()
    mask = grabcut_foreground(img)
    assert mask.shape == gt.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert iou(mask, gt) > 0.7
    one = grabcut_foreground(img, two_pass=False)
    assert iou(one, gt) > 0.7
    assert np.all(mask <= one)                         # two-pass = product: never larger
    with pytest.raises(ValueError):
        grabcut_foreground(img.astype(np.float32))


def _write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_cache_round_trip(tmp_path):
    img, gt = synthetic_vehicle()
    p = tmp_path / "imgs" / "a.png"
    _write_png(p, img)
    cache = GrabCutCache(tmp_path / "cache")
    assert str(p) not in cache
    mask = cache.get(str(p))
    assert np.array_equal(mask, grabcut_foreground(img))
    f = cache.mask_path(str(p))
    assert f.is_file() and str(p) in cache
    mtime = f.stat().st_mtime_ns
    rec = Record(str(p), 1, 1)
    assert np.array_equal(cache.get(rec), mask) and f.stat().st_mtime_ns == mtime   # read, not recomputed
    assert GrabCutCache(tmp_path / "cache", iterations=3).mask_path(str(p)) != f    # params in the key
    out = compute_masks([rec, rec], tmp_path / "cache", workers=1, progress=False)
    assert out == [f, f]
    assert not list((tmp_path / "cache").rglob(".*tmp"))                            # atomic: no leftovers


@pytest.fixture()
def synth_root(tmp_path):
    """A two-image SynthVeRi-like layout: <root>/image_train/*.png + <root>/masks/image_train/*.png."""
    root = tmp_path / "synth"
    recs = []
    for i, view in enumerate([3, 1]):
        img, gt = synthetic_vehicle(seed=i)
        p = root / "image_train" / f"{i:04d}_c001_{i}.png"
        _write_png(p, img)
        lab = np.zeros(gt.shape, np.uint8)
        lab[12:52, 16:30] = 1          # front (left part)
        lab[12:52, 30:64] = 3          # side
        lab[12:16, 30:64] = 4          # roof
        gp = gt_mask_path(p)
        gp.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(gp), lab)
        recs.append(Record(str(p), i, 1, orientation=None, view=view))
    return recs


def test_mask_dataset_gt_and_flip(synth_root):
    ds = MaskDataset(synth_root, fg_source="gt", size=(64, 80), mask_size=(16, 20))
    it = ds[0]
    assert it["img"].shape == (3, 64, 80) and it["fg"].shape == (1, 16, 20) and it["parts"].shape == (3, 16, 20)
    assert it["has_parts"] and it["view"] == 3
    assert torch.equal(it["view_vec"], torch.tensor([1.0, 0.0, 1.0]))
    assert it["parts"][1].sum() == 0 and it["parts"][0].sum() > 0 and it["parts"][2].sum() > 0
    assert torch.all(it["fg"][0] >= it["parts"].max(0).values)        # parts inside the foreground
    # SPAN's target at 16 x 20: nearest resize of the 64 x 80 label map = every 4th pixel
    lab = cv2.imread(str(gt_mask_path(synth_root[0].path)), cv2.IMREAD_UNCHANGED)[::4, ::4]
    assert it["target"].shape == (3, 16, 20) and it["ignore"].shape == (1, 16, 20)
    assert torch.equal(it["target"][0], torch.from_numpy((lab == 1).astype(np.float32)))   # FS: front face
    assert it["target"][1].sum() == 0
    assert torch.equal(it["target"][2], torch.from_numpy((lab == 3).astype(np.float32)))   # side face
    assert torch.equal(it["ignore"][0], torch.from_numpy((lab == 4).astype(np.float32)))   # roof: don't care
    rear = ds[1]                                                       # R: the whole foreground is rear
    assert torch.equal(rear["target"][1], rear["fg"][0]) and rear["target"][[0, 2]].sum() == 0
    assert rear["ignore"].sum() == 0
    flipped = MaskDataset(synth_root, fg_source="gt", size=(64, 80), mask_size=(16, 20), flip=True, flip_prob=1.0)[0]
    assert torch.allclose(flipped["img"], it["img"].flip(-1))
    assert torch.equal(flipped["fg"], it["fg"].flip(-1))
    assert torch.equal(flipped["parts"], it["parts"].flip(-1))
    assert torch.equal(flipped["target"], it["target"].flip(-1))
    assert torch.equal(flipped["ignore"], it["ignore"].flip(-1))
    assert torch.equal(flipped["view_vec"], it["view_vec"])


def test_mask_dataset_sources(synth_root, tmp_path):
    calls = []

    def src(rec):
        calls.append(rec.path)
        m = np.zeros((64, 80), np.uint8)
        m[:, :40] = 255
        return m

    it = MaskDataset(synth_root, fg_source=src, size=(32, 40))[1]
    assert it["fg"].shape == (1, 8, 10) and calls == [synth_root[1].path]
    assert float(it["fg"][0, :, :4].min()) == 1.0 and float(it["fg"][0, :, 6:].max()) == 0.0
    plain = tmp_path / "plain" / "image_train" / "0001_c001_0.png"         # no label map
    _write_png(plain, synthetic_vehicle(seed=2)[0])
    it = MaskDataset([Record(str(plain), 1, 1, view=2)], fg_source=src, size=(32, 40))[0]
    assert not it["has_parts"] and it["parts"].sum() == 0 and it["target"].sum() == 0
    assert it["ignore"].shape == (1, 8, 10) and bool(it["ignore"].all())   # nothing can be scored
    gc = MaskDataset(synth_root, fg_source=GrabCutCache(tmp_path / "gc"), size=(64, 80), mask_size=(64, 80))[0]
    _, gt = synthetic_vehicle(seed=0)
    assert iou(gc["fg"][0].numpy() > 0.5, gt) > 0.7
    no_view = [Record(synth_root[0].path, 0, 1)]
    with pytest.raises(ConfigError):
        MaskDataset(no_view, fg_source="gt")
    with pytest.raises(ConfigError):
        MaskDataset(synth_root, fg_source="nonsense")
    with pytest.raises(ConfigError, match="resolve_foreground"):   # specs are parsed once, by the engine
        MaskDataset(synth_root, fg_source=f"grabcut:{tmp_path / 'gc'}")


def test_view_balanced_subset():
    recs = [Record(f"{i}.jpg", i, 1, view=v) for i, v in enumerate([0] * 10 + [1] * 3 + [4] * 6 + [None] * 4)]
    sub = view_balanced_subset(recs, per_view=4, seed=0)
    views = [r.view for r in sub]
    assert views.count(0) == 4 and views.count(1) == 3 and views.count(4) == 4 and None not in views
    assert sub == view_balanced_subset(recs, per_view=4, seed=0)                      # seeded
    assert [recs.index(r) for r in sub] == sorted(recs.index(r) for r in sub)        # original order


def test_part_mask_iou_hand_made():
    gt = np.zeros((2, 3, 4, 4), np.float32)
    pred = np.zeros((2, 3, 4, 4), np.float32)
    gt[0, 0, :2] = 1; pred[0, 0, :1] = 0.9            # front img0: IoU 4/8 = 0.5
    gt[1, 0, :] = 1; pred[1, 0, :] = 0.7              # front img1: IoU 1
    pred[0, 1, 0, 0] = 0.8                            # rear img0: predicted, absent in GT -> 0
    #                                                   rear img1: absent in both -> skipped
    gt[:, 2, 2:] = 1; pred[:, 2, 2:] = 0.4            # side: below threshold -> IoU 0 for both
    r = part_mask_iou(pred, gt)
    assert r["front"] == pytest.approx(0.75) and r["n_front"] == 2
    assert r["rear"] == pytest.approx(0.0) and r["n_rear"] == 1
    assert r["side"] == pytest.approx(0.0) and r["n_side"] == 2
    assert r["mean"] == pytest.approx(0.25)
    assert part_mask_iou(torch.from_numpy(pred), torch.from_numpy(gt), threshold=0.3)["side"] == pytest.approx(1.0)
    empty = part_mask_iou(np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2, 2)))
    assert math.isnan(empty["mean"]) and empty["n_front"] == 0


def test_foreground_iou_hand_made():
    gt = np.zeros((3, 1, 4, 4)); pred = np.zeros((3, 1, 4, 4))
    gt[0, 0, :2] = 1; pred[0, 0, :2] = 0.8             # 1.0
    gt[1, 0, :] = 1; pred[1, 0, :2] = 0.6              # 0.5
    #                                                    image 2: both empty -> skipped
    assert foreground_iou(pred, gt) == pytest.approx(0.75)
    assert foreground_iou(pred[:, 0], gt[:, 0], threshold=0.7) == pytest.approx(0.5)


def test_attention_figures():
    from matplotlib.figure import Figure

    from reidlib.viz.attention import attention_maps, mask_overlay

    imgs = torch.randn(2, 3, 32, 24)
    maps = torch.rand(2, 3, 8, 6)
    ov = mask_overlay(imgs[0], maps[0], names=("front", "rear", "side"))
    assert ov.shape == (32, 24, 3) and ov.dtype == np.uint8
    u8, _ = synthetic_vehicle()
    assert mask_overlay(u8, np.zeros((1, 16, 20)), alpha=0.5).tolist() == u8.tolist()   # empty mask: unchanged
    fig = attention_maps(imgs, maps, names=("front", "rear", "side"), titles=["a", "b"], composite=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 5
    fig2 = attention_maps([u8, u8, u8], np.random.rand(3, 2, 4, 5), ncols=2, normalize=True)
    assert len(fig2.axes) == 2 * (2 * 3)


def test_compute_masks_process_pool_matches_in_process(tmp_path):
    # the pool must start even after torch/OpenCV thread pools ran in this process (fork deadlocked)
    torch.randn(64, 64) @ torch.randn(64, 64)
    paths = []
    for i in range(6):
        img, _ = synthetic_vehicle(seed=i)
        paths.append(tmp_path / "imgs" / f"{i}.png")
        _write_png(paths[-1], img)
    pooled = compute_masks([str(p) for p in paths], tmp_path / "pool", workers=2, progress=False)
    serial = compute_masks([str(p) for p in paths], tmp_path / "serial", workers=1, progress=False)
    for a, b in zip(pooled, serial):
        assert np.array_equal(cv2.imread(str(a), cv2.IMREAD_GRAYSCALE), cv2.imread(str(b), cv2.IMREAD_GRAYSCALE))
