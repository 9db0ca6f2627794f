"""Helpers shared by the test files (on ``sys.path`` through ``pythonpath = ["tests"]`` in
pyproject.toml's pytest section; no test file imports another).

* tiny datasets written under ``tmp_path``: :func:`make_tiny_veri` (a VeRi-776 layout with
  id-coloured vehicles, keypoint views and SynthVeRi-style label maps, for training), and
  :func:`make_veri776` / :func:`make_vehicleid` / :func:`make_veriwild` in the exact on-disk
  formats of VeRi-776 (Liu et al., ICME 2016; key points of Wang et al., ICCV 2017), VehicleID
  (Liu et al., CVPR 2016) and VERI-Wild (Lou et al., CVPR 2019), images real 16x24 JPEGs;
* :func:`tiny_cfg`: a run configuration at the smallest size (resnet18, 32 x 32, 3 iterations);
* independent evaluation references (plain loops, float64, no reidlib code): :func:`ref_euclidean`,
  :func:`ref_cpdm`, :func:`ref_metrics`, :func:`assert_ranked_by`;
* :func:`backend_fixture`: an autouse fixture running a module's tests once per kernel backend.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest


# ------------------------------------------------------------------------------------------------
# a tiny VeRi-776-layout training set: id-coloured vehicles, keypoint views, SynthVeRi-style label maps
# ------------------------------------------------------------------------------------------------

def make_tiny_veri(root: Path, train_ids=(1, 2, 3, 4), test_ids=(5, 6, 7), per_id: int = 4, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    root = Path(root)
    lists = {"image_train": [], "image_test": [], "image_query": []}
    kp_lines = {"keypoint_train.txt": [], "keypoint_test.txt": []}

    def write(folder: str, pid: int, cam: int, j: int) -> str:
        name = f"{pid:04d}_c{cam:03d}_{1000 * pid + 10 * cam + j:08d}_0.jpg"
        colour = np.array([(pid * 67) % 256, (pid * 131) % 256, (pid * 29) % 256], np.uint8)
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        lab = np.zeros((size, size), np.uint8)
        x0 = int(rng.integers(2, 8))
        img[8:24, x0:x0 + 20] = colour
        orient = int(rng.integers(0, 8))
        lab[8:24, x0:x0 + 10] = 1 if orient in (0, 3, 6) else 2
        lab[8:24, x0 + 10:x0 + 20] = 3
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "masks" / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / folder / name), img)
        cv2.imwrite(str(root / "masks" / folder / (name[:-4] + ".png")), lab)
        kp = "keypoint_train.txt" if folder == "image_train" else "keypoint_test.txt"
        kp_lines[kp].append(" ".join([f"{folder}/{name}"] + ["-1"] * 40 + [str(orient)]))
        lists[folder].append(name)
        return name

    for pid in train_ids:
        for j in range(per_id):
            write("image_train", pid, 1 + j % 2, j)
    for pid in test_ids:
        for j in range(per_id):
            write("image_test", pid, 1 + j % 3, j)
        write("image_query", pid, 9, 0)
    for folder, lst in (("image_train", "name_train.txt"), ("image_test", "name_test.txt"),
                        ("image_query", "name_query.txt")):
        (root / lst).write_text("\n".join(lists[folder]) + "\n")
    for kp, lines in kp_lines.items():
        (root / kp).write_text("\n".join(lines) + "\n")
    # SynthVeRi's identities.json (keyed by str(vid)): the attribute labels of the generic stand-in
    from reidlib.data.attributes import ATTRIBUTES

    idents = {str(pid): {"vid": pid, "body_type": ATTRIBUTES["body_type"][pid % 7],
                         "colour": ATTRIBUTES["colour"][pid % 10], "grille": pid % 5, "headlight": pid % 4,
                         "taillight": (pid + 1) % 4} for pid in (*train_ids, *test_ids)}
    (root / "identities.json").write_text(json.dumps(idents, indent=1) + "\n")
    return root


# ------------------------------------------------------------------------------------------------
# run configuration at the smallest size
# ------------------------------------------------------------------------------------------------

def tiny_cfg(root: Path, out: Path, model: str = "baseline", **extra):
    from reidlib.config import load_config

    over = {"data.root": str(root), "data.height": 32, "data.width": 32, "data.p": 2, "data.k": 2,
            "data.num_workers": 0, "data.batch_size": 4, "model.backbone": "resnet18", "optim.unit": "iter",
            "optim.max_iters": 3, "optim.milestones": [2], "optim.warmup_iters": 1, "train.out_dir": str(out),
            "train.checkpoint_every": 2, "train.log_every": 1, "train.progress": False, "train.device": "cpu",
            "eval.batch_size": 8, "eval.num_workers": 0, "span.size": 32, "foreground.size": 32}
    over.update(extra)
    return load_config(model=model, **over)


# ------------------------------------------------------------------------------------------------
# independent references for the evaluation checks (plain loops, float64, no reidlib code)
# ------------------------------------------------------------------------------------------------

def ref_euclidean(qf, gf) -> np.ndarray:
    """``[Nq, Ng]`` Euclidean distances of ``[N, P, d]`` features flattened to ``[N, P*d]``."""
    q = np.asarray(qf, np.float64).reshape(len(qf), -1)
    g = np.asarray(gf, np.float64).reshape(len(gf), -1)
    return np.array([[np.sqrt(((a - b) ** 2).sum()) for b in g] for a in q])


def ref_cpdm(qf, qa, gf, ga, global_weight=None, squared: bool = False) -> np.ndarray:
    """CPDM pair by pair: SPAN eqs. (4)-(5) (weights over all P parts, AR_0 = 1), or MUSP
    eqs. (9)-(10) with ``global_weight`` (weights over the parts 1..P-1, global term fixed);
    ``squared``: on squared part distances. Features ``[N, P, d]``, area ratios ``[N, P]``
    (arrays or CPU tensors)."""
    qf, qa, gf, ga = (np.asarray(x, np.float64) for x in (qf, qa, gf, ga))
    first = 0 if global_weight is None else 1
    out = np.zeros((len(qf), len(gf)))
    for a in range(len(qf)):
        for b in range(len(gf)):
            dist = ((qf[a] - gf[b]) ** 2).sum(axis=1)                       # [P]
            dist = dist if squared else np.sqrt(dist)
            co = qa[a] * ga[b]
            w = co[first:] / co[first:].sum() if co[first:].sum() > 0 else np.zeros_like(co[first:])
            out[a, b] = (w * dist[first:]).sum() + (0.0 if global_weight is None else global_weight * dist[0])
    return out


def ref_metrics(dist, q_pids, g_pids, q_cams, g_cams) -> dict:
    """R1 / mAP / mINP in percent under the VeRi-776 (Market-1501) protocol: gallery images of the
    query's id *and* camera removed, AP = mean precision at each true match, stable sort."""
    aps, r1, inps = [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((np.asarray(g_pids)[order] == q_pids[i]) & (np.asarray(g_cams)[order] == q_cams[i]))
        match = np.asarray(g_pids)[order][keep] == q_pids[i]
        if not match.any():
            continue
        pos = np.flatnonzero(match)
        aps.append(np.mean((np.arange(len(pos)) + 1) / (pos + 1)))
        r1.append(float(match[0]))
        inps.append(len(pos) / (pos[-1] + 1))
    return {"R1": 100 * np.mean(r1), "mAP": 100 * np.mean(aps), "mINP": 100 * np.mean(inps)}


def assert_ranked_by(m: dict, dist: np.ndarray) -> None:
    """``m`` (an ``evaluate_reid`` result with ``return_features`` and ``return_distmat``) ranked
    the matrix ``dist`` (computed independently) and its metrics are those of ``dist``."""
    q, g = m["query"], m["gallery"]
    np.testing.assert_allclose(np.asarray(m["distmat"], np.float64), dist, rtol=1e-4, atol=1e-4)
    ref = ref_metrics(dist, q["pids"], g["pids"], q["camids"], g["camids"])
    for key in ("R1", "mAP", "mINP"):
        assert m[key] == pytest.approx(ref[key], abs=1e-6), key


# ------------------------------------------------------------------------------------------------
# kernel backends
# ------------------------------------------------------------------------------------------------

def backend_fixture(name: str, env: str, params: list[str]):
    """An autouse fixture ``name``, parametrized over ``params``, that sets the environment variable
    ``env`` to each backend in turn and returns it: every test of the module that assigns it runs on
    each implementation (``numba`` is skipped only where it is not installed; it is in the lock)."""
    @pytest.fixture(autouse=True, params=params, name=name)
    def backend(request, monkeypatch):
        if request.param == "numba":
            pytest.importorskip("numba")
        monkeypatch.setenv(env, request.param)
        return request.param

    backend.__doc__ = f"Every test here runs with {env} set to each of {params}."
    return backend


# ------------------------------------------------------------------------------------------------
# VeRi-776 / VehicleID / VERI-Wild folders in their exact on-disk formats
# ------------------------------------------------------------------------------------------------

_JPEG: bytes | None = None


def jpeg_bytes() -> bytes:
    """One small real JPEG (24 x 16, a colour gradient), encoded once."""
    global _JPEG
    if _JPEG is None:
        img = np.zeros((24, 16, 3), np.uint8)
        img[..., 0] = np.arange(16, dtype=np.uint8)[None, :] * 15
        img[..., 1] = np.arange(24, dtype=np.uint8)[:, None] * 10
        img[..., 2] = 200                                   # BGR: strong red channel
        ok, buf = cv2.imencode(".jpg", img)
        assert ok
        _JPEG = buf.tobytes()
    return _JPEG


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes())


