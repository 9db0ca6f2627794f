"""Uncertainty for comparisons of models evaluated on the same test set: paired *cluster* bootstrap
intervals, the power of the design, the verdict rule with its multiplicity correction, and rank
agreement.

A model's result on a test set is an array ``values[seed, unit]`` (per-query AP, a 0/1 rank-1
hit, a per-image IoU ...), with ``NaN`` for units where the metric is undefined (a query without a
true match). Units are not independent: the queries of one vehicle share its gallery images (566
VeRi-layout queries come from 100 identities; a VehicleID protocol repeats the same identities in
each of its 10 trials). So a resample draws *clusters* (``groups``: one label per unit, e.g. the
query's vehicle identity) with replacement, and every unit of a drawn cluster, in every trial,
comes along; with several training seeds, each resample first draws the seeds. Without ``groups``
every unit is its own cluster (the query-level bootstrap). Two models are compared *paired*: one
draw per resample, applied to both.

Verdict rule (:func:`verdict`, :func:`claim_verdict`), stated once and used everywhere:

* ``holds``: the 95% interval of the claimed quantity lies entirely on the claimed side of the
  threshold (a difference: above 0);
* ``contradicted``: it lies entirely on the other side;
* ``inconclusive``: it contains the threshold;
* ``not tested here``: a precondition of the claim failed (decided by :mod:`.verdicts`, not here).

A claim made of k comparisons ("n = 5 is best": 5 beats 2, 3, 4 and 6) holds when all of them hold
(an intersection-union test: no correction needed) and is contradicted when any of them is — a
union of k one-sided tests, corrected with Holm's step-down procedure (:func:`claim_verdict`).

Power (:func:`minimum_detectable`): with bootstrap standard error SE, the smallest true difference
the design would call "holds" with probability ``power`` is ``(z_(1-α/2) + z_power) × SE``
(≈ 2.8 SE at 95% and 80%).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

__all__ = ["Interval", "bootstrap_interval", "paired_bootstrap", "resample_statistics", "contrast", "verdict",
           "combine_verdicts", "claim_verdict", "minimum_detectable", "detection_power", "kendall_tau",
           "rank_agreement", "cluster_codes", "per_row_intervals", "mean_statistic", "part_mean_statistic",
           "VERDICTS", "DEFAULT_RESAMPLES", "DEFAULT_POWER"]

VERDICTS = ("holds", "contradicted", "inconclusive", "not tested here")
DEFAULT_RESAMPLES = 2000
DEFAULT_POWER = 0.8
_BLOCK = 128                     # resamples computed at a time

#: ``statistic(values [seeds, units, ...], seed_idx, unit_idx) -> float``
Statistic = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval, and how it was obtained."""

    estimate: float
    low: float
    high: float
    level: float = 0.95
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0             #: the bootstrap's own random seed
    seeds: int = 1            #: training seeds inside the interval (1: training noise not included)
    units: int = 0            #: queries (or images)
    clusters: int = 0         #: clusters resampled (identities; = units for a query-level bootstrap)
    unit: str = "query"       #: what one resampled cluster is ("vehicle identity", "query", "image")
    se: float = float("nan")  #: the bootstrap standard error (standard deviation of the resampled values)
    boots: Optional[np.ndarray] = field(default=None, compare=False, repr=False)   #: the resampled values

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the resampled values (NaN without them)."""
        b = None if self.boots is None else self.boots[np.isfinite(self.boots)]
        return float(np.quantile(b, q)) if b is not None and len(b) else float("nan")

    def detectable(self, power: float = DEFAULT_POWER) -> float:
        """:func:`minimum_detectable` at this interval's level and standard error."""
        return minimum_detectable(self.se, self.level, power)

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "resamples": self.resamples, "bootstrap_seed": self.seed, "seeds": self.seeds, "units": self.units,
                "clusters": self.clusters, "unit": self.unit, "se": self.se}


