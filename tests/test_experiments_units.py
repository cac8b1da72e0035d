"""Small public helpers of the experiments and the synthetic tasks, each against a known answer.

* ``e8.threshold_grid``: the E10 sweep's thresholds (0, the target, a log grid up to 4x);
* ``e11_compute.time_meta_step``: what it times and how it reduces (a scripted clock, no real
  timing: speed is measured in ``benchmarks/``, never asserted in a test);
* ``one_step_ceiling``: 1.0 in one dimension, 3/4 for one point in two dimensions;
* ``SyntheticBinaryTasks``: labels ``y = 1[w . x > 0]`` for one ``w`` per task.
"""
import math
import statistics
import types

import numpy as np
import pytest
import torch

from maml_probe.experiments import e11_compute
from maml_probe.experiments.e8_cholesky_pruning import threshold_grid
from maml_probe.experiments.settings import image_config
from maml_probe.tasks.synthetic import SyntheticBinaryTasks, one_step_ceiling


# ---------------------------------------------------------------- E8 / E10 threshold grid
@pytest.mark.parametrize("target,points", [(0.3, 9), (0.075, 5), (2.0, 17)])
def test_threshold_grid_is_zero_the_target_and_a_geometric_grid_to_four_times_it(target, points):
    """Catches: a linear grid, a grid that misses the target (the E8 row reads the sweep at it),
    no 0 (the unpruned reference), unsorted or duplicated thresholds, the wrong end points."""
    grid = threshold_grid(target, points)
    assert grid == sorted(set(grid)) and grid[0] == 0.0 and target in grid
    log = [t for t in grid if t > 0 and not math.isclose(t, target)]
    assert len(log) == points
    assert log[0] == pytest.approx(target / 8) and log[-1] == pytest.approx(4 * target)
    ratios = np.diff(np.log(log))
    assert np.allclose(ratios, math.log(32) / (points - 1))      # evenly spaced in log


# ---------------------------------------------------------------- E11 timing
def test_time_meta_step_is_the_median_after_a_warm_up_of_one_meta_gradient_step(monkeypatch):
    """Catches: the warm-up step counted, a mean instead of the median, gradients accumulating
    across the timed steps (no zero_grad), a batch that is not the config's episode."""
    cfg = image_config("omniglot", "scnn", "kfc", "smoke", device="cpu").replace(
        ways=3, shots=2, queries=4, meta_batch=2, steps=3)
    ticks = {"now": 0.0}
    steps_taken = [50.0, 4.0, 1.0, 2.0, 9.0]          # warm-up, then four timed steps
    seen = []

    def fake_meta_backward(model, rule, batch, *, steps, first_order, **options):
        assert all(p.grad is None for p in [*model.parameters(), *rule.parameters()])
        for p in [*model.parameters(), *rule.parameters()]:
            p.grad = torch.ones_like(p)            # what a real step leaves behind
        seen.append((batch, steps, first_order))
        ticks["now"] += steps_taken[len(seen) - 1]

    monkeypatch.setattr(e11_compute, "meta_backward", fake_meta_backward)
    monkeypatch.setattr(e11_compute, "time", types.SimpleNamespace(perf_counter=lambda: ticks["now"]))
    result = e11_compute.time_meta_step(cfg, repeats=4)
    assert result == statistics.median([4.0, 1.0, 2.0, 9.0]) == 3.0
    assert len(seen) == 5
    batch, steps, first_order = seen[0]
    assert (steps, first_order) == (3, False)
    assert batch.support_x.shape == (2, 3 * 2, 1, 28, 28) and batch.query_x.shape == (2, 3 * 4, 1, 28, 28)
    for y, per_class in ((batch.support_y, 2), (batch.query_y, 4)):
        assert all(torch.equal(torch.bincount(row, minlength=3), torch.full((3,), per_class)) for row in y)


def test_time_meta_step_runs_a_real_step():
    """The unpatched path on a tiny config returns a number (its size is never asserted)."""
    cfg = image_config("cifarfs", "scnn", "maml", "smoke", device="cpu").replace(meta_batch=1, ways=2)
    seconds = e11_compute.time_meta_step(cfg, repeats=1)
    assert isinstance(seconds, float) and math.isfinite(seconds)


# ---------------------------------------------------------------- synthetic tasks
def test_one_step_ceiling_is_exact_where_the_answer_is_known():
    """d = 1: the sign of ``sum (2 y_i - 1) x_i`` is the sign of ``w`` from any number of points,
    so the ceiling is exactly 1. d = 2, one point: the angle between ``w`` and ``sign(w . x) x``
    is uniform on [0, pi/2], so the expected accuracy ``1 - angle / pi`` is 3/4.
    Catches: a label rule other than ``1[w . x > 0]``, ``1 - angle / (2 pi)``, cos instead of the angle."""
    assert one_step_ceiling(dim=1, support=1, num_tasks=500) == 1.0
    assert one_step_ceiling(dim=1, support=7, num_tasks=500, seed=3) == 1.0
    # 20,000 tasks: the standard error is 0.144 / sqrt(20000) = 0.001
    assert one_step_ceiling(dim=2, support=1, num_tasks=20_000) == pytest.approx(0.75, abs=0.005)
    assert one_step_ceiling(20, 5, 300) < one_step_ceiling(20, 50, 300) < one_step_ceiling(20, 500, 300) < 1


def _separable_through_origin_2d(x: np.ndarray, y: np.ndarray) -> bool:
    """Exact in 2-D: some ``w`` has ``y = 1[w . x > 0]`` iff the unit vectors ``(2y - 1) x / |x|``
    lie in an open half-plane, i.e. their angles leave a gap wider than pi."""
    u = (2 * y - 1)[:, None] * x
    angles = np.sort(np.arctan2(u[:, 1], u[:, 0]))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
    return bool(gaps.max() > np.pi)


def test_synthetic_labels_are_one_w_dot_x_positive_per_task():
    """Catches: labels in {-1, 1}, an offset (``w . x > c``), support and query labelled by
    different directions, labels not belonging to their inputs; and every task its own ``w``."""
    src = SyntheticBinaryTasks(dim=2, support=300, query=300, dtype=torch.float64)
    batch = src.sample(6, torch.Generator().manual_seed(0))
    directions = []
    for t in range(6):
        x = torch.cat([batch.support_x[t], batch.query_x[t]]).numpy()
        y = torch.cat([batch.support_y[t], batch.query_y[t]]).numpy()
        assert set(np.unique(y)) == {0.0, 1.0}
        assert 0.4 < y.mean() < 0.6                         # a boundary through the origin
        assert _separable_through_origin_2d(x, y), t
        directions.append(((2 * y - 1)[:, None] * x).sum(0))
    d = np.array(directions) / np.linalg.norm(directions, axis=1, keepdims=True)
    assert (d @ d.T < 0.5).sum() >= 6        # one w for all tasks would put every pair near 1
    one_d = SyntheticBinaryTasks(dim=1, support=50, query=50).sample(3, torch.Generator().manual_seed(1))
    for t in range(3):
        x, y = one_d.support_x[t, :, 0], one_d.support_y[t]
        assert len(set(y[x > 0].tolist())) == 1 and set(y[x < 0].tolist()) == {1.0 - y[x > 0][0].item()}
    # a wrong rule is caught by the check itself
    x = batch.support_x[0].numpy()
    assert not _separable_through_origin_2d(x, (x[:, 0] + x[:, 1] > 0.5).astype(float))
