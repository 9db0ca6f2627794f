"""SPAN's mask target and the metric built on it (reidlib.data.masks.span_target,
reidlib.metrics.masks: span_target_ious, the ceiling and the degenerate baselines), the stratified
evaluation images, and SPAN as the authors ran it (stride 8, transposed decoder). Every expected
value below is written out by hand from the constructed label maps."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from reidlib.data.masks import span_target, stratified_records
from reidlib.data.records import Record
from reidlib.data.views import VIEW5_LABEL
from reidlib.losses.span import max_area_table, span_step1_loss
from reidlib.metrics.masks import (REFERENCES, ceiling_masks, iou_summary, labelled_take_car_masks,
                                   reference_ious, side_takes_car_masks, span_target_ious)

F, R, S, FS, RS = range(5)
nan = math.nan


def label_map() -> np.ndarray:
    """6 x 10, every label present: front cols 1-2 (8 px), side cols 3-6 rows 2-4 (12 px), roof
    cols 3-6 row 1 (4 px), rear cols 7-8 (8 px); foreground 32 px."""
    lab = np.zeros((6, 10), np.uint8)
    lab[1:5, 1:3] = 1
    lab[1:5, 3:7] = 3
    lab[1, 3:7] = 4
    lab[1:5, 7:9] = 2
    return lab


def box(rows, cols, shape=(6, 10)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


FRONT = box(slice(1, 5), slice(1, 3))
SIDE = box(slice(2, 5), slice(3, 7))
ROOF = box(1, slice(3, 7))
REAR = box(slice(1, 5), slice(7, 9))
FG = FRONT | SIDE | ROOF | REAR
EMPTY = np.zeros((6, 10), bool)


def _iou(pred, target, ignore):
    return span_target_ious(np.asarray(pred)[None].astype(np.float32), np.asarray(target)[None],
                            np.asarray(ignore)[None, None])[0]


def _same(a, b):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=1e-12)


# ------------------------------------------------------------------ the target
@pytest.mark.parametrize("view, parts, ignore", [
    (F, (FG, EMPTY, EMPTY), EMPTY),
    (R, (EMPTY, FG, EMPTY), EMPTY),
    (S, (EMPTY, EMPTY, FG), EMPTY),              # the side image's "front" faces belong to side
    (FS, (FRONT, EMPTY, SIDE), ROOF | REAR),    # roof and the absent part's faces: don't care
    (RS, (EMPTY, REAR, SIDE), ROOF | FRONT),
])
def test_span_target_of_each_view(view, parts, ignore):
    t, ig = span_target(label_map(), view)
    assert t.shape == (3, 6, 10) and t.dtype == bool and ig.shape == (6, 10) and ig.dtype == bool
    for k in range(3):
        assert np.array_equal(t[k], parts[k]), k
    assert np.array_equal(ig, ignore)
    with pytest.raises(ValueError):
        span_target(label_map(), 5)


def test_target_against_itself_is_100_where_a_part_exists():
    lab = label_map()
    expected = {F: [1, nan, nan], R: [nan, 1, nan], S: [nan, nan, 1], FS: [1, nan, 1], RS: [nan, 1, 1]}
    for view, want in expected.items():
        t, ig = span_target(lab, view)
        _same(_iou(t, t, ig), want)


def test_ignored_pixels_do_not_count():
    t, ig = span_target(label_map(), FS)              # ignore = roof (4 px) + rear face (8 px)
    pred = np.stack([FRONT | REAR, EMPTY, SIDE | ROOF])  # extra pixels only where ignored
    _same(_iou(pred, t, ig), [1, nan, 1])
    pred = np.stack([FRONT, REAR, SIDE | box(0, slice(0, 2))])   # rear only on ignored pixels -> nan
    _same(_iou(pred, t, ig), [1, nan, 12 / 14])       # side: 2 background pixels too many
    # without the ignore map the same prediction scores lower
    _same(_iou(pred, t, EMPTY), [1, 0, 12 / 14])
    soft = np.stack([FRONT * 0.6, EMPTY, SIDE * 0.4]).astype(np.float32)   # thresholded at 0.5
    _same(_iou(soft, t, ig), [1, nan, 0])
    with pytest.raises(ValueError):
        span_target_ious(np.zeros((1, 3, 6, 10)), np.zeros((1, 3, 6, 10)), np.zeros((1, 2, 6, 10)))


# ------------------------------------------------------------------ reference levels
def _loss(masks, lab, view, mode="paper"):
    total, terms = span_step1_loss(torch.from_numpy(masks[None].astype(np.float32)),
                                   torch.from_numpy((lab > 0)[None, None].astype(np.float32)),
                                   torch.tensor([VIEW5_LABEL[view]], dtype=torch.float32), area_mode=mode)
    return float(total), {k: float(v) for k, v in terms.items()}


def over_cap_map() -> np.ndarray:
    """5 x 10: front col 0 (5 px), roof row 0 cols 1-2 (2 px), side the rest (43 px); foreground 50."""
    lab = np.full((5, 10), 3, np.uint8)
    lab[:, 0] = 1
    lab[0, 1:3] = 4
    return lab


def test_ceiling_masks_zero_the_span_losses_and_score_as_by_hand():
    lab = label_map()                                  # n = 32, paper caps floor(0.7 * 32) = 22
    for view in range(5):
        m = ceiling_masks(lab, view)
        total, terms = _loss(m, lab, view)
        assert total == pytest.approx(0.0, abs=1e-7) and all(v == pytest.approx(0.0, abs=1e-7) for v in terms.values())
        assert np.array_equal(m.sum(0), lab > 0)       # a partition of the foreground
    _same(_iou(ceiling_masks(lab, FS), *span_target(lab, FS)), [1, nan, 1])   # faces 8, 12 <= 22
    _same(_iou(ceiling_masks(lab, RS), *span_target(lab, RS)), [nan, 1, 1])

    big = over_cap_map()                               # n = 50, cap 35; side face 43 -> 8 px move
    m = ceiling_masks(big, FS)
    assert m[2].sum() == 35 and m[0].sum() == 15 and m[1].sum() == 0
    assert _loss(m, big, FS)[0] == pytest.approx(0.0, abs=1e-7)
    _same(_iou(m, *span_target(big, FS)), [5 / 13, nan, 35 / 43])
    assert m[0, 1:, 1].all()                           # moved pixels: the side pixels next to the front face
    m = ceiling_masks(big, RS)                         # rear face empty: what moves to rear is wrong
    _same(_iou(m, *span_target(big, RS)), [nan, 0, 35 / 43])
    # the public code's caps for FS [0.7, 0, 0.4]: side cap 20 px, 23 px move to front
    caps = max_area_table(torch.tensor([FS]), mode="code")[0].tolist()
    m = ceiling_masks(big, FS, caps=caps)
    assert m[2].sum() == 20 and _loss(m, big, FS, mode="code")[0] == pytest.approx(0.0, abs=1e-7)
    _same(_iou(m, *span_target(big, FS)), [5 / 28, nan, 20 / 43])
    with pytest.raises(ValueError):                    # a < 0.5: eqs. (1) and (2) cannot both be zero
        ceiling_masks(big, FS, a=0.4)


def test_degenerate_baselines_by_hand():
    lab = label_map()
    views = [F, R, S, FS, RS]
    side = np.array([[0, nan, 0], [nan, 0, 0], [nan, nan, 1], [0, nan, 12 / 20], [nan, 0, 12 / 20]])
    labelled = np.array([[1, nan, nan], [nan, 1, nan], [nan, nan, 1], [8 / 20, nan, 12 / 20],
                         [nan, 8 / 20, 12 / 20]])
    for n, v in enumerate(views):
        _same(_iou(side_takes_car_masks(lab, v), *span_target(lab, v)), side[n])
        _same(_iou(labelled_take_car_masks(lab, v), *span_target(lab, v)), labelled[n])
    out = reference_ious([lab] * 5, views)
    assert tuple(out) == REFERENCES
    _same(out["side takes the car"], side)
    _same(out["labelled masks take the car"], labelled)
    _same(out["ceiling"], [[1, nan, nan], [nan, 1, nan], [nan, nan, 1], [1, nan, 1], [nan, 1, 1]])
    summary = iou_summary(side)                        # per part over the defined images, then the mean
    assert summary["front"] == 0 and summary["rear"] == 0 and summary["n_front"] == 2 and summary["n_side"] == 5
    assert summary["side"] == pytest.approx((0 + 0 + 1 + 0.6 + 0.6) / 5)
    assert summary["mean"] == pytest.approx(2.2 / 5 / 3)


# ------------------------------------------------------------------ evaluation images
def test_stratified_records_cover_every_group_before_repeating():
    rng = np.random.default_rng(0)
    recs = []
    for pid in range(10):
        for view in range(5):
            for i in range(int(rng.integers(1, 4))):
                recs.append(Record(f"{pid}_{view}_{i}.jpg", pid, 1, view=view))
    groups = {(r.pid, r.view) for r in recs}
    sel = stratified_records(recs, None, seed=3)
    assert sorted(r.path for r in sel) == sorted(r.path for r in recs)       # everything, once
    first = [(r.pid, r.view) for r in sel[:len(groups)]]
    assert len(set(first)) == len(groups)                                   # all 50 groups first
    assert {r.pid for r in sel[:10]} == set(range(10))                      # one per identity first
    assert Counter(r.view for r in sel[:10]) == {v: 2 for v in range(5)}   # ... spread over the views
    assert stratified_records(recs, 17, seed=3) == sel[:17]                 # prefix of a longer one
    assert stratified_records(recs, 17, seed=3) == stratified_records(recs, 17, seed=3)
    assert stratified_records(recs, 50, seed=4) != sel[:50]
    # groups of unequal size: the second round only visits groups that still have records
    second = [(r.pid, r.view) for r in sel[len(groups):]]
    sizes = Counter((r.pid, r.view) for r in recs)
    assert Counter(second) == {g: c - 1 for g, c in sizes.items() if c > 1}


# ------------------------------------------------------------------ SPAN as the authors ran it
def test_span_stride8_transposed_full_resolution_and_rebuild(tmp_path):
    from reidlib.engine.artifacts import load_span, rebuild, save_model_file
    from reidlib.models.span import SPAN

    torch.manual_seed(0)
    span = SPAN("resnet18", stride=8, decoder="transposed").eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        m = span(x)
    assert m.shape == (2, 3, 64, 48) and span.mask_stride == 1
    assert span.cnn_mask(x).shape == (2, 256, 8, 6)                         # stride 8
    assert span.config == {"backbone": "resnet18", "out_size": None, "stride": 8, "decoder": "transposed"}
    meta = {"task": "span", "model_name": "span-masks", "model_kwargs": span.config}
    again = rebuild(meta)
    assert isinstance(again, SPAN) and again.config == span.config
    again.load_state_dict(span.state_dict())
    with torch.no_grad():
        assert torch.equal(again.eval()(x), m)
    save_model_file(tmp_path, span, meta, {}, 0)
    with torch.no_grad():
        assert torch.equal(load_span(tmp_path / "model.pt")(x), m)


# ------------------------------------------------------------------ the mask tables' glue
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from reidlib.data.synth import generate
    from reidlib.study import Study

    root = tmp_path_factory.mktemp("sv")
    generate(root / "tiny", preset="tiny", image_size=64, seed=0, workers=1)
    return Study("smoke", "cpu", data_root=str(root / "tiny"), cache_dir=str(root / "runs"), init="random")


def test_mask_tables_use_the_target_metric_on_stratified_images(tiny_study, monkeypatch):
    import cv2

    from reidlib.ablations.span import (mask_eval_records, mask_reference_ious, mask_reference_levels,
                                        span_mask_ious, span_masks_table)
    from reidlib.data.masks import MaskDataset, gt_mask_path
    from reidlib.metrics.masks import part_mask_ious
    from reidlib.models.span import SPAN

    torch.manual_seed(0)
    span = SPAN("resnet18", stride=8, decoder="transposed").eval()
    monkeypatch.setattr(tiny_study, "span_model", lambda seed, **kw: (span, None))
    recs = mask_eval_records(tiny_study, max_images=40)
    gallery = [r for r in tiny_study.data.gallery if r.view is not None]
    assert recs == stratified_records(gallery, 40, seed=tiny_study.eval_seed)
    assert len({r.pid for r in recs}) == len({r.pid for r in gallery})     # every test identity

    # independently: masks at 64 x 64, label maps read with cv2, target and IoU by span_target
    ds = MaskDataset(recs, fg_source="gt", size=(64, 64), mask_size=(64, 64))
    with torch.no_grad():
        pred = span(torch.stack([ds[i]["img"] for i in range(len(ds))])).numpy()     # [N, 3, 64, 64]
    labs = [cv2.imread(str(gt_mask_path(r.path)), cv2.IMREAD_UNCHANGED) for r in recs]
    want = np.stack([_iou(pred[n] >= 0.5, *span_target(lab, int(r.view))) for n, (lab, r) in enumerate(zip(labs, recs))])
    faces = part_mask_ious(pred, np.stack([np.stack([lab == k for k in (1, 2, 3)]) for lab in labs]))

    ious, paths = span_mask_ious(tiny_study, span, max_images=40)
    assert paths == [r.path for r in recs]
    _same(ious, want)
    _same(span_mask_ious(tiny_study, span, max_images=40, metric="faces")[0], faces)

    table, spans, arrays = span_masks_table(tiny_study, ("full",), max_images=40)
    assert list(table.columns) == ["front", "rear", "side", "mean IoU", "faces mean IoU", "seeds"]
    summary, face_summary = iou_summary(want), iou_summary(faces)
    assert table.loc["full", "mean IoU"] == pytest.approx(summary["mean"] * 100)
    assert table.loc["full", "front"] == pytest.approx(summary["front"] * 100)
    assert table.loc["full", "faces mean IoU"] == pytest.approx(face_summary["mean"] * 100)
    assert spans["full"] is span
    _same(arrays["full|iou"][0], want.astype(np.float32))
    assert list(arrays["units"]) == [r.path.rsplit("/", 1)[-1] for r in recs]

    refs, ref_paths = mask_reference_ious(tiny_study, max_images=40)
    assert ref_paths == paths
    _same(refs["side takes the car"], np.stack([_iou(side_takes_car_masks(lab, int(r.view)), *span_target(lab, int(r.view)))
                                                for lab, r in zip(labs, recs)]))
    levels = mask_reference_levels(tiny_study, max_images=40)
    assert list(levels.index) == list(REFERENCES) and list(levels["images"]) == [40] * 3
    assert levels.loc["ceiling", "mean IoU"] >= levels.loc["labelled masks take the car", "mean IoU"] \
        >= levels.loc["side takes the car", "mean IoU"]
