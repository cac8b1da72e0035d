"""Representation similarity (linear CKA, CCA, SVCCA), the similarity probe and the ANIL/BOIL presets."""
import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from maml_probe.evaluation import evaluate
from maml_probe.learner import MetaLearner, build_learner
from maml_probe.models import ConvNet, LinNet, LogisticRegression
from maml_probe.probes import similarity_plots
from maml_probe.probes.presets import (
    PRESETS,
    check_preset,
    preset_layers,
    preset_mask,
    preset_probe,
    resolve_adapt_mask,
    with_preset,
)
from maml_probe.probes.similarity import (
    cca,
    layer_activations,
    layer_modules,
    linear_cka,
    similarity_probe,
    svcca,
)
from maml_probe.rules import make_rule
from maml_probe.tasks.synthetic import SyntheticBinaryTasks
from maml_probe.train import TrainConfig, meta_train

from .test_probes import TinyImageTasks

FAST = dict(steps=2, num_tasks=3, seed=5, batch_size=3, progress=False)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _x(n=40, p=12, seed=0):
    return torch.randn(n, p, generator=_gen(seed), dtype=torch.float64)


def _orthogonal(p, seed=1):
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=_gen(seed), dtype=torch.float64))
    return q


def _learner(depth=2, rule="maml", seed=0, **kw):
    torch.manual_seed(seed)
    net = ConvNet("omniglot", depth, 5, filters=4)
    return MetaLearner(net, make_rule(rule, net, 0.4, **kw))


# ---------------------------------------------------------------- linear CKA


def test_cka_of_identical_representations_is_one():
    x = _x()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-14)
    wide = _x(n=8, p=500)  # Gram path (n^2 < p q)
    assert linear_cka(wide, wide) == pytest.approx(1.0, abs=1e-14)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = _x(seed=0), _x(seed=1) + 0.5 * _x(seed=0)
    base = linear_cka(x, y)
    q = _orthogonal(12)
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-13)
    assert linear_cka(x, 7.5 * y @ _orthogonal(12, seed=3)) == pytest.approx(base, abs=1e-13)
    assert linear_cka(1e-6 * x, 1e6 * y) == pytest.approx(base, abs=1e-13)
    assert linear_cka(x + 3.0, y - 2.0) == pytest.approx(base, abs=1e-13)  # centring
    assert 0 < base < 1


def test_cka_is_not_invariant_to_anisotropic_scaling():
    x = _x()
    stretched = x * torch.linspace(0.1, 10, 12, dtype=torch.float64)
    assert linear_cka(x, stretched) < 0.99


def test_cka_of_one_feature_is_squared_correlation():
    a = torch.randn(200, generator=_gen(2), dtype=torch.float64)
    b = a + torch.randn(200, generator=_gen(3), dtype=torch.float64)
    r = torch.corrcoef(torch.stack([a, b]))[0, 1]
    assert linear_cka(a, b) == pytest.approx(float(r ** 2), abs=1e-13)


def test_cka_of_a_subset_of_whitened_features_is_sqrt_k_over_p():
    """Whitened X (X^T X = I_p, centred) and Y = its first k columns: CKA = k / sqrt(p k)."""
    n, p, k = 50, 8, 3
    z = _x(n, p)
    z = z - z.mean(0)
    q, _ = torch.linalg.qr(z)  # orthonormal columns, still centred (span of centred columns)
    assert linear_cka(q, q[:, :k]) == pytest.approx(math.sqrt(k / p), abs=1e-13)


def test_cka_gram_and_feature_paths_agree_and_orthogonal_spaces_give_zero():
    x = _x(n=30, p=5)
    y = _x(n=30, p=400, seed=4)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), abs=1e-14)
    # features orthogonal after centring: disjoint supports of zero-mean blocks
    a = torch.zeros(4, 1, dtype=torch.float64)
    a[:2, 0] = torch.tensor([1.0, -1.0])
    b = torch.zeros(4, 1, dtype=torch.float64)
    b[2:, 0] = torch.tensor([1.0, -1.0])
    assert linear_cka(a, b) == pytest.approx(0.0, abs=1e-15)


