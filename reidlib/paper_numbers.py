"""The papers' published numbers and the claims their ablations make, for side-by-side tables.

These are quotations of the papers (VeRi-776 / VehicleID, real data), used only as the "paper"
column next to our measurements; the claims are the orderings each ablation is cited for. Our
measurements come from ``results/<profile>/*.json`` (never from this module).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

# SPAN + CPDM (Chen et al., ECCV 2020), VeRi-776, R-1 / mAP in %.
SPAN_TABLE1 = {  # loss ablation (Table 1)
    "baseline": {"R1": 92.0, "mAP": 59.1},
    "only_recon": {"R1": 91.8, "mAP": 58.9},
    "wo_area": {"R1": 92.1, "mAP": 59.2},
    "wo_div": {"R1": 92.5, "mAP": 59.7},
    "full": {"R1": 93.9, "mAP": 68.6},
}
SPAN_TABLE2 = {  # aggregation / distance ablation (Table 2)
    "baseline": {"R1": 92.0, "mAP": 59.1},
    "span_fc": {"R1": 92.6, "mAP": 60.3},
    "span_cat": {"R1": 93.0, "mAP": 63.1},
    "span_cpdm": {"R1": 94.0, "mAP": 68.9},
}
# MUSP (Lee, Woo, Lee); fractions in the paper, converted to % here.
MUSP_TABLE5 = {  # number of attentions n, VeRi-776
    6: {"mAP": 77.1, "R1": 95.1, "R5": 97.6},
    5: {"mAP": 78.0, "R1": 95.6, "R5": 97.9},
    4: {"mAP": 77.7, "R1": 95.6, "R5": 97.8},
    3: {"mAP": 76.3, "R1": 95.3, "R5": 97.7},
    2: {"mAP": 76.9, "R1": 95.1, "R5": 97.2},
}
MUSP_TABLE6 = {  # ESE, VehicleID small (CMC@1, CMC@5)
    "with_ese": {"R1": 84.5, "R5": 97.6},
    "without_ese": {"R1": 83.0, "R5": 96.1},
}
MUSP_TABLE7 = {  # attention activation, VeRi-776
    "softmax": {"mAP": 78.0, "R1": 95.6, "R5": 97.9},
    "sigmoid": {"mAP": 77.2, "R1": 95.4, "R5": 97.7},
}
MUSP_TABLE2 = {  # VeRi-776: strong baseline vs MUSP
    "baseline": {"mAP": 76.8, "R1": 95.2, "R5": 97.6},
    "musp": {"mAP": 78.0, "R1": 95.6, "R5": 97.9},
}

PAPER_TABLES = {
    "span_losses": ("SPAN Table 1 (VeRi-776)", SPAN_TABLE1),
    "span_aggregation": ("SPAN Table 2 (VeRi-776)", SPAN_TABLE2),
    "musp_attentions": ("MUSP Table 5 (VeRi-776)", MUSP_TABLE5),
    "musp_ese": ("MUSP Table 6 (VehicleID small)", MUSP_TABLE6),
    "musp_activation": ("MUSP Table 7 (VeRi-776)", MUSP_TABLE7),
}


@dataclass(frozen=True)
class Claim:
    """An ordering a paper states; ``check`` takes our ``{row: {metric: value}}`` table."""

    experiment: str
    text: str
    check: Callable[[Mapping[str, Mapping[str, float]]], bool]
    rows: tuple


def _gt(a, b, metric="mAP"):
    return lambda t: t[a][metric] > t[b][metric]


def _all_gt(a, others, metric="mAP"):
    return lambda t: all(t[a][metric] > t[o][metric] for o in others)


CLAIMS = [
    Claim("span_losses", "SPAN trained with all three losses beats the baseline (mAP)", _gt("full", "baseline"),
          ("full", "baseline")),
    Claim("span_losses", "all three losses beat every partial combination (mAP)",
          _all_gt("full", ["only_recon", "wo_area", "wo_div"]), ("full", "only_recon", "wo_area", "wo_div")),
    Claim("span_aggregation", "concatenated part features beat an FC aggregation (mAP)", _gt("span_cat", "span_fc"),
          ("span_cat", "span_fc")),
    Claim("span_aggregation", "CPDM beats Euclidean distance on the same concatenated features (mAP)",
          _gt("span_cpdm", "span_cat"), ("span_cpdm", "span_cat")),
    Claim("span_aggregation", "SPAN w/ CPDM beats the baseline (mAP)", _gt("span_cpdm", "baseline"),
          ("span_cpdm", "baseline")),
    Claim("musp_attentions", "n = 5 attentions gives the best mAP", _all_gt(5, [2, 3, 4, 6]), (2, 3, 4, 5, 6)),
    Claim("musp_attentions", "four or more attentions beat fewer than four (mean mAP)",
          lambda t: (t[4]["mAP"] + t[5]["mAP"] + t[6]["mAP"]) / 3 > (t[2]["mAP"] + t[3]["mAP"]) / 2, (2, 3, 4, 5, 6)),
    Claim("musp_ese", "ESE improves rank-1", _gt("with_ese", "without_ese", "R1"), ("with_ese", "without_ese")),
    Claim("musp_activation", "softmax attention beats sigmoid attention (mAP)", _gt("softmax", "sigmoid"),
          ("softmax", "sigmoid")),
]


#: claims on mask quality, for which the papers publish no numbers: the SPAN supplementary's choice
#: of the area cap ``a`` and margin ``m``, and Fig. 4's multi-digit localisation (qualitative in the
#: paper; our proxy is the mean IoU of each digit's thresholded mask with that digit's true mask)
MASK_CLAIMS = [
    Claim("span_hyperparams", "a = 0.7 (the paper's choice) gives the best mask IoU among a = 0.5, 0.7, 0.9",
          _all_gt("a=0.7", ["a=0.5", "a=0.9"], "mean IoU"), ("a=0.5", "a=0.7", "a=0.9")),
    Claim("span_hyperparams", "m = 0.04 (the paper's choice) gives a better mask IoU than m = 0",
          _gt("m=0.04", "m=0", "mean IoU"), ("m=0", "m=0.04")),
    Claim("multidigit", "SPAN localises each digit from image-level labels alone, with the paper's loss "
          "weights (Fig. 4; proxy: mean mask IoU of at least 50%)",
          lambda t: t["mean"]["paper weights"] >= 50.0, ("mean",)),
    Claim("multidigit", "SPAN localises each digit from image-level labels alone, with our adjustment "
          "(reconstruction weight x10, larger digits; same proxy)",
          lambda t: t["mean"]["recon x10, larger digits"] >= 50.0, ("mean",)),
]
MASK_TITLES = {"span_hyperparams": "SPAN supplementary (a, m; mask IoU)",
               "multidigit": "SPAN Fig. 4 (multi-digit; mask IoU)"}
