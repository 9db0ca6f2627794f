"""``python -m reidlib.data check``: a dataset folder validated in seconds, what it holds printed,
a folder that cannot be used named in one line (exit 2)."""
from __future__ import annotations

import subprocess
import sys


def _check(*args):
    return subprocess.run([sys.executable, "-m", "reidlib.data", "check", *args], capture_output=True, text=True,
                          timeout=120)


def test_check_prints_the_splits_and_the_pages_a_folder_can_feed(tiny_veri):
    p = _check("veri776", str(tiny_veri))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "train" in out and "gallery" in out and "with_view" in out
    assert "[yes] SPAN's masks" in out and "[no ] MUSP Table 6: needs the vehicleid dataset" in out


def test_check_names_what_is_wrong_in_one_line(tmp_path, tiny_veri):
    p = _check("veri776", str(tmp_path / "missing"))
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "no such folder" in p.stderr
    p = _check("vehicleid", str(tiny_veri))          # a VeRi-776 folder read as VehicleID
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "VehicleID" in p.stderr
    assert "Traceback" not in p.stderr
