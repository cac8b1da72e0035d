"""``stats``: the 95% CI is ``1.96 * sd / sqrt(n)`` with the sample sd, and ``summarize`` groups.

Each value below is worked out by hand (or with the formula written out), not by calling the
code under test twice.
"""
import math

import numpy as np
import pandas as pd
import pytest

from maml_probe.stats import mean_ci95, summarize


def test_mean_ci95_is_1_96_sample_sd_over_root_n():
    """Catches: the population sd (ddof=0), dividing by n instead of sqrt(n), a t-quantile, 2*sd."""
    values = [1.0, 2.0, 3.0, 4.0]          # mean 2.5, sample variance 5/3
    mean, ci = mean_ci95(values)
    assert mean == 2.5
    assert ci == pytest.approx(1.96 * math.sqrt(5 / 3) / 2, rel=1e-4)
    rng = np.random.default_rng(0)
    v = rng.normal(0.6, 0.1, size=600)
    mean, ci = mean_ci95(v)
    sd = math.sqrt(sum((x - v.mean()) ** 2 for x in v) / (len(v) - 1))
    assert mean == pytest.approx(float(v.mean()), abs=1e-12)
    assert ci == pytest.approx(1.96 * sd / math.sqrt(600), rel=1e-4)


def test_mean_ci95_edge_cases():
    """Catches: a CI of 0 (or an error) for a single value, silently returning nan for no values."""
    mean, ci = mean_ci95([0.7])
    assert mean == 0.7 and math.isnan(ci)
    assert mean_ci95(np.array([0.3, 0.3, 0.3])) == (0.3, 0.0)
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci95([])


def test_summarize_one_row_per_group_with_hand_computed_statistics():
    """Catches: groups mixed up or sorted (tables keep the methods' order), std with ddof=0, ``n`` counting all rows."""
    df = pd.DataFrame({"method": ["B", "B", "A", "A", "A"], "phase": ["post"] * 5,
                       "accuracy": [0.5, 0.9, 0.2, 0.4, 0.6]})
    s = summarize(df, ["method", "phase"])
    assert list(s.columns) == ["method", "phase", "accuracy", "ci95", "std", "n"]
    assert list(s["method"]) == ["B", "A"] and list(s["n"]) == [2, 3]  # first-seen order
    b, a = s.iloc[0], s.iloc[1]
    assert a["accuracy"] == pytest.approx(0.4) and a["std"] == pytest.approx(0.2)
    assert a["ci95"] == pytest.approx(1.96 * 0.2 / math.sqrt(3), rel=1e-4)
    assert b["accuracy"] == pytest.approx(0.7) and b["std"] == pytest.approx(math.sqrt(0.08))
    one = summarize(df.iloc[:1], ["method"])
    assert one["n"].iloc[0] == 1 and math.isnan(one["ci95"].iloc[0]) and math.isnan(one["std"].iloc[0])
