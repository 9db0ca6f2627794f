"""Nothing stale, nothing left behind: the run cache is keyed on what a run reads (the dataset's
lists and image files, a user's weights file), an entry counts only when it is complete, the
image cache never writes into the user's dataset folder, and a result records what its bits
depend on (CPU, kernels, libraries) and re-runs bit for bit on the same machine."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from helpers import make_tiny_veri

from reidlib.study import Study

TINY = {"reid_iters": 2, "batch_p": 2, "batch_k": 2, "input_size": (32, 32), "val_ids": 1}
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry below ``root`` (links not followed): relative path -> (size, mtime)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


def _replace(path: Path, content: bytes, st: os.stat_result) -> None:
    """``path`` replaced by a new file holding ``content``, with the modification time of ``st``."""
    tmp = path.with_name(".new")
    tmp.write_bytes(content)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


# ------------------------------------------------------------------------- content-addressed keys
def test_a_cut_list_or_a_touched_image_gets_a_new_run_folder(tmp_path):
    """Halving name_train.txt under the same data_root used to give the same run folder (the old
    models came back); now the key covers the lists' bytes and the images' names, sizes and
    times. The same bytes rewritten give the old folder back; a SynthVeRi folder the study would
    generate is keyed by its path, without generating it."""
    root = make_tiny_veri(tmp_path / "veri")
    study = Study("smoke", "cpu", data_root=str(root), cache_dir=str(tmp_path / "runs"), init="random",
                  overrides=TINY)
    cfg = study.reid_config("baseline", 0)
    before = study.run_dir("baseline", cfg)
    listed = (root / "name_train.txt").read_text()
    lines = listed.splitlines()
    (root / "name_train.txt").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    assert study.run_dir("baseline", cfg) != before
    (root / "name_train.txt").write_text(listed)                     # the same bytes, a new mtime
    assert study.run_dir("baseline", cfg) == before
    image = sorted((root / "image_train").iterdir())[0]
    st, content = image.stat(), image.read_bytes()
    _replace(image, content[:-1] + bytes([content[-1] ^ 1]), st)     # another image, same size and time
    assert study.run_dir("baseline", cfg) == before                  # (names, sizes, times: no decoding)
    _replace(image, content + b"\0", st)                            # a replaced image (rsync, cp + mv)
    assert study.run_dir("baseline", cfg) != before
    _replace(image, content, st)
    (root / ".reidlib-cache").mkdir()                                # hidden entries do not count
    assert study.run_dir("baseline", cfg) == before

    synth = Study("smoke", "cpu", cache_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"), init="random")
    assert synth.run_dir("baseline", synth.reid_config("baseline", 0)).parent == tmp_path / "runs"
    assert not (tmp_path / "data").exists()                          # pure: nothing generated


def test_a_replaced_weights_file_gets_a_new_run_folder(tmp_path):
    root = make_tiny_veri(tmp_path / "veri")
    weights = tmp_path / "imagenet.pth"
    from reidlib.models.backbones import build_resnet

    torch.save(build_resnet("resnet18").state_dict(), weights)       # checked when the study is built
    original = weights.read_bytes()
    study = Study("smoke", "cpu", data_root=str(root), cache_dir=str(tmp_path / "runs"), init=str(weights),
                  overrides=TINY)
    cfg = study.reid_config("baseline", 0)
    before = study.run_dir("baseline", cfg)
    torch.save({"w": torch.ones(3)}, weights)                        # other weights, same path
    assert study.run_dir("baseline", cfg) != before
    weights.write_bytes(original)                                    # the same bytes again
    assert study.run_dir("baseline", cfg) == before


def test_dataset_fingerprint_is_cached_and_sees_every_list(tmp_path, monkeypatch):
    from reidlib.data import fingerprint
    from reidlib.data.fingerprint import dataset_fingerprint

    root = make_tiny_veri(tmp_path / "veri")
    first = dataset_fingerprint(root)
    walks = []
    real = fingerprint._tree
    monkeypatch.setattr(fingerprint, "_tree", lambda *a: walks.append(a) or real(*a))
    assert dataset_fingerprint(root) == first and not walks          # asked again: from the cache
    (root / "train_test_split").mkdir()
    (root / "train_test_split" / "train_list.txt").write_text("1 1\n")
    second = dataset_fingerprint(root)
    assert second != first and walks                                # a new list file: computed again
    (root / "train_test_split" / "train_list.txt").write_text("1 2\n")
    assert dataset_fingerprint(root) != second                       # its content counts
    copy = shutil.copytree(root, tmp_path / "copy", copy_function=shutil.copy2)
    assert dataset_fingerprint(copy) == dataset_fingerprint(root)    # by content, not by path
    with pytest.raises(FileNotFoundError):
        dataset_fingerprint(tmp_path / "missing")


# ------------------------------------------------------------------------- complete entries only
def test_an_incomplete_run_folder_is_trained_again(tmp_path, monkeypatch):
    """A folder holding model.pt without its log.jsonl and config.yaml (runs/ deleted while the
    run was writing) used to be taken as finished; now it is trained again, and a retraining that
    is interrupted does not leave the stale model.pt to complete the folder."""
    def run_complete(out: Path) -> bool:
        return all((out / name).is_file() for name in ("model.pt", "log.jsonl", "config.yaml"))

    monkeypatch.setenv("REIDLIB_HOME", str(tmp_path / "home"))     # the image cache: not the project's
    root = make_tiny_veri(tmp_path / "veri")
    study = Study("smoke", "cpu", data_root=str(root), cache_dir=str(tmp_path / "runs"), init="random",
                  overrides=TINY)
    _, info = study.reid_model("baseline", 0)
    out = Path(info["out_dir"])
    assert run_complete(out)
    (out / "log.jsonl").unlink()
    (out / "config.yaml").unlink()
    _, again = study.reid_model("baseline", 0)
    assert not again["cached"] and again["out_dir"] == str(out) and run_complete(out)

    (out / "log.jsonl").unlink()
    cfg = study.reid_config("baseline", 0)
    calls = []

    def interrupted(c, resume):
        calls.append(resume)
        (Path(c.train.out_dir) / "config.yaml").write_text("x: 1\n")
        (Path(c.train.out_dir) / "log.jsonl").write_text('{"iter": 1}\n')
        raise KeyboardInterrupt("killed while training")

    with pytest.raises(KeyboardInterrupt):
        study.cached("baseline", cfg, interrupted)
    assert calls == [False] and not run_complete(out) and not (out / "model.pt").exists()

    (out / "last.pt").write_bytes(b"state")                          # an interrupted run with its log
    with pytest.raises(KeyboardInterrupt):
        study.cached("baseline", cfg, interrupted)
    assert calls[-1] is True                                         # resumes
    (out / "log.jsonl").unlink()
    (out / "last.pt").write_bytes(b"state")                          # a checkpoint without its log
    with pytest.raises(KeyboardInterrupt):
        study.cached("baseline", cfg, interrupted)
    assert calls[-1] is False and not (out / "last.pt").exists()     # trained from scratch


# ------------------------------------------------------------------------- image cache location
def test_the_image_cache_never_goes_into_the_dataset_folder(tmp_path, monkeypatch):
    """It used to be written beside the data when writable, and through a linked image folder
    into the link target's parent; now it lives in <home>/data/image-cache."""
    from reidlib.data import VeRi776
    from reidlib.data.cache import ImageCache

    monkeypatch.setenv("REIDLIB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REIDLIB_DATA_DIR", raising=False)      # the test session's own data folder
    root = make_tiny_veri(tmp_path / "veri")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(str(root / "image_train"), elsewhere / "image_train")
    (root / "image_train").symlink_to(elsewhere / "image_train", target_is_directory=True)
    copy = shutil.copytree(root, tmp_path / "copy", symlinks=False, copy_function=shutil.copy2)
    before = {p: _tree(p) for p in (root, elsewhere, copy)}

    a = ImageCache(VeRi776(root).train, 16, 16)
    b = ImageCache(VeRi776(copy).train, 16, 16)
    assert a.path.parent == tmp_path / "home" / "data" / "image-cache" == b.path.parent
    assert a.path != b.path                                          # two datasets never share one
    assert {p: _tree(p) for p in (root, elsewhere, copy)} == before  # nothing written there
    assert ImageCache(VeRi776(root).train, 16, 16, cache_dir=tmp_path / "mine").path.parent == tmp_path / "mine"


