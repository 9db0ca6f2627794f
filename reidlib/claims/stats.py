"""Uncertainty for comparisons of models evaluated on the same test set: paired bootstrap
intervals and three-valued verdicts.

The unit of resampling is the *query* (for mask tables, the image); a model's result on a test set
is an array ``values[seed, unit]`` (per-query AP, a 0/1 rank-1 hit, a per-image IoU ...), with
``NaN`` for units where the metric is undefined (a query without a true match). Two models are
compared on the same units, *paired*: every bootstrap resample draws one set of units (and, with
several seeds, first one set of seeds) and recomputes both models' statistics on it, so the
interval is that of the *difference* and reflects how much it depends on which queries (and which
training runs) happened to be drawn.

Verdict rule (:func:`verdict`), stated once and used everywhere:

* ``holds``: the 95% interval of the claimed quantity lies entirely on the claimed side of the
  threshold (a difference: above 0);
* ``contradicted``: it lies entirely on the other side;
* ``inconclusive``: it contains the threshold.

A claim made of several comparisons ("n = 5 is best": 5 beats 2, 3, 4 and 6) holds when all of
them hold, is contradicted when any of them is, and is inconclusive otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["Interval", "bootstrap_interval", "paired_bootstrap", "contrast", "verdict", "combine_verdicts",
           "per_row_intervals", "mean_statistic", "VERDICTS", "DEFAULT_RESAMPLES"]

VERDICTS = ("holds", "contradicted", "inconclusive")
DEFAULT_RESAMPLES = 2000

#: ``statistic(values [seeds, units], seed_idx, unit_idx) -> float``
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
    units: int = 0            #: queries (or images) resampled

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "resamples": self.resamples, "bootstrap_seed": self.seed, "seeds": self.seeds, "units": self.units}


def mean_statistic(values: np.ndarray, seed_idx: np.ndarray, unit_idx: np.ndarray) -> float:
    """The mean over the drawn seeds and units, ignoring undefined (NaN) entries."""
    return float(np.nanmean(values[np.ix_(seed_idx, unit_idx)]))


def _as_2d(values) -> np.ndarray:
    """``[units]`` -> ``[1, units]``; ``[seeds, units, ...]`` as is (trailing axes belong to a unit)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim < 2:
        raise ValueError(f"values must be [units] or [seeds, units, ...], got shape {v.shape}")
    return v


def _draws(n_seeds: int, n_units: int, resamples: int, seed: int):
    """``resamples`` pairs (seed indices, unit indices): seeds first, then units (with replacement).
    With a single seed, the seed index is always 0."""
    rng = np.random.default_rng(seed)
    for _ in range(int(resamples)):
        s = rng.integers(0, n_seeds, n_seeds) if n_seeds > 1 else np.zeros(1, np.int64)
        u = rng.integers(0, n_units, n_units)
        yield s, u


def paired_bootstrap(a, b=None, *, statistic: Statistic = mean_statistic, resamples: int = DEFAULT_RESAMPLES,
                     level: float = 0.95, seed: int = 0) -> Interval:
    """Interval of ``statistic(a) - statistic(b)`` (or of ``statistic(a)`` when ``b`` is None).

    ``a``, ``b``: ``[units]`` or ``[seeds, units]`` arrays on the *same* units (the same queries in
    the same order; the same number of seeds). Each resample draws seeds (when there are several),
    then units, and applies the same draw to both. Percentile interval at ``level``.
    """
    va = _as_2d(a)
    vb = None if b is None else _as_2d(b)
    if vb is not None and vb.shape != va.shape:
        raise ValueError(f"paired values must have the same shape, got {va.shape} and {vb.shape}")
    n_seeds, n_units = va.shape[:2]
    if n_units == 0:
        raise ValueError("no units to resample")
    all_s, all_u = np.arange(n_seeds), np.arange(n_units)

    def stat(s, u):
        x = statistic(va, s, u)
        return x if vb is None else x - statistic(vb, s, u)

    est = stat(all_s, all_u)
    if statistic is mean_statistic:   # the same draws, vectorised over resamples
        diff = va if vb is None else va - vb
        boots = _mean_boots(diff, _draws(n_seeds, n_units, resamples, seed))
    else:
        boots = np.array([stat(s, u) for s, u in _draws(n_seeds, n_units, resamples, seed)], dtype=np.float64)
    boots = boots[np.isfinite(boots)]
    if len(boots) == 0:
        lo = hi = float("nan")
    else:
        lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(float(est), float(lo), float(hi), level, int(resamples), int(seed), n_seeds, n_units)


def _mean_boots(v: np.ndarray, draws, block: int = 64) -> np.ndarray:
    """:func:`mean_statistic` of every draw on ``v [seeds, units, ...]``, ``block`` draws at a time.
    (For a paired difference of means this is the mean of the per-unit differences, which equals
    the difference of the two means wherever both are defined on the same units.)"""
    out = []
    batch = []
    for d in draws:
        batch.append(d)
        if len(batch) == block:
            out.append(_block_means(v, batch))
            batch = []
    if batch:
        out.append(_block_means(v, batch))
    return np.concatenate(out) if out else np.zeros(0)


def _block_means(v: np.ndarray, batch) -> np.ndarray:
    s = np.stack([d[0] for d in batch])                       # [B, S']
    u = np.stack([d[1] for d in batch])                       # [B, U]
    x = v[s[:, :, None], u[:, None, :]]                       # [B, S', U, ...]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(x.reshape(len(batch), -1), axis=1)


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
    """A conjunction of comparisons: holds if all hold, contradicted if any is, else inconclusive."""
    verdicts = list(verdicts)
    if not verdicts:
        return "inconclusive"
    if any(v == "contradicted" for v in verdicts):
        return "contradicted"
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "inconclusive"


def per_row_intervals(rows: Mapping[object, np.ndarray], statistic: Statistic = mean_statistic,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                      scale: float = 1.0) -> dict[object, Interval]:
    """Each row's own interval (for the dot-and-error-bar figures); ``scale`` multiplies (e.g. 100 for %)."""
    out = {}
    for r, v in rows.items():
        iv = bootstrap_interval(v, statistic=statistic, resamples=resamples, seed=seed)
        out[r] = Interval(iv.estimate * scale, iv.low * scale, iv.high * scale, iv.level, iv.resamples, iv.seed,
                          iv.seeds, iv.units)
    return out

