"""Float32 arithmetic on CUDA: strict IEEE fp32 by default, TensorFloat-32 on request.

On Ampere and newer GPUs, cuDNN convolutions (and, if allowed, cuBLAS matrix products) can run
float32 tensors through TF32 tensor cores, which read only 10 of the 23 mantissa bits. PyTorch's
own defaults differ per op (TF32 on for cuDNN convolutions, off for matrix products); whatever a
user's process happens to have set would silently change our meta-gradients. The engine therefore
sets the policy explicitly around every CUDA meta-step (:func:`cuda_precision`):

============  =================================================================================
``fp32``      (default) full IEEE float32 in convolutions and matrix products. Second-order
              meta-gradients differentiate *through* the inner loop's convolutions, so their
              rounding compounds over inner steps; the paper's GPU (a Titan XP, Pascal) had no
              TF32; and on these small, launch-bound networks TF32 buys little (BENCHMARKS.md
              measures it). CUDA results then agree with the CPU engine to float32 rounding.
``tf32``      TF32 tensor cores for convolutions and matrix products (faster for large
              convolutions, ~1e-3 relative error per product).
============  =================================================================================

Choose per process with the environment variable ``MAML_PROBE_CUDA_PRECISION`` (``fp32`` or
``tf32``) or per call with ``meta_backward(..., precision=...)``. Float64 models (the gradient
checks) are unaffected: TF32 only ever applies to float32 tensors.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

PRECISIONS = ("fp32", "tf32")
DEFAULT_PRECISION = "fp32"


def resolve_precision(precision: str | None = None) -> str:
    """``precision`` (argument, else ``MAML_PROBE_CUDA_PRECISION``, else ``fp32``), validated."""
    from_env = precision is None
    value = (os.environ.get("MAML_PROBE_CUDA_PRECISION", "") if from_env else precision)
    value = (value or DEFAULT_PRECISION).strip().lower()
    if value not in PRECISIONS:
        where = "MAML_PROBE_CUDA_PRECISION" if from_env else "precision"
        raise ValueError(f"{where} must be one of {list(PRECISIONS)}, got {value!r}")
    return value


def _new_api() -> bool:
    """PyTorch >= 2.9 sets TF32 per backend and op (``fp32_precision``); older ones use flags."""
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and \
        hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")


@contextmanager
def cuda_precision(precision: str | None = None) -> Iterator[str]:
    """Run the block with float32 convolutions and matrix products at ``precision``; restore after.

    Only the settings this module changes are touched, through the API the installed PyTorch
    recommends (mixing PyTorch's legacy ``allow_tf32`` flags with the newer ``fp32_precision``
    settings is an error in recent releases).
    """
    mode = resolve_precision(precision)
    if _new_api():
        value = "tf32" if mode == "tf32" else "ieee"
        targets = [torch.backends.cuda.matmul, torch.backends.cudnn.conv]
        rnn = getattr(torch.backends.cudnn, "rnn", None)
        if rnn is not None and hasattr(rnn, "fp32_precision"):
            targets.append(rnn)  # keeps conv and rnn equal, so legacy getters stay readable
        saved = [t.fp32_precision for t in targets]
        try:
            for t in targets:
                t.fp32_precision = value
            yield mode
        finally:
            for t, v in zip(targets, saved):
                t.fp32_precision = v
        return
    saved_flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.allow_tf32 = mode == "tf32"
        yield mode
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_flags
