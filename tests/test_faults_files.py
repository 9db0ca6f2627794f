"""A user's file that cannot be used fails at the door, as one line naming the file and what was
expected (each test failed before its fix).

1. An empty file, a text file or a file of zeros given as a checkpoint, a model, a SPAN or as init
   weights gave ``IndexError`` / ``KeyError: 101`` (or "holds Python objects" for the zeros).
2. Init weights of another ResNet gave torch's size-mismatch traceback (ResNet-50 into ResNet-34),
   or loaded in silence (ResNet-34 into ResNet-18: every ResNet-18 key is in ResNet-34).
3. A ``model.pt`` whose metadata does not fit its weights gave ``load_state_dict``'s traceback or a
   bare ``KeyError``.
4. VeRi-776 images named ``.JPG`` lost every view label (the keypoint files say ``.jpg``); a
   keypoint / SynthVeRi label file that names none of the dataset's images passed in silence.
5. An empty gallery or query set loaded, and evaluation died later in a reshape.
6. The compiled ranking kernel ranked distances below ~1e-307 wrongly (its bucket scale overflowed
   to inf, and 0 * inf = NaN became a bucket index); the numpy path was right.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import models as tvm

from helpers import make_vehicleid, make_veri776, make_veriwild

from reidlib.data import VehicleID, VeRi776, VERIWild
from reidlib.errors import CheckpointError, DataFormatError


def one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg


# ------------------------------------------------------------------------ files that are not torch files
def _load_model(p):
    from reidlib.engine.artifacts import load_model
    return load_model(p)


def _load_span(p):
    from reidlib.engine.artifacts import load_span
    return load_span(p)


def _load_checkpoint(p):
    from reidlib.engine.checkpoint import load_checkpoint
    return load_checkpoint(p)


def _init_weights(p):
    from reidlib.models.backbones import build_resnet
    return build_resnet("resnet18", weights=p)


LOADERS = [_load_checkpoint, _load_model, _load_span, _init_weights]
NOT_TORCH = {"empty": (b"", r"empty file \(0 bytes\)"),
             "text": (b"model: baseline\nlr: 0.1\n", r"not a torch file.*text"),
             "zeros": (bytes(256), r"not a torch file")}


@pytest.mark.parametrize("kind", list(NOT_TORCH))
@pytest.mark.parametrize("load", LOADERS, ids=lambda f: f.__name__.strip("_"))
def test_a_file_that_is_not_a_torch_file_is_named(tmp_path, kind, load):
    data, problem = NOT_TORCH[kind]
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert re.search(problem, one_line(err, path)), str(err.value)
    assert "torch.save" in str(err.value)


# ------------------------------------------------------------------------ init weights of another ResNet
def fake_resnet_file(path: Path, name: str, fc_classes: int = 1000) -> Path:
    """A state-dict file with the key names and shapes of torchvision's ``name`` (one-element
    storages expanded to the shapes: a ResNet-50 file of a few kB), its ``fc`` for ``fc_classes``."""
    with torch.device("meta"):
        net = getattr(tvm, name)(num_classes=fc_classes)
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in net.state_dict().items()}
    torch.save(state, path)
    return path


@pytest.mark.parametrize("given, wanted", [("resnet50", "resnet34"), ("resnet50", "resnet18"),
                                           ("resnet34", "resnet18"), ("resnet50", "resnet101"),
                                           ("resnet18", "resnet50")])
def test_init_weights_of_another_resnet_are_named(tmp_path, given, wanted):
    from reidlib.models.backbones import build_resnet, split_resnet

    path = fake_resnet_file(tmp_path / f"{given}.pth", given)
    for build in (build_resnet, split_resnet):
        with pytest.raises(CheckpointError) as err:
            build(wanted, weights=path)
        msg = one_line(err, path)
        assert f"a {given} state dict" in msg and f"expected {wanted}" in msg, msg


def test_init_weights_of_the_right_resnet_with_another_fc_load(tmp_path):
    """A fine-tuned copy (fc for 10 classes): the unused fc is left out; the trunk loads."""
    from reidlib.models.backbones import build_resnet

    path = fake_resnet_file(tmp_path / "r18.pth", "resnet18", fc_classes=10)
    net = build_resnet("resnet18", weights=path)
    assert not net.layer4[1].conv2.weight.detach().any() and net.fc.out_features == 1000


def test_init_weights_that_are_no_resnet_are_named(tmp_path):
    from reidlib.models.backbones import build_resnet

    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "head.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError) as err:
        build_resnet("resnet34", weights=path)
    msg = one_line(err, path)
    assert "not a resnet34 state dict" in msg and "missing" in msg and "head.weight" in msg, msg
    torch.save([torch.zeros(3)], path)
    with pytest.raises(CheckpointError, match=r"holds a list.*expected a resnet34 state dict"):
        build_resnet("resnet34", weights=path)


# ------------------------------------------------------------------------ model.pt metadata vs weights
def _edit_model_file(path: Path, **meta) -> None:
    state = torch.load(path, weights_only=True)
    for key, value in meta.items():
        if value is None:
            state["meta"].pop(key, None)
        elif key == "model_kwargs":
            state["meta"]["model_kwargs"].update(value)
        else:
            state["meta"][key] = value
    torch.save(state, path)


@pytest.fixture(scope="module")
def baseline_file(tmp_path_factory) -> Path:
    from reidlib.engine.artifacts import model_meta, save_model_file
    from reidlib.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("baseline", 4, backbone="resnet18")
    meta = model_meta("baseline", {"backbone": "resnet18"}, num_classes=4)
    return save_model_file(tmp_path_factory.mktemp("baseline"), model, meta, {}, iteration=0)


@pytest.mark.parametrize("edit, problem", [
    ({"num_classes": 7}, r"do not fit.*classifier\.weight: \[4, 512\] in the file, \[7, 512\]"),
    ({"model_kwargs": {"backbone": "resnet34"}}, r"do not fit.*missing"),
    ({"num_classes": None}, r"metadata.*num_classes"),
    ({"model_name": "no-such-model"}, r"metadata.*no-such-model"),
])
def test_model_file_whose_metadata_does_not_fit_its_weights(tmp_path, baseline_file, edit, problem):
    from reidlib.engine.artifacts import load_model

    path = tmp_path / "model.pt"
    path.write_bytes(baseline_file.read_bytes())
    load_model(path)                                          # as written: loads
    _edit_model_file(path, **edit)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert re.search(problem, one_line(err, path)), str(err.value)


def test_span_file_whose_weights_do_not_fit(tmp_path):
    from reidlib.engine.artifacts import load_span, save_model_file
    from reidlib.models.span import SPAN

    span = SPAN("resnet18")
    meta = {"task": "span", "model_name": "span-masks", "model_kwargs": span.config}
    path = save_model_file(tmp_path, span, meta, {}, 0)
    _edit_model_file(path, model_kwargs={"backbone": "resnet34"})
    with pytest.raises(CheckpointError, match=r"do not fit"):
        load_span(path)
    plain = tmp_path / "span_plain.pt"                        # a plain state dict + its config
    torch.save({"state_dict": span.state_dict(), "config": {"backbone": "resnet34"}}, plain)
    with pytest.raises(CheckpointError) as err:
        load_span(plain)
    assert "do not fit" in one_line(err, plain)


# ------------------------------------------------------------------------ VeRi-776: .JPG and keypoint files
def test_upper_case_jpg_names_keep_their_view_labels(tmp_path):
    facts = make_veri776(tmp_path)
    for folder in ("image_train", "image_query", "image_test"):
        for p in (tmp_path / folder).iterdir():
            p.rename(p.with_suffix(".JPG"))
    for lst in ("name_train.txt", "name_query.txt", "name_test.txt"):
        path = tmp_path / lst
        path.write_text(path.read_text().replace(".jpg", ".JPG"))
    ds = VeRi776(tmp_path)                                    # keypoint files still say .jpg
    got = {Path(r.path).name: r.orientation for r in ds.train + ds.gallery}
    want = {n.replace(".jpg", ".JPG"): facts["orientation"].get(n) for n in facts["train"] + facts["gallery"]}
    assert got == want and sum(o is not None for o in got.values()) > 0


@pytest.mark.parametrize("how", ["other images", "no lines"])
def test_keypoint_file_naming_no_image_is_named(tmp_path, how):
    make_veri776(tmp_path)
    path = tmp_path / "keypoint_test.txt"
    if how == "no lines":
        path.write_text("\n")
    else:
        path.write_text(path.read_text().replace("_c0", "_c9"))   # cameras that no image has
    with pytest.raises(DataFormatError) as err:
        VeRi776(tmp_path)
    msg = one_line(err, path)
    assert ("none of its" in msg) if how == "other images" else ("no label line" in msg), msg


def test_synthveri_label_file_naming_no_image_is_named(tmp_path):
    make_vehicleid(tmp_path)
    (tmp_path / "manifest.json").write_text('{"generator": "SynthVeRi"}')
    meta = tmp_path / "synthveri_meta.csv"
    meta.write_text("path,split,orientation\nimage/0000001.jpg,train,3\n")
    assert VehicleID(tmp_path).train[0].orientation == 3
    meta.write_text("path,split,orientation\nimages/0000001.jpg,train,3\nimages/0000002.jpg,train,1\n")
    with pytest.raises(DataFormatError) as err:
        VehicleID(tmp_path)
    assert "none of its 2 labelled images" in one_line(err, meta)


# ------------------------------------------------------------------------ empty gallery / query
def _empty(path: Path, keep_one_per_id: bool = False) -> Path:
    if keep_one_per_id:                        # VehicleID: one image per id leaves no query
        seen, rows = set(), []
        for line in path.read_text().splitlines():
            if line.split()[1] not in seen:
                seen.add(line.split()[1])
                rows.append(line)
        path.write_text("\n".join(rows) + "\n")
    else:
        path.write_text("\n")
    return path


EMPTY_CASES = {
    "veri776 gallery": (make_veri776, "name_test.txt", False, lambda r: VeRi776(r), "gallery"),
    "veri776 query": (make_veri776, "name_query.txt", False, lambda r: VeRi776(r), "query"),
    "vehicleid test list": (make_vehicleid, "train_test_split/test_list_800.txt", False,
                            lambda r: VehicleID(r), "gallery"),
    "vehicleid no query": (make_vehicleid, "train_test_split/test_list_1600.txt", True,
                           lambda r: VehicleID(r, test_size=1600), "query"),
    "veriwild gallery": (make_veriwild, "train_test_split/test_3000.txt", False, lambda r: VERIWild(r), "gallery"),
    "veriwild query": (make_veriwild, "train_test_split/test_5000_query.txt", False,
                       lambda r: VERIWild(r, test_size=5000), "query"),
}


@pytest.mark.parametrize("case", list(EMPTY_CASES))
def test_empty_gallery_or_query_refused_at_load(tmp_path, case):
    make, rel, one_per_id, load, split = EMPTY_CASES[case]
    make(tmp_path)
    path = _empty(tmp_path / rel, one_per_id)
    with pytest.raises(DataFormatError) as err:
        load(tmp_path)
    assert f"empty {split}" in one_line(err, path)


# ------------------------------------------------------------------------ ranking subnormal distances
@pytest.mark.parametrize("scale_exp", [-1030, -1040, -1070])
def test_subnormal_distances_rank_as_their_scaled_copies_on_both_backends(scale_exp):
    """Scaling by a power of two is exact here and keeps every order and tie: no metric may move,
    on either ranking backend."""
    from reidlib.metrics import evaluate_rank

    rng = np.random.default_rng(0)
    nq, ng = 12, 300
    labels = rng.integers(0, 6, nq), rng.integers(0, 6, ng), rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    normal = rng.integers(0, 2**10, (nq, ng)).astype(np.float64)       # exact ties too
    normal[0, :20] = 0.0
    tiny = np.ldexp(normal, scale_exp)
    assert np.all(tiny[normal > 0] < 1e-307) and np.array_equal(np.ldexp(tiny, -scale_exp), normal)
    backends = ["numpy", "numba"] if _has_numba() else ["numpy"]      # numba is in the lock
    want = evaluate_rank(normal, *labels, backend="numpy", max_rank=ng)
    for backend in backends:
        got = evaluate_rank(tiny, *labels, backend=backend, max_rank=ng)
        np.testing.assert_array_equal(got.query_first_rank, want.query_first_rank, err_msg=backend)
        np.testing.assert_array_equal(got.query_ap, want.query_ap, err_msg=backend)
        np.testing.assert_array_equal(got.cmc, want.cmc, err_msg=backend)
        assert got.mINP == want.mINP, backend


def _has_numba() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None