def veri_name(pid: int, cam: int, ts: int, idx: int = 0) -> str:
    return f"{pid:04d}_c{cam:03d}_{ts:08d}_{idx}.jpg"


def keypoint_line(rel_path: str, orientation: int) -> str:
    pts = []
    for i in range(20):
        pts += ["-1", "-1"] if i % 3 == 0 else [str(10 + i), str(20 + i)]
    return " ".join([rel_path, *pts, str(orientation)])


def make_veri776(root: Path, keypoints: bool = True, conflict: bool = False, index_files: bool = True) -> dict:
    """VeRi-776 layout: 3 train ids (1-3), test ids 5-7; queries are also in image_test (as in VeRi).

    Keypoints: every train image but the last has an orientation; ``keypoint_test.txt`` labels
    all test images except one, with two exact duplicate lines, and (``conflict=True``) one image
    listed twice with different orientations. Returns the expected facts.
    """
    root = Path(root)
    train = [veri_name(pid, cam, 1000 * pid + cam * 10 + j) for pid in (1, 2, 3) for cam in (1, 2) for j in (0, 1)]
    gallery = [veri_name(pid, cam, 5000 + 100 * pid + cam * 10 + j) for pid in (5, 6, 7) for cam in (3, 4, 12)
               for j in (0, 1)]
    query = [gallery[0], gallery[6], gallery[14]]           # (5,c3), (6,c3), (7,c4)
    for folder, names in (("image_train", train), ("image_test", gallery), ("image_query", query)):
        for n in names:
            write_image(root / folder / n)
    (root / "name_train.txt").write_text("\n".join(train) + "\n")
    (root / "name_test.txt").write_text("\n".join(gallery) + "\n")
    (root / "name_query.txt").write_text("\n".join(query) + "\n")
    orient = {}
    if keypoints:
        lines = []
        for i, n in enumerate(train[:-1]):
            orient[n] = i % 8
            lines.append(keypoint_line(f"VeRi/image_train/{n}", i % 8))
        (root / "keypoint_train.txt").write_text("\n".join(lines) + "\n")
        lines = []
        for i, n in enumerate(gallery[:-1]):
            orient[n] = (i + 3) % 8
            lines.append(keypoint_line(f"VeRi/image_test/{n}", (i + 3) % 8))
        lines += [lines[0], lines[4]]                        # exact duplicates: tolerated
        if conflict:
            n = gallery[2]
            lines.append(keypoint_line(f"VeRi/image_test/{n}", (orient[n] + 1) % 8))
        (root / "keypoint_test.txt").write_text("\n".join(lines) + "\n")
    if index_files:
        gt, jk = expected_indices(query, gallery)
        (root / "gt_index.txt").write_text("\n".join(" ".join(str(j + 1) for j in row) for row in gt) + "\n")
        (root / "jk_index.txt").write_text("\n".join(" ".join(str(j + 1) for j in row) for row in jk) + "\n")
    return {"train": train, "query": query, "gallery": gallery, "orientation": orient,
            "conflict_image": gallery[2] if (keypoints and conflict) else None}


