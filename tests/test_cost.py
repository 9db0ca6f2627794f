"""The GPU estimates' counts (reidlib.engine.cost, reidlib.study.cost) on cases with a known answer."""
import pytest
import torch
from torch import nn

from reidlib.engine.cost import training_step_cost
from reidlib.study import cost as study_cost
from reidlib.study.profiles import get_profile


def _flat(m, x):
    return m(x.flatten(1))


def test_linear_counts_forward_weight_gradient_and_the_saved_input():
    c = training_step_cost(lambda: nn.Linear(10, 5), (4, 10, 1, 1), forward=_flat)
    # forward 2*4*10*5 = 400; backward: the weight's gradient only (the input needs none) = 400
    assert c.flops == 800
    assert c.parameter_bytes == c.gradient_bytes == 4 * (10 * 5 + 5)
    assert c.optimizer_bytes == 2 * c.gradient_bytes            # Adam: two slots per weight
    assert c.activation_bytes == 4 * 10 * 2                     # the bf16 input, not the weight
    assert c.memory_bytes == 220 + 220 + 440 + 80


def test_a_frozen_subnetwork_costs_its_forward_only():
    def build():
        frozen = nn.Linear(10, 8)
        frozen.requires_grad_(False)
        return nn.Sequential(frozen, nn.Linear(8, 5))

    c = training_step_cost(build, (4, 10, 1, 1), forward=_flat)
    assert c.flops == 2 * 4 * 10 * 8 + 2 * (2 * 4 * 8 * 5)      # frozen forward; trained forward + weight grad
    assert c.gradient_bytes == 4 * (8 * 5 + 5)
    assert c.parameter_bytes == 4 * (10 * 8 + 8 + 8 * 5 + 5)


def test_convolution_flops_and_saved_bytes():
    c = training_step_cost(lambda: nn.Conv2d(3, 4, 3, bias=False), (2, 3, 8, 8))
    fwd = 2 * 2 * 4 * 6 * 6 * 27
    assert c.flops == 2 * fwd
    assert c.activation_bytes == 2 * 3 * 8 * 8 * 2


def test_resnet50_step_matches_its_published_multiply_adds():
    """torchvision's ResNet-50 is 4.09 G multiply-adds per 224 px image forward; a training step
    is forward + weight gradients + input gradients of every layer but the first, about 3x."""
    import torchvision

    c = training_step_cost(lambda: torchvision.models.resnet50(weights=None), (1, 3, 224, 224))
    assert 2.9 * 8.18e9 < c.flops < 3.0 * 8.18e9
    assert study_cost.reference_flop_rate() == pytest.approx(c.flops * study_cost.REFERENCE_IMAGES_PER_S,
                                                             rel=1e-6)


def test_bad_input_shape_is_refused_naming_it():
    with pytest.raises(ValueError, match="input_shape"):
        training_step_cost(lambda: nn.Linear(2, 2), (4, 2))


def test_every_model_of_every_profile_is_counted():
    for name in ("smoke", "cpu", "gpu", "paper"):
        df = study_cost.profile_costs(name)
        assert {"baseline", "span", "musp", "SPAN step 1"} <= set(df["model"]), name
        assert (df["GFLOP / iteration"] > 0).all() and (df["memory (GiB)"] > study_cost.GPU_OVERHEAD_GIB).all()
        assert (df["estimated GPU minutes"] > 0).all()


def test_paper_profile_iterations_follow_each_models_own_recipe():
    from reidlib.models import baseline, musp, part_features, span

    df = study_cost.profile_costs("paper").set_index("model")
    n = study_cost.VERI776_TRAIN_IMAGES
    assert df.loc["musp", "batch"] == musp.DEFAULT_RUN["data.p"] * musp.DEFAULT_RUN["data.k"]
    assert df.loc["musp", "iterations"] == musp.DEFAULT_RUN["optim.max_iters"] * (n // df.loc["musp", "batch"])
    assert df.loc["baseline", "iterations"] == baseline.DEFAULT_RUN["optim.max_iters"] * (n // df.loc["baseline", "batch"])
    assert df.loc["span", "iterations"] == part_features.DEFAULT_RUN["optim.max_iters"]      # in iterations
    subset = study_cost.SPAN_VIEW_CLASSES * get_profile("paper").span_per_view
    assert df.loc["SPAN step 1", "iterations"] == span.DEFAULT_RUN["optim.max_iters"] * (subset // 32)
    gpu = study_cost.profile_costs("gpu").set_index("model")
    assert (gpu.loc[["baseline", "span", "musp"], "iterations"] == get_profile("gpu").reid_iters).all()


def test_costs_markdown_tables_are_well_formed_and_name_their_basis():
    text = study_cost.costs_markdown(("smoke",))
    assert "Estimated, not measured" in text and "DeepLearningExamples" in text
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(study_cost.profile_costs("smoke"))
    assert len({row.count("|") for row in rows}) == 1
