"""Tiny fixture datasets in the exact on-disk formats of VeRi-776 (Liu et al., ICME 2016; key points
of Wang et al., ICCV 2017), VehicleID (Liu et al., CVPR 2016) and VERI-Wild (Lou et al., CVPR 2019).
Tests build them under ``tmp_path``; images are real 16x24 JPEGs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

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
