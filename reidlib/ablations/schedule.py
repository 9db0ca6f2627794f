"""Would a longer schedule change the verdicts? Each headline model at the profile's schedule and
stretched four-fold.

At the ``cpu`` profile's 250 iterations no headline model reaches a plateau (the last quarter of
every schedule still lifts validation mAP by more than
:data:`reidlib.claims.plateau.PLATEAU_TOLERANCE`), so every re-ID claim of the book reads "not
tested here". This page asks what those verdicts hide: the baseline, SPAN + CPDM, SPAN on masks
learnt from the true part masks (our row: the design with its mechanism guaranteed) and MUSP
(n = 5) are each trained at the profile's schedule and at :data:`SCHEDULE_FACTOR` times it (length,
warm-up and decays stretched alike, :func:`reidlib.ablations.musp.stretched_schedule`; SPAN step 1
unchanged, so both SPAN rows use the same masks), first training seed only (the budget). The
profile's rows are the same runs as each model's own page's first seed (one cache entry).

The comparisons at the long schedule are claims of our own (``source="ours"``): whether the
longer-trained models converged, and whether SPAN's and MUSP's mechanisms formed, are read from the
same preconditions as every page's (:mod:`reidlib.claims.verdicts`).
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from reidlib.ablations.experiment import Experiment, FigureText, interval_cell, intervals_caption
from reidlib.claims.verdicts import beats, reid_claim
from reidlib.study import Study, Variant

__all__ = ["SCHEDULE_FACTOR", "SCHEDULE_MODELS", "SCHEDULES", "schedule_variants", "schedule_table",
           "schedule_reading", "schedule_mechanism", "schedule_outcome", "SCHEDULE"]

#: how many times the profile's schedule the long rows train
SCHEDULE_FACTOR = 4.0
#: the two schedules of every model, as row-name suffixes
SCHEDULES = ("profile's schedule", f"schedule x{SCHEDULE_FACTOR:g}")


def _models() -> dict[str, Variant]:
    from reidlib.ablations.musp import MUSP_ATTENTION_VARIANTS
    from reidlib.ablations.span import SPAN_LOSS_VARIANTS

    return {"baseline": SPAN_LOSS_VARIANTS["baseline"], "SPAN + CPDM": SPAN_LOSS_VARIANTS["full"],
            "SPAN on true masks": SPAN_LOSS_VARIANTS["true_masks"], "MUSP (n = 5)": MUSP_ATTENTION_VARIANTS[5]}


#: the page's models, in order (the first is the one the others are compared with)
SCHEDULE_MODELS = tuple(_models())


def row_name(model: str, schedule: str) -> str:
    """The table row of ``model`` (:data:`SCHEDULE_MODELS`) at ``schedule`` (:data:`SCHEDULES`)."""
    return f"{model}, {schedule}"


def schedule_variants(study: Study, factor: float = SCHEDULE_FACTOR) -> dict[str, Variant]:
    """The page's rows (first training seed each): every model of :data:`SCHEDULE_MODELS` as its own
    page trains it, then with its re-ID schedule stretched ``factor``-fold (SPAN step 1 unchanged)."""
    from dataclasses import replace

    from reidlib.ablations.musp import stretched_schedule

    out = {}
    for model, v in _models().items():
        out[row_name(model, SCHEDULES[0])] = replace(v, seeds=1, note=f"{v.note}; the profile's schedule")
        stretched = stretched_schedule(study.reid_config(v.model, study.seeds[0], **v.config), float(factor))
        out[row_name(model, SCHEDULES[1])] = replace(
            v, seeds=1, config={**v.config, **stretched},
            note=f"{v.note}; {stretched['optim.max_iters']} iterations ({factor:g}x)")
    return out


def schedule_table(results, plateau: pd.DataFrame, metric: str = "mAP") -> pd.DataFrame:
    """Per model: its test ``metric`` and its validation curve's last-quarter change at both
    schedules, the gain from the longer one (95% paired interval, test identities resampled), and
    per schedule its difference from the first model (:data:`SCHEDULE_MODELS`) with its interval:
    does the ranking at the short schedule survive the long one?"""
    import numpy as np

    from reidlib.claims import per_query
    from reidlib.claims.stats import paired_bootstrap

    arrays = results.arrays()
    groups, unit, _ = per_query.clusters(arrays)

    def values(model, schedule):
        return per_query.values(arrays, row_name(model, schedule), metric)

    def interval(a, b):
        a, b = per_query.common_seeds(a, b)
        return paired_bootstrap(a, b, groups=groups, unit=unit)

    base = SCHEDULE_MODELS[0]
    rows = []
    for model in SCHEDULE_MODELS:
        row = {"model": model}
        for s in SCHEDULES:
            r = row_name(model, s)
            row[f"{metric}, {s}"] = float(np.nanmean(values(model, s)))
            row[f"last-quarter change, {s}"] = float(plateau.loc[r, "last-quarter change"]) if r in plateau.index else np.nan
            row[f"converged, {s}"] = plateau.loc[r, "converged"] if r in plateau.index else None
        gain = interval(values(model, SCHEDULES[1]), values(model, SCHEDULES[0]))
        row.update({"gain": gain.estimate, "gain low": gain.low, "gain high": gain.high})
        for s in SCHEDULES:
            if model == base:
                row.update({f"vs {base}, {s}": np.nan, f"vs {base}, {s} low": np.nan, f"vs {base}, {s} high": np.nan})
                continue
            d = interval(values(model, s), values(base, s))
            row.update({f"vs {base}, {s}": d.estimate, f"vs {base}, {s} low": d.low, f"vs {base}, {s} high": d.high})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def schedule_display(table: pd.DataFrame, metric: str = "mAP") -> pd.DataFrame:
    """:func:`schedule_table` as the page shows it: each difference with its interval in one cell."""
    base = SCHEDULE_MODELS[0]

    rows = []
    for model, r in table.iterrows():
        row = {"model": model}
        for s in SCHEDULES:
            row[f"{metric}, {s}"] = f"{r[f'{metric}, {s}']:.1f}"
            row[f"last-quarter change, {s}"] = f"{r[f'last-quarter change, {s}']:+.1f}"
        row["gain from the longer schedule"] = interval_cell(r, "gain")
        for s in SCHEDULES:
            row[f"vs {base}, {s}"] = interval_cell(r, f"vs {base}, {s}")
        rows.append(row)
    return pd.DataFrame(rows)


def schedule_reading(table: pd.DataFrame, metric: str = "mAP", tolerance: float | None = None) -> list[str]:
    """Sentences from :func:`schedule_table`: per model what the longer schedule gave and whether
    it then converged; per compared model whether its difference from the first model kept its
    sign, changed it, or moved into or out of its interval's reach."""
    from reidlib.claims.plateau import PLATEAU_TOLERANCE

    tol = PLATEAU_TOLERANCE if tolerance is None else tolerance
    short, long_ = SCHEDULES
    base = SCHEDULE_MODELS[0]
    out = []
    for model, r in table.iterrows():
        conv = r[f"last-quarter change, {long_}"]
        state = ("converged" if conv < tol else "still improving") if pd.notna(conv) else "without a validation curve"
        out.append(f"{model}: {r[f'{metric}, {short}']:.1f} → {r[f'{metric}, {long_}']:.1f} {metric} "
                   f"({r['gain']:+.1f} [{r['gain low']:+.1f}, {r['gain high']:+.1f}]); at the {long_} it is {state} "
                   f"(last quarter {conv:+.1f} validation mAP, against {r[f'last-quarter change, {short}']:+.1f} "
                   f"at the {short}).")

    def side(r, s):
        lo, hi = r[f"vs {base}, {s} low"], r[f"vs {base}, {s} high"]
        return "above" if lo > 0 else "below" if hi < 0 else "level with"

    for model, r in table.iterrows():
        if model == base:
            continue
        a, b = side(r, short), side(r, long_)
        how = ("the same reading at both schedules" if a == b else
               f"the reading changes with the schedule: {a} the {base} at the {short}, {b} it at the {long_}")
        out.append(f"{model} against the {base}: {r[f'vs {base}, {short}']:+.1f} at the {short}, "
                   f"{r[f'vs {base}, {long_}']:+.1f} [{r[f'vs {base}, {long_} low']:+.1f}, "
                   f"{r[f'vs {base}, {long_} high']:+.1f}] at the {long_}: {how}.")
    return out


