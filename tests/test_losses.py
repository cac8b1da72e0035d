"""``losses``: accuracy and loss of the binary (one-logit) head and the per-task reduction.

Expected values are hand-computed from the definitions (``logit > 0`` predicts 1; binary
cross-entropy ``-y log s(z) - (1 - y) log(1 - s(z))``), not read back from the code.
"""
import math

import pytest
import torch

from maml_probe.losses import accuracy, task_loss


def test_binary_accuracy_thresholds_the_single_logit_at_zero():
    """Catches: argmax over a single logit (always class 0), ``>= 0`` instead of ``> 0``,
    comparing float labels with a bool or long prediction without casting."""
    logits = torch.tensor([[2.0], [-1.0], [0.0], [0.3], [-0.1]])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])     # predictions 1, 0, 0, 1, 0
    acc = accuracy(logits, labels)
    assert acc.dtype == torch.float32 and acc.dim() == 0
    assert float(acc) == pytest.approx(4 / 5)       # always-0 would give 2/5, ">= 0" 3/5
    assert float(accuracy(logits, labels.long())) == pytest.approx(4 / 5)  # integer labels too
    assert float(accuracy(logits, 1 - labels)) == pytest.approx(1 / 5)      # the complement


def test_binary_accuracy_per_task():
    """Catches: the per-task mean taken over the wrong axis, or over all examples."""
    logits = torch.tensor([[[1.0], [1.0], [-1.0], [-1.0]],
                           [[1.0], [-1.0], [1.0], [-1.0]]])          # [T=2, N=4, 1]
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    per_task = accuracy(logits, labels, reduction="per_task")
    torch.testing.assert_close(per_task, torch.tensor([1.0, 0.25]))
    assert float(accuracy(logits, labels)) == pytest.approx(5 / 8)


def test_multiclass_accuracy_per_task_is_argmax_over_the_last_axis():
    """Catches: argmax over the examples axis, or per-task means over tasks."""
    logits = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 0.0, 5.0]],
                           [[0.0, 2.0, 1.0], [1.0, 0.0, 0.5]]])       # argmax 0, 2 | 1, 0
    labels = torch.tensor([[0, 1], [1, 0]])
    torch.testing.assert_close(accuracy(logits, labels, reduction="per_task"), torch.tensor([0.5, 1.0]))


def test_binary_task_loss_is_the_cross_entropy_of_the_sigmoid():
    """Catches: softmax over one logit (loss 0), a per-task sum instead of a mean."""
    z, y = [2.0, -1.0, 0.5], [1.0, 0.0, 0.0]
    expected = sum(-(t * math.log(1 / (1 + math.exp(-v))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-v))))
                   for v, t in zip(z, y)) / 3
    loss = task_loss(torch.tensor(z).unsqueeze(-1), torch.tensor(y).long())
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    stacked = task_loss(torch.tensor([z, z[::-1]]).unsqueeze(-1), torch.tensor([y, y]), reduction="per_task")
    assert float(stacked[0]) == pytest.approx(expected, rel=1e-6)
    assert stacked.shape == (2,) and float(stacked[1]) != pytest.approx(expected, rel=1e-3)


def test_bad_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction must be one of"):
        accuracy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="sum")
    with pytest.raises(ValueError, match="per_task.*needs"):
        accuracy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="per_task")


def test_binary_accuracy_reads_minus_one_labels_as_the_negative_class():
    """Catches comparing the 0/1 prediction with -1/1 labels (every negative counted wrong)."""
    from maml_probe.losses import accuracy

    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    pm1 = torch.tensor([1.0, -1.0, -1.0, -1.0])
    assert accuracy(logits, pm1).item() == 0.75
    assert accuracy(logits, (pm1 > 0).float()).item() == 0.75
