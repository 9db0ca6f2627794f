"""Figures and tables of results: every row's metric with its interval, the forest plot of the
claims, and tables rendered for reading (full text, no index column).

Object-oriented matplotlib only (``matplotlib.figure.Figure``, no ``pyplot`` state).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

__all__ = ["intervals_figure", "forest_figure", "learning_curves_figure", "curves_figure", "show_table",
           "VERDICT_COLOURS"]

VERDICT_COLOURS = {"holds": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#6e7781",
                   "not measured": "#d0d7de"}


def intervals_figure(table: pd.DataFrame, metrics=("mAP", "R1"), paper: Optional[Mapping[Any, Mapping]] = None,
                     title: str = "", row_label: str = "", levels: Optional[pd.DataFrame] = None):
    """One panel per metric: each row's value (dot) with its 95% interval (``<metric>_low`` /
    ``<metric>_high`` columns), and the paper's number for the same row as a hollow diamond on
    the panel's top axis (real data: another scale, for orientation only). ``levels``: reference
    levels to read the rows against (:meth:`reidlib.study.Study.reference_levels`: an untrained
    network, the stand-in before fine-tuning), drawn as labelled vertical lines."""
    from matplotlib.figure import Figure

    rows = [str(r) for r in table.index]
    y = np.arange(len(rows))[::-1]
    fig = Figure(figsize=(4.2 * len(metrics), 0.45 * len(rows) + 1.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        val = table[m].to_numpy(float)
        lo = table.get(f"{m}_low", table[m]).to_numpy(float)
        hi = table.get(f"{m}_high", table[m]).to_numpy(float)
        ax.errorbar(val, y, xerr=[val - lo, hi - val], fmt="o", color="#0969da", ecolor="#0969da", capsize=3,
                    label="ours (95% interval)")
        if levels is not None and m in levels:
            for (name, lv), style in zip(levels[m].items(), (":", "--", "-.")):
                ax.axvline(lv, color="#57606a", ls=style, lw=1, label=name)
        ax.set_yticks(y, rows if ax is axes[0] else [""] * len(rows))
        ax.set_xlabel(f"{m} (%), ours")
        ax.grid(axis="x", alpha=0.3)
        if paper:
            pv = np.array([paper.get(_key(r), {}).get(m, np.nan) for r in table.index], float)
            if np.isfinite(pv).any():
                top = ax.twiny()
                top.plot(pv, y, "D", mfc="none", color="#bc4c00", label="paper")
                top.set_xlabel(f"{m} (%), paper (real data)", color="#bc4c00")
                top.tick_params(axis="x", colors="#bc4c00")
                finite = pv[np.isfinite(pv)]
                pad = max(0.5, (finite.max() - finite.min()) * 0.15)
                top.set_xlim(finite.min() - pad, finite.max() + pad)
    if row_label:
        axes[0].set_ylabel(row_label)
    if title:
        fig.suptitle(title)
    handles = [h for ax in fig.axes for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in fig.axes for lab in ax.get_legend_handles_labels()[1]]
    if handles:
        uniq = dict(zip(labels, handles))
        fig.legend(list(uniq.values()), list(uniq.keys()), loc="outside lower center", ncols=len(uniq),
                   frameon=False)
    return fig


def _key(r):
    return int(r) if str(r).isdigit() else r


def forest_figure(verdicts: pd.DataFrame, title: str = "", wrap: int = 48):
    """Every claim's difference with its 95% interval (stated metric), coloured by verdict, with the
    paper's own difference marked (hollow diamond), grouped by paper; 0 is the line the interval
    must clear. ``verdicts``: :func:`reidlib.claims.verdicts.summary_table` (or ``evaluate_claims``) output."""
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    v = verdicts[verdicts["stated"].astype(bool)].reset_index(drop=True)
    groups = list(dict.fromkeys(v["paper"])) if "paper" in v else [""]
    labels, ys, y = [], [], 0.0
    order = []
    for g in groups:
        sel = v[v["paper"] == g] if "paper" in v else v
        order.append((g, y))
        y -= 0.6
        for i, r in sel.iterrows():
            ys.append(y)
            labels.append("\n".join(textwrap.wrap(f"{r['claim']} ({r['metric']})", wrap)))
            order.append((i, y))
            y -= 1.0
        y -= 0.3
    fig = Figure(figsize=(9.0, 0.62 * len(ys) + 0.5 * len(groups) + 1.2), layout="constrained")
    ax = fig.subplots()
    pos = {i: yy for i, yy in order if not isinstance(i, str)}
    for i, r in v.iterrows():
        yy = pos[i]
        col = VERDICT_COLOURS.get(r["verdict"], "#6e7781")
        if np.isfinite(r.get("low", np.nan)):
            ax.errorbar([r["difference"]], [yy], xerr=[[r["difference"] - r["low"]], [r["high"] - r["difference"]]],
                        fmt="o", color=col, ecolor=col, capsize=3)
        else:
            ax.text(0, yy, "not measured", va="center", ha="center", fontsize=8, color=col)
        if np.isfinite(r.get("paper difference", np.nan)):
            ax.plot([r["paper difference"]], [yy], "D", mfc="none", color="#bc4c00")
    for g, yy in order:
        if isinstance(g, str) and g:
            ax.text(0.01, yy, g, transform=ax.get_yaxis_transform(), fontweight="bold", va="center", ha="left")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_ylim(y + 0.3, 0.5)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel("difference in percentage points (claimed direction > 0)")
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in VERDICT_COLOURS.items()
               if k in set(v["verdict"])]
    handles.append(Line2D([], [], marker="D", ls="", mfc="none", color="#bc4c00", label="paper (real data)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    if title:
        ax.set_title(title)
    return fig


def learning_curves_figure(logs: Mapping[Any, pd.DataFrame], keys=("loss", "acc"), title: str = ""):
    """Training curves, one panel per logged quantity (``keys`` present in the logs), one line per
    row of the table: did every model learn? (:meth:`reidlib.study.Results.logs`)."""
    from matplotlib.figure import Figure

    keys = [k for k in keys if any(k in df for df in logs.values())]
    fig = Figure(figsize=(4.2 * max(1, len(keys)), 3.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
    for ax, k in zip(axes, keys):
        for row, df in logs.items():
            if k in df and "iter" in df:
                ax.plot(df["iter"], df[k], label=str(row))
        ax.set_xlabel("iteration")
        ax.set_ylabel({"acc": "ID accuracy (training batch)", "loss": "training loss"}.get(k, k))
        ax.grid(alpha=0.3)
    if logs:
        h, lab = axes[0].get_legend_handles_labels()
        fig.legend(h, lab, loc="outside right center", frameon=False, fontsize=8)
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
        for (name, lv), style in zip(levels[y].items(), (":", "--", "-.", (0, (1, 3)))):
            ax.axhline(lv, color="#57606a", ls=style, lw=1, label=str(name))
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
