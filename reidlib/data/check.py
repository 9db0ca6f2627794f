"""Check a dataset folder before a long run: ``python -m reidlib.data check DATASET ROOT``.

Loads the folder with the dataset's loader (:data:`reidlib.data.registry.DATASETS`: list files read,
every listed image found, optionally every image decoded) and prints what it found: images,
identities and cameras per split, how many images carry a SPAN view label (SPAN's pages need them
on the training images: VeRi-776's ``keypoint_train.txt`` / ``keypoint_test.txt`` from Wang et al.,
ICCV 2017, one line ``<image path> x1 y1 ... x20 y20 <orientation 0-7>``), and which of the book's
pages the folder can feed. A folder that cannot be used fails as one line naming the file and what
was expected (exit code 2), in seconds.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

__all__ = ["check_dataset", "report"]

#: what the book's pages need from a dataset folder
NEEDS = {
    "re-ID tables (baseline, SPAN Tables 1-2, MUSP Tables 5 and 7)": "train, query and gallery images",
    "SPAN's masks (step 1: every SPAN row)": "view labels on the training images",
    "MUSP Table 6": "the vehicleid dataset",
}


def check_dataset(dataset: str, root: str | Path, test_size: Optional[Any] = None,
                  verify_images: bool = False) -> dict:
    """Load ``root`` as ``dataset`` and return what was found (``summary``: a DataFrame per split;
    ``pages``: which of :data:`NEEDS` it satisfies; ``seconds``). Raises the loader's error
    (:class:`reidlib.errors.DataFormatError`, ``ConfigError``, ``FileNotFoundError``) on a folder that
    cannot be used."""
    from reidlib.data._parsing import summarize, verify_readable
    from reidlib.data.registry import load_dataset

    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected a {dataset} dataset folder)")
    t0 = time.perf_counter()
    ds = load_dataset(dataset, root, test_size=test_size)
    if verify_images:
        verify_readable(list(ds.train) + list(ds.query) + list(ds.gallery))
    summary = summarize({"train": ds.train, "query": ds.query, "gallery": ds.gallery})
    views_train = int(summary.loc["train", "with_view"])
    pages = {
        list(NEEDS)[0]: bool(len(ds.train) and len(ds.query) and len(ds.gallery)),
        list(NEEDS)[1]: views_train > 0,
        list(NEEDS)[2]: dataset == "vehicleid",
    }
    return {"dataset": dataset, "root": str(root), "loaded": ds, "summary": summary, "pages": pages,
            "keypoint_files": list(getattr(ds, "keypoint_files", []) or []),
            "test_size": getattr(ds, "test_size", None), "seconds": time.perf_counter() - t0,
            "verified_images": verify_images}


def report(found: dict) -> str:
    """The check's result as text (what ``python -m reidlib.data check`` prints)."""
    s = found["summary"]
    lines = [f"{found['dataset']} at {found['root']}: loaded in {found['seconds']:.1f} s"
             + (", every image decoded" if found["verified_images"] else
                " (images listed and found; --verify-images also decodes them)")]
    if found["test_size"] is not None:
        lines.append(f"test set: {found['test_size']}")
    lines.append(s.to_string())
    if found["keypoint_files"]:
        lines.append("view labels from: " + ", ".join(found["keypoint_files"]))
    for page, ok in found["pages"].items():
        lines.append(f"  [{'yes' if ok else 'no '}] {page}" + ("" if ok else f": needs {NEEDS[page]}"))
    return "\n".join(lines)