# ------------------------------------------------------------------------- reproducibility stated
def test_provenance_records_the_cpu_kernels_and_libraries(monkeypatch):
    from reidlib.runner.provenance import BF16_FLAGS, provenance

    monkeypatch.setenv("REIDLIB_CPDM_BACKEND", "torch")
    monkeypatch.setenv("REIDLIB_RANK_BACKEND", "numpy")
    rec = provenance("smoke", {"seed": 0}, "cpu")
    for key in ("commit", "dirty", "reidlib", "torch", "torchvision", "python", "platform", "device", "precision",
                "torch_threads", "profile", "seeds", "seeds_by_meaning", "parameters"):
        assert key in rec                                            # every earlier key kept
    assert isinstance(rec["cpu"], str) and rec["cpu"]
    assert set(rec["cpu_flags"]) == set(BF16_FLAGS) and all(isinstance(v, bool) for v in rec["cpu_flags"].values())
    assert rec["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(rec["cpu_bf16_native"], bool)
    import numpy
    import pandas

    assert rec["numpy"] == numpy.__version__ and rec["pandas"] == pandas.__version__ and "numba" in rec
    assert rec["backends"] == {"cpdm": "torch", "rank": "numpy"}
    json.dumps(rec)


@pytest.mark.slow     # ~25 s on 2 idle cores (two notebook runs, every model trained twice)
def test_a_smoke_notebook_reruns_bit_identically(tmp_path, monkeypatch):
    """musp_activation (smoke) run twice through the runner, each time training every model anew
    (another REIDLIB_HOME, the same SynthVeRi data): the recorded metrics are equal bit for bit,
    and the record says what that holds for (CPU, its bf16 flags, kernel backends)."""
    from reidlib.runner import run

    first, second = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("REIDLIB_HOME", str(first))
    one = run("musp_activation", "smoke", results_root=tmp_path / "results", notebooks_dir=NOTEBOOKS)
    second.mkdir()
    (second / "data").symlink_to(first / "data", target_is_directory=True)
    monkeypatch.setenv("REIDLIB_HOME", str(second))
    two = run("musp_activation", "smoke", results_root=tmp_path / "results", notebooks_dir=NOTEBOOKS)
    runs = [sorted(p.name for p in (home / "runs" / "smoke").iterdir()) for home in (first, second)]
    assert runs[0] and runs[0] != runs[1]                            # the second run trained its own
    assert json.dumps(one["metrics"], sort_keys=True) == json.dumps(two["metrics"], sort_keys=True)
    assert one["metrics"]["table"] and one["metrics"]["claims"]
    for key in ("cpu", "cpu_flags", "cpu_capability", "backends", "numpy"):
        assert one[key] == two[key]
    assert not list((first / "data").glob("*/.reidlib-cache"))       # nothing beside the data


def test_test_features_are_extracted_once_per_run_and_give_the_same_numbers(tmp_path, monkeypatch):
    """A cached run's test features are kept beside it: a second evaluation (another distance,
    another page) ranks the kept features and gives the same metrics as extracting them again; a
    damaged file is re-made, and a model that is not a cached run keeps nothing."""
    from reidlib.engine import evaluation

    monkeypatch.setenv("REIDLIB_HOME", str(tmp_path / "home"))
    root = make_tiny_veri(tmp_path / "veri")
    study = Study("smoke", "cpu", data_root=str(root), cache_dir=str(tmp_path / "runs"), init="random",
                  overrides=TINY)
    model, info = study.reid_model("baseline", 0)
    out = Path(info["out_dir"])
    calls = []
    real = evaluation.extract_features

    def counting(*a, **k):
        before = len(k["cache"])
        res = real(*a, **k)
        calls.append(len(k["cache"]) - before)       # images extracted by this call
        return res

    monkeypatch.setattr(evaluation, "extract_features", counting)
    first = study.evaluate(model)
    kept = sorted(out.glob("test-features-*.pt"))
    assert len(kept) == 1 and sum(calls) > 0
    calls.clear()
    fresh, _ = study.reid_model("baseline", 0)                       # loaded from the cache: a new object
    again = study.evaluate(fresh)
    assert sum(calls) == 0                                           # nothing extracted again
    for m in ("R1", "R5", "mAP", "mINP"):
        assert again[m] == first[m]
    assert torch.equal(again["query"]["feats"], first["query"]["feats"])
    other = study.evaluate(fresh, distance="cosine")                 # another distance, same features
    assert sum(calls) == 0 and other["distance"] == "cosine"

    kept[0].write_bytes(b"not a torch file")                         # damaged: extracted again, re-made
    redone = study.evaluate(fresh)
    assert sum(calls) > 0 and redone["mAP"] == first["mAP"]
    assert torch.load(kept[0], weights_only=True)["feats"].shape[0] == sum(calls)

    from reidlib.models.registry import build_model

    calls.clear()
    loose = build_model("baseline", 4, backbone="resnet18", last_stride=1).eval()
    study.evaluate(loose)
    assert sum(calls) > 0 and sorted(out.glob("test-features-*.pt")) == kept   # nothing kept for it