def test_cka_handles_float32_and_constant_inputs_and_refuses_bad_shapes():
    x = torch.randn(20, 6, generator=_gen(5))
    assert linear_cka(x, x.double()) == pytest.approx(1.0, abs=1e-12)
    assert math.isnan(linear_cka(torch.ones(5, 3), x[:5]))
    with pytest.raises(ValueError, match="same number of examples"):
        linear_cka(x, x[:10])
    with pytest.raises(ValueError, match="at least 2 examples"):
        linear_cka(x[:1], x[:1])
    assert linear_cka(torch.randn(6, 2, 3, 3, generator=_gen(1)),
                      torch.randn(6, 4, generator=_gen(2))) <= 1.0  # flattens conv maps


# ---------------------------------------------------------------- CCA / SVCCA


def test_cca_is_one_for_invertible_maps_and_matches_correlation_in_1d():
    x = _x(n=100, p=4)
    a = torch.randn(4, 4, generator=_gen(6), dtype=torch.float64)
    assert torch.allclose(cca(x, x @ a), torch.ones(4, dtype=torch.float64), atol=1e-10)
    u = torch.randn(300, generator=_gen(7), dtype=torch.float64)
    v = u + torch.randn(300, generator=_gen(8), dtype=torch.float64)
    r = torch.corrcoef(torch.stack([u, v]))[0, 1]
    assert float(cca(u, v)[0]) == pytest.approx(abs(float(r)), abs=1e-12)


def test_cca_of_independent_blocks_and_rank():
    z = _x(n=200, p=4)
    rho = cca(z[:, :2], torch.cat([z[:, :1], z[:, 2:]], 1))
    assert len(rho) == 2 and float(rho[0]) == pytest.approx(1.0, abs=1e-10) and float(rho[1]) < 0.3
    assert len(cca(z, torch.cat([z[:, :1], 2 * z[:, :1]], 1))) == 1  # rank-1 side


def test_svcca_invariances_and_noise():
    x = _x(n=200, p=6)
    assert svcca(x, x) == pytest.approx(1.0, abs=1e-12)
    assert svcca(x, 3 * x @ _orthogonal(6)) == pytest.approx(1.0, abs=1e-10)
    noisy = x + 2.0 * _x(n=200, p=6, seed=9)
    assert 0 < svcca(x, noisy) < 0.9
    assert math.isnan(svcca(torch.zeros(10, 3), x[:10]))
    with pytest.raises(ValueError, match="keep"):
        svcca(x, x, keep=0.0)


# ---------------------------------------------------------------- activations


def test_layer_modules_name_the_block_of_each_layer():
    assert layer_modules(ConvNet("omniglot", 2, 5, filters=4)) == {"C1": "blocks.0", "C2": "blocks.1",
                                                                   "FC": "fc"}
    assert layer_modules(LinNet(10, [4, 3])) == {"H1": "hidden.0", "H2": "hidden.1", "FC": "fc"}
    assert layer_modules(LogisticRegression(7)) == {"FC": "fc"}


def test_layer_activations_are_the_block_outputs_on_the_given_parameters():
    learner = _learner()
    net = learner.model
    params = {k: v.detach() * 1.5 for k, v in net.named_parameters()}
    x = torch.randn(6, 1, 28, 28, generator=_gen(1))
    acts = layer_activations(net, params, x)
    assert list(acts) == ["C1", "C2", "FC"]
    with torch.no_grad():
        h1 = torch.func.functional_call(net.blocks[0], {k[9:]: v for k, v in params.items()
                                                        if k.startswith("blocks.0.")}, (x,))
        logits = torch.func.functional_call(net, params, (x,))
    assert torch.equal(acts["C1"], h1)
    assert torch.equal(acts["FC"], logits)
    assert acts["C2"].shape == (6, 4, 7, 7)
    assert not net.blocks[0]._forward_hooks  # hooks removed
    assert list(layer_activations(net, params, x, ["FC"])) == ["FC"]
    with pytest.raises(ValueError, match="unknown layers"):
        layer_activations(net, params, x, ["C9"])


