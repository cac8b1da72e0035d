"""Probes of a meta-trained model: which layers adapt, and what breaks adaptation (issue #5).

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
``depth_sweep``        CNN depth 1..4 x method, meta-trained              Fig 3, Table A2
``width_sweep``        LinNet depth x width, meta-trained                 Fig A.1
=====================  =================================================  ==================

``load_probe_setup(checkpoint)`` gives the learner, its config, the test task source and the
step count of a checkpoint; ``maml_probe.probes.plots`` draws each figure.
"""
from .common import (ProbeSetup, adapt_mask_for, count_nonzero, layer_names, load_probe_setup,
                     select_params)
from .layers import layer_probe
from .noise import NOISE_SCALES, noise_probe, perturb
from .pruning import (MaskedRule, prune, pruning_probe, scnn_parameter_count,
                      threshold_for_count)
from .scaling import SCALE_FACTORS, scale_params, scaling_probe
from .sweeps import depth_configs, depth_sweep, run_sweep, width_configs, width_sweep

__all__ = ["NOISE_SCALES", "SCALE_FACTORS", "MaskedRule", "ProbeSetup", "adapt_mask_for",
           "count_nonzero", "depth_configs", "depth_sweep", "layer_names", "layer_probe",
           "load_probe_setup", "noise_probe", "perturb", "prune", "pruning_probe", "run_sweep",
           "scale_params", "scaling_probe", "scnn_parameter_count", "select_params",
           "threshold_for_count", "width_configs", "width_sweep"]
