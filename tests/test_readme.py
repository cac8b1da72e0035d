"""The README's Python examples run as written, and do what the README says they do.

The training example promises "second-order meta-gradient in .grad" for the model *and* the
learned update rule, and a step of the outer optimiser on both. So after its ``meta_backward``
line every parameter of ``model`` and ``rule`` must hold a finite, non-zero gradient equal to
the gradient of the mean query loss after two inner steps (recomputed here on the reference
loop), the returned loss must be that loss, and ``opt.step()`` must then move every parameter.

One exception is exact, not numerical: a conv bias followed by BatchNorm in training mode is
cancelled by the batch mean, so its meta-gradient (and that of the rule's transform of it) is
zero in exact arithmetic; those must be zero to rounding, which is checked too.
"""
import re

import torch

from maml_probe.maml import task_losses

from .conftest import REPO


def _blocks():
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_python_blocks_run():
    blocks = _blocks()
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_training_example_fills_every_gradient_and_steps_every_parameter():
    """Catches: a rule whose parameters get no (or a zero, or a first-order-only) meta-gradient,
    ``.grad`` left unset for part of the model (e.g. BatchNorm), a non-finite gradient, a returned
    loss that is not the mean query loss, an optimiser that does not cover the rule."""
    block = next(b for b in _blocks() if "meta_backward(" in b)
    lines = block.splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if line.startswith("opt.step()"))
    ns: dict = {}
    torch.manual_seed(0)  # the example draws random inputs: the same ones every run
    exec(compile("".join(lines[:cut]), "README.md", "exec"), ns)   # up to the meta-gradient
    model, rule, batch, loss, acc = ns["model"], ns["rule"], ns["batch"], ns["loss"], ns["acc"]
    params = [*model.named_parameters(), *(("rule." + k, p) for k, p in rule.named_parameters())]
    assert len(list(rule.parameters())) > 0
    cancelled = _cancelled_by_batchnorm(model)
    assert cancelled, "the example's CNN has conv biases before BatchNorm"
    for name, p in params:
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        if any(name == c or name.startswith(f"rule.transforms.{c.replace('.', '-')}.") for c in cancelled):
            assert p.grad.abs().max() < 1e-6, f"{name}: BatchNorm cancels it, yet it has a gradient"
        else:
            assert p.grad.abs().max() > 1e-6, f"{name} has an all-zero gradient"
    # the same meta-gradient, recomputed on the reference loop (second order, 2 steps)
    losses, accs = task_losses(model, rule, batch, steps=2)
    mean = torch.stack(losses).mean()
    expected = torch.autograd.grad(mean, [p for _, p in params])
    for (name, p), e in zip(params, expected):
        if any(name == c or name.startswith(f"rule.transforms.{c.replace('.', '-')}.") for c in cancelled):
            continue  # rounding noise around zero, checked above
        # float32, the stacked engine against the loop: through KFC's gradient normalisation
        # they agree to ~1e-3 of each tensor's largest entry (to 1e-15 in float64, which
        # tests/test_fast_paths.py checks); a first-order or summed-loss gradient is far off
        scale = max(e.abs().max().item(), 1e-6)
        torch.testing.assert_close(p.grad, e, rtol=0, atol=5e-3 * scale, msg=name)
    assert abs(loss - mean.item()) < 1e-5 and abs(acc - accs.mean().item()) < 1e-6
    before = {name: p.detach().clone() for name, p in params}
    exec(compile("".join(lines[cut:]), "README.md", "exec"), ns)   # opt.step() and the rest
    for name, p in params:
        if not name.startswith("rule.transforms.") or not any(
                name.startswith(f"rule.transforms.{c.replace('.', '-')}.") for c in cancelled):
            assert not torch.equal(p.detach(), before[name]), f"{name} was not updated by opt.step()"


def _cancelled_by_batchnorm(model) -> set[str]:
    """Names of conv biases that a BatchNorm right after them cancels."""
    return {f"{block}.conv.bias" for block, module in model.named_modules()
            if hasattr(module, "conv") and hasattr(module, "bn")
            and module.conv.bias is not None and module.bn.training}
