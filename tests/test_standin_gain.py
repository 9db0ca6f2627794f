"""Each model's gain from the stand-in: the page's rows share their runs with the pages they come
from, the random rows change only the initialisation, and the gain table reads the per-query
results as constructed."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def study(tiny_veri, tmp_path_factory):
    from reidlib.study import Study

    return Study("smoke", "cpu", data_root=str(tiny_veri), cache_dir=str(tmp_path_factory.mktemp("runs")),
                 init="standin")


def _keys(study, variant, seed):
    """The cache folders of a row's runs: its SPAN step 1 (SPAN rows) and its re-ID model."""
    from reidlib.models.registry import MODELS

    span = study.run_dir("span-masks", study.span_config(seed, **variant.span)) if MODELS[variant.model].needs_span \
        else None
    return span, study.run_dir(variant.model, study.reid_config(variant.model, seed, **variant.config),
                               extra=None if span is None else span.name)


def test_stand_in_rows_are_the_pages_own_first_seed_runs(study):
    from reidlib.ablations.musp import MUSP_ATTENTION_VARIANTS
    from reidlib.ablations.pretraining import STANDIN_GAIN_MODELS, STANDIN_GAIN_VARIANTS
    from reidlib.ablations.span import SPAN_LOSS_VARIANTS

    assert list(STANDIN_GAIN_VARIANTS) == [f"{m}, {i}" for m in STANDIN_GAIN_MODELS for i in ("stand-in", "random init")]
    assert all(v.seeds == 1 for v in STANDIN_GAIN_VARIANTS.values())
    seed = study.seeds[0]
    own = {"baseline": SPAN_LOSS_VARIANTS["baseline"], "SPAN + CPDM": SPAN_LOSS_VARIANTS["full"],
           "MUSP (n = 5)": MUSP_ATTENTION_VARIANTS[5]}
    for model, v in own.items():
        assert _keys(study, STANDIN_GAIN_VARIANTS[f"{model}, stand-in"], seed) == _keys(study, v, seed), model


def test_random_rows_change_the_initialisation_only(study):
    from reidlib.ablations.pretraining import STANDIN_GAIN_MODELS, STANDIN_GAIN_VARIANTS
    from reidlib.ablations.span import SPAN_LOSS_SWITCHES, SPAN_PILOT_SETTINGS

    seed = study.seeds[0]
    for model in STANDIN_GAIN_MODELS:
        st, rd = STANDIN_GAIN_VARIANTS[f"{model}, stand-in"], STANDIN_GAIN_VARIANTS[f"{model}, random init"]
        a = study.reid_config(st.model, seed, **st.config).to_dict()
        b = study.reid_config(rd.model, seed, **rd.config).to_dict()
        assert a["model"]["weights"] and b["model"]["weights"] is None, model
        a["model"]["weights"] = None
        assert a == b, model                                            # nothing else differs
    span_rd = STANDIN_GAIN_VARIANTS["SPAN + CPDM, random init"]
    assert study.span_config(seed, **span_rd.span).model.weights is None
    # SPAN's random mask network is the SPAN pilot's "random initialisation" run (one cache entry)
    pilot = study.span_config(seed, **SPAN_LOSS_SWITCHES["full"], **SPAN_PILOT_SETTINGS["random initialisation"])
    assert study.run_dir("span-masks", pilot) == study.run_dir("span-masks", study.span_config(seed, **span_rd.span))


class _Results:
    def __init__(self, arrays):
        self._arrays = arrays

    def arrays(self):
        return self._arrays


def _arrays(ap: dict, n_ids: int = 40, per_id: int = 3, seed: int = 0):
    """Per-query results: ``ap[row]`` is each query's AP (0-1) of that row, one seed."""
    rows = list(ap)
    units = n_ids * per_id
    out = {"rows": np.array(rows), "seeds": np.array([0]), "units": np.array([f"q{i}" for i in range(units)]),
           "groups": np.repeat(np.arange(n_ids), per_id), "group_kind": np.array("vehicle identity")}
    for row, values in ap.items():
        v = np.asarray(values, np.float32).reshape(1, units)
        out[f"{row}|ap"] = v
        out[f"{row}|inp"] = v
        out[f"{row}|first_rank"] = np.where(v > 0.5, 0, 3).astype(np.int32)
    return out


def test_the_gain_table_reads_gains_and_their_differences():
    from reidlib.ablations.pretraining import STANDIN_GAIN_MODELS, standin_gain_reading, standin_gain_table

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, 120)
    ap = {}
    for model, gain in zip(STANDIN_GAIN_MODELS, (0.10, 0.10, 0.30)):   # MUSP gains 20 points more
        noise = rng.normal(0, 0.01, 120)
        ap[f"{model}, stand-in"] = base + gain + noise
        ap[f"{model}, random init"] = base
    table = standin_gain_table(_Results(_arrays(ap)))
    assert list(table.index) == list(STANDIN_GAIN_MODELS)
    assert table.loc["baseline", "mAP gain"] == pytest.approx(10, abs=0.5)
    assert table.loc["baseline", "mAP gain low"] < 10 < table.loc["baseline", "mAP gain high"] + 0.5
    assert np.isnan(table.loc["baseline", "mAP gain - baseline's"])
    spn, musp = table.loc["SPAN + CPDM"], table.loc["MUSP (n = 5)"]
    assert spn["mAP gain - baseline's low"] < 0 < spn["mAP gain - baseline's high"]
    assert musp["mAP gain - baseline's"] == pytest.approx(20, abs=0.5) and musp["mAP gain - baseline's low"] > 0
    said = standin_gain_reading(table)
    assert len(said) == 5 and said[0].startswith("baseline: ")
    assert "no measurable favour" in said[3] and "SPAN + CPDM" in said[3]
    assert "more than it helps the baseline" in said[4] and "MUSP (n = 5)" in said[4]


def test_the_shown_table_puts_each_difference_with_its_interval_in_one_cell():
    from reidlib.ablations.pretraining import standin_gain_display, standin_gain_table

    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.4, 120)
    ap = {}
    for model in ("baseline", "SPAN + CPDM", "MUSP (n = 5)"):
        ap[f"{model}, stand-in"] = base + 0.1 + rng.normal(0, 0.01, 120)
        ap[f"{model}, random init"] = base
    table = standin_gain_table(_Results(_arrays(ap)))
    shown = standin_gain_display(table)
    assert list(shown["model"]) == list(table.index) and len(shown.columns) == 9
    r = table.loc["SPAN + CPDM"]
    assert shown.loc[1, "mAP gain"] == f"{r['mAP gain']:+.1f} [{r['mAP gain low']:+.1f}, {r['mAP gain high']:+.1f}]"
    assert shown.loc[0, "mAP gain - baseline's"] == ""                # the baseline has no difference with itself
