"""Figures and tables of results: every row's metric with its interval, the forest plot of the
claims, and tables rendered for reading (full text, no index column).

Object-oriented matplotlib only (``matplotlib.figure.Figure``, no ``pyplot`` state).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

__all__ = ["intervals_figure", "forest_figure", "learning_curves_figure", "curves_figure", "show_table",
           "VERDICT_COLOURS"]

VERDICT_COLOURS = {"holds": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#6e7781",
                   "not tested here": "#8250df", "not measured": "#d0d7de"}


def intervals_figure(table: pd.DataFrame, metrics=("mAP", "R1"), paper: Optional[Mapping[Any, Mapping]] = None,
                     title: str = "", row_label: str = "", levels: Optional[pd.DataFrame] = None,
                     reference: Any = None, differences: Optional[Mapping[Any, Mapping[str, tuple]]] = None):
    """Top: one panel per metric, each row's value (dot) with its 95% interval (``<metric>_low`` /
    ``<metric>_high`` columns); ``levels``: reference levels to read the rows against
    (:meth:`reidlib.study.Study.reference_levels`: an untrained network, the stand-in before
    fine-tuning), drawn as labelled vertical lines.

    With ``paper`` (the paper's ``{row: {metric: value}}``), a second line of panels compares the two
    on one scale, in metric points: each row's difference from the ``reference`` row (default: the
    first row the paper also reports) — ours as a dot (with its paired 95% interval when
    ``differences[row][metric] = (low, high)`` is given), the paper's as a hollow diamond. No second
    axis: a 0.8-point paper difference looks as small as it is next to ours."""
    from matplotlib.figure import Figure

    rows = [str(r) for r in table.index]
    y = np.arange(len(rows))[::-1]
    pv = {m: np.array([(paper or {}).get(_key(r), {}).get(m, np.nan) for r in table.index], float) for m in metrics}
    with_paper = bool(paper) and any(np.isfinite(v).any() for v in pv.values())
    ref = None
    if with_paper:
        have = [r for r, v in zip(table.index, zip(*[pv[m] for m in metrics])) if np.isfinite(v).any()]
        ref = reference if reference is not None else (have[0] if have else table.index[0])
    n_lines = 2 if with_paper else 1
    fig = Figure(figsize=(4.2 * len(metrics), n_lines * (0.45 * len(rows) + 1.2) + 0.3), layout="constrained")
    axes = fig.subplots(n_lines, len(metrics), squeeze=False)
    for k, m in enumerate(metrics):
        ax = axes[0][k]
        val = table[m].to_numpy(float)
        lo = table.get(f"{m}_low", table[m]).to_numpy(float)
        hi = table.get(f"{m}_high", table[m]).to_numpy(float)
        ax.errorbar(val, y, xerr=[val - lo, hi - val], fmt="o", color="#0969da", ecolor="#0969da", capsize=3,
                    label="ours (95% interval)")
        if levels is not None and m in levels:
            for (name, lv), style in zip(levels[m].items(), (":", "--", "-.")):
                ax.axvline(lv, color="#57606a", ls=style, lw=1, label=name)
        ax.set_yticks(y, rows if k == 0 else [""] * len(rows))
        ax.set_xlabel(f"{m} (%), ours")
        ax.grid(axis="x", alpha=0.3)
        if not with_paper:
            continue
        dx = axes[1][k]
        i_ref = list(table.index).index(ref)
        ours = val - val[i_ref]
        theirs = pv[m] - pv[m][i_ref]
        iv = [(differences or {}).get(r, {}).get(m) for r in table.index]
        lo_d = np.array([ours[i] if v is None else v[0] for i, v in enumerate(iv)], float)
        hi_d = np.array([ours[i] if v is None else v[1] for i, v in enumerate(iv)], float)
        dx.axvline(0, color="#57606a", lw=0.8)
        dx.errorbar(ours, y, xerr=[ours - lo_d, hi_d - ours], fmt="o", color="#0969da", ecolor="#0969da",
                    capsize=3, label="ours (95% paired interval)" if differences else "ours")
        dx.plot(theirs, y, "D", mfc="none", color="#bc4c00", label="paper (real data)")
        dx.set_yticks(y, rows if k == 0 else [""] * len(rows))
        dx.set_xlabel(f"{m} difference from {ref} (points)")
        dx.grid(axis="x", alpha=0.3)
    if row_label:
        axes[0][0].set_ylabel(row_label)
    if title:
        fig.suptitle(title)
    handles = [h for ax in fig.axes for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in fig.axes for lab in ax.get_legend_handles_labels()[1]]
    if handles:
        uniq = dict(zip(labels, handles))
        fig.legend(list(uniq.values()), list(uniq.keys()), loc="outside lower center", ncols=min(len(uniq), 3),
                   frameon=False)
    return fig


def _key(r):
    return int(r) if str(r).isdigit() else r


def _verdict_colour(verdict: str) -> str:
    """The colour of a verdict ("holds in this run" is a "holds")."""
    for key, colour in VERDICT_COLOURS.items():
        if str(verdict).startswith(key):
            return colour
    return "#6e7781"


def forest_figure(verdicts: pd.DataFrame, title: str = "", wrap: int = 48):
    """Every claim's difference with its 95% interval (stated metric), coloured by verdict, with the
    paper's own difference marked (hollow diamond), grouped by paper; 0 is the line the interval
    must clear. One panel per metric (mAP, rank-1, mask IoU, ...), each on its own scale, so a
    mask-IoU claim does not squeeze the re-ID ones. ``verdicts``: the output of
    :func:`reidlib.claims.verdicts.summary_table` (or ``evaluate_claims``)."""
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    v = verdicts[verdicts["stated"].astype(bool)].reset_index(drop=True)
    metrics = list(dict.fromkeys(v["metric"])) or [""]
    sizes = [max(1, int((v["metric"] == m).sum())) for m in metrics]
    fig = Figure(figsize=(9.0, 0.62 * sum(sizes) + 0.9 * len(metrics) + 1.0), layout="constrained")
    axes = fig.subplots(len(metrics), 1, squeeze=False, gridspec_kw={"height_ratios": sizes})[:, 0]
    for ax, metric in zip(axes, metrics):
        sel = v[v["metric"] == metric]
        groups = list(dict.fromkeys(sel["paper"])) if "paper" in sel else [""]
        labels, ys, y, heads = [], [], 0.0, []
        for g in groups:
            rows = sel[sel["paper"] == g] if "paper" in sel else sel
            if g:
                heads.append((g, y))
                y -= 0.6
            for _, r in rows.iterrows():
                ys.append(y)
                labels.append("\n".join(textwrap.wrap(str(r["claim"]), wrap)))
                col = _verdict_colour(r["verdict"])
                if np.isfinite(r.get("low", np.nan)):
                    ax.errorbar([r["difference"]], [y], xerr=[[r["difference"] - r["low"]], [r["high"] - r["difference"]]],
                                fmt="o", color=col, ecolor=col, capsize=3)
                else:
                    ax.text(0, y, str(r["verdict"]), va="center", ha="center", fontsize=8, color=col)
                if np.isfinite(r.get("paper difference", np.nan)):
                    ax.plot([r["paper difference"]], [y], "D", mfc="none", color="#bc4c00")
                y -= 1.0
            y -= 0.3
        for g, yy in heads:
            ax.text(0.01, yy, g, transform=ax.get_yaxis_transform(), fontweight="bold", va="center", ha="left")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_ylim(y + 0.3, 0.5)
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_xlabel(f"{metric}: difference in points (claimed direction > 0)")
        ax.grid(axis="x", alpha=0.3)
    present = {k for k in VERDICT_COLOURS if any(str(x).startswith(k) for x in v["verdict"])}
    handles = [Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in VERDICT_COLOURS.items() if k in present]
    handles.append(Line2D([], [], marker="D", ls="", mfc="none", color="#bc4c00", label="paper (real data)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def learning_curves_figure(logs: Mapping[Any, pd.DataFrame], keys=("loss", "acc"), title: str = "",
                           validation: Optional[Mapping[Any, Sequence[Optional[pd.DataFrame]]]] = None):
    """Training curves, one panel per logged quantity (``keys`` present in the logs), one line per
    row of the table: did every model learn? (:meth:`reidlib.study.Results.logs`). With
    ``validation`` (``{row: [curve per seed]}``, :meth:`reidlib.study.Results.validation`) a first
    panel: validation mAP against iterations, every seed of a row in its colour (did it plateau?)."""
    from matplotlib.figure import Figure

    keys = [k for k in keys if any(k in df for df in logs.values())]
    val = {r: [c for c in cs if c is not None and len(c)] for r, cs in (validation or {}).items()}
    val = {r: cs for r, cs in val.items() if cs}
    panels = (["val"] if val else []) + keys
    fig = Figure(figsize=(4.2 * max(1, len(panels)), 3.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    colours = {str(r): f"C{i % 10}" for i, r in enumerate(dict.fromkeys([*val, *logs]))}
    for ax, k in zip(axes, panels):
        if k == "val":
            for row, cs in val.items():
                for i, c in enumerate(cs):
                    c = c.sort_values("iteration")
                    ax.plot(c["iteration"], c["val mAP"], marker="o", ms=3, color=colours[str(row)],
                            alpha=1.0 if i == 0 else 0.45, label=str(row) if i == 0 and str(row) not in
                            [str(x) for x in logs] else None)
            ax.set_ylabel("validation mAP (%)")
        else:
            for row, df in logs.items():
                if k in df and "iter" in df:
                    ax.plot(df["iter"], df[k], label=str(row), color=colours[str(row)])
            ax.set_ylabel({"acc": "accuracy (training batch)", "loss": "training loss"}.get(k, k))
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if logs or val:
        handles = {}
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), loc="outside right center", frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def curves_figure(curves: pd.DataFrame, x: str = "iteration", y: str = "mean IoU", by: str = "setting",
                  levels: Optional[pd.DataFrame] = None, ylabel: str = "", title: str = ""):
    """``y`` against ``x``, one line per value of ``by`` (long-format ``curves``), with reference
    ``levels`` (rows: name, column ``y``) as labelled horizontal lines."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, df in curves.groupby(by, sort=False):
        df = df.sort_values(x)
        ax.plot(df[x], df[y], marker="o", label=str(name))
    if levels is not None and y in levels:
        # every level its own line: grey shades and dash patterns, cycled (never dropped)
        styles = (":", "--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)))
        greys = ("#24292f", "#57606a", "#8c959f")
        for i, (name, lv) in enumerate(levels[y].items()):
            ax.axhline(lv, color=greys[i % len(greys)], ls=styles[i % len(styles)], lw=1.2, label=str(name))
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def show_table(df: pd.DataFrame, precision: int = 1):
    """``df`` for display: every cell's full text (no "..."), no index column, numbers rounded."""
    return df.style.hide(axis="index").format(precision=precision, na_rep="")