# ------------------------------------------------------------------------------------------------
# statistics and resampling
# ------------------------------------------------------------------------------------------------

def mean_statistic(values: np.ndarray, seed_idx: np.ndarray, unit_idx: np.ndarray) -> float:
    """The mean over the drawn seeds and units, ignoring undefined (NaN) entries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values[np.ix_(seed_idx, unit_idx)]))


def part_mean_statistic(values: np.ndarray, seed_idx: np.ndarray, unit_idx: np.ndarray) -> float:
    """For ``values [seeds, units, parts]``: per part, the mean over the drawn units where the part
    is defined; then the mean over parts (the mask tables' "mean IoU")."""
    v = values[seed_idx][:, unit_idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(np.nanmean(v.reshape(-1, v.shape[-1]), axis=0)))


def _as_2d(values) -> np.ndarray:
    """``[units]`` -> ``[1, units]``; ``[seeds, units, ...]`` as is (trailing axes belong to a unit)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim < 2:
        raise ValueError(f"values must be [units] or [seeds, units, ...], got shape {v.shape}")
    return v


def cluster_codes(groups, n_units: int) -> np.ndarray:
    """``0 .. G-1`` per unit: the index of its cluster (``groups=None``: every unit its own)."""
    if groups is None:
        return np.arange(n_units)
    g = np.asarray(groups).ravel()
    if len(g) != n_units:
        raise ValueError(f"{len(g)} cluster labels for {n_units} units")
    return np.unique(g, return_inverse=True)[1].ravel()


def _weight_blocks(n_seeds: int, codes: np.ndarray, resamples: int, seed: int) -> Iterator[tuple]:
    """Blocks of draws as counts: ``W [b, seeds]`` (how often each seed was drawn) and ``V [b, units]``
    (how often each unit's cluster was drawn). Seeds first (with one seed, always it), then clusters,
    with replacement (for ``codes = arange(units)`` the draws of a query-level bootstrap)."""
    rng = np.random.default_rng(seed)
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    for start in range(0, int(resamples), _BLOCK):
        b = min(_BLOCK, int(resamples) - start)
        w, v = np.empty((b, n_seeds)), np.empty((b, len(codes)))
        for i in range(b):
            s = rng.integers(0, n_seeds, n_seeds) if n_seeds > 1 else np.zeros(1, np.int64)
            w[i] = np.bincount(s, minlength=n_seeds)
            v[i] = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)[codes]
        yield w, v


def _weighted_sums(v: np.ndarray, w: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sums, counts)``, each ``[b, channels]``: for each draw, the weighted sum and number of the
    finite entries of each trailing channel (one channel when there is no trailing axis)."""
    s, n = v.shape[:2]
    x = v.reshape(s, n, -1)
    fin = np.isfinite(x)
    sums = np.einsum("bs,suc->buc", w, np.where(fin, x, 0.0))
    counts = np.einsum("bs,suc->buc", w, fin.astype(np.float64))
    return np.einsum("buc,bu->bc", sums, u), np.einsum("buc,bu->bc", counts, u)


def _draw_values(v: np.ndarray, statistic: Statistic, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``statistic`` of ``v`` on each draw of a block (the two mean statistics as weighted sums, any
    other by calling it on the drawn indices)."""
    if statistic is mean_statistic or statistic is part_mean_statistic:
        sums, counts = _weighted_sums(v, w, u)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if statistic is mean_statistic:
                return sums.sum(axis=1) / counts.sum(axis=1)
            return np.nanmean(sums / counts, axis=1)
    seeds, units = np.arange(v.shape[0]), np.arange(v.shape[1])
    return np.array([statistic(v, np.repeat(seeds, wi.astype(int)), np.repeat(units, ui.astype(int)))
                     for wi, ui in zip(w, u)], dtype=np.float64)


def resample_statistics(arrays: Sequence, statistic: Statistic = mean_statistic, *, groups=None,
                        resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``statistic`` of each of ``arrays`` (``[units]`` or ``[seeds, units, ...]``, the same seeds and
    units) on all the data (``[k]``) and on each of ``resamples`` draws shared by all of them
    (``[resamples, k]``): seeds first, then the clusters of ``groups`` (one label per unit; ``None``:
    every unit its own), with replacement."""
    vs = [_as_2d(a) for a in arrays]
    if not vs:
        raise ValueError("nothing to resample")
    if any(v.shape[:2] != vs[0].shape[:2] for v in vs):
        raise ValueError(f"paired values must have the same seeds and units, got {[v.shape for v in vs]}")
    n_seeds, n_units = vs[0].shape[:2]
    if n_units == 0:
        raise ValueError("no units to resample")
    codes = cluster_codes(groups, n_units)
    est = np.array([statistic(v, np.arange(n_seeds), np.arange(n_units)) for v in vs], dtype=np.float64)
    boots = [np.stack([_draw_values(v, statistic, w, u) for v in vs], axis=1)
             for w, u in _weight_blocks(n_seeds, codes, resamples, seed)]
    return est, (np.concatenate(boots) if boots else np.zeros((0, len(vs))))


def _interval(estimate: float, boots: np.ndarray, level: float, resamples: int, seed: int, n_seeds: int,
              n_units: int, n_clusters: int, unit: str) -> Interval:
    fin = boots[np.isfinite(boots)]
    if len(fin) == 0:
        lo = hi = float("nan")
    else:
        lo, hi = np.quantile(fin, [(1 - level) / 2, 1 - (1 - level) / 2])
    se = float(np.std(fin, ddof=1)) if len(fin) > 1 else float("nan")
    return Interval(float(estimate), float(lo), float(hi), level, int(resamples), int(seed), n_seeds, n_units,
                    n_clusters, unit, se, boots)


def _unit(groups, unit: Optional[str]) -> str:
    return unit or ("query" if groups is None else "cluster")


def paired_bootstrap(a, b=None, *, statistic: Statistic = mean_statistic, resamples: int = DEFAULT_RESAMPLES,
                     level: float = 0.95, seed: int = 0, groups=None, unit: Optional[str] = None) -> Interval:
    """Interval of ``statistic(a) - statistic(b)`` (or of ``statistic(a)`` when ``b`` is None).

    ``a``, ``b``: ``[units]`` or ``[seeds, units, ...]`` arrays on the *same* units (the same queries
    in the same order; the same number of seeds). ``groups``: the cluster of each unit (e.g. its
    vehicle identity; ``None``: units resampled one by one); ``unit``: what a cluster is, for the
    record. Each resample draws seeds (when there are several), then clusters, and applies the same
    draw to both. Percentile interval at ``level``; ``se``: the standard deviation of the resampled
    values. (For the mean, a resample's paired difference is the mean of the per-unit differences,
    which equals the difference of the two means wherever both are defined on the same units.)"""
    va = _as_2d(a)
    vb = None if b is None else _as_2d(b)
    if vb is not None and vb.shape != va.shape:
        raise ValueError(f"paired values must have the same shape, got {va.shape} and {vb.shape}")
    n_seeds, n_units = va.shape[:2]
    kw = dict(groups=groups, resamples=resamples, seed=seed)
    if vb is None:
        est, boots = resample_statistics([va], statistic, **kw)
        est, boots = est[0], boots[:, 0]
    elif statistic is mean_statistic:      # the mean of the per-unit differences, resampled
        est = statistic(va, np.arange(n_seeds), np.arange(n_units)) - statistic(vb, np.arange(n_seeds),
                                                                              np.arange(n_units))
        boots = resample_statistics([va - vb], statistic, **kw)[1][:, 0]
    else:
        est2, boots2 = resample_statistics([va, vb], statistic, **kw)
        est, boots = est2[0] - est2[1], boots2[:, 0] - boots2[:, 1]
    n_clusters = int(cluster_codes(groups, n_units).max()) + 1
    return _interval(est, boots, level, resamples, seed, n_seeds, n_units, n_clusters, _unit(groups, unit))


def bootstrap_interval(values, **kwargs) -> Interval:
    """Interval of one model's statistic (default: the mean) over its units (and seeds)."""
    return paired_bootstrap(values, None, **kwargs)


def contrast(rows: Mapping[object, np.ndarray], weights: Mapping[object, float]) -> np.ndarray:
    """Per-unit linear contrast ``sum_r w_r values_r`` of rows evaluated on the same units, e.g.
    ``{"A": 1, "B": -1}`` (A minus B) or ``{4: 1/3, 5: 1/3, 6: 1/3, 2: -1/2, 3: -1/2}``."""
    out = None
    for r, w in weights.items():
        v = _as_2d(rows[r]) * float(w)
        out = v if out is None else out + v
    if out is None:
        raise ValueError("empty contrast")
    return out


# ------------------------------------------------------------------------------------------------
# verdicts, multiplicity and power
# ------------------------------------------------------------------------------------------------

def verdict(interval: Interval, threshold: float = 0.0) -> str:
    """``holds`` / ``contradicted`` / ``inconclusive`` for the claim "the quantity exceeds
    ``threshold``" (see the module docstring)."""
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        return "inconclusive"
    if interval.low > threshold:
        return "holds"
    if interval.high < threshold:
        return "contradicted"
    return "inconclusive"


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """A conjunction of comparisons, uncorrected: holds if all hold, contradicted if any is, else
    inconclusive (:func:`claim_verdict` is the corrected rule the claims use)."""
    verdicts = list(verdicts)
    if not verdicts:
        return "inconclusive"
    if any(v == "contradicted" for v in verdicts):
        return "contradicted"
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "inconclusive"


def _holm_contradicted(intervals: Sequence[Interval], threshold: float) -> list[int]:
    """The comparisons Holm's step-down procedure declares below ``threshold``: ordered by the share
    of resampled values at or above the threshold (the one-sided bootstrap p-value), the j-th
    (0-based) of k is contradicted when the upper ``1 - α/(k - j)`` quantile of its resampled values
    lies below the threshold (α: the one-sided level of the interval, 2.5% at 95%); the procedure
    stops at the first that is not. For k = 1 this is the interval's own rule."""
    k = len(intervals)
    if k == 1:
        return [0] if verdict(intervals[0], threshold) == "contradicted" else []
    p = []
    for iv in intervals:
        b = iv.boots[np.isfinite(iv.boots)]
        p.append(float(np.mean(b >= threshold)) if len(b) else 1.0)
    out = []
    for j, i in enumerate(np.argsort(p, kind="stable")):
        iv = intervals[i]
        alpha = (1 - iv.level) / 2
        if iv.high < threshold and iv.quantile(1 - alpha / (k - j)) < threshold:
            out.append(int(i))
        else:
            break
    return out


def claim_verdict(intervals: Sequence[Interval], threshold: float = 0.0) -> tuple[str, int, str]:
    """The verdict of a claim made of the comparisons ``intervals`` (each must exceed ``threshold``):
    ``holds`` when every interval lies above it (intersection-union: no correction); ``contradicted``
    when Holm's procedure over the k one-sided tests finds any below it; else ``inconclusive``.
    Returns ``(verdict, index of the deciding comparison, correction)``: the first contradicted
    comparison, else the one with the lowest lower bound; ``correction`` names the correction
    ("Holm over 4 comparisons"; "" for one comparison, or "uncorrected" for intervals without their
    resampled values)."""
    k = len(intervals)
    if k == 0:
        return "inconclusive", -1, ""
    weakest = int(np.argmin([iv.low - threshold if np.isfinite(iv.low) else -np.inf for iv in intervals]))
    singles = [verdict(iv, threshold) for iv in intervals]
    if all(v == "holds" for v in singles):
        return "holds", weakest, ""
    if k > 1 and any(iv.boots is None for iv in intervals):
        v = combine_verdicts(singles)
        return v, (singles.index("contradicted") if v == "contradicted" else weakest), "uncorrected"
    correction = f"Holm over {k} comparisons" if k > 1 else ""
    below = _holm_contradicted(intervals, threshold)
    if below:
        return "contradicted", below[0], correction
    return "inconclusive", weakest, correction


def _z(q: float) -> float:
    return NormalDist().inv_cdf(q)


def minimum_detectable(se: float, level: float = 0.95, power: float = DEFAULT_POWER) -> float:
    """The smallest true difference that the rule "holds when the ``level`` interval lies above 0"
    detects with probability ``power``, for an estimate with standard error ``se``:
    ``(z_(1-α/2) + z_power) × se`` (α = 1 - level; ≈ 2.80 SE at 95% and 80%)."""
    return float((_z(1 - (1 - level) / 2) + _z(power)) * se)


def detection_power(effect: float, se: float, level: float = 0.95) -> float:
    """The probability that a true difference ``effect`` is found to hold (normal approximation):
    ``Φ(effect / se - z_(1-α/2))``."""
    return float(NormalDist().cdf(effect / se - _z(1 - (1 - level) / 2)))


# ------------------------------------------------------------------------------------------------
# rank agreement
# ------------------------------------------------------------------------------------------------

def kendall_tau(x, y) -> np.ndarray | float:
    """Kendall's τ-b between ``x`` (``[n]``, or ``[draws, n]`` for one τ per draw) and ``y`` (``[n]``):
    (concordant - discordant pairs) / sqrt(pairs untied in x × pairs untied in y); NaN when either
    is constant."""
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64).ravel()
    i, j = np.triu_indices(len(y), 1)
    dx, dy = np.sign(x2[:, i] - x2[:, j]), np.sign(y[i] - y[j])
    den = np.sqrt((dx != 0).sum(axis=1) * float((dy != 0).sum()))
    with np.errstate(all="ignore"):
        tau = np.where(den > 0, (dx * dy).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)
    return float(tau[0]) if np.ndim(x) == 1 else tau


def rank_agreement(rows: Sequence, reference: Sequence[float], *, statistic: Statistic = mean_statistic,
                   groups=None, resamples: int = DEFAULT_RESAMPLES, level: float = 0.95, seed: int = 0,
                   unit: Optional[str] = None) -> Interval:
    """Kendall's τ between the ordering of ``rows`` (each ``[seeds, units, ...]`` on the same units)
    by ``statistic`` and the ordering of ``reference`` (e.g. the paper's numbers of the same rows),
    with its bootstrap interval: the rows' statistics recomputed on the same draws of seeds and
    clusters (``groups``) as every other interval."""
    est, boots = resample_statistics(rows, statistic, groups=groups, resamples=resamples, seed=seed)
    vs = _as_2d(rows[0])
    taus = kendall_tau(boots, reference) if len(boots) else np.zeros(0)
    n_clusters = int(cluster_codes(groups, vs.shape[1]).max()) + 1
    return _interval(kendall_tau(est, reference), np.asarray(taus), level, resamples, seed, vs.shape[0],
                     vs.shape[1], n_clusters, _unit(groups, unit))


def per_row_intervals(rows: Mapping[object, np.ndarray], statistic: Statistic = mean_statistic,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0, scale: float = 1.0,
                      groups=None, unit: Optional[str] = None) -> dict[object, Interval]:
    """Each row's own interval (for the dot-and-error-bar figures); ``scale`` multiplies (e.g. 100 for %)."""
    from dataclasses import replace

    out = {}
    for r, v in rows.items():
        iv = bootstrap_interval(v, statistic=statistic, resamples=resamples, seed=seed, groups=groups, unit=unit)
        out[r] = replace(iv, estimate=iv.estimate * scale, low=iv.low * scale, high=iv.high * scale,
                         se=iv.se * scale, boots=None if iv.boots is None else iv.boots * scale)
    return out
