"""Own data and own weights: how each network of a study starts (``init`` for the re-ID backbone,
``span_init`` for SPAN's trunk), checked when the study is built, each failure one line; a user's
``data_root`` never silently starts from the stand-in (pretrained on SynthVeRi); the runner reads
``-p span_init=`` like ``-p init=`` (relative to the caller's directory)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from reidlib import runner
from reidlib.errors import CheckpointError, ConfigError
from reidlib.study import Study

ROOT = Path(__file__).resolve().parent.parent
#: the paper profile's two architectures, with a ResNet-18 re-ID backbone (tiny files, same rules)
PAPER_18_34 = {"reid_backbone": "resnet18"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """torchvision-format ImageNet-like state dicts (random values) of ResNet-18 and ResNet-34."""
    out = tmp_path_factory.mktemp("weights")
    files = {}
    for name in ("resnet18", "resnet34"):
        files[name] = out / f"{name}.pth"
        torch.save(getattr(torchvision.models, name)(weights=None).state_dict(), files[name])
    return files


def _study(tmp_path, profile="paper", **kwargs) -> Study:
    return Study(profile, "cpu", cache_dir=str(tmp_path / "runs"), data_dir=str(tmp_path / "data"), **kwargs)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_a_wrong_architecture_file_fails_when_the_study_is_built(weights, tmp_path):
    with pytest.raises(CheckpointError) as err:                  # smoke: one ResNet-18 for both networks
        _study(tmp_path, "smoke", init=str(weights["resnet34"]))
    line = _one_line(err)
    assert line.startswith("init: ") and str(weights["resnet34"]) in line
    assert "a resnet34 state dict" in line and "expected resnet18" in line
    with pytest.raises(CheckpointError) as err:                  # SPAN's trunk given the re-ID backbone's file
        _study(tmp_path, init=str(weights["resnet18"]), span_init=str(weights["resnet18"]), overrides=PAPER_18_34)
    line = _one_line(err)
    assert line.startswith("span_init: ") and "a resnet18 state dict" in line and "expected resnet34" in line
    with pytest.raises(FileNotFoundError, match=r"span_init='.*nope.pth': no file"):
        _study(tmp_path, init=str(weights["resnet18"]), span_init=str(tmp_path / "nope.pth"), overrides=PAPER_18_34)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_one_init_file_for_two_architectures_asks_for_span_init(weights, tmp_path):
    with pytest.raises(ConfigError) as err:
        _study(tmp_path, init=str(weights["resnet18"]), overrides=PAPER_18_34)
    line = _one_line(err)
    assert "span_init=/path/resnet34.pth" in line and "span_init=standin" in line
    assert "resnet18" in line and "resnet34" in line and "profile paper" in line


def test_each_network_gets_its_own_file(weights, tmp_path):
    study = _study(tmp_path, init=str(weights["resnet18"]), span_init=str(weights["resnet34"]),
                   overrides=PAPER_18_34)
    assert study.reid_config("baseline", 0).model.weights == str(weights["resnet18"])
    assert study.reid_config("span", 0).model.weights == str(weights["resnet18"])
    assert study.span_config(0).model.weights == str(weights["resnet34"])
    assert study.foreground_config(0).model.weights == str(weights["resnet34"])
    # a file for one network, the stand-in for the other: resolving it trains nothing
    mixed = _study(tmp_path, init=str(weights["resnet18"]), span_init="standin", overrides=PAPER_18_34)
    assert mixed.reid_config("baseline", 0).model.weights == str(weights["resnet18"])
    assert mixed.span_config(0).model.weights.endswith("backbone-resnet34.pth")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_one_architecture_has_one_start(weights, tmp_path):
    study = _study(tmp_path, "smoke", init=str(weights["resnet18"]))
    assert study.span_init == study.init == str(weights["resnet18"])
    assert study.reid_config("baseline", 0).model.weights == study.span_config(0).model.weights \
        == str(weights["resnet18"])
    with pytest.raises(ConfigError) as err:
        _study(tmp_path, "smoke", init="random", span_init="standin")
    line = _one_line(err)
    assert "span_init='standin' differs from init='random'" in line and "both resnet18" in line


def test_own_data_with_the_default_standin_is_refused(tiny_veri, tmp_path):
    with pytest.raises(ConfigError) as err:
        _study(tmp_path, data_root=str(tiny_veri))
    line = _one_line(err)
    assert "-p init=/path/resnet50.pth -p span_init=/path/resnet34.pth" in line
    assert "-p init=standin" in line and "20000 iterations" in line and "nothing is downloaded" in line
    with pytest.raises(ConfigError) as err:                     # one architecture: no span_init to name
        _study(tmp_path, "smoke", data_root=str(tiny_veri))
    assert "span_init" not in _one_line(err) and "-p init=/path/resnet18.pth" in _one_line(err)
    # asked for: the stand-in, for both networks (pretrained only when a model is trained)
    study = _study(tmp_path, data_root=str(tiny_veri), init="standin")
    assert study.init == study.span_init == "standin"
    assert study.span_config(0).model.weights.endswith("backbone-resnet34.pth")
    assert _study(tmp_path, "smoke", data_root=str(tiny_veri), init="random").span_init == "random"
    assert _study(tmp_path).init == "standin"                   # SynthVeRi: the profile's stand-in, as before
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_the_runner_reads_span_init_from_the_callers_directory(weights, tmp_path):
    declared = runner.declared_parameters(ROOT / "notebooks" / "span_losses.ipynb")
    assert declared["span_init"] is None
    caller = tmp_path / "caller"
    (caller / "w").mkdir(parents=True)
    (caller / "w" / "r34.pth").write_bytes(weights["resnet34"].read_bytes())
    out = runner.check_parameters(declared, {"init": "standin", "span_init": "w/r34.pth"}, "span_losses.ipynb",
                                  cwd=caller)
    assert out == {"init": "standin", "span_init": str(caller / "w" / "r34.pth")}
    for keyword in ("standin", "random", None):
        assert runner.check_parameters(declared, {"span_init": keyword}, "span_losses.ipynb",
                                       cwd=caller) == {"span_init": keyword}
    with pytest.raises(runner.ExperimentError, match=r"span_init='nope.pth': no file .*caller/nope.pth \(a relative "
                                                     r"path is read from the working directory"):
        runner.check_parameters(declared, {"span_init": "nope.pth"}, "span_losses.ipynb", cwd=caller)


def test_every_study_notebook_takes_span_init():
    pages = [p for p in sorted((ROOT / "notebooks").glob("*.ipynb")) if p.stem != "summary"]
    assert len(pages) >= 10
    for page in pages:
        cells = ["".join(c["source"]) for c in json.loads(page.read_text(encoding="utf-8"))["cells"]]
        assert any(c.startswith("profile = ") and "\nspan_init = None" in c for c in cells), page.name
        assert sum("span_init=span_init" in c and "Study(" in c for c in cells) == 1, page.name
