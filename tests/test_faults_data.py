"""Faults of the SynthVeRi generator and of the dataset loaders: each test failed before its fix.

Generator: an unguarded script must not hang (worker pool), never more workers than cores,
``--overwrite`` never deletes a folder SynthVeRi did not make, two generators on one folder
(a lock the OS releases when its holder dies). Loaders: SynthVeRi lists checked against the
manifest, truncated JPEGs caught by ``verify_images``, ``vehicle_info.txt`` without a header.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import make_vehicleid, make_veri776, make_veriwild, truncate

from reidlib.data import VehicleID, VeRi776, VERIWild
from reidlib.data.synth import generate, load_manifest, verify
from reidlib.data.synth import writer as synth_writer
from reidlib.data.synth.writer import SynthFolderError
from reidlib.errors import DataFormatError

REPO = Path(__file__).resolve().parents[1]
SIZE = 48
GUARD = 'if __name__ == "__main__":'


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float, input: str | None = None) -> tuple[int, str, str]:
    """Wait for ``proc``; past ``timeout`` kill its whole process group (workers too) and fail."""
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the process did not finish within {timeout} s; stderr ends with {err[-1500:]!r}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("ref") / "tiny", preset="tiny", image_size=SIZE, seed=0, workers=1,
                    progress=False)


# ------------------------------------------------------------------------------ worker pool
def test_unguarded_two_line_script_finishes(tmp_path):
    """The two-line script of the report: it used to respawn failing forkserver workers forever."""
    script = tmp_path / "make_data.py"
    script.write_text('from reidlib.data import synth\nsynth.generate("out", preset="tiny")\n')
    rc, out, err = _finish(_start([str(script)], tmp_path), timeout=120)
    assert rc == 0, err[-2000:]
    assert load_manifest(tmp_path / "out")["counts"]["train_images"] == 159 and verify(tmp_path / "out") == []
    if synth_writer._cpu_count() > 1:            # with one core there is no pool to fall back from
        assert "RuntimeWarning" in err and GUARD in err and "rendering in this process" in err
        assert f"{script} calls generate() at import time (line 2" in err


def test_script_piped_to_stdin_finishes(tmp_path):
    """``python - < script``: workers cannot re-read the main script at all (guarded or not)."""
    proc = subprocess.Popen([sys.executable, "-"], cwd=tmp_path, env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    script = f'from reidlib.data import synth\n{GUARD}\n    synth.generate("out", preset="tiny", image_size=32)\n'
    rc, out, err = _finish(proc, timeout=120, input=script)
    assert rc == 0, err[-2000:]
    assert verify(tmp_path / "out") == []
    if synth_writer._cpu_count() > 1:
        assert "cannot be read back by worker processes" in err and "rendering in this process" in err


def test_workers_that_die_at_start_raise_at_once(tmp_path):
    """A guarded script that cannot be re-imported by workers: a clear error, not an endless respawn."""
    if synth_writer._cpu_count() < 2:
        pytest.skip("needs 2 CPU cores for a worker pool")
    script = tmp_path / "make_data.py"
    script.write_text(
        "from reidlib.data import synth\n"
        'if __name__ == "__mp_main__":\n'
        '    raise RuntimeError("this script cannot be imported by a worker")\n'
        f"{GUARD}\n"
        '    synth.generate("out", preset="tiny", image_size=32, workers=2, progress=False)\n')
    t0 = time.monotonic()
    rc, out, err = _finish(_start([str(script)], tmp_path), timeout=60)
    assert rc == 1
    assert "SynthWorkerError: SynthVeRi's worker processes died before finishing any identity" in err
    assert GUARD in err and "workers=1" in err
    assert time.monotonic() - t0 < 30
    assert (tmp_path / "out" / ".incomplete").exists()       # unfinished, never mistaken for a dataset


def test_never_more_workers_than_cores(tmp_path, monkeypatch):
    rendered_here = []
    real = synth_writer._render_chunk
    monkeypatch.setattr(synth_writer, "_render_chunk", lambda task: rendered_here.append(task[0]) or real(task))
    monkeypatch.setattr(synth_writer, "_cpu_count", lambda: 1)
    generate(tmp_path / "one", preset="tiny", image_size=32, workers=8, progress=False)
    assert len(rendered_here) == 26                        # one core: rendered in this process

    monkeypatch.setattr(synth_writer, "_render_chunk", real)   # workers need the picklable original
    pools = []

    class Recording(synth_writer.ProcessPoolExecutor):
        def __init__(self, max_workers=None, **kw):
            pools.append(max_workers)
            super().__init__(max_workers=max_workers, **kw)

    monkeypatch.setattr(synth_writer, "ProcessPoolExecutor", Recording)
    monkeypatch.setattr(synth_writer, "_cpu_count", lambda: 2)
    generate(tmp_path / "two", preset="tiny", image_size=32, workers=8, progress=False)
    assert pools == [2]
    assert verify(tmp_path / "two") == []


# ------------------------------------------------------------------------------ --overwrite
def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_a_real_dataset(tmp_path, capsys):
    from reidlib.data.synth.__main__ import main

    real = tmp_path / "VeRi"
    make_veri776(real)
    before = _snapshot(real)
    assert main([str(real), "--preset", "tiny", "--image-size", "32", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "holds no SynthVeRi manifest" in err and "even with overwrite=True / --overwrite" in err
    assert _snapshot(real) == before                     # nothing deleted, nothing added (not even a lock)
    with pytest.raises(SynthFolderError, match="no SynthVeRi manifest"):
        generate(real, preset="tiny", image_size=32, overwrite=True, progress=False)
    # a manifest.json that SynthVeRi did not write does not make a folder SynthVeRi's
    (real / "manifest.json").write_text(json.dumps({"name": "my dataset", "config": {}}))
    with pytest.raises(SynthFolderError, match="no SynthVeRi manifest"):
        generate(real, preset="tiny", image_size=32, overwrite=True, progress=False)
    assert VeRi776(real).train and (real / "image_train").is_dir()


# ------------------------------------------------------------------------------ two generators
SLOW_GENERATOR = '''
import sys, time
from reidlib.data.synth import writer

real = writer._render_chunk


def slow(task):
    time.sleep(float(sys.argv[2]))
    return real(task)


writer._render_chunk = slow
if __name__ == "__main__":
    writer.generate(sys.argv[1], preset="tiny", image_size=48, seed=0, workers=1)
    print("done")
'''


def test_generator_killed_mid_run_does_not_block_the_next(tmp_path, reference):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_GENERATOR)
    out = tmp_path / "out"
    proc = _start([str(script), str(out), "0.25"], tmp_path)
    try:
        t0 = time.monotonic()
        while not (out / ".incomplete").exists():
            assert proc.poll() is None and time.monotonic() - t0 < 60, "the generator did not start"
            time.sleep(0.05)
        with pytest.raises(SynthFolderError, match=f"another SynthVeRi generator \\(pid {proc.pid}\\)"):
            generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False, lock_timeout=0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                 # killed: its lock must not outlive it
        proc.communicate()
    assert (out / ".incomplete").exists() and not (out / "manifest.json").exists()
    t0 = time.monotonic()
    generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False, lock_timeout=10)
    assert time.monotonic() - t0 < 10
    assert verify(out) == [] and not (out / ".incomplete").exists()
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()


def test_two_generators_at_once(tmp_path, reference):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_GENERATOR)
    out = tmp_path / "out"
    first = _start([str(script), str(out), "0.05"], tmp_path)
    time.sleep(0.2)
    second = _start([str(script), str(out), "0.05"], tmp_path)
    results = [_finish(first, 120), _finish(second, 120)]
    for rc, stdout, stderr in results:
        assert rc == 0 and stdout.strip() == "done", stderr[-2000:]
    assert any("is being written by another generator" in stderr for _, _, stderr in results)
    assert verify(out) == [] and not (out / ".incomplete").exists() and not (out / ".partial").exists()
    assert (out / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()


# ------------------------------------------------------------------------------ loaders: lists vs manifest
def _cut(path: Path, keep: int) -> None:
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:keep]))


def test_cut_name_list_of_synthveri_raises(tmp_path, reference):
    root = tmp_path / "copy"
    shutil.copytree(reference, root)
    assert len(VeRi776(root).train) == 159
    _cut(root / "name_train.txt", 40)
    with pytest.raises(DataFormatError) as ei:
        VeRi776(root)
    msg = str(ei.value)
    assert ei.value.path == str(root / "name_train.txt")
    assert "40 images listed" in msg and "records 159 for name_train.txt" in msg


@pytest.mark.parametrize("layout,list_file,keep,found,expected", [
    ("vehicleid", "train_test_split/test_list_1600.txt", 30, "30 images", "records 53"),
    ("veriwild", "train_test_split/test_3000_query.txt", 2, "2 images", "records 3"),
    ("veriwild", "train_test_split/train_list.txt", 100, "100 images", "records 159"),
])
def test_cut_list_of_other_layouts_raises(tmp_path, layout, list_file, keep, found, expected):
    root = generate(tmp_path / layout, preset="tiny", image_size=32, workers=1, layout=layout, progress=False)
    load = (lambda: VehicleID(root, test_size=1600)) if layout == "vehicleid" else (lambda: VERIWild(root, 3000))
    load()
    _cut(root / list_file, keep)
    with pytest.raises(DataFormatError) as ei:
        load()
    assert ei.value.path == str(root / list_file) and found in str(ei.value) and expected in str(ei.value)


def test_unfinished_synthveri_folder_refused(tmp_path, reference, monkeypatch):
    out = tmp_path / "cut"

    def interrupted(*args):
        raise KeyboardInterrupt("simulated interruption after rendering, before the lists")

    monkeypatch.setattr(synth_writer, "_write_lists", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(out, preset="tiny", image_size=SIZE, seed=0, workers=1, progress=False)
    # even with complete-looking lists in place, the folder must not load
    for name in ("name_train.txt", "name_query.txt", "name_test.txt"):
        shutil.copy(reference / name, out / name)
    with pytest.raises(DataFormatError, match="unfinished SynthVeRi run") as ei:
        VeRi776(out)
    assert ei.value.path == str(out / ".incomplete")


# ------------------------------------------------------------------------------ loaders: truncated JPEG
def test_truncated_jpeg_caught_by_verify_images(tmp_path):
    facts = make_veri776(tmp_path / "veri", keypoints=False, index_files=False)
    bad = tmp_path / "veri" / "image_test" / facts["gallery"][4]
    truncate(bad, 40)          # the fixture JPEG's scan data is 121 bytes
    VeRi776(tmp_path / "veri")                                # listing only: loads
    with pytest.raises(DataFormatError) as ei:
        VeRi776(tmp_path / "veri", verify_images=True)
    assert ei.value.path == str(bad) and "cannot be fully decoded" in str(ei.value)

    facts = make_vehicleid(tmp_path / "vid")
    bad = tmp_path / "vid" / "image" / f"{facts['test'][2][0]}.jpg"
    truncate(bad, 60)
    with pytest.raises(DataFormatError, match=bad.name):
        VehicleID(tmp_path / "vid", verify_images=True)

    facts = make_veriwild(tmp_path / "wild")
    bad = tmp_path / "wild" / "images" / (facts["train"][1] + ".jpg")
    truncate(bad, 20)
    with pytest.raises(DataFormatError, match=bad.name):
        VERIWild(tmp_path / "wild", verify_images=True)


def test_jpeg_missing_only_its_end_marker(tmp_path, reference):
    from PIL import ImageFile

    from reidlib.data._parsing import verify_image

    src = sorted((reference / "image_train").iterdir())[0]
    data = src.read_bytes()
    assert data[-2:] == b"\xff\xd9"
    cut = tmp_path / "no_eoi.jpg"
    cut.write_bytes(data[:-2])
    verify_image(src)
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True                    # tolerated elsewhere: not by verification
    try:
        with pytest.raises(DataFormatError, match="no_eoi.jpg"):
            verify_image(cut)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True         # restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def test_verify_images_on_synthveri_with_threads(tmp_path, reference):
    root = tmp_path / "copy"
    shutil.copytree(reference, root)
    VeRi776(root, verify_images=True)                          # 288 images: the threaded path
    names = (root / "name_test.txt").read_text().split()
    bad = root / "image_test" / names[-3]
    truncate(bad, bad.stat().st_size // 3)
    with pytest.raises(DataFormatError) as ei:
        VeRi776(root, verify_images=True)
    assert ei.value.path == str(bad)


# ------------------------------------------------------------------------------ loaders: vehicle_info.txt
def test_vehicle_info_without_header_keeps_first_vehicle(tmp_path):
    facts = make_veriwild(tmp_path, header=False)
    ds = VERIWild(tmp_path)
    first = facts["keys"][0]
    assert facts["train"][0] == first
    assert (ds.train[0].pid, ds.train[0].camid) == (1, facts["cams"][first]) == (1, 10)
    assert [r.camid for r in ds.train + ds.gallery] == [facts["cams"][k] for k in facts["train"] + facts["test"]]
    with_header = tmp_path / "h"
    make_veriwild(with_header, header=True)
    assert [r.camid for r in VERIWild(with_header).train] == [r.camid for r in ds.train]


@pytest.mark.parametrize("header,line_no,bad_line,problem", [
    (False, 1, "00001-000100;010;2018-03-01 10:00:00;Model;SUV;white", "bad image key"),
    (False, 1, "id/image;10;x", "bad image key"),
    (True, 4, "00001/000102", "1 ';'-separated field"),
    (False, 3, "00001/000102;ten;x", "is not an integer"),
])
def test_malformed_vehicle_info_line_named(tmp_path, header, line_no, bad_line, problem):
    facts = make_veriwild(tmp_path, header=header)
    info = facts["lists"] / "vehicle_info.txt"
    lines = info.read_text().splitlines()
    lines[line_no - 1] = bad_line
    info.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as ei:
        VERIWild(tmp_path)
    assert ei.value.path == str(info) and ei.value.line == line_no
    assert f"vehicle_info.txt:{line_no}:" in str(ei.value) and problem in str(ei.value)