def schedule_mechanism(study: Study) -> tuple[dict, pd.DataFrame]:
    """The mechanism facts of the page's long-schedule rows: SPAN's masks against the image-only
    references (:func:`reidlib.ablations.span.span_mechanism`; both SPAN rows share their short
    rows' masks) and MUSP's attentions against the position-only prior
    (:func:`reidlib.ablations.musp.musp_mechanism_facts`, on the long run's own model)."""
    from reidlib.ablations.musp import musp_mechanism_facts
    from reidlib.ablations.span import span_mechanism
    from reidlib.claims.verdicts import MECHANISM

    variants = {k: v for k, v in schedule_variants(study).items() if k.endswith(SCHEDULES[1])}
    span_facts, span_table = span_mechanism(study, {k: v for k, v in variants.items() if v.model == "span"})
    musp_facts, musp_table = musp_mechanism_facts(study, {k: v for k, v in variants.items() if v.model == "musp"})
    facts = {MECHANISM: {**span_facts.get(MECHANISM, {}), **musp_facts.get(MECHANISM, {})}}
    musp_table = musp_table.assign(kind="model (MUSP's attentions)")
    return facts, pd.concat([span_table, musp_table])


def schedule_outcome(record: Mapping[str, Any], link: str = "generated/schedule") -> str:
    """The first screen's sentence on this page (``record``: its results file, ``schedule.json``):
    how many models converged at each schedule, and each claim's verdict on its stated metric, with
    the difference, its interval and the preconditions that failed."""
    facts = (record.get("metrics") or {}).get("facts") or {}
    converged = facts.get("converged") or {}
    counts = []
    for s in SCHEDULES:
        rows = [r for r in converged if r.endswith(s)]
        counts.append(f"{sum(bool(converged[r][0]) for r in rows)} of {len(rows)} at the {s}")
    claims = []
    for c in (record.get("metrics") or {}).get("claims") or []:
        if not c.get("stated"):
            continue
        failed = str(c.get("preconditions") or "").split(";")[0].strip()
        why = (f"; failed precondition: {failed.removeprefix('failed:').strip()}"
               if c.get("verdict") == "not tested here" and failed.startswith("failed:") else
               f"; the smallest difference these runs would detect: {c['detectable']:.1f}"
               if c.get("verdict") == "inconclusive" and c.get("detectable") is not None else "")
        claims.append(f"- {c['claim'][0].upper() + c['claim'][1:]}: **{c['verdict']}** ({c['difference']:+.1f} "
                      f"[{c['low']:+.1f}, {c['high']:+.1f}] {c['metric']}{why}).")
    return "\n".join([f"**Would a longer schedule change that?** {{doc}}`Trained {SCHEDULE_FACTOR:g}x longer <{link}>` "
                      f"(first training seed), the headline models that reach a plateau: {', '.join(counts)}.",
                      *claims])


