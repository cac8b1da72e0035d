"""``evaluate_batch``: pre- and post-adaptation query accuracy against a hand-written softmax regression.

For multinomial logistic regression the inner step is known in closed form: with
``P = softmax(X W^T + b)`` and one-hot ``Y``, ``grad_W = (P - Y)^T X / N`` and
``grad_b = sum(P - Y) / N``; the accuracy is the fraction of query rows whose argmax is the
label. The expected values below come from that arithmetic, not from the package's engine.
"""
import pytest
import torch

from maml_probe.maml import evaluate_batch
from maml_probe.models import build_model
from maml_probe.rules import make_rule
from maml_probe.tasks.base import TaskBatch

WAYS, DIM, ALPHA = 3, 4, 2.0


def _setup(seed=0):
    torch.manual_seed(seed)
    model = build_model("lr", WAYS, in_features=DIM).double()
    g = torch.Generator().manual_seed(seed + 1)
    sx = torch.randn(4, 6, DIM, generator=g, dtype=torch.float64)
    qx = torch.randn(4, 30, DIM, generator=g, dtype=torch.float64)
    proto = torch.randn(4, WAYS, DIM, generator=g, dtype=torch.float64)  # a class prototype each
    sy = torch.arange(WAYS).repeat(2).expand(4, -1)
    qy = torch.arange(WAYS).repeat(10).expand(4, -1)
    sx = sx + 2 * proto[torch.arange(4)[:, None], sy]
    qx = qx + 2 * proto[torch.arange(4)[:, None], qy]
    return model, TaskBatch(sx, sy, qx, qy)


def _hand_accuracy(W, b, x, y):
    return float(((x @ W.T + b).argmax(1) == y).double().mean())


def _hand_adapt(W, b, x, y, steps, alpha=ALPHA, adapt=("weight", "bias")):
    onehot = torch.eye(WAYS, dtype=x.dtype)[y]
    for _ in range(steps):
        logits = x @ W.T + b
        p = torch.exp(logits - logits.logsumexp(1, keepdim=True))
        G = (p - onehot) / len(x)
        gW, gb = G.T @ x, G.sum(0)
        W = W - alpha * gW if "weight" in adapt else W
        b = b - alpha * gb if "bias" in adapt else b
    return W, b


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_pre_and_post_accuracy_are_the_hand_computed_argmax(steps):
    """Catches: post scored on the support set, pre scored after adaptation, ``steps`` off by
    one, a wrong sign or size of the inner step, tasks mixed up."""
    model, batch = _setup()
    rule = make_rule("maml", model, ALPHA)
    pre, post = evaluate_batch(model, rule, batch, steps=steps)
    W0, b0 = model.fc.weight.detach(), model.fc.bias.detach()
    want_pre, want_post = [], []
    for t in range(len(batch)):
        want_pre.append(_hand_accuracy(W0, b0, batch.query_x[t], batch.query_y[t]))
        W, b = _hand_adapt(W0, b0, batch.support_x[t], batch.support_y[t], steps)
        want_post.append(_hand_accuracy(W, b, batch.query_x[t], batch.query_y[t]))
    assert pre.shape == post.shape == (len(batch),)
    assert pre.tolist() == pytest.approx(want_pre, abs=1e-6)
    assert post.tolist() == pytest.approx(want_post, abs=1e-6)
    if steps:
        assert want_post != want_pre          # adaptation changes the answer: the check bites
        assert len(set(want_post)) > 1         # and the tasks differ from each other


def test_given_params_mask_and_post_transform_are_the_ones_used():
    """Catches: the module's own parameters used instead of ``params``, ``adapt_mask`` ignored
    (here only the bias adapts), ``post_transform`` not applied (here: FC weights negated)."""
    model, batch = _setup(seed=3)
    rule = make_rule("maml", model, ALPHA)
    g = torch.Generator().manual_seed(9)
    params = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in model.named_parameters()}
    W0, b0 = params["fc.weight"], params["fc.bias"]

    def negate(p):
        return {**p, "fc.weight": -p["fc.weight"]}

    pre, post = evaluate_batch(model, rule, batch, steps=2, params=params,
                               adapt_mask={"fc.bias"}, post_transform=negate)
    want, unmasked, untransformed, own = [], [], [], []
    for t in range(len(batch)):
        xq, yq, xs, ys = batch.query_x[t], batch.query_y[t], batch.support_x[t], batch.support_y[t]
        W, b = _hand_adapt(W0, b0, xs, ys, 2, adapt=("bias",))
        assert torch.equal(W, W0)
        assert float(pre[t]) == pytest.approx(_hand_accuracy(W0, b0, xq, yq), abs=1e-6)
        want.append(_hand_accuracy(-W, b, xq, yq))
        unmasked.append(_hand_accuracy(-_hand_adapt(W0, b0, xs, ys, 2)[0], _hand_adapt(W0, b0, xs, ys, 2)[1], xq, yq))
        untransformed.append(_hand_accuracy(W, b, xq, yq))
        Wm, bm = _hand_adapt(model.fc.weight.detach(), model.fc.bias.detach(), xs, ys, 2, adapt=("bias",))
        own.append(_hand_accuracy(-Wm, bm, xq, yq))
    assert post.tolist() == pytest.approx(want, abs=1e-6)
    # each wrong reading gives other numbers on these tasks, so the check above tells them apart
    assert want != unmasked and want != untransformed and want != own
    # and the inputs are untouched
    assert torch.equal(params["fc.weight"], W0)
