"""SynthVeRi (issue 3): VeRi-776 layout and formats, labels, masks, determinism, refusal and resume."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from reidlib.data.synth import generate, load_manifest, verify
from reidlib.data.synth.writer import SynthFolderError
from reidlib.data.views import PART_LABELS, orientation_to_view5, yaw_to_orientation8

SIZE = 64
NAME_RE = re.compile(r"^(\d{4})_c(\d{3})_(\d{8})_0\.jpg$")


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "tiny", preset="tiny", image_size=SIZE, seed=0, workers=1,
                    progress=False)


def _names(root: Path, split: str) -> list[str]:
    return (root / f"name_{split}.txt").read_text().splitlines()


def _kp(root: Path, fname: str) -> dict[str, list[int]]:
    out = {}
    for line in (root / fname).read_text().splitlines():
        f = line.split()
        assert len(f) == 42, line
        out[f[0]] = [int(v) for v in f[1:]]
    return out


def _meta(root: Path, split: str) -> pd.DataFrame:
    return pd.read_csv(root / f"meta_{split}.csv")


# ------------------------------------------------------------------------------ layout & formats
def test_layout_names_and_split(root):
    folders = {"train": "image_train", "query": "image_query", "test": "image_test"}
    ids = {}
    for split, folder in folders.items():
        names = _names(root, split)
        assert names and len(set(names)) == len(names)
        assert all(NAME_RE.match(n) for n in names)
        assert sorted(p.name for p in (root / folder).iterdir()) == sorted(names)
        ids[split] = {int(n[:4]) for n in names}
    assert not ids["train"] & ids["test"]
    assert ids["query"] == ids["test"]
    counts = load_manifest(root)["counts"]
    assert (counts["train_ids"], counts["test_ids"]) == (16, 10)
    assert 150 <= counts["train_images"] + counts["test_images"] <= 600
    # query rule: one image per (test id, camera), a byte-identical copy of an image_test file
    test_names = set(_names(root, "test"))
    q = _names(root, "query")
    assert set(q) <= test_names
    pairs_test = {(n[:4], n[5:9]) for n in test_names}
    assert sorted((n[:4], n[5:9]) for n in q) == sorted(pairs_test)
    for n in q[:5]:
        assert (root / "image_query" / n).read_bytes() == (root / "image_test" / n).read_bytes()


def test_gt_and_junk_indices(root):
    test, query = _names(root, "test"), _names(root, "query")
    gt = (root / "gt_index.txt").read_text().splitlines()
    jk = (root / "jk_index.txt").read_text().splitlines()
    assert len(gt) == len(jk) == len(query)
    for qn, g_line, j_line in zip(query, gt, jk):
        g = [int(v) for v in g_line.split()]
        j = [int(v) for v in j_line.split()]
        assert g and all(1 <= v <= len(test) for v in g + j)
        qv, qc = qn[:4], qn[5:9]
        want_g = [i + 1 for i, n in enumerate(test) if n[:4] == qv and n[5:9] != qc]
        want_j = [i + 1 for i, n in enumerate(test) if n[:4] == qv and n[5:9] == qc]
        assert g == want_g and j == want_j
        assert test.index(qn) + 1 in j                   # the query's own gallery copy is junk


def test_keypoint_files(root):
    train_kp, test_kp = _kp(root, "keypoint_train.txt"), _kp(root, "keypoint_test.txt")
    assert set(train_kp) == {f"image_train/{n}" for n in _names(root, "train")}
    assert set(test_kp) == ({f"image_test/{n}" for n in _names(root, "test")}
                            | {f"image_query/{n}" for n in _names(root, "query")})
    meta = pd.concat([_meta(root, s) for s in ("train", "test")]).set_index("name")
    n_vis = 0
    for path, v in {**train_kp, **test_kp}.items():
        xy = np.array(v[:40]).reshape(20, 2)
        assert meta.loc[path.split("/")[1], "orientation"] == v[40]
        invisible = (xy == -1).all(1)
        assert ((xy == -1).any(1) == invisible).all()            # -1 comes in pairs
        assert ((xy[~invisible] >= 0) & (xy[~invisible] < SIZE)).all()
        n_vis += int((~invisible).sum())
    total = len(train_kp) + len(test_kp)
    assert 4 * total < n_vis < 20 * total            # several visible key points per image


def test_meta_labels_agree_with_yaw(root):
    for split in ("train", "query", "test"):
        m = _meta(root, split)
        assert list(m.columns) == ["name", "vid", "camid", "yaw", "elevation", "orientation", "view", "body_type",
                                   "colour"]
        assert list(m["name"]) == _names(root, split)
        assert (m["vid"] == m["name"].str[:4].astype(int)).all()
        assert (m["camid"] == m["name"].str[6:9].astype(int)).all()
        assert ((m["yaw"] >= 0) & (m["yaw"] < 360)).all()
        assert (m["orientation"] == [yaw_to_orientation8(y) for y in m["yaw"]]).all()
        assert (m["view"] == [orientation_to_view5(o) for o in m["orientation"]]).all()
    m = pd.concat([_meta(root, "train"), _meta(root, "test")])
    assert m["orientation"].nunique() == 8                 # every orientation is rendered
    # every identity is seen by several cameras from several orientations
    per_id = m.groupby("vid").agg(cams=("camid", "nunique"), orients=("orientation", "nunique"))
    assert (per_id["cams"] >= 2).all() and per_id["orients"].mean() >= 2


# ------------------------------------------------------------------------------ rendering agrees
def test_masks_consistent_with_images(root):
    kp = {**_kp(root, "keypoint_train.txt"), **_kp(root, "keypoint_test.txt")}
    for folder, split in (("image_train", "train"), ("image_test", "test"), ("image_query", "query")):
        for name in _names(root, split):
            img = cv2.imread(str(root / folder / name))
            mask = cv2.imread(str(root / "masks" / folder / (name[:-4] + ".png")), cv2.IMREAD_UNCHANGED)
            assert mask.dtype == np.uint8 and mask.shape == img.shape[:2] == (SIZE, SIZE)
            assert set(np.unique(mask)) <= set(PART_LABELS.values())
            fg = mask > 0
            assert 0.05 < fg.mean() < 0.95
            xy = np.array(kp[f"{folder}/{name}"][:40]).reshape(20, 2)
            fg_near = cv2.dilate(fg.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            for x, y in xy[(xy >= 0).all(1)]:
                assert fg_near[y, x], (name, x, y)         # visible key points lie on the vehicle
    q = _names(root, "query")[0]
    assert (root / "masks/image_query" / (q[:-4] + ".png")).read_bytes() == \
        (root / "masks/image_test" / (q[:-4] + ".png")).read_bytes()


def test_parts_and_keypoints_follow_the_view(root):
    """Geometric facts of the rendered yaw: parts facing away are not drawn, near parts dominate."""
    kp = _kp(root, "keypoint_train.txt")
    m = _meta(root, "train")
    front_kps, rear_kps = slice(4, 10), slice(16, 20)
    for _, r in m.iterrows():
        o = r["orientation"]
        xy = np.array(kp[f"image_train/{r['name']}"][:40]).reshape(20, 2)
        vis = (xy >= 0).all(1)
        if o in (2, 3, 4):            # vehicle's left side towards the camera: right wheels hidden
            assert not vis[2:4].any()
        if o in (5, 6, 7):
            assert not vis[0:2].any()
        if o in (1, 4, 7):            # rear views: front lamps / plate hidden
            assert not vis[front_kps].any()
        if o in (0, 3, 6):
            assert not vis[rear_kps].any()
        mask = cv2.imread(str(root / "masks/image_train" / (r["name"][:-4] + ".png")), cv2.IMREAD_UNCHANGED)
        area = {k: int((mask == v).sum()) for k, v in PART_LABELS.items()}
        if o == 0:
            assert area["front"] > area["rear"] and area["front"] > 0
        if o == 1:
            assert area["rear"] > area["front"] and area["rear"] > 0
        if o in (2, 5):
            assert area["side"] > area["front"] and area["side"] > area["rear"]


# ------------------------------------------------------------------------------ determinism etc.
def test_deterministic_across_runs_and_workers(root, tmp_path):
    other = generate(tmp_path / "w2", preset="tiny", image_size=SIZE, seed=0, workers=2, progress=False)
    assert (other / "manifest.json").read_bytes() == (root / "manifest.json").read_bytes()
    man = load_manifest(root)
    files, c = man["files"], man["counts"]
    n_images = c["train_images"] + c["query_images"] + c["test_images"]
    assert len(files) == 2 * n_images + 12 and all(len(h) == 64 for h in files.values())   # jpg + png + lists
    assert verify(other) == []


def test_rerun_is_noop_and_other_config_refused(root):
    before = (root / "manifest.json").stat().st_mtime_ns
    assert generate(root, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False) == root
    assert (root / "manifest.json").stat().st_mtime_ns == before
    with pytest.raises(SynthFolderError, match="seed=1"):
        generate(root, preset="tiny", image_size=SIZE, seed=1, workers=1, progress=False)
    with pytest.raises(SynthFolderError, match="overwrite"):
        generate(root, preset="tiny", image_size=SIZE + 32, seed=0, workers=1, progress=False)
    assert (root / "manifest.json").stat().st_mtime_ns == before


def test_foreign_folder_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SynthFolderError, match="no SynthVeRi manifest"):
        generate(tmp_path, preset="tiny", image_size=SIZE, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_interrupted_run_detected_and_resumed(root, tmp_path, interrupt_after):
    out = tmp_path / "cut"
    calls, resumed = interrupt_after(5)
    with pytest.raises(KeyboardInterrupt):
        generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False)
    assert (out / ".incomplete").exists() and not (out / "manifest.json").exists()
    with pytest.raises(FileNotFoundError):
        load_manifest(out)                                    # never usable as a finished folder
    with pytest.raises(SynthFolderError, match="interrupted"):
        generate(out, preset="tiny", image_size=SIZE, seed=3, workers=1, progress=False)

    generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False)
    assert not set(resumed) & set(calls) and len(resumed) == 26 - 5      # finished chunks kept
    assert not (out / ".incomplete").exists() and not (out / ".partial").exists()
    assert (out / "manifest.json").read_bytes() == (root / "manifest.json").read_bytes()


def test_missing_file_redone_and_overwrite(root, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(root, out)
    victim = out / "image_train" / _names(root, "train")[0]
    victim.unlink()
    generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False)
    assert victim.exists() and verify(out) == []
    generate(out, preset="tiny", image_size=SIZE, seed=5, workers=1, overwrite=True, progress=False)
    man = load_manifest(out)
    assert man["config"]["seed"] == 5 and verify(out) == []
    assert man["files"] != load_manifest(root)["files"]


def test_cli(root, capsys):
    from reidlib.data.synth.__main__ import main

    assert main([str(root), "--preset", "tiny", "--image-size", str(SIZE), "--seed", "0"]) == 0
    assert "test_images" in capsys.readouterr().out
    assert main([str(root), "--preset", "tiny", "--image-size", str(SIZE), "--seed", "2"]) == 2
    assert "overwrite" in capsys.readouterr().err


# ------------------------------------------------------------------------------ consumers
def test_veri776_loader_reads_it(root):
    from reidlib.data import VeRi776

    ds = VeRi776(root)
    assert len(ds.train) == len(_names(root, "train")) and len(ds.query) == len(_names(root, "query"))
    assert ds.check_protocol() == []
    meta = _meta(root, "test").set_index("name")
    assert all(r.orientation == meta.loc[Path(r.path).name, "orientation"] for r in ds.gallery)


def test_difficulty_table(root):
    from reidlib.ablations.benchmark import _read_split, difficulty_table, relation_scores

    tab = difficulty_table(root, seed=0)
    fg = difficulty_table(root, methods=("colour_histogram_fg",))
    assert len(fg) == 4 and fg["mAP"].notna().all()
    assert list(tab.columns) == ["method", "relation", "mAP", "R1", "R5", "queries"]
    assert len(tab) == 8 and set(tab["relation"]) == {"overall", "same", "adjacent", "opposite"}
    assert tab[["mAP", "R1"]].apply(lambda s: s.between(0, 100)).all().all()
    assert (tab[tab.relation == "overall"]["queries"] == len(_names(root, "query"))).all()
    # an oracle distance (0 for the same id) is perfect in every relation with matches
    q, g = _read_split(root, "query"), _read_split(root, "test")
    oracle = (q["vid"].to_numpy()[:, None] != g["vid"].to_numpy()[None, :]).astype(float)
    for row in relation_scores(oracle, q, g):
        if row["queries"]:
            assert row["mAP"] == pytest.approx(100.0) and row["R1"] == pytest.approx(100.0)


def test_sample_grid(root):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from reidlib.data.synth.figures import sample_grid

    fig = sample_grid(root, by="view", n=3)
    assert len(fig.axes) == 5 * 3 and fig.legends
    plt.close(fig)
    fig = sample_grid(root, by="camera", n=2, split="test", overlay_masks=False)
    assert len(fig.axes) == 6 * 2 and not fig.legends
    plt.close(fig)
