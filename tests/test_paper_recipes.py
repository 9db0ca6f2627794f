"""The ``paper`` profile trains each model as its paper (or its public code) states: its run
configurations resolved and compared with a table of the stated values, written out here from
the papers (SPAN Sec. 4.2 and its public code; MUSP Sec. 5.2; Luo et al.'s strong baseline)."""
from __future__ import annotations

import pytest

from reidlib.study import Study

#: (model, dotted key) -> the stated value, and where it is stated
STATED = {
    # MUSP Sec. 5.2: P x K = 16 x 4, 90 epochs, / 10 at epochs 30 and 60, 10 warm-up epochs from 0.1 x
    ("musp", "data.p"): (16, "MUSP Sec. 5.2"), ("musp", "data.k"): (4, "MUSP Sec. 5.2"),
    ("musp", "optim.unit"): ("epoch", "MUSP Sec. 5.2"), ("musp", "optim.max_iters"): (90, "MUSP Sec. 5.2"),
    ("musp", "optim.milestones"): ([30, 60], "MUSP Sec. 5.2"), ("musp", "optim.warmup_iters"): (10, "MUSP Sec. 5.2"),
    ("musp", "optim.warmup_factor"): (0.1, "MUSP Sec. 5.2"), ("musp", "optim.lr"): (3.5e-4, "MUSP Sec. 5.2"),
    ("musp", "loss.id_reduction"): ("sum", "MUSP eqs. 11-13"),
    # Luo et al.: 120 epochs, / 10 at 40 and 70, 10 warm-up epochs, P x K = 16 x 4, Adam 3.5e-4
    ("baseline", "optim.unit"): ("epoch", "Luo et al."), ("baseline", "optim.max_iters"): (120, "Luo et al."),
    ("baseline", "optim.milestones"): ([40, 70], "Luo et al."), ("baseline", "optim.warmup_iters"): (10, "Luo et al."),
    ("baseline", "data.p"): (16, "Luo et al."), ("baseline", "data.k"): (4, "Luo et al."),
    ("baseline", "optim.lr"): (3.5e-4, "Luo et al."),
    # SPAN Sec. 4.2: 30,000 iterations, P x K = 8 x 4, 1024-d part features, triplet on CPDM (eq. 7)
    ("span", "optim.unit"): ("iter", "SPAN Sec. 4.2"), ("span", "optim.max_iters"): (30000, "SPAN Sec. 4.2"),
    ("span", "data.p"): (8, "SPAN Sec. 4.2"), ("span", "data.k"): (4, "SPAN Sec. 4.2"),
    ("span", "loss.triplet_on"): ("cpdm", "SPAN eq. 7"),
}
#: SPAN step 1 and the foreground network as SPAN's public code trains them
STATED_STEP1 = {"optim.lr": 1e-4, "optim.warmup_iters": 0, "optim.unit": "epoch", "optim.max_iters": 10,
                "data.batch_size": 32, "span.size": 192, "model.backbone": "resnet34"}


def _get(cfg, key):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


@pytest.mark.parametrize("model,key", sorted(STATED))
def test_paper_profile_runs_each_model_as_its_paper(model, key):
    cfg = Study("paper").reid_config(model, 0)
    want, where = STATED[(model, key)]
    assert _get(cfg, key) == pytest.approx(want), f"{model} {key}: {_get(cfg, key)!r}, {where} says {want!r}"


def test_paper_profile_span_step1_and_foreground_as_the_public_code():
    st = Study("paper")
    for cfg in (st.span_config(0), st.foreground_config(0)):
        for key, want in STATED_STEP1.items():
            if key == "span.size" and cfg.model.name == "foreground":
                key = "foreground.size"
            assert _get(cfg, key) == pytest.approx(want) if isinstance(want, float) else _get(cfg, key) == want, \
                (cfg.model.name, key, _get(cfg, key))
    assert st.span_config(0).model.kwargs == {"stride": 8, "decoder": "transposed"}
    assert st.span_config(0).span.side_aug == 0.5 and Study("cpu").span_config(0).span.side_aug == 0.0


def test_paper_profile_ranks_each_model_as_its_public_code():
    from reidlib.models import baseline, musp, part_features

    st = Study("paper")
    assert [st.ranked_features(m) for m in (object.__new__(baseline.StrongBaseline), object.__new__(musp.MUSP),
                                            object.__new__(part_features.SPANReID))] == \
        ["post_bn_l2", "pre_bn_l2", "post_bn"]
    assert Study("cpu").ranked_features(object.__new__(musp.MUSP)) == ""     # each model's own default


def test_cpu_profile_shares_one_schedule_and_holds_out_validation_ids():
    st = Study("cpu")
    cfgs = {m: st.reid_config(m, 0) for m in ("baseline", "span", "musp")}
    assert {(c.optim.unit, c.optim.max_iters, c.data.p, c.data.k) for c in cfgs.values()} == \
        {("iter", st.prof.reid_iters, st.prof.batch_p, st.prof.batch_k)}
    assert all(c.data.val_ids == st.prof.val_ids > 0 for c in cfgs.values())
    assert Study("paper").reid_config("musp", 0).data.val_ids == 0         # the papers train on every id