# ---------------------------------------------------------------- probe


def _all_one(values):
    return len(values) > 0 and bool(((values - 1.0).abs() <= 1e-12).all())


def _state(learner):
    return {k: v.detach().clone() for k, v in learner.state_dict().items()}


def test_similarity_probe_rows_and_no_mutation():
    learner = _learner()
    before = _state(learner)
    df = similarity_probe(learner, TinyImageTasks(), method="m", measures=("cka", "svcca"), **FAST)
    assert list(df.columns) == ["method", "layer", "task", "cka", "svcca", "param_change"]
    assert len(df) == 3 * 3 and set(df["layer"]) == {"C1", "C2", "FC"}
    assert df["cka"].between(0, 1).all() and (df["param_change"] > 0).all()
    assert (df["method"] == "m").all()
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())
    summary = similarity_probe(learner, TinyImageTasks(), summary=True, **FAST)
    assert {"method", "layer", "cka", "ci95", "std", "n"} <= set(summary.columns)
    assert (summary["n"] == 3).all()


def test_similarity_probe_zero_steps_and_frozen_body_give_cka_one():
    learner = _learner()
    still = similarity_probe(learner, TinyImageTasks(), **{**FAST, "steps": 0})
    assert _all_one(still["cka"]) and (still["param_change"] == 0).all()
    anil = similarity_probe(learner, TinyImageTasks(), adapt_mask="anil", **FAST)
    body = anil[anil["layer"] != "FC"]
    assert _all_one(body["cka"]) and (body["param_change"] == 0).all()
    assert (anil.loc[anil["layer"] == "FC", "cka"] < 1).all()
    boil = similarity_probe(learner, TinyImageTasks(), adapt_mask="boil", **FAST)
    assert (boil.loc[boil["layer"] == "FC", "param_change"] == 0).all()
    assert (boil.loc[boil["layer"] == "C1", "param_change"] > 0).all()


def test_similarity_probe_refuses_bad_arguments():
    learner = _learner()
    with pytest.raises(ValueError, match="measures"):
        similarity_probe(learner, TinyImageTasks(), measures=("rsa",), **FAST)
    with pytest.raises(ValueError, match="unknown layers"):
        similarity_probe(learner, TinyImageTasks(), layers=["C7"], **FAST)
    with pytest.raises(ValueError, match="preset"):
        similarity_probe(learner, TinyImageTasks(), adapt_mask="bottom", **FAST)


def test_plot_similarity_draws_rows_and_summaries():
    learner = _learner()
    rows = pd.concat([similarity_probe(learner, TinyImageTasks(), method=m, adapt_mask=m, **FAST)
                      for m in ("full", "anil")])
    fig = similarity_plots.plot_similarity(rows, title="t")
    assert isinstance(fig, Figure) and len(fig.axes[0].get_lines()) >= 2
    summary = similarity_probe(learner, TinyImageTasks(), summary=True, **FAST)
    assert isinstance(similarity_plots.plot_similarity(summary), Figure)


# ---------------------------------------------------------------- presets


