"""The cached training data path: images decoded once into a uint8 tensor cache, the strong
baseline's augmentation applied to whole batches, exact resume through it, and the automatic
choice between it and the per-image loader."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_tiny_veri

from reidlib.data.batch_augment import BatchAugment
from reidlib.data.cache import ImageCache, fits
from reidlib.data.dataset import build_transforms, read_image_rgb
from reidlib.data.records import Record


@pytest.fixture(scope="module")
def veri(tmp_path_factory):
    return make_tiny_veri(tmp_path_factory.mktemp("veri"), size=40)


def _records(root: Path) -> list[Record]:
    from reidlib.data import VeRi776

    return list(VeRi776(root).train)


def test_cache_holds_what_the_per_image_path_resizes(veri, tmp_path):
    recs = _records(veri)[:6]
    cache = ImageCache(recs, 24, 32, cache_dir=tmp_path)
    assert cache.images.shape == (6, 24, 32, 3) and cache.images.dtype == np.uint8
    test = build_transforms(24, 32, train=False)
    want = torch.stack([test(Image.fromarray(read_image_rgb(r.path))) for r in recs])
    got = BatchAugment(train=False)(cache.batch(range(6)))
    assert got.shape == (6, 3, 24, 32) and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_cache_is_built_once_and_keyed_by_the_files(veri, tmp_path):
    recs = _records(veri)[:4]
    a = ImageCache(recs, 16, 16, cache_dir=tmp_path)
    stamp = a.path.stat().st_mtime_ns
    b = ImageCache(recs, 16, 16, cache_dir=tmp_path)
    assert b.path == a.path and b.path.stat().st_mtime_ns == stamp          # reused, not rebuilt
    assert ImageCache(recs, 16, 20, cache_dir=tmp_path).path != a.path      # another size: another file
    os.utime(recs[0].path, ns=(stamp + 10**9, stamp + 10**9))               # a changed image
    assert ImageCache(recs, 16, 16, cache_dir=tmp_path).path != a.path
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_fits_budget():
    recs = [Record(f"{i}.jpg", 0, 0) for i in range(1000)]
    assert fits(recs, 128, 128, budget_gb=0.05) and not fits(recs, 128, 128, budget_gb=0.04)


def _images(b=4, h=20, w=24):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)


def _norm(x_u8):
    mean = torch.tensor((0.485, 0.456, 0.406)) * 255
    std = torch.tensor((0.229, 0.224, 0.225)) * 255
    return ((x_u8.float() - mean) / std).permute(0, 3, 1, 2)


def test_flip_only():
    x = _images()
    out = BatchAugment(flip_p=1.0, pad=0, random_erasing_p=0.0)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, _norm(x.flip(2)), rtol=0, atol=0)


def test_pad_and_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = _images(b=16)
    out = BatchAugment(flip_p=0.0, pad=3, random_erasing_p=0.0)(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (0, 0, 3, 3, 3, 3))
    offsets = set()
    for b in range(16):
        hits = [(dy, dx) for dy in range(7) for dx in range(7)
                if torch.equal(out[b], _norm(padded[b:b + 1, dy:dy + 20, dx:dx + 24])[0])]
        assert hits, f"image {b} is no window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 4                                                 # the offsets vary


def test_random_erasing_boxes():
    x = torch.full((200, 32, 32, 3), 200, dtype=torch.uint8)
    out = BatchAugment(flip_p=0.0, pad=0, random_erasing_p=0.5)(x, torch.Generator().manual_seed(0))
    erased = (out == 0).all(dim=1)                                          # [B, H, W]
    frac = erased.float().mean(dim=(1, 2))
    hit = frac > 0
    assert 0.35 < hit.float().mean() < 0.65                                # p = 0.5
    assert (frac[hit] >= 0.015).all() and (frac[hit] <= 0.41).all()         # area 2-40 %
    for b in torch.nonzero(hit)[:20, 0]:                                    # one rectangle each
        rows, cols = erased[b].any(1).nonzero()[:, 0], erased[b].any(0).nonzero()[:, 0]
        box = erased[b, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert bool(box.all()) and int(box.sum()) == int(erased[b].sum())


def test_same_generator_seed_same_batch_and_a_slice_matches_the_global_batch():
    x = _images(b=8)
    aug = BatchAugment()
    a = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(6)))
    half = aug(x[4:], torch.Generator().manual_seed(5), slots=(4, 8))       # a rank's rows of the batch
    assert torch.equal(half, a[4:])


def _cfg(root: Path, out: Path, **over):
    cfg = {"model.name": "baseline", "model.backbone": "resnet18", "data.root": str(root), "data.height": 32,
           "data.width": 32, "data.p": 2, "data.k": 2, "data.num_workers": 0, "optim.unit": "iter",
           "optim.max_iters": 4, "optim.milestones": [], "optim.warmup_iters": 0, "train.device": "cpu",
           "train.progress": False, "train.checkpoint_every": 2, "train.out_dir": str(out), "train.amp": "off",
           "data.loader": "cache", "data.cache_dir": str(out.parent / "cache")}
    cfg.update(over)
    return cfg


def test_cached_path_resumes_bit_exactly(veri, tmp_path):
    from reidlib.engine.training import train_reid

    full = train_reid(_cfg(veri, tmp_path / "full"))
    assert full.meta["data_path"].startswith("cache:")
    train_reid(_cfg(veri, tmp_path / "cut", **{"optim.max_iters": 2}))
    resumed = train_reid(_cfg(veri, tmp_path / "cut"), resume=True)
    assert resumed.iterations == 4
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_auto_picks_the_cache_when_it_fits(veri, tmp_path):
    from reidlib.engine.training import train_reid

    small = train_reid(_cfg(veri, tmp_path / "a", **{"data.loader": "auto", "optim.max_iters": 1}))
    big = train_reid(_cfg(veri, tmp_path / "b", **{"data.loader": "auto", "data.cache_max_gb": 1e-6,
                                                   "optim.max_iters": 1}))
    assert small.meta["data_path"].startswith("cache:") and big.meta["data_path"].startswith("files:")
