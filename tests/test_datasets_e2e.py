"""Each dataset's path end to end: SynthVeRi written in VehicleID's and VERI-Wild's layouts, read by
their loaders, a model evaluated under each protocol (VehicleID: 10 seeded trials, one gallery
image per identity; VERI-Wild: same-id same-camera gallery images removed), and a book page run in
VERI-Wild's layout through the runner."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reidlib.data.registry import load_dataset, spec_of
from reidlib.data.synth import generate
from reidlib.engine.evaluation import evaluate_reid
from reidlib.metrics.rank import evaluate_rank
from reidlib.models.registry import build_model

CFG = {"data.height": 32, "data.width": 32, "eval.num_workers": 0, "train.device": "cpu", "eval.amp": "off"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("baseline", 3, backbone="resnet18", last_stride=1).eval()


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    return {lay: generate(base / lay, preset="tiny", image_size=32, seed=0, layout=lay, progress=False, workers=1)
            for lay in ("vehicleid", "veriwild")}


def test_vehicleid_protocol_ten_trials(layouts, model):
    ds = load_dataset("vehicleid", layouts["vehicleid"], test_size=2400)   # tiny: 10 test ids
    assert spec_of(ds).trials == 10 and spec_of(ds).cameras is False
    test_ids = {r.pid for r in ds.query} | {r.pid for r in ds.gallery}
    galleries = []
    for t in range(10):
        trial = ds.with_trial(t)
        g = [r.pid for r in trial.gallery]
        assert sorted(g) == sorted(test_ids), "one gallery image per test identity"
        assert not {r.path for r in trial.gallery} & {r.path for r in trial.query}
        galleries.append(tuple(sorted(r.path for r in trial.gallery)))
    assert len(set(galleries)) == 10, "10 distinct trials"
    assert [r.path for r in ds.with_trial(3).gallery] == [r.path for r in
                                                          load_dataset("vehicleid", layouts["vehicleid"], test_size=2400).with_trial(3).gallery]
    m = evaluate_reid(model, ds, {**CFG, "data.dataset": "vehicleid"})
    assert m["trials"] == 10 and len(m["per_trial"]) == 10 and len(m["rank_results"]) == 10
    assert m["mAP"] == pytest.approx(np.mean([t["mAP"] for t in m["per_trial"]]))
    assert m["std"]["mAP"] == pytest.approx(np.std([t["mAP"] for t in m["per_trial"]], ddof=1))
    # every query has its true match (the one gallery image of its id): nothing skipped
    assert all(t["num_skipped_queries"] == 0 for t in m["per_trial"])


def test_veriwild_camera_rule(layouts, model):
    root = layouts["veriwild"]
    ds = load_dataset("veriwild", root, test_size=3000)
    manifest = json.loads((root / "manifest.json").read_text())
    m = evaluate_reid(model, ds, {**CFG, "data.dataset": "veriwild"}, return_features=True, return_distmat=True)
    d = m["distmat"]
    qp, qc = m["query"]["pids"], m["query"]["camids"]
    gp, gc = m["gallery"]["pids"], m["gallery"]["camids"]
    removed = int(((qp[:, None] == gp[None]) & (qc[:, None] == gc[None])).sum())
    assert removed > 0, "the layout must give the camera rule something to remove"
    # the same metrics as ranking each query against its gallery with those items taken out
    aps = []
    for i in range(len(qp)):
        keep = ~((gp == qp[i]) & (gc == qc[i]))
        r = evaluate_rank(d[i:i + 1, keep], qp[i:i + 1], gp[keep], np.array([-1]), gc[keep])
        if r.num_valid_queries:
            aps.append(r.mAP)
    assert m["mAP"] == pytest.approx(100 * np.mean(aps), abs=1e-6)
    assert m["num_gallery"] == len(ds.gallery)
    assert manifest.get("layout", "veriwild") == "veriwild"


def test_a_book_page_in_veriwild_layout(tmp_path):
    """The MUSP Table 7 notebook under the smoke profile on SynthVeRi in VERI-Wild's layout: the
    runner validates the parameter, the page runs its own checks, the results record the dataset."""
    from reidlib import runner

    with pytest.raises(runner.ExperimentError, match="dataset='market'"):
        runner.run("musp_activation", "smoke", {"dataset": "market"}, results_root=tmp_path)
    rec = runner.run("musp_activation", "smoke", {"dataset": "veriwild", "test_size": 3000},
                          results_root=tmp_path)
    assert rec["parameters"]["dataset"] == "veriwild"
    assert (tmp_path / "smoke" / "musp_activation" / "per_query.npz").is_file()
    assert set(rec["metrics"]["table"]) == {"softmax", "sigmoid"}
