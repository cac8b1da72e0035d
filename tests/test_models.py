import pytest
import torch

from maml_probe.models import ConvNet, LinNet, LogisticRegression, build_model, count_parameters


@pytest.mark.parametrize("variant,depth,expected", [
    ("omniglot", 4, 112_586), ("omniglot", 2, 38_474),
    ("cifarfs", 4, 29_226), ("cifarfs", 2, 10_602),
    ("miniimagenet", 4, 36_906), ("miniimagenet", 2, 18_282),
])
def test_cnn_parameter_counts_match_the_paper(variant, depth, expected):
    assert count_parameters(ConvNet(variant, depth, num_outputs=10)) == expected


@pytest.mark.parametrize("variant", ["omniglot", "cifarfs", "miniimagenet"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_cnn_forward_shapes_every_depth(variant, depth):
    net = ConvNet(variant, depth, num_outputs=7)
    x = torch.randn(3, *net.input_shape)
    assert net(x).shape == (3, 7)
    assert net.layer_names() == [f"C{i + 1}" for i in range(depth)] + ["FC"]


def test_batchnorm_uses_batch_statistics_and_keeps_no_buffers():
    net = ConvNet("omniglot", 2, 5)
    assert list(net.buffers()) == []
    x = torch.randn(6, 1, 28, 28)
    net.eval()
    a = net(x)
    net.train()
    b = net(x)
    assert torch.equal(a, b)  # same statistics in eval and train mode: those of the batch
    # the output of one example depends on the rest of the batch (batch statistics)
    assert not torch.allclose(net(x[:3])[0], a[0])


def test_linear_models_and_linnet_collapse_to_affine():
    lr = LogisticRegression(100, 1, bias=False)
    assert count_parameters(lr) == 100
    net = LinNet(784, [256, 128, 64, 64], num_outputs=5)
    x = torch.randn(4, 1, 28, 28)
    out = net(x)
    assert out.shape == (4, 5)
    # no nonlinearity: f(a x1 + b x2) = a f(x1) + b f(x2) up to the bias terms
    net0 = LinNet(10, [8, 8], num_outputs=3, bias=False).double()
    x1, x2 = torch.randn(2, 10, dtype=torch.float64)
    assert torch.allclose(net0(2 * x1[None] - 3 * x2[None]), 2 * net0(x1[None]) - 3 * net0(x2[None]))


def test_bad_model_input_raises_value_error_naming_argument():
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("resnet", 5)
    with pytest.raises(ValueError, match="variant"):
        ConvNet("svhn", 4, 5)
    with pytest.raises(ValueError, match="depth"):
        ConvNet("omniglot", 5, 5)
    with pytest.raises(ValueError, match="input must have shape"):
        ConvNet("omniglot", 2, 5)(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="in_features"):
        LogisticRegression(784, 5)(torch.randn(2, 100))
    with pytest.raises(ValueError, match="widths"):
        LinNet(10, [4, 0])


@pytest.mark.parametrize("kind", ["lr", "lr_binary", "linnet", "linnet_nobias"])
def test_linear_stacked_forward_equals_functional_call(kind):
    from torch.func import functional_call
    torch.manual_seed(0)
    if kind.startswith("lr"):
        net = LogisticRegression(6, 1 if kind == "lr_binary" else 3).double()
    else:
        net = LinNet(6, [5, 4], num_outputs=3, bias=kind == "linnet").double()
    params = [{k: v + 0.1 * torch.randn_like(v) for k, v in net.named_parameters()} for _ in range(3)]
    stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
    x = torch.randn(3, 5, 2, 3, dtype=torch.float64)
    out = net.stacked_forward()(stacked, x)
    for i in range(3):
        torch.testing.assert_close(out[i], functional_call(net, params[i], (x[i],)), rtol=1e-12, atol=1e-12)


def test_a_modified_model_offers_no_stacked_forward():
    from maml_probe.models import stacked_forward
    net = ConvNet("omniglot", 2, 5, filters=4)
    assert stacked_forward(net) is not None
    net.blocks[1].conv = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1, dilation=1, groups=2)
    assert stacked_forward(net) is None
    lin = LinNet(4, [3], 2)
    lin.hidden[0] = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    assert stacked_forward(lin) is None
    assert stacked_forward(torch.nn.Linear(3, 2)) is None  # no stacked forward on offer
