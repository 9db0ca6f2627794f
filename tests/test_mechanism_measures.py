"""Measures of whether SPAN's masks and MUSP's attentions formed (reidlib.metrics.masks: the
image-only and predicted-view references, the single-/two-view split, Fig. 6's failure modes;
reidlib.metrics.attention: variation against the position prior, best-face IoU, view dependence),
on constructed masks and maps whose answers are written out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from reidlib.data.masks import span_target
from reidlib.metrics.attention import attention_variation, best_face_iou, view_dependence
from reidlib.metrics.masks import (FAILURE_MODES, REFERENCE_USES_TRUE_VIEW, REFERENCES, failure_modes,
                                   foreground_reference_masks, image_only_reference_ious, span_target_ious,
                                   split_by_views, view_classifier_reference_masks)

F, R, S, FS, RS = range(5)


def car() -> np.ndarray:
    """5 x 8 label map, foreground rows 0-3 (32 px): front cols 0-1 (8 px), roof row 0 cols 2-5
    (4 px), side rows 1-3 cols 2-5 (12 px), rear cols 6-7 (8 px); row 4 background."""
    lab = np.zeros((5, 8), np.uint8)
    lab[:4, :2] = 1
    lab[:4, 2:6] = 3
    lab[0, 2:6] = 4
    lab[:4, 6:] = 2
    return lab


def score(masks: np.ndarray, lab: np.ndarray, view: int) -> np.ndarray:
    target, ignore = span_target(lab, view)
    return span_target_ious(masks[None], target[None], ignore[None, None])[0]


def test_every_reference_says_whether_it_uses_the_true_view():
    assert set(REFERENCES) <= set(REFERENCE_USES_TRUE_VIEW)
    assert REFERENCE_USES_TRUE_VIEW["ceiling"] and REFERENCE_USES_TRUE_VIEW["labelled masks take the car"]
    assert not REFERENCE_USES_TRUE_VIEW["foreground takes every mask"]


def test_foreground_reference_against_the_target():
    lab = car()
    masks = foreground_reference_masks((lab > 0)[None])
    assert masks.shape == (1, 3, 5, 8) and (masks[0] == (lab > 0)).all()
    # single view S: the side target is the foreground; front and rear predicted but empty there
    np.testing.assert_allclose(score(masks[0], lab, S), [0, 0, 1])
    # FS: roof and rear are "don't care" (12 px), leaving 20 px; front face 8, side face 12
    np.testing.assert_allclose(score(masks[0], lab, FS), [8 / 20, 0, 12 / 20])
    out = image_only_reference_ious([lab, lab], [S, FS])
    np.testing.assert_allclose(out["foreground takes every mask"], [[0, 0, 1], [0.4, 0, 0.6]])


def test_view_classifier_reference():
    lab = car()
    right = view_classifier_reference_masks([lab], [FS])[0]
    np.testing.assert_allclose(score(right, lab, FS), [1, math.nan, 1])
    wrong = view_classifier_reference_masks([lab], [S])[0]          # predicted S, truly FS
    assert (wrong[2] == (lab > 0)).all() and not wrong[:2].any()
    np.testing.assert_allclose(score(wrong, lab, FS), [0, math.nan, 0.6])
    out = image_only_reference_ious([lab, lab], [FS, FS], predicted_views=[FS, S])
    np.testing.assert_allclose(out["view classifier's target"], [[1, math.nan, 1], [0, math.nan, 0.6]])


def test_split_by_views():
    ious = np.array([[1.0, np.nan, np.nan], [np.nan, 0.5, np.nan], [0.2, np.nan, 0.4], [np.nan, 0.1, 0.6]])
    out = split_by_views(ious, [F, R, FS, RS])
    assert out["single view"] == pytest.approx(0.75) and out["n single view"] == 2
    assert math.isnan(out["single view side"])
    assert out["two view front"] == pytest.approx(0.2) and out["two view side"] == pytest.approx(0.5)
    assert out["two view"] == pytest.approx((0.2 + 0.1 + 0.5) / 3) and out["n two view"] == 2
    assert math.isnan(split_by_views(ious[:2], [F, R])["two view"])


def test_failure_modes():
    fg = car() > 0
    one = np.zeros((3, 5, 8))
    one[0] = fg                                                        # front takes the car of an FS image
    half = np.zeros((3, 5, 8))
    half[[0, 2]] = 0.5 * fg                                            # front and side both 0.5 over the car
    single = np.zeros((3, 5, 8))
    single[2] = fg                                                     # an S image: not counted
    out = failure_modes(np.stack([one, single]), np.stack([fg, fg]), [FS, S])
    assert out == {FAILURE_MODES[0]: 1.0, FAILURE_MODES[1]: 0.0, "two-view images": 1}
    out = failure_modes(np.stack([half, one[[1, 0, 2]]]), np.stack([fg, fg]), [FS, RS])
    assert out[FAILURE_MODES[1]] == 0.5 and out[FAILURE_MODES[0]] == 0.5      # rear takes the RS car
    assert math.isnan(failure_modes(single[None], fg[None], [S])[FAILURE_MODES[0]])


def faces_of(lab: np.ndarray) -> np.ndarray:
    return np.stack([lab == 1, lab == 2, lab == 3]).astype(float)


def test_identical_maps_are_a_pure_position_prior():
    rng = np.random.default_rng(0)
    one = rng.random((4, 5, 8))
    maps = np.repeat(one[None], 6, axis=0)                             # the same maps in every image
    np.testing.assert_allclose(attention_variation(maps), 0, atol=1e-12)
    faces = np.stack([faces_of(np.roll(car(), k, axis=1)) for k in range(6)])
    out = best_face_iou(maps, faces)
    np.testing.assert_allclose(out["iou"], out["prior"])
    np.testing.assert_array_equal(out["map"], out["prior map"])
    dep = view_dependence(maps, [F, S, FS, F, S, FS])
    np.testing.assert_allclose(dep["between"], 0, atol=1e-12)


def test_maps_equal_to_the_faces_score_one_and_beat_the_prior():
    labs = [np.roll(car(), k, axis=1) for k in (0, 2, 4)]             # the car moves between images
    faces = np.stack([faces_of(lab) for lab in labs])
    background = (np.stack(labs) == 0)[:, None].astype(float)
    maps = np.concatenate([faces[:, [2, 0, 1]], background], axis=1)  # maps in another order + background
    out = best_face_iou(maps, faces)
    np.testing.assert_allclose(out["iou"], 1)
    np.testing.assert_array_equal(out["map"], [1, 2, 0])
    assert (out["prior"] < 1).all() and list(out["n"]) == [3, 3, 3]
    assert (attention_variation(maps)[:3] > 0).all()


def test_soft_and_thresholded_iou():
    lab = car()
    faces = faces_of(lab)[None]
    maps = 0.5 * faces                                                  # each face at 0.5, zero elsewhere
    np.testing.assert_allclose(best_face_iou(maps, faces)["iou"], 0.5)
    np.testing.assert_allclose(best_face_iou(maps, faces, threshold=0.5)["iou"], 1)


def test_variation_of_disjoint_maps_and_view_dependence():
    a = np.zeros((1, 5, 8))
    a[0, :, :4] = 1
    b = np.zeros((1, 5, 8))
    b[0, :, 4:] = 1
    maps = np.stack([a, b])                                            # 2 images, 1 map, disjoint halves
    np.testing.assert_allclose(attention_variation(maps), [0.5])      # each is at TV 1/2 of the mean
    dep = view_dependence(maps, [F, R])                                # the map is set by the view
    np.testing.assert_allclose(dep["between"], [1.0])
    np.testing.assert_allclose(dep["within"], [0.0])
    assert list(dep["views"]) == [F, R] and list(dep["n"]) == [1, 1]
    assert math.isnan(view_dependence(maps, [F, F])["between"][0])


# ------------------------------------------------------------------ the pages' glue (tiny SynthVeRi)
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from reidlib.data.synth import generate
    from reidlib.study import Study

    root = tmp_path_factory.mktemp("synth")
    generate(root / "data", preset="tiny", image_size=64, seed=0, workers=1)
    return Study("smoke", "cpu", data_root=str(root / "data"), cache_dir=str(root / "runs"), init="random")


def test_span_pages_mark_oracles_and_split_views(study):
    import torch

    from reidlib.ablations.span import mask_eval_records, mask_reference_table, span_mask_diagnostics
    from reidlib.models.span import SPAN

    views = [int(r.view) for r in mask_eval_records(study, max_images=30)]
    table = mask_reference_table(study, max_images=30, predicted_views=views)        # a perfect classifier
    assert list(table.index) == list(REFERENCES) + ["foreground takes every mask", "view classifier's target"]
    assert list(table["uses the true view"]) == [True, False, True, False, False]
    assert table.loc["view classifier's target", "mean IoU"] == pytest.approx(100)
    assert table.loc["view classifier's target", "view accuracy"] == pytest.approx(100)
    assert table.loc["foreground takes every mask", "single-view mean IoU"] < 100       # absent parts score 0
    torch.manual_seed(0)
    out = span_mask_diagnostics(study, SPAN("resnet18", stride=8, decoder="transposed"), max_images=30)
    assert out["single-view images"] + out["two-view images"] == 30
    assert all(0 <= out[f"{m} (% of two-view)"] <= 100 for m in FAILURE_MODES)


def test_musp_formation_page(study, monkeypatch):
    import torch

    from reidlib.ablations.musp import musp_formation
    from reidlib.models.musp import MUSP

    torch.manual_seed(0)
    model = MUSP(num_classes=4, backbone="resnet18", num_attentions=5)
    monkeypatch.setattr(study, "variant_models", lambda variant: [model])
    maps, faces = musp_formation(study, max_images=20)
    assert list(maps.index) == ["part 1", "part 2", "part 3", "part 4", "background"]
    assert list(faces.index) == ["front", "rear", "side"] and (maps["variation"] >= 0).all()
    assert faces["best map"].isin(maps.index[:4]).all()
