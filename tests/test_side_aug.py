"""SPAN's public-code augmentation of side images: only side images are warped, image and masks
together, and the label is unchanged."""
from __future__ import annotations

import random

import numpy as np
import pytest

from reidlib.data.masks import SIDE_VIEW, MaskDataset, _oblique_side
from reidlib.data.records import Record


def test_the_warp_moves_image_and_masks_together():
    random.seed(0)
    img = np.zeros((64, 64, 3), np.uint8)
    img[24:40, 8:56] = 255                                       # a car-shaped box
    fg = (img[..., 0] > 0).astype(np.float32)
    parts = np.stack([np.zeros_like(fg), np.zeros_like(fg), fg])
    out_img, out_fg, out_parts, out_target, out_ignore = _oblique_side(img, fg, parts, parts.copy(), np.zeros((1, 64, 64), np.float32))
    assert out_img.shape == img.shape and out_parts.shape == parts.shape and out_ignore.shape == (1, 64, 64)
    assert not np.array_equal(out_fg, fg)                        # it moved
    moved = out_img[..., 0] > 127
    assert (moved == (out_parts[2] > 0.5)).mean() > 0.97         # the side mask follows the pixels
    assert 0.3 < out_fg.sum() / fg.sum() < 1.0                   # squeezed, not lost


def test_only_side_images_are_warped(tiny_veri):
    from reidlib.data.registry import load_dataset

    recs = [r for r in load_dataset("veri776", tiny_veri).train if r.view is not None]
    plain = MaskDataset(recs, fg_source="gt", size=(32, 32), mask_size=(8, 8))
    warped = MaskDataset(recs, fg_source="gt", size=(32, 32), mask_size=(8, 8), side_aug=1.0)
    for i, r in enumerate(recs):
        a, b = plain[i], warped[i]
        same = np.array_equal(a["img"].numpy(), b["img"].numpy())
        assert same == (int(r.view) != SIDE_VIEW) or not (a["fg"].sum() > 0)
        assert a["view"] == b["view"]
    with pytest.raises(Exception, match="side_aug"):
        MaskDataset(recs, side_aug=2.0)
