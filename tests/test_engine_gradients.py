"""Second-order meta-gradients against central finite differences in float64."""
import pytest
import torch
from torch.func import functional_call

from maml_probe.losses import task_loss
from maml_probe.maml import adapt, task_losses
from maml_probe.models import ConvNet, LinNet
from maml_probe.rules import SGD
from maml_probe.tasks.base import TaskBatch


def _tasks(input_shape, ways, n_support, n_query, num_tasks=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    def x(n):
        return torch.randn(num_tasks, n, *input_shape, generator=g, dtype=torch.float64)
    def y(n):
        return torch.randint(0, ways, (num_tasks, n), generator=g)
    return TaskBatch(x(n_support), y(n_support), x(n_query), y(n_query))


def _models():
    torch.manual_seed(0)
    cnn = ConvNet("omniglot", depth=2, num_outputs=3, filters=4).double()
    linnet = LinNet(6, [5, 4], num_outputs=3).double()
    return [("cnn_bn", cnn, _tasks((1, 28, 28), 3, 6, 6)), ("linnet", linnet, _tasks((6,), 3, 6, 6))]


def _meta_loss(model, params, batch, steps, first_order=False, alpha=0.3):
    losses, _ = task_losses(model, SGD(alpha), batch, steps=steps, params=params,
                            first_order=first_order)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("name,model,batch", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_second_order_meta_gradient_matches_finite_differences(name, model, batch):
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    grads = torch.autograd.grad(_meta_loss(model, params, batch, steps=2), list(params.values()))
    g = torch.Generator().manual_seed(1)
    eps = 1e-6
    for _ in range(3):
        direction = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
        analytic = sum((gr * direction[k]).sum() for gr, k in zip(grads, params))
        plus = _meta_loss(model, {k: v + eps * direction[k] for k, v in params.items()}, batch, 2)
        minus = _meta_loss(model, {k: v - eps * direction[k] for k, v in params.items()}, batch, 2)
        numeric = (plus - minus) / (2 * eps)
        assert abs(float((analytic - numeric).detach())) / abs(float(numeric.detach())) < 1e-6, (name, analytic, numeric)


@pytest.mark.parametrize("name,model,batch", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_first_order_differs_and_equals_analytic_first_order(name, model, batch):
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    second = torch.autograd.grad(_meta_loss(model, params, batch, 2), list(params.values()))
    first = torch.autograd.grad(_meta_loss(model, params, batch, 2, first_order=True),
                                list(params.values()))
    # FOMAML: the meta-gradient is the query gradient at the adapted parameters
    expected = [torch.zeros_like(v) for v in params.values()]
    for i in range(len(batch)):
        a = adapt(model, params, batch.support_x[i], batch.support_y[i], steps=2, rule=SGD(0.3),
                  create_graph=False)
        theta_t = {k: v.detach().requires_grad_() for k, v in a.params.items()}
        loss = task_loss(functional_call(model, theta_t, (batch.query_x[i],)), batch.query_y[i])
        for j, gr in enumerate(torch.autograd.grad(loss, list(theta_t.values()))):
            expected[j] += gr / len(batch)
    for f, e in zip(first, expected):
        torch.testing.assert_close(f, e, rtol=1e-10, atol=1e-12)
    assert max(float((s - f).abs().max()) for s, f in zip(second, first)) > 1e-6
