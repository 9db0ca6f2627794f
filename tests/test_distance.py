"""The distance table (reidlib.metrics.distance) and the plain distances (reidlib.metrics.pairwise)."""
from __future__ import annotations

import ast
import math
import pathlib

import numpy as np
import pytest
import torch

import reidlib.metrics.cpdm as cpdm_mod
import reidlib.metrics as metrics_pkg
from reidlib.errors import ConfigError
from reidlib.metrics import distance as distance_mod
from reidlib.metrics import evaluate_features, evaluate_rank
from reidlib.metrics.distance import DISTANCES, OPTIONS, Distance, build_distance
from reidlib.metrics.pairwise import check_chunk_size, compute_dtype, to_numpy

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# a hand case with exact values: P = 3 parts of d = 2, integer features, dyadic area ratios
# ---------------------------------------------------------------------------------------------
FA = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])             # [1, 3, 2]
FB = torch.tensor([[[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]],              # part distances [5, 0, 2]
                   [[0.0, 0.0], [4.0, 4.0], [0.0, 5.0]]])             # part distances [0, 5, 3]
RA = torch.tensor([[1.0, 0.5, 0.5]])                                  # [1, 3]
RB = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.25, 0.75]])               # [2, 3]


def hand_expected(name: str) -> list:
    """Each distance written out for the two pairs, in float64, from the definitions."""
    part_d = [[5.0, 0.0, 2.0], [0.0, 5.0, 3.0]]
    flat_sq = [25.0 + 0.0 + 4.0, 0.0 + 25.0 + 9.0]                   # concatenated [1, 6] features
    out = []
    for b in range(2):
        prod = [float(RA[0, i] * RB[b, i]) for i in range(3)]
        if name == "euclidean":
            out.append(math.sqrt(flat_sq[b]))
        elif name == "sqeuclidean":
            out.append(flat_sq[b])
        elif name == "cosine":
            fa, fb = FA.reshape(-1).double(), FB[b].reshape(-1).double()
            out.append(1.0 - float(fa @ fb) / float(fa.norm() * fb.norm()))
        elif name == "cpdm":                                           # SPAN eqs. (4)-(5)
            out.append(sum(prod[i] * part_d[b][i] for i in range(3)) / sum(prod))
        elif name == "cpdm_musp":                                      # MUSP eqs. (9)-(10), g = 1/(P-1)
            out.append(sum(prod[i] * part_d[b][i] for i in (1, 2)) / sum(prod[1:]) + 0.5 * part_d[b][0])
        elif name == "cpdm_musp_code":      # L2-normalised, squared, all 3 products normalised, global 1/2
            na = torch.nn.functional.normalize(FA[0].double(), dim=-1)
            nb = torch.nn.functional.normalize(FB[b].double(), dim=-1)
            sq = [float(((na[i] - nb[i]) ** 2).sum()) for i in range(3)]
            ka = [float(x) for x in RA[0, 1:] / RA[0, 1:].sum()]
            kb = [float(x) for x in RB[b, 1:] / RB[b, 1:].sum()]
            pc = [0.25] + [ka[j] * kb[j] for j in range(2)]
            out.append(sum(pc[i] * sq[i] for i in range(3)) / sum(pc))
    return out


def test_table_names_and_options():
    assert list(DISTANCES) == ["euclidean", "sqeuclidean", "cosine", "cpdm", "cpdm_musp", "cpdm_musp_code"]
    for name, spec in DISTANCES.items():
        assert spec.name == name and set(spec.options) <= set(OPTIONS) and "chunk_size" in spec.options
        assert spec.needs_area_ratios == name.startswith("cpdm")
    assert DISTANCES["cpdm"].options == ("chunk_size", "squared")
    assert DISTANCES["cpdm_musp_code"].options == ("chunk_size", "global_ratio")


@pytest.mark.parametrize("name", list(DISTANCES))
def test_every_name_builds_and_matches_its_definition(name):
    dist = build_distance(name)
    assert isinstance(dist, Distance) and dist.name == name and repr(dist) == f"Distance({name!r})"
    got = dist((FA, RA), (FB, RB))                                      # [1, 2]
    assert got.shape == (1, 2) and got.dtype == torch.float32
    torch.testing.assert_close(got[0].double(), torch.tensor(hand_expected(name), dtype=torch.float64),
                               rtol=1e-6, atol=1e-6)
    # float64 features stay float64, and agree to float64 rounding
    got64 = build_distance(name)((FA.double(), RA.double()), (FB.double(), RB.double()))
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64[0], torch.tensor(hand_expected(name), dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(DISTANCES))
def test_every_name_takes_each_of_its_options(name):
    values = {"chunk_size": 1, "squared": True, "global_weight": 0.5, "global_ratio": 0.5}
    for opt in DISTANCES[name].options:
        dist = build_distance(name, **{opt: values[opt]}, cache=False)
        assert dist.options[opt] == values[opt]
        assert dist((FA, RA), (FB, RB)).shape == (1, 2)
    torch.testing.assert_close(build_distance(name, chunk_size=1)((FB, RB), (FB, RB)),
                               build_distance(name, chunk_size=0)((FB, RB), (FB, RB)))


def test_unknown_names_and_options_raise_config_error():
    with pytest.raises(ConfigError, match=r"unknown distance 'manhattan'; choose one of \['euclidean'"):
        build_distance("manhattan")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['squared'\] for distance 'euclidean'"):
        build_distance("euclidean", squared=True)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['squared'\] for distance 'cpdm_musp_code'"):
        build_distance("cpdm_musp_code", squared=False)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['global_weight'\] for distance 'cpdm'"):
        build_distance("cpdm", global_weight=0.3)


