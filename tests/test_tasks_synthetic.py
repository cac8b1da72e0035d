"""The synthetic task source's options (Appendix A.1.1) and the one-step ceiling.

* ``labels="pm1"``: the same points as ``"01"``, labels exactly ``sign(w . x)`` in {-1, 1}, fed
  unchanged to the binary cross-entropy (unbounded below for a -1 target);
* ``label_accuracy``: the same accuracy under both encodings;
* the split: ``support`` adaptation and ``query`` held-out points, ``points`` their sum;
* ``one_step_ceiling(points="adaptation")``: exact where the answer is known.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from maml_probe.losses import accuracy, task_loss
from maml_probe.tasks.synthetic import SyntheticBinaryTasks, label_accuracy, one_step_ceiling


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_default_draws_are_unchanged_by_the_options():
    """The default source draws ``w`` then all points from the generator, as it always has.
    Catches: the label option consuming random numbers or reordering the draws (old runs and
    their test tasks would change)."""
    batch = SyntheticBinaryTasks(dim=7, support=3, query=4).sample(2, _gen(5))
    g = _gen(5)
    w = torch.randn(2, 7, 1, generator=g, dtype=torch.float64)
    x = torch.randn(2, 7, 7, generator=g, dtype=torch.float64)
    y = ((x @ w).squeeze(-1) > 0).float()
    assert torch.equal(batch.support_x, x[:, :3].float()) and torch.equal(batch.query_x, x[:, 3:].float())
    assert torch.equal(batch.support_y, y[:, :3]) and torch.equal(batch.query_y, y[:, 3:])


def test_pm1_labels_are_minus_one_and_one_for_the_same_points():
    """Catches: pm1 still giving {0, 1}, labels flipped (``1 - 2 y``), other points drawn."""
    a = SyntheticBinaryTasks(dim=5, support=40, query=60).sample(3, _gen(1))
    b = SyntheticBinaryTasks(dim=5, support=40, query=60, labels="pm1").sample(3, _gen(1))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    for y01, ypm in ((a.support_y, b.support_y), (a.query_y, b.query_y)):
        assert set(ypm.unique().tolist()) == {-1.0, 1.0}
        assert torch.equal(ypm, 2 * y01 - 1)
        assert ypm.dtype == torch.float32


def test_pm1_labels_are_the_sign_of_w_dot_x():
    """d = 1: each task's labels are one sign times the sign of x. Catches a sign flip between
    support and query or a label unrelated to its point."""
    b = SyntheticBinaryTasks(dim=1, support=30, query=30, labels="pm1").sample(4, _gen(2))
    for t in range(4):
        x = torch.cat([b.support_x[t, :, 0], b.query_x[t, :, 0]])
        y = torch.cat([b.support_y[t], b.query_y[t]])
        s = y * torch.sign(x)
        assert (s == s[0]).all() and s[0].abs() == 1


def test_split_sizes_and_points():
    """Catches: support and query swapped, the points per task miscounted."""
    src = SyntheticBinaryTasks(dim=6, support=100, query=900, labels="pm1")
    b = src.sample(2, _gen())
    assert src.points == 1000
    assert b.support_x.shape == (2, 100, 6) and b.support_y.shape == (2, 100)
    assert b.query_x.shape == (2, 900, 6) and b.query_y.shape == (2, 900)


@pytest.mark.parametrize("kwargs", [dict(labels="pm"), dict(labels=None), dict(support=0),
                                    dict(query=1.5), dict(dim=True)])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyntheticBinaryTasks(**kwargs)


def test_pm1_targets_make_the_bce_unbounded_below():
    """BCE-with-logits on a -1 target is ``softplus(z) + z``: it falls without bound as the
    logit falls, and equals the {0, 1} loss plus the negative points' mean logit.
    Catches: pm1 labels mapped back to {0, 1} before the loss, or clamped."""
    z = torch.tensor([[-100.0], [-10.0], [0.0], [3.0]])
    neg = torch.full((4,), -1.0)
    assert task_loss(z, neg).item() == pytest.approx((F.softplus(z.squeeze()) + z.squeeze()).mean().item())
    assert task_loss(z[:1], neg[:1]).item() == pytest.approx(-100.0, abs=1e-6)
    y01 = torch.tensor([0.0, 1.0, 0.0, 1.0])
    logits = torch.tensor([[0.3], [-1.2], [2.0], [0.7]])
    extra = (logits.squeeze() * (y01 == 0)).mean()
    assert task_loss(logits, 2 * y01 - 1).item() == pytest.approx((task_loss(logits, y01) + extra).item())


def test_label_accuracy_is_the_same_under_both_encodings():
    """Catches: an accuracy that compares ``1[z > 0]`` with raw -1/1 labels (a perfect
    predictor would then score the positive fraction only)."""
    logits = torch.tensor([[[2.0], [-1.0], [0.5], [-3.0]], [[1.0], [1.0], [-1.0], [-1.0]]])
    y01 = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    expected = torch.tensor([1.0, 0.5])
    assert torch.equal(label_accuracy(logits, y01), expected)
    assert torch.equal(label_accuracy(logits, 2 * y01 - 1), expected)
    assert torch.equal(label_accuracy(logits, y01), accuracy(logits, y01, reduction="per_task"))
    assert label_accuracy(logits[0], 2 * y01[0] - 1).item() == 1.0


def test_ceiling_on_the_adaptation_points_is_exact_where_the_answer_is_known():
    """One adaptation point is always classified right by ``m = s x`` (``m . x = s |x|^2``), and
    so is it with pm1 labels (``m = (s - 1/2) x``); with many dimensions per point the cross
    terms vanish and every point is right. Held-out accuracy stays below. Catches: the
    adaptation accuracy computed on fresh points, a sign error, ``s`` compared with 0/1."""
    for labels in ("01", "pm1"):
        assert one_step_ceiling(dim=5, support=1, num_tasks=200, labels=labels, points="adaptation") == 1.0
    assert one_step_ceiling(dim=2000, support=3, num_tasks=50, points="adaptation") == 1.0
    held = one_step_ceiling(dim=100, support=100, num_tasks=400)
    on_adaptation = one_step_ceiling(dim=100, support=100, num_tasks=400, points="adaptation")
    assert 0.68 < held < 0.75 < 0.9 < on_adaptation < 0.96


def test_pm1_direction_is_worse_than_the_01_one():
    """With {-1, 1} labels the step adds ``-(1/2) sum x_i``, noise uncorrelated with ``w``, so on
    the same simulated tasks its held-out ceiling is lower; in one dimension both are exact.
    Catches: the ``labels`` argument ignored, or the offset added with the wrong sign in 1-D."""
    assert one_step_ceiling(dim=1, support=9, num_tasks=300, labels="pm1") == 1.0
    a = one_step_ceiling(dim=100, support=100, num_tasks=400, labels="01")
    b = one_step_ceiling(dim=100, support=100, num_tasks=400, labels="pm1")
    assert b < a - 0.005 and math.isfinite(b)


@pytest.mark.parametrize("kwargs", [dict(labels="x"), dict(points="train"), dict(support=0)])
def test_ceiling_refuses_bad_options(kwargs):
    with pytest.raises(ValueError):
        one_step_ceiling(dim=3, num_tasks=2, **kwargs)