def test_preset_layers_and_masks():
    cnn = ConvNet("omniglot", 4, 5, filters=4)
    assert preset_layers("full", cnn) == ["C1", "C2", "C3", "C4", "FC"]
    assert preset_layers("ANIL", cnn) == ["FC"]
    assert preset_layers("boil", cnn) == ["C1", "C2", "C3", "C4"]
    assert preset_mask("anil", cnn) == {"fc.weight", "fc.bias"}
    body = preset_mask("boil", cnn)
    assert "blocks.3.bn.bias" in body and "fc.weight" not in body
    assert preset_mask("full", cnn) == {k for k, _ in cnn.named_parameters()}
    assert preset_layers("boil", LinNet(10, [4, 3])) == ["H1", "H2"]
    with pytest.raises(ValueError, match="only layer"):
        preset_layers("boil", LogisticRegression(5))
    with pytest.raises(ValueError, match="choose from"):
        check_preset("maml")
    assert PRESETS == ("full", "anil", "boil")
    assert resolve_adapt_mask(cnn, "full") is None and resolve_adapt_mask(cnn, None) is None
    assert resolve_adapt_mask(cnn, ["fc.bias"]) == {"fc.bias"}


def test_with_preset_sets_adapt_layers_without_touching_the_rng():
    cfg = TrainConfig(dataset="synthetic", model="linnet", model_kwargs={"widths": [4, 3]},
                      dataset_kwargs={"dim": 6, "support": 8, "query": 8})
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    assert with_preset(cfg, "anil").adapt_layers == ["FC"]
    assert with_preset(cfg, "boil").adapt_layers == ["H1", "H2"]
    assert with_preset(cfg.replace(adapt_layers=["FC"]), "full").adapt_layers is None
    assert torch.equal(state, torch.random.get_rng_state())


def test_presets_train_with_the_head_or_body_frozen_in_the_inner_loop(tmp_path):
    """ANIL meta-training: the inner loop moves FC only, the outer loop still moves everything."""
    cfg = TrainConfig(dataset="synthetic", model="linnet", model_kwargs={"widths": [4]},
                      dataset_kwargs={"dim": 6, "support": 8, "query": 8}, iterations=3,
                      log_every=1, checkpoint_every=3, meta_lr=0.1, device="cpu")
    torch.manual_seed(0)
    init = build_learner("linnet", "maml", dataset="synthetic", input_shape=(6,), num_outputs=1,
                         alpha=0.5, model_kwargs={"widths": [4]})
    result = meta_train(with_preset(cfg, "anil"), tmp_path / "anil", progress=False)
    learner = result.learner
    assert learner.resolve_mask(with_preset(cfg, "anil").adapt_layers) == {"fc.weight", "fc.bias"}
    assert not torch.equal(learner.model.hidden[0].weight, init.model.hidden[0].weight)
    rows = similarity_probe(learner, SyntheticBinaryTasks(6, 8, 8), steps=1, num_tasks=2,
                            adapt_mask="anil", progress=False)
    assert _all_one(rows.loc[rows["layer"] == "H1", "cka"])


def test_preset_probe_scores_each_preset_on_the_same_tasks():
    learner = _learner(depth=2)
    df = preset_probe(learner, TinyImageTasks(), summary=False, **FAST)
    assert list(df.columns) == ["preset", "phase", "task", "accuracy"]
    assert list(dict.fromkeys(df["preset"])) == ["none", "full", "anil", "boil"]
    full = evaluate(learner, TinyImageTasks(), steps=2, num_tasks=3, seed=5, batch_size=3)
    assert df[df.preset == "full"]["accuracy"].tolist() == full[full.phase == "post"]["accuracy"].tolist()
    assert df[df.preset == "none"]["accuracy"].tolist() == full[full.phase == "pre"]["accuracy"].tolist()
    summary = preset_probe(learner, TinyImageTasks(), presets=["anil"], **FAST)
    assert list(summary["preset"]) == ["none", "anil"] and (summary["n"] == 3).all()
    fig = similarity_plots.plot_preset_probe(pd.concat([
        preset_probe(learner, TinyImageTasks(), **FAST).assign(method="A"),
        preset_probe(learner, TinyImageTasks(), **FAST).assign(method="B")]))
    assert isinstance(fig, Figure)
