"""Summary statistics for per-task accuracies: mean and 95% confidence interval."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

Z95 = 1.959963984540054


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the normal-approximation 95% CI, ``1.96 * sd / sqrt(n)``.

    ``sd`` is the sample standard deviation (``ddof=1``); one value gives a CI of ``nan``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    if v.size == 1:
        return float(v[0]), math.nan
    return float(v.mean()), float(Z95 * v.std(ddof=1) / math.sqrt(v.size))


def summarize(df: pd.DataFrame, by: Sequence[str], value: str = "accuracy") -> pd.DataFrame:
    """Tidy summary: one row per group of ``by`` with ``value`` (mean), ``ci95``, ``std``, ``n``."""
    rows = []
    for key, group in df.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, ci = mean_ci95(group[value].to_numpy())
        rows.append({**dict(zip(by, key)), value: mean, "ci95": ci,
                     "std": float(group[value].std(ddof=1)) if len(group) > 1 else math.nan,
                     "n": len(group)})
    return pd.DataFrame(rows)
