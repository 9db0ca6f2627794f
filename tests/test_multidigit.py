"""Multi-digit data (SPAN Fig. 4): determinism, label/mask consistency, dataset shapes."""
import numpy as np
import pytest
import torch

from reidlib.data.multidigit import MultiDigitDataset, make_multidigit


@pytest.fixture(scope="module")
def data():
    return make_multidigit(24, image_size=48, digits=(0, 1, 2), max_per_image=2, seed=3)


def test_shapes_and_dtypes(data):
    N, H, K = 24, 48, 3
    assert data["images"].shape == (N, H, H, 3) and data["images"].dtype == np.uint8
    assert data["labels"].shape == (N, K) and set(np.unique(data["labels"])) <= {0, 1}
    assert data["fg"].shape == (N, H, H)
    assert data["parts"].shape == (N, K, H, H)


def test_deterministic_by_seed(data):
    again = make_multidigit(24, image_size=48, digits=(0, 1, 2), max_per_image=2, seed=3)
    other = make_multidigit(24, image_size=48, digits=(0, 1, 2), max_per_image=2, seed=4)
    for key in ("images", "labels", "fg", "parts", "boxes"):
        np.testing.assert_array_equal(data[key], again[key])
    assert not np.array_equal(data["images"], other["images"])


def test_labels_match_parts_and_fg_is_union(data):
    present = data["parts"].reshape(24, 3, -1).any(axis=2)
    np.testing.assert_array_equal(data["labels"].astype(bool), present)
    np.testing.assert_array_equal(data["fg"].astype(bool), data["parts"].astype(bool).any(axis=1))
    counts = data["labels"].sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= 2
    # digits never overlap: at most one part per pixel
    assert data["parts"].sum(axis=1).max() <= 1


def test_digits_are_visible(data):
    """Digit pixels are brighter than the background on average (the data are learnable)."""
    gray = data["images"].astype(np.float32).mean(axis=3)
    fg = data["fg"].astype(bool)
    assert gray[fg].mean() > gray[~fg].mean() + 50


def test_max_per_image_three():
    d = make_multidigit(16, image_size=64, digits=(3, 5, 7), max_per_image=3, seed=0)
    assert d["labels"].sum(axis=1).max() == 3


def test_bad_args():
    with pytest.raises(ValueError):
        make_multidigit(2, digits=(1, 1))
    with pytest.raises(ValueError):
        make_multidigit(2, digits=(0, 1), max_per_image=3)


def test_dataset_items(data):
    ds = MultiDigitDataset(data)
    assert len(ds) == 24
    item = ds[5]
    assert item["img"].shape == (3, 48, 48) and item["img"].dtype == torch.float32
    assert item["fg"].shape == (1, 48, 48)
    assert item["view_vec"].shape == (3,) and item["view_vec"].dtype == torch.float32
    assert item["parts"].shape == (3, 48, 48)
    torch.testing.assert_close(item["view_vec"], torch.from_numpy(data["labels"][5]).float())
    torch.testing.assert_close(item["fg"][0], item["parts"].amax(dim=0))
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["img"].shape == (4, 3, 48, 48)