@pytest.mark.parametrize("option, value, expected", [
    ("squared", "yes", "expected True or False"),
    ("global_weight", -0.5, "expected None"),
    ("global_weight", float("nan"), "expected None"),
    ("chunk_size", -3, "expected None"),
])
def test_bad_option_values_raise_config_error_naming_the_option(option, value, expected):
    with pytest.raises(ConfigError, match=rf"{option}=.*; {expected}"):
        build_distance("cpdm_musp", **{option: value})


def test_area_ratios_required_for_cpdm_names():
    for name, spec in DISTANCES.items():
        if spec.needs_area_ratios:
            with pytest.raises(ValueError, match="needs area ratios"):
                build_distance(name)((FA, None), (FB, None))
        else:
            torch.testing.assert_close(build_distance(name)(FA, FB), build_distance(name)((FA, RA), (FB, RB)))


# ---------------------------------------------------------------------------------------------
# one home: no distance left in reidlib.metrics.cpdm; lazy exports; layering
# ---------------------------------------------------------------------------------------------
def test_one_home_per_concept():
    for gone in ("build_distance", "Distance", "DISTANCES", "euclidean_distance", "cosine_distance"):
        assert not hasattr(cpdm_mod, gone)
    assert metrics_pkg.build_distance is build_distance
    assert metrics_pkg.pairwise_distance.__module__ == "reidlib.metrics.pairwise"


def _imports(path: pathlib.Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_layering_of_distance_modules():
    cpdm_imports = _imports(ROOT / "reidlib" / "metrics" / "cpdm.py")
    assert "reidlib.metrics.pairwise" in cpdm_imports
    assert not any(m.startswith("reidlib.metrics.distance") or m.startswith("reidlib.metrics.rank")
                   for m in cpdm_imports)
    assert not any(m.startswith("reidlib.metrics.rank") for m in _imports(ROOT / "reidlib" / "metrics" / "distance.py"))
    assert not any(m.startswith("reidlib.") for m in _imports(ROOT / "reidlib" / "metrics" / "pairwise.py"))


# ---------------------------------------------------------------------------------------------
# the evaluator's distance matrix, and gallery caching with numpy inputs
# ---------------------------------------------------------------------------------------------
def test_evaluate_features_returns_its_distance_matrix():
    rng = np.random.default_rng(4)
    qf, gf = rng.normal(size=(23, 3, 4)).astype(np.float32), rng.normal(size=(57, 3, 4)).astype(np.float32)
    qa = rng.uniform(0.1, 1, (23, 3)).astype(np.float32)
    ga = rng.uniform(0.1, 1, (57, 3)).astype(np.float32)
    qp, gp, qc, gc = rng.integers(0, 6, 23), rng.integers(0, 6, 57), np.zeros(23, int), np.ones(57, int)
    dist = build_distance("cpdm")
    res = evaluate_features((qf, qa), (gf, ga), qp, gp, qc, gc, distance=dist, chunk_size=5, return_distmat=True)
    want = np.concatenate([dist((torch.from_numpy(qf[i:i + 5]), torch.from_numpy(qa[i:i + 5])),
                                (torch.from_numpy(gf), torch.from_numpy(ga))).numpy() for i in range(0, 23, 5)])
    assert res.distmat.dtype == np.float32 and res.distmat.shape == (23, 57)
    np.testing.assert_array_equal(res.distmat, want)
    again = evaluate_rank(res.distmat, qp, gp, qc, gc)
    np.testing.assert_array_equal(again.cmc, res.cmc)
    assert again.mAP == res.mAP
    assert evaluate_features((qf, qa), (gf, ga), qp, gp, qc, gc, distance=dist).distmat is None


def test_numpy_gallery_is_prepared_once(monkeypatch):
    rng = np.random.default_rng(5)
    qf, gf = rng.normal(size=(12, 2, 3)).astype(np.float32), rng.normal(size=(20, 2, 3)).astype(np.float32)
    qa, ga = np.ones((12, 2), np.float32), np.ones((20, 2), np.float32)
    dist = build_distance("cpdm")
    calls = []
    prepare = Distance._prepare
    monkeypatch.setattr(Distance, "_prepare", lambda self, g0, g1: calls.append(1) or prepare(self, g0, g1))
    evaluate_features((qf, qa), (gf, ga), np.arange(12) % 4, np.arange(20) % 4, np.zeros(12, int),
                      np.ones(20, int), distance=dist, chunk_size=3)
    assert len(calls) == 1                                             # 4 query chunks, 1 gallery operand


# ---------------------------------------------------------------------------------------------
# pairwise helpers
# ---------------------------------------------------------------------------------------------
def test_compute_dtype_and_to_numpy():
    assert compute_dtype(torch.float16) == torch.float32
    assert compute_dtype(torch.bfloat16) == torch.float32
    assert compute_dtype(torch.int64) == torch.float32
    assert compute_dtype(torch.float64) == torch.float64
    x = torch.tensor([1.5, -2.25], dtype=torch.bfloat16)
    out = to_numpy(x)
    assert out.dtype == np.float32 and out.tolist() == [1.5, -2.25]


def test_check_chunk_size():
    assert check_chunk_size(None) is None and check_chunk_size(0) == 0 and check_chunk_size(np.int64(7)) == 7
    with pytest.raises(ValueError, match=r"rows=0; expected None \(auto\) or a positive integer"):
        check_chunk_size(0, name="rows", allow_zero=False)
    with pytest.raises(ConfigError, match="chunk_size=True"):
        check_chunk_size(True, error=ConfigError)


def test_distance_module_has_no_if_chain_on_names():
    """Names are looked up in the table: no comparison of a name with a string literal."""
    tree = ast.parse(pathlib.Path(distance_mod.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            assert not any(isinstance(c.value, str) and c.value in DISTANCES for c in consts), ast.unparse(node)
