"""SynthVeRi in VehicleID's and VERI-Wild's layouts: same images, the datasets' own files, the
loaders' protocol invariants, determinism, resume and the CLI."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reidlib.data import VehicleID, VeRi776, VERIWild
from reidlib.data.synth import generate, load_manifest, mask_path, verify
from reidlib.data.synth.writer import SynthFolderError
from reidlib.data.views import PART_LABELS, orientation_to_view5
from reidlib.errors import ConfigError

SIZE = 48


def _gen(base: Path, layout: str, **kw) -> Path:
    return generate(base / layout, preset="tiny", image_size=SIZE, seed=0, workers=1, layout=layout,
                    progress=False, **kw)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    return {layout: _gen(base, layout) for layout in ("veri776", "vehicleid", "veriwild")}


def _meta(root: Path) -> list[dict]:
    with open(root / "synthveri_meta.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _jpg_hashes(root: Path, exclude: str = "") -> list[str]:
    files = load_manifest(root)["files"]
    return sorted(h for p, h in files.items() if p.endswith(".jpg") and not (exclude and p.startswith(exclude)))


# ------------------------------------------------------------------------------ same data set
def test_same_images_and_counts_in_every_layout(roots):
    veri = load_manifest(roots["veri776"])
    # every rendered image once (VeRi-776's image_query holds copies of image_test images)
    rendered = _jpg_hashes(roots["veri776"], exclude="image_query/")
    assert len(rendered) == 159 + 97
    for layout in ("vehicleid", "veriwild"):
        man = load_manifest(roots[layout])
        assert man["layout"] == layout == man["config"]["layout"]
        assert _jpg_hashes(roots[layout]) == rendered
        for key in ("train_ids", "test_ids", "train_images", "test_images"):
            assert man["counts"][key] == veri["counts"][key]
        assert verify(roots[layout]) == []
    assert "cameras" not in load_manifest(roots["vehicleid"])["counts"]
    assert load_manifest(roots["veriwild"])["counts"]["cameras"] == 6


def test_masks_and_views_kept(roots):
    for layout, folder in (("vehicleid", "image"), ("veriwild", "images")):
        root = roots[layout]
        rows = _meta(root)
        assert len(rows) == 159 + 97
        kp = {}
        for line in (root / "synthveri_keypoints.txt").read_text().splitlines():
            f = line.split()
            assert len(f) == 42
            kp[f[0]] = int(f[41])
        for r in rows:
            img = root / r["path"]
            assert r["path"].startswith(folder + "/") and img.is_file()
            m = mask_path(img)
            assert m == root / "masks" / Path(r["path"]).with_suffix(".png")
            labels = np.frombuffer(m.read_bytes(), np.uint8)        # a PNG that exists
            assert labels[:4].tobytes() == b"\x89PNG"
            assert kp[r["path"]] == int(r["orientation"])
            assert int(r["view"]) == orientation_to_view5(int(r["orientation"]))
        assert ("camid" in rows[0]) == (layout == "veriwild")
    import cv2
    one = _meta(roots["veriwild"])[0]["path"]
    labels = cv2.imread(str(mask_path(roots["veriwild"] / one)), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (SIZE, SIZE) and set(np.unique(labels)) <= set(PART_LABELS.values())
    # the VeRi-776 layout's masks are found the same way
    name = (roots["veri776"] / "name_train.txt").read_text().split()[0]
    assert mask_path(roots["veri776"] / "image_train" / name) == roots["veri776"] / "masks/image_train" / \
        (name[:-4] + ".png")


# ------------------------------------------------------------------------------ VehicleID
def test_vehicleid_files_have_no_cameras(roots):
    root = roots["vehicleid"]
    man = load_manifest(root)
    assert man["test_sizes"] == {"800": {"images": 28, "ids": 3}, "1600": {"images": 53, "ids": 6},
                                 "2400": {"images": 97, "ids": 10}}
    split = root / "train_test_split"
    assert sorted(p.name for p in split.iterdir()) == ["test_list_1600.txt", "test_list_2400.txt",
                                                      "test_list_800.txt", "train_list.txt"]
    for p in split.iterdir():
        for line in p.read_text().splitlines():
            imgid, vid = line.split()
            assert len(imgid) == 7 and imgid.isdigit() and (root / "image" / f"{imgid}.jpg").is_file()
    # nested lists: the small list's lines start the medium one's
    small = (split / "test_list_800.txt").read_text().splitlines()
    assert set(small) <= set((split / "test_list_1600.txt").read_text().splitlines())
    assert not (root / "name_train.txt").exists() and not (root / "image_train").exists()


@pytest.mark.parametrize("test_size", [800, 1600, 2400])
def test_vehicleid_protocol_on_synthveri(roots, test_size):
    root = roots["vehicleid"]
    want = load_manifest(root)["test_sizes"][str(test_size)]
    ds = VehicleID(root, test_size=test_size, trial=0, seed=3)
    assert len(ds.train) == 159 and len({r.pid for r in ds.train}) == 16
    test_ids = sorted({r.pid for r in ds.query + ds.gallery})
    assert len(test_ids) == want["ids"]
    galleries = set()
    for t in range(10):
        d = ds.with_trial(t)
        assert sorted(r.pid for r in d.gallery) == test_ids                 # one gallery image per test id
        assert len(d.query) + len(d.gallery) == want["images"]              # query = all the others
        assert {r.path for r in d.query}.isdisjoint({r.path for r in d.gallery})
        cams = [r.camid for r in d.query + d.gallery]
        assert len(set(cams)) == len(cams)                                  # no cameras: never filtered
        assert d.gallery == VehicleID(root, test_size=test_size, trial=t, seed=3).gallery   # reproducible
        galleries.add(tuple(r.path for r in d.gallery))
    assert len(galleries) == 10                                             # 10 distinct trials
    other_seed = {tuple(r.path for r in VehicleID(root, test_size=test_size, trial=t, seed=4).gallery)
                  for t in range(10)}
    assert other_seed != galleries
    meta = {str(root / r["path"]): int(r["orientation"]) for r in _meta(root)}
    assert all(r.orientation == meta[r.path] and r.view == orientation_to_view5(r.orientation)
               for r in ds.train + ds.query)


def test_vehicleid_test_size_must_be_offered(roots):
    with pytest.raises(ConfigError, match=r"\(800, 1600, 2400\)"):
        VehicleID(roots["vehicleid"], test_size=10)


# ------------------------------------------------------------------------------ VERI-Wild
def test_veriwild_files(roots):
    root = roots["veriwild"]
    split = root / "train_test_split"
    info = (split / "vehicle_info.txt").read_text().splitlines()
    assert info[0] == "id/image;Camera ID;Time;Model;Type;Color" and len(info) == 1 + 159 + 97
    for line in info[1:]:
        f = line.split(";")
        vid, imgid = f[0].split("/")
        assert len(f) == 6 and len(vid) == 5 and len(imgid) == 6 and 1 <= int(f[1]) <= 6
        assert (root / "images" / vid / f"{imgid}.jpg").is_file()
    assert sorted(p.name for p in split.iterdir()) == sorted(
        ["train_list.txt", "vehicle_info.txt"] + [f"test_{n}{q}.txt" for n in (3000, 5000, 10000)
                                                 for q in ("", "_query")])


@pytest.mark.parametrize("test_size", [3000, 5000, 10000])
def test_veriwild_protocol_on_synthveri(roots, test_size):
    from reidlib.metrics import evaluate_rank

    root = roots["veriwild"]
    want = load_manifest(root)["test_sizes"][str(test_size)]
    ds = VERIWild(root, test_size=test_size)
    q, g = ds.query, ds.gallery
    assert (len(q), len(g)) == (want["query"], want["gallery"])
    assert {r.path for r in q}.isdisjoint({r.path for r in g})              # queries and gallery disjoint
    assert sorted(r.pid for r in q) == sorted({r.pid for r in g}) and len(q) == want["ids"]  # one query per id
    meta = {str(root / r["path"]): (int(r["camid"]), int(r["orientation"])) for r in _meta(root)}
    assert all((r.camid, r.orientation) == meta[r.path] for r in q + g)
    # the camera rule: per query, same-id same-camera gallery items are removed
    removed = [sum(x.pid == y.pid and x.camid == y.camid for y in g) for x in q]
    kept = [sum(x.pid == y.pid and x.camid != y.camid for y in g) for x in q]
    assert sum(removed) == want["same_id_same_camera"] and all(n >= 1 for n in removed)
    assert all(n >= 1 for n in kept)                                        # a true match is left
    # through the evaluator: same-id same-camera items closest, other ids next, true matches last
    qp, gp = np.array([r.pid for r in q]), np.array([r.pid for r in g])
    qc, gc = np.array([r.camid for r in q]), np.array([r.camid for r in g])
    same_id, same_cam = qp[:, None] == gp[None, :], qc[:, None] == gc[None, :]
    dist = np.where(same_id & same_cam, 0.0, np.where(same_id, 2.0, 1.0))
    res = evaluate_rank(dist, qp, gp, qc, gc, max_rank=1)
    assert res.cmc[0] == 0.0                                                # removed items never rank first
    assert evaluate_rank(np.where(same_id, 0.0, 1.0), qp, gp, qc, gc, max_rank=1).cmc[0] == 1.0


def test_veriwild_test_size_must_be_offered(roots):
    with pytest.raises(ConfigError, match=r"\(3000, 5000, 10000\)"):
        VERIWild(roots["veriwild"], test_size=10)


# ------------------------------------------------------------------------------ determinism, resume, refusal
def test_layout_deterministic_across_workers(roots, tmp_path):
    other = generate(tmp_path / "w2", preset="tiny", image_size=SIZE, seed=0, workers=2, layout="veriwild",
                     progress=False)
    assert (other / "manifest.json").read_bytes() == (roots["veriwild"] / "manifest.json").read_bytes()
    assert verify(other) == []


def test_layout_resume(roots, tmp_path, interrupt_after):
    out = tmp_path / "cut"
    calls, resumed = interrupt_after(4)
    with pytest.raises(KeyboardInterrupt):
        generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, layout="vehicleid", progress=False)
    assert (out / ".incomplete").exists() and not (out / "manifest.json").exists()
    with pytest.raises(SynthFolderError, match="layout='veriwild'"):
        generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, layout="veriwild", progress=False)
    generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, layout="vehicleid", progress=False)
    assert not set(resumed) & set(calls) and len(resumed) == 26 - 4
    assert (out / "manifest.json").read_bytes() == (roots["vehicleid"] / "manifest.json").read_bytes()


def test_rerun_noop_other_layout_refused_then_overwritten(roots, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(roots["veri776"], out)
    (out / "notes.txt").write_text("mine")
    before = (out / "manifest.json").stat().st_mtime_ns
    assert generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False) == out
    assert (out / "manifest.json").stat().st_mtime_ns == before
    with pytest.raises(SynthFolderError, match="layout='veri776'.*layout='veriwild'"):
        generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, layout="veriwild", progress=False)
    generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, layout="veriwild", overwrite=True,
             progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([".synthveri.lock", "cameras.json", "identities.json", "images", "manifest.json", "masks",
                            "notes.txt", "synthveri_keypoints.txt", "synthveri_meta.csv", "train_test_split"])
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["images"]
    assert (out / "manifest.json").read_bytes() == (roots["veriwild"] / "manifest.json").read_bytes()
    assert (out / "notes.txt").read_text() == "mine"


def test_old_manifest_without_layout_is_veri776(roots, tmp_path):
    """Folders written before layouts existed (config without "layout") stay valid as VeRi-776."""
    out = tmp_path / "old"
    shutil.copytree(roots["veri776"], out)
    man = json.loads((out / "manifest.json").read_text())
    del man["config"]["layout"], man["layout"], man["lists"]
    (out / "manifest.json").write_text(json.dumps(man))
    before = (out / "manifest.json").read_bytes()
    generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False)
    assert (out / "manifest.json").read_bytes() == before                  # no-op
    ds = VeRi776(out)                                                       # counts checked from "counts"
    assert len(ds.train) == man["counts"]["train_images"]
    (out / "name_query.txt").write_text("".join(l + "\n" for l in (out / "name_query.txt").read_text().split()[:5]))
    with pytest.raises(Exception, match=f"5 images listed.*records {man['counts']['query_images']}"):
        VeRi776(out)


def test_cli_layout(tmp_path, capsys):
    from reidlib.data.synth.__main__ import main

    out = tmp_path / "cli"
    assert main([str(out), "--preset", "tiny", "--image-size", "32", "--layout", "vehicleid", "--workers", "1"]) == 0
    assert "vehicleid layout" in capsys.readouterr().out
    assert load_manifest(out)["config"]["layout"] == "vehicleid"
    assert VehicleID(out).test_size == 800
    with pytest.raises(SystemExit):
        main([str(out), "--layout", "market"])
    with pytest.raises(ConfigError, match="unknown SynthVeRi layout"):
        generate(tmp_path / "x", preset="tiny", layout="market", progress=False)


def test_sample_grid_in_other_layouts(roots):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from reidlib.data.synth.figures import sample_grid

    fig = sample_grid(roots["veriwild"], by="camera", n=2, split="test")
    assert len(fig.axes) == 6 * 2 and fig.legends
    plt.close(fig)
    fig = sample_grid(roots["vehicleid"], by="view", n=3)
    assert len(fig.axes) == 5 * 3
    plt.close(fig)
    with pytest.raises(ValueError, match="no cameras"):
        sample_grid(roots["vehicleid"], by="camera")
