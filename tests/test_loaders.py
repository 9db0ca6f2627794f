"""Real-data loaders on tiny fixture datasets in the exact on-disk formats of VeRi-776, VehicleID and VERI-Wild."""
from __future__ import annotations

import os
import warnings

import pytest
import torch

from helpers import expected_indices, make_vehicleid, make_veri776, make_veriwild

from reidlib.data import ImageDataset, PKSampler, Record, VehicleID, VeRi776, VERIWild, build_transforms, relabel
from reidlib.data.views import orientation_to_view5
from reidlib.errors import ConfigError, DataFormatError


def _raises_at(fn, fname: str, line: int | None, expected: str | None):
    with pytest.raises(DataFormatError) as ei:
        fn()
    msg = str(ei.value)
    assert fname in msg
    if line is not None:
        assert f"{fname}:{line}:" in msg and ei.value.line == line
    if expected is not None:
        assert expected in msg
    return ei.value


# ---------------------------------------------------------------------------------------- VeRi-776
def test_veri776_parses_ids_cameras_and_views(tmp_path):
    facts = make_veri776(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # exact duplicate keypoint lines: no warning
        ds = VeRi776(tmp_path)
    assert ds.name == "veri776" and ds.root == tmp_path
    assert [os.path.basename(r.path) for r in ds.train] == facts["train"]
    assert [os.path.basename(r.path) for r in ds.gallery] == facts["gallery"]
    q0 = ds.query[0]
    assert (q0.pid, q0.camid) == (5, 3) and q0.path == str(tmp_path / "image_query" / facts["query"][0])
    assert {r.pid for r in ds.train} == {1, 2, 3} and {r.camid for r in ds.gallery} == {3, 4, 12}
    for r in ds.train + ds.query + ds.gallery:
        o = facts["orientation"].get(os.path.basename(r.path))
        assert r.orientation == o
        assert r.view == (None if o is None else orientation_to_view5(o))
    assert ds.train[-1].orientation is None and ds.train[-1].view is None   # no label -> None, not an error
    assert ds.label_conflicts == {}
    s = ds.summary()
    assert s.loc["train", "ids"] == 3 and s.loc["train", "images"] == 12 and s.loc["gallery", "cameras"] == 3
    assert s.loc["train", "with_view"] == 11


def test_veri776_ids_from_file_name_not_path(tmp_path):
    root = tmp_path / "0999_c099_dir"                  # a misleading folder name
    make_veri776(root, keypoints=False, index_files=False)
    ds = VeRi776(root)
    assert {r.pid for r in ds.train} == {1, 2, 3} and all(r.camid in (1, 2) for r in ds.train)


def test_veri776_conflicting_keypoints_reported_and_unknown(tmp_path):
    facts = make_veri776(tmp_path, conflict=True)
    with pytest.warns(UserWarning, match=r"1 image\(s\) have conflicting orientation labels"):
        ds = VeRi776(tmp_path)
    bad = facts["conflict_image"]
    assert list(ds.label_conflicts) == [bad]
    assert len({o for _, _, o in ds.label_conflicts[bad]}) == 2
    rec = next(r for r in ds.gallery if r.path.endswith(bad))
    assert rec.orientation is None and rec.view is None


def test_veri776_index_files_and_protocol_check(tmp_path):
    facts = make_veri776(tmp_path)
    ds = VeRi776(tmp_path)
    gt, jk = expected_indices(facts["query"], facts["gallery"])
    assert ds.gt_index == gt and ds.jk_index == jk
    assert ds.check_protocol() == []
    # a gt list that puts a same-camera image among the true matches is flagged
    rows = [" ".join(str(j + 1) for j in r) for r in gt]
    rows[1] = rows[1] + f" {jk[1][0] + 1}"
    (tmp_path / "gt_index.txt").write_text("\n".join(rows) + "\n")
    assert VeRi776(tmp_path).check_protocol() == [1]


def test_veri776_without_optional_files(tmp_path):
    make_veri776(tmp_path, keypoints=False, index_files=False)
    ds = VeRi776(tmp_path, verify_images=True)
    assert ds.gt_index is None and ds.jk_index is None
    assert all(r.view is None for r in ds.train + ds.query + ds.gallery)
    with pytest.raises(DataFormatError, match="gt_index.txt"):
        ds.check_protocol()


def test_veri776_missing_folder_and_list(tmp_path):
    make_veri776(tmp_path, keypoints=False, index_files=False)
    (tmp_path / "name_test.txt").unlink()
    _raises_at(lambda: VeRi776(tmp_path), "name_test.txt", None, "VVVV_cCCC_TTTTTTTT_N.jpg")
    make_veri776(tmp_path, keypoints=False, index_files=False)
    for f in (tmp_path / "image_query").iterdir():
        f.unlink()
    (tmp_path / "image_query").rmdir()
    _raises_at(lambda: VeRi776(tmp_path), "image_query", None, None)
    _raises_at(lambda: VeRi776(tmp_path / "nope"), "nope", None, "image_train")


def test_veri776_bad_name_line(tmp_path):
    facts = make_veri776(tmp_path, keypoints=False, index_files=False)
    names = list(facts["train"])
    names[2] = "0001_cam1_00001010_0.jpg"
    (tmp_path / "name_train.txt").write_text("\n".join(names) + "\n")
    err = _raises_at(lambda: VeRi776(tmp_path), "name_train.txt", 3, "VVVV_cCCC_TTTTTTTT_N.jpg")
    assert "0001_cam1" in str(err)


def test_veri776_listed_image_missing(tmp_path):
    facts = make_veri776(tmp_path, keypoints=False, index_files=False)
    (tmp_path / "image_test" / facts["gallery"][4]).unlink()
    err = _raises_at(lambda: VeRi776(tmp_path), "name_test.txt", 5, None)
    assert facts["gallery"][4] in str(err) and "not found" in str(err)


@pytest.mark.parametrize("mutate,problem", [
    (lambda l: l.rsplit(" ", 1)[0], "41 fields"),            # dropped orientation
    (lambda l: l.replace(" 11 ", " 1.5 ", 1), "non-integer"),
    (lambda l: l.rsplit(" ", 1)[0] + " 9", "out of range"),
])
def test_veri776_malformed_keypoint_line(tmp_path, mutate, problem):
    make_veri776(tmp_path, index_files=False)
    path = tmp_path / "keypoint_train.txt"
    lines = path.read_text().splitlines()
    lines[1] = mutate(lines[1])
    path.write_text("\n".join(lines) + "\n")
    err = _raises_at(lambda: VeRi776(tmp_path), "keypoint_train.txt", 2, "42 whitespace-separated fields")
    assert problem in str(err)


def test_veri776_bad_index_file(tmp_path):
    make_veri776(tmp_path)
    path = tmp_path / "jk_index.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2] + " 999"
    path.write_text("\n".join(lines) + "\n")
    _raises_at(lambda: VeRi776(tmp_path), "jk_index.txt", 3, "1-based integer indices")
    path.write_text("\n".join(lines[:2]) + "\n")
    _raises_at(lambda: VeRi776(tmp_path), "jk_index.txt", None, "one line per query")


# ---------------------------------------------------------------------------------------- VehicleID
def test_vehicleid_protocol_one_gallery_image_per_id(tmp_path):
    facts = make_vehicleid(tmp_path)
    ds = VehicleID(tmp_path, test_size=800, trial=3, seed=1)
    assert ds.name == "vehicleid" and len(ds.train) == 6
    test_pids = sorted({p for _, p in facts["test"]})
    assert sorted(r.pid for r in ds.gallery) == test_pids                 # exactly one per test id
    assert len(ds.query) + len(ds.gallery) == len(facts["test"])
    assert {r.path for r in ds.query}.isdisjoint({r.path for r in ds.gallery})
    all_paths = {str(tmp_path / "image" / f"{i}.jpg") for i, _ in facts["test"]}
    assert {r.path for r in ds.query} | {r.path for r in ds.gallery} == all_paths
    assert 20 not in {r.pid for r in ds.query}                           # single-image id: gallery only
    cams = [r.camid for r in ds.query + ds.gallery]
    assert len(set(cams)) == len(cams)                                   # distinct: never filtered
    assert len({r.camid for r in ds.train}) == len(ds.train)
    s = ds.summary()
    assert s.loc["gallery", "ids"] == 5 and s.loc["gallery", "images"] == 5


def test_vehicleid_trials_deterministic_and_different(tmp_path):
    make_vehicleid(tmp_path)
    a = VehicleID(tmp_path, trial=2, seed=7)
    b = VehicleID(tmp_path, trial=2, seed=7)
    assert a.gallery == b.gallery and a.query == b.query
    galleries = {tuple(r.path for r in a.with_trial(t).gallery) for t in range(10)}
    assert len(galleries) > 1                                            # trials differ
    assert a.with_trial(5).gallery == VehicleID(tmp_path, trial=5, seed=7).gallery
    assert VehicleID(tmp_path, test_size=2400).summary().loc["gallery", "ids"] == 7
    with pytest.raises(ConfigError):
        VehicleID(tmp_path, test_size=1000)


def test_vehicleid_bad_lines(tmp_path):
    make_vehicleid(tmp_path)
    path = tmp_path / "train_test_split" / "test_list_800.txt"
    lines = path.read_text().splitlines()
    good = list(lines)
    lines[1] = lines[1] + " extra"
    path.write_text("\n".join(lines) + "\n")
    _raises_at(lambda: VehicleID(tmp_path), "test_list_800.txt", 2, "<imgid> <vid>")
    lines = list(good)
    lines[3] = lines[3].split()[0] + " abc"
    path.write_text("\n".join(lines) + "\n")
    _raises_at(lambda: VehicleID(tmp_path), "test_list_800.txt", 4, "<imgid> <vid>")
    lines = list(good)
    lines[0] = "9999999 20"                                              # no such image
    path.write_text("\n".join(lines) + "\n")
    err = _raises_at(lambda: VehicleID(tmp_path), "test_list_800.txt", 1, "<imgid> <vid>")
    assert "9999999.jpg" in str(err)
    (tmp_path / "train_test_split" / "train_list.txt").unlink()
    _raises_at(lambda: VehicleID(tmp_path), "train_list.txt", None, None)


# ---------------------------------------------------------------------------------------- VERI-Wild
@pytest.mark.parametrize("in_split_dir", [True, False])
def test_veriwild_cameras_from_vehicle_info(tmp_path, in_split_dir):
    facts = make_veriwild(tmp_path, in_split_dir=in_split_dir)
    ds = VERIWild(tmp_path, test_size=5000)
    assert ds.name == "veriwild" and ds.list_dir == facts["lists"]
    assert len(ds.train) == 6 and len(ds.gallery) == 6 and len(ds.query) == 2
    for r in ds.train + ds.query + ds.gallery:
        vid, img = r.path.split(os.sep)[-2:]
        key = f"{vid}/{img[:-4]}"
        assert r.pid == int(vid) and r.camid == facts["cams"][key]
    assert ds.query[0].path == str(tmp_path / "images" / "00003" / "000300.jpg")
    assert ds.summary().loc["gallery", "cameras"] == 4


def test_veriwild_errors(tmp_path):
    facts = make_veriwild(tmp_path)
    info = facts["lists"] / "vehicle_info.txt"
    lines = info.read_text().splitlines()
    # drop one gallery image from vehicle_info
    missing = facts["test"][2]
    info.write_text("\n".join(l for l in lines if not l.startswith(missing + ";")) + "\n")
    err = _raises_at(lambda: VERIWild(tmp_path), "test_3000.txt", 3, "vehicle_info.txt")
    assert missing in str(err)
    bad = list(lines)
    bad[4] = bad[4].split(";")[0] + ";cam7;x"
    info.write_text("\n".join(bad) + "\n")
    _raises_at(lambda: VERIWild(tmp_path), "vehicle_info.txt", 5, "field 1 an integer camera id")
    info.write_text("\n".join(lines) + "\n")
    q = facts["lists"] / "test_3000_query.txt"
    q.write_text(facts["query"][0] + "\n00003-000301\n")
    _raises_at(lambda: VERIWild(tmp_path), "test_3000_query.txt", 2, "vid/imgid")
    q.write_text("00003/999999\n")
    _raises_at(lambda: VERIWild(tmp_path), "test_3000_query.txt", 1, "vid/imgid")
    with pytest.raises(ConfigError):
        VERIWild(tmp_path, test_size=4000)


# ---------------------------------------------------------------------------------------- ImageDataset
def test_image_dataset_items_and_transforms(tmp_path):
    make_veri776(tmp_path, index_files=False)
    ds = VeRi776(tmp_path)
    pid_map = relabel(ds.train)
    assert pid_map == {1: 0, 2: 1, 3: 2}
    train = ImageDataset(ds.train, build_transforms(32, 16, train=True), pid_map=pid_map)
    item = train[5]
    assert item["img"].shape == (3, 32, 16) and item["img"].dtype == torch.float32
    assert type(item["img"]) is torch.Tensor
    assert item["pid"] == pid_map[ds.train[5].pid] and item["camid"] == ds.train[5].camid
    assert item["view"] == ds.train[5].view and item["index"] == 5
    assert train[len(train) - 1]["view"] == -1                           # unlabelled image
    raw = ImageDataset(ds.gallery)[0]
    assert raw["img"].shape == (3, 24, 16) and raw["pid"] == 5
    # RGB order: the fixture's red channel (BGR index 2) is constant 200
    assert raw["img"][0].mean().item() == pytest.approx(200 / 255, abs=0.03)
    test = ImageDataset(ds.query, build_transforms(32, 16, train=False))
    t0 = test[0]["img"]
    assert torch.equal(t0, test[0]["img"])                               # test transform deterministic
    loader = torch.utils.data.DataLoader(train, batch_sampler=PKSampler(train.pids, p=2, k=3, seed=0))
    batch = next(iter(loader))
    assert batch["img"].shape == (6, 3, 32, 16) and len(set(batch["pid"].tolist())) == 2


def test_image_dataset_unreadable_image(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = ImageDataset([Record(str(bad), 1, 1)])
    with pytest.raises(DataFormatError, match="broken.jpg"):
        ds[0]
    with pytest.raises(KeyError):
        ImageDataset([Record(str(bad), 7, 1)], pid_map={1: 0})