def expected_indices(query: list[str], gallery: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """0-based gt (same id, other camera) and junk (same id, same camera) per query."""
    def pc(n):
        return int(n[:4]), int(n[6:9])

    gt, jk = [], []
    for q in query:
        qp, qc = pc(q)
        gt.append([j for j, g in enumerate(gallery) if pc(g)[0] == qp and pc(g)[1] != qc])
        jk.append([j for j, g in enumerate(gallery) if pc(g)[0] == qp and pc(g)[1] == qc])
    return gt, jk


def make_vehicleid(root: Path) -> dict:
    """VehicleID layout: train ids 10-12 (2 images each); test ids 20-24 with 1..4 images
    (``test_list_800.txt``), the larger test lists add ids 25 (1600) and 25-26 (2400)."""
    root = Path(root)
    split = root / "train_test_split"
    split.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 10_000))
    train = [(f"{next(counter):07d}", pid) for pid in (10, 11, 12) for _ in range(2)]
    test = [(f"{next(counter):07d}", pid) for pid, n in ((20, 1), (21, 2), (22, 3), (23, 4), (24, 2)) for _ in range(n)]
    extra = [(f"{next(counter):07d}", pid) for pid in (25, 26) for _ in range(2)]
    for imgid, _ in train + test + extra:
        write_image(root / "image" / f"{imgid}.jpg")

    def write(name, rows):
        (split / name).write_text("".join(f"{i} {p}\n" for i, p in rows))

    write("train_list.txt", train)
    write("test_list_800.txt", test)
    write("test_list_1600.txt", test + extra[:2])
    write("test_list_2400.txt", test + extra)
    return {"train": train, "test": test, "extra": extra}


