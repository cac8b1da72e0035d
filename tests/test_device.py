"""``device.resolve_device``: ``auto`` prefers CUDA, then MPS, then the CPU; a missing CUDA is an error."""
import types

import pytest
import torch

from maml_probe import device as device_mod
from maml_probe.device import resolve_device


def _fake_backends(monkeypatch, cuda: bool, mps: bool | None):
    monkeypatch.setattr(device_mod.torch.cuda, "is_available", lambda: cuda)
    # mps=None: a build without the MPS backend
    monkeypatch.setattr(device_mod.torch.backends, "mps",
                        None if mps is None else types.SimpleNamespace(is_available=lambda: mps))


@pytest.mark.parametrize("cuda,mps,expected", [(True, True, "cuda"), (False, True, "mps"),
                                               (False, False, "cpu"), (False, None, "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    """Catches: MPS preferred over CUDA, ``auto`` always CPU, MPS never considered."""
    _fake_backends(monkeypatch, cuda, mps)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device() == torch.device(expected)


def test_named_devices_pass_through_and_missing_cuda_is_refused(monkeypatch):
    """Catches: ``cuda`` silently falling back to the CPU, an index dropped from ``cuda:1``."""
    _fake_backends(monkeypatch, cuda=False, mps=False)
    assert resolve_device("cpu") == torch.device("cpu")
    given = torch.device("cuda", 1)
    assert resolve_device(given) is given          # a torch.device is taken as is
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")
    _fake_backends(monkeypatch, cuda=True, mps=False)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(RuntimeError):
        resolve_device("tpu")
