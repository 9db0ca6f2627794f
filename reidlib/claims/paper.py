"""The papers' published numbers, for side-by-side tables.

These are quotations of the papers (VeRi-776 / VehicleID, real data), used only as the "paper"
column next to our measurements. Which page reproduces which table, under which title, and the
claims each is cited for, are in that page's record (:mod:`reidlib.ablations`, its
``paper_numbers``). Our measurements come from ``results/<profile>/`` (never from this module).
"""
from __future__ import annotations

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