def make_veriwild(root: Path, in_split_dir: bool = True, header: bool = True) -> dict:
    """VERI-Wild layout: train ids 1-2, test ids 3-4; cameras from vehicle_info.txt (with its
    header line unless ``header=False``)."""
    root = Path(root)
    lists = root / "train_test_split" if in_split_dir else root
    lists.mkdir(parents=True, exist_ok=True)
    cams = {}
    keys = []
    for vid in (1, 2, 3, 4):
        for j in range(3):
            key = f"{vid:05d}/{vid * 100 + j:06d}"
            keys.append(key)
            cams[key] = 10 * vid + j % 2
            write_image(root / "images" / f"{vid:05d}" / f"{vid * 100 + j:06d}.jpg")
    train = [k for k in keys if int(k[:5]) <= 2]
    test = [k for k in keys if int(k[:5]) > 2]
    query = [test[0], test[3]]
    info = ["id/image;Camera ID;Time;Model;Type;Color"] if header else []
    info += [f"{k};{cams[k]:03d};2018-03-01 10:00:00;Model;SUV;white" for k in keys]
    (lists / "vehicle_info.txt").write_text("\n".join(info) + "\n")
    (lists / "train_list.txt").write_text("\n".join(train) + "\n")
    for n in (3000, 5000, 10000):
        (lists / f"test_{n}.txt").write_text("\n".join(test) + "\n")
        (lists / f"test_{n}_query.txt").write_text("\n".join(query) + "\n")
    return {"train": train, "test": test, "query": query, "cams": cams, "lists": lists, "keys": keys}


def truncate(path: Path, drop: int) -> int:
    """Cut the last ``drop`` bytes off the file at ``path`` (for a JPEG: the end of its
    entropy-coded data and the EOI marker, as an interrupted download would); return the new size."""
    data = Path(path).read_bytes()
    assert 0 < drop < len(data)
    Path(path).write_bytes(data[:-drop])
    return len(data) - drop
