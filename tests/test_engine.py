import pytest
import torch

from maml_probe.learner import resolve_mask
from maml_probe.maml import adapt
from maml_probe.models import ConvNet, LinNet
from maml_probe.rules import SGD, make_rule


def _support(shape=(1, 28, 28), n=5, ways=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.arange(n) % ways


def test_frozen_parameters_receive_no_inner_update():
    torch.manual_seed(0)
    net = ConvNet("omniglot", 2, 5, filters=8)
    params = dict(net.named_parameters())
    mask = resolve_mask(net, ["C2", "FC"])
    x, y = _support()
    a = adapt(net, params, x, y, steps=3, rule=SGD(0.4), adapt_mask=mask)
    for name, value in a.params.items():
        if name.startswith("blocks.0."):
            assert value is params[name]  # the very same tensor: bit-identical
        else:
            assert not torch.equal(value, params[name]), name


def test_adapt_only_mask_per_parameter():
    torch.manual_seed(0)
    net = LinNet(10, [6], num_outputs=3)
    params = dict(net.named_parameters())
    x, y = torch.randn(9, 10), torch.arange(9) % 3
    a = adapt(net, params, x, y, steps=2, rule=SGD(0.5), adapt_mask={"fc.bias"})
    changed = {k for k in params if not torch.equal(a.params[k], params[k])}
    assert changed == {"fc.bias"}


def test_unknown_layer_in_mask_is_a_clear_error():
    with pytest.raises(ValueError, match="adapt_layers has unknown entries"):
        resolve_mask(ConvNet("omniglot", 2, 5), ["C3"])


def test_zero_steps_is_identity_and_negative_steps_raise():
    net = LinNet(4, [3], 2)
    params = dict(net.named_parameters())
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 0, 1])
    assert adapt(net, params, x, y, steps=0, rule=SGD(0.1)).params == params
    with pytest.raises(ValueError, match="steps"):
        adapt(net, params, x, y, steps=-1, rule=SGD(0.1))
    with pytest.raises(ValueError, match="alpha"):
        SGD(0.0)
    with pytest.raises(ValueError, match="alpha"):
        make_rule("maml", net, -1.0)
    with pytest.raises(ValueError, match="rule must be one of"):
        make_rule("adamw", net, 0.1)


def test_evaluation_adaptation_equals_training_adaptation():
    """The graph-free evaluation path adapts to exactly the same parameters."""
    torch.manual_seed(0)
    net = ConvNet("omniglot", 2, 5, filters=8).double()
    params = dict(net.named_parameters())
    x, y = _support()
    x = x.double()
    a = adapt(net, params, x, y, steps=3, rule=SGD(0.4))
    b = adapt(net, params, x, y, steps=3, rule=SGD(0.4), create_graph=False)
    for k in params:
        torch.testing.assert_close(a.params[k].detach(), b.params[k].detach(), rtol=0, atol=1e-12)
    # graph-free: no adapted value carries an autograd graph back to the meta-parameters
    assert all(v.grad_fn is None for v in b.params.values())
    assert any(v.grad_fn is not None for v in a.params.values())  # the training path does


def test_adaptation_improves_support_fit():
    torch.manual_seed(0)
    net = ConvNet("omniglot", 2, 5, filters=8)
    x, y = _support()
    a = adapt(net, dict(net.named_parameters()), x, y, steps=5, rule=SGD(0.4), create_graph=False)
    assert a.support_losses[-1] < a.support_losses[0]


def test_fully_frozen_adaptation_is_identity_not_an_error():
    net = LinNet(4, [3], 2)
    params = dict(net.named_parameters())
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 0, 1])
    a = adapt(net, params, x, y, steps=2, rule=SGD(0.1), adapt_mask=set())
    assert all(a.params[k] is params[k] for k in params) and len(a.support_losses) == 2


@pytest.mark.parametrize("outputs", [1, 4])
def test_per_task_loss_and_accuracy_equal_the_mean_of_each_task(outputs):
    from maml_probe.losses import accuracy, task_loss
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, outputs, generator=g, dtype=torch.float64)
    labels = torch.randint(0, max(outputs, 2), (3, 7), generator=g)
    losses = task_loss(logits, labels, reduction="per_task")
    accs = accuracy(logits, labels, reduction="per_task")
    assert losses.shape == accs.shape == (3,)
    for k in range(3):
        torch.testing.assert_close(losses[k], task_loss(logits[k], labels[k]), rtol=1e-14, atol=0)
        torch.testing.assert_close(accs[k], accuracy(logits[k], labels[k]))
    torch.testing.assert_close(task_loss(logits, labels), losses.mean(), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="reduction"):
        task_loss(logits, labels, reduction="sum")
    with pytest.raises(ValueError, match="per_task"):
        accuracy(logits[0], labels[0], reduction="per_task")
