"""Probes of a meta-trained model: which layers adapt, and what breaks adaptation.

Each probe is a function of a trained learner, a task source and the number of adaptation
steps, returns a tidy DataFrame (mean ``accuracy``, ``ci95``, ``std``, ``n`` over test tasks per
condition, or per-task rows with ``summary=False``) and never modifies the learner.

=====================  =================================================  ==================
probe                  what                                               paper
=====================  =================================================  ==================
``layer_probe``        freeze only this / adapt only this, per layer      Fig 2 left, middle
``noise_probe``        noise on FC (C1-C3 frozen), pre and post           Fig 2 right
``scaling_probe``      one layer's weights x 2^k, before/after adapting   Fig A.2
``pruning_probe``      magnitude pruning before/after adapting            Fig A.3, Table A1
=====================  =================================================  ==================

``load_probe_setup(checkpoint)`` gives the learner, its config, the test task source and the
step count of a checkpoint; ``maml_probe.probes.plots`` draws each figure. Sweeps that
meta-train a family of models (depth, Fig 3; width, Fig A.1) train, so they live with the
experiments: :mod:`maml_probe.experiments.sweeps`.

Beyond the paper: ``similarity_probe`` (linear CKA / SVCCA of each layer's representation before
vs after adapting), ``preset_probe`` (test-time ANIL / BOIL / full adaptation; the named masks
of :mod:`~maml_probe.probes.presets` also train) and ``preconditioner_probe`` (the learned
update against the Hessian, Gauss-Newton matrix and Newton step);
``maml_probe.probes.similarity_plots`` draws them.
"""
from .common import ProbeSetup, adapt_mask_for, count_nonzero, layer_names, load_probe_setup, select_params
from .layers import layer_probe
from .noise import NOISE_SCALES, noise_probe, perturb
from .preconditioner import gain_correlation, preconditioner_probe, summarize_cosines
from .presets import PRESETS, preset_layers, preset_mask, preset_probe, with_preset
from .pruning import MaskedRule, prune, pruning_probe, scnn_parameter_count, threshold_for_count
from .scaling import SCALE_FACTORS, scale_params, scaling_probe
from .similarity import cca, layer_activations, linear_cka, similarity_probe, svcca

__all__ = ["NOISE_SCALES", "SCALE_FACTORS", "MaskedRule", "ProbeSetup", "adapt_mask_for",
           "count_nonzero", "layer_names", "layer_probe",
           "load_probe_setup", "noise_probe", "perturb", "prune", "pruning_probe",
           "scale_params", "scaling_probe", "scnn_parameter_count", "select_params",
           "threshold_for_count"]
__all__ += ["PRESETS", "cca", "gain_correlation", "layer_activations", "linear_cka",
            "preconditioner_probe", "preset_layers", "preset_mask", "preset_probe",
            "similarity_probe", "summarize_cosines", "svcca", "with_preset"]
