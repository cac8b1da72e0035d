"""Weight scaling of one layer before vs after adaptation (Fig A.2, Appendix A.2.2).

Paper: "for each layer of a meta-trained model, we multiply the weights of the selected layer by
a constant factor either pre- or post-adaptation" (factors ``2^0 .. 2^5``) and report
post-adaptation accuracy. Modelling layers should not care; adaptation layers should break when
scaled *before* adaptation (their values enter the adaptation gradient) but not after.

Definition used here: with ``targets="map"`` (default) the weight **and bias** of the layer's
Conv/Linear module are multiplied by ``c``, so the layer's pre-activation output is exactly
``c`` times the original; BatchNorm's affine parameters are left alone. Consequences worth
knowing: a conv layer followed by BatchNorm (batch statistics) is scale-invariant in its forward
pass up to BN's epsilon, so post-adaptation scaling of ``C1..C4`` changes (almost) nothing, and
scaling ``FC``'s weight and bias multiplies the logits by ``c`` and keeps every argmax; pre-
adaptation scaling changes the gradients (a BN-followed conv gets ``1/c`` times the gradient at
``c`` times the norm, i.e. an effectively ``1/c^2`` smaller step; the FC gets saturated softmax
gradients). ``targets="weight"`` scales the Conv/Linear weight only, ``"all"`` every parameter of
the layer (BN included). See :mod:`maml_probe.probes.common` for the target names.

``when="pre"``: the initial parameters are scaled, then adapted. ``when="post"``: the adapted
parameters are scaled just before the query pass (``post_transform``).
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

import pandas as pd
from tqdm.auto import tqdm

from ..learner import MetaLearner
from ..maml import Params
from ..tasks.base import TaskSource
from .common import check_layers, clone_params, finish, layer_names, run_condition, select_params

SCALE_FACTORS: tuple[float, ...] = tuple(2.0 ** k for k in range(6))
WHEN = ("pre", "post")


def scale_params(params: Params, names: Collection[str], factor: float) -> Params:
    """A copy of ``params`` with the entries of ``names`` multiplied by ``factor``."""
    return {k: (v * factor if k in names else v) for k, v in params.items()}


def check_when(when: str | Sequence[str]) -> list[str]:
    """``when`` as a list of ``"pre"``/``"post"``; anything else raises ``ValueError``."""
    whens = [when] if isinstance(when, str) else list(when)
    bad = [w for w in whens if w not in WHEN]
    if bad or not whens:
        raise ValueError(f"when must be 'pre', 'post' or both, got {when!r}")
    return whens


def scaling_probe(learner: MetaLearner, source: TaskSource, *, steps: int,
                  factors: Sequence[float] = SCALE_FACTORS, layers: Sequence[str] | None = None,
                  when: str | Sequence[str] = WHEN, targets: str = "map", num_tasks: int = 100,
                  seed: int = 0, batch_size: int = 25, summary: bool = True,
                  progress: bool = True) -> pd.DataFrame:
    """Post-adaptation accuracy with one layer scaled by each factor, before or after adaptation.

    Columns (``summary=True``): ``layer``, ``when``, ``scale``, ``phase`` (always ``post``),
    ``accuracy``, ``ci95``, ``std``, ``n``.
    """
    model = learner.model
    chosen = check_layers(model, layers if layers is not None else layer_names(model))
    whens = check_when(when)
    params = clone_params(learner)
    jobs = [(layer, w, c) for layer in chosen for w in whens for c in factors]
    frames = []
    for layer, w, c in tqdm(jobs, desc="scaling probe", disable=not progress):
        names = frozenset(select_params(model, [layer], targets))
        kw = dict(steps=steps, num_tasks=num_tasks, seed=seed, batch_size=batch_size)
        if w == "pre":
            df = run_condition(learner, source, params=scale_params(params, names, c), **kw)
        else:
            df = run_condition(learner, source, params=params,
                               post_transform=lambda p, n=names, f=c: scale_params(p, n, f), **kw)
        frames.append(df[df.phase == "post"].assign(layer=layer, when=w, scale=float(c)))
    rows = pd.concat(frames, ignore_index=True)[["layer", "when", "scale", "phase", "task", "accuracy"]]
    return finish(rows, ["layer", "when", "scale", "phase"], summary)