def _long(model: str) -> str:
    return row_name(model, SCHEDULES[1])


SCHEDULE = Experiment(
    "schedule", "Would a longer schedule change the verdicts?", "across",
    rows=tuple(row_name(m, s) for m in SCHEDULE_MODELS for s in SCHEDULES),
    mechanism=lambda study, _variants: schedule_mechanism(study),
    claims=(reid_claim(f"trained {SCHEDULE_FACTOR:g}x longer, SPAN + CPDM beats the baseline", "mAP",
                       beats(_long("SPAN + CPDM"), _long("baseline")), source="ours"),
            reid_claim(f"trained {SCHEDULE_FACTOR:g}x longer, SPAN + CPDM on the true part masks beats the baseline",
                       "mAP", beats(_long("SPAN on true masks"), _long("baseline")), source="ours"),
            reid_claim(f"trained {SCHEDULE_FACTOR:g}x longer, MUSP (n = 5) beats the baseline", "mAP",
                       beats(_long("MUSP (n = 5)"), _long("baseline")), source="ours")),
    figures={"intervals": intervals_caption(
        "Each headline model (first training seed) at the profile's schedule and at four times it.",
        "mAP and rank-1 of the baseline, SPAN + CPDM, SPAN on the true masks and MUSP at two schedule "
        "lengths, with 95% intervals")})
