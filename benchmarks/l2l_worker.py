"""learn2learn 0.2.0 MAML meta-step worker for benchmarks/bench_maml.py (runs in the l2l venv).

Needs torch and learn2learn only: the model is ``maml_probe.models.ConvNet`` itself, imported
from this checkout's source (:mod:`maml_probe.models` needs nothing but torch, so the package
does not have to be installed in the l2l venv). The worker builds it from the saved spec, loads
the very same initial weights and meta-batch that the harness saved (``load_state_dict(strict)``),
and times learn2learn's documented meta-training loop (``maml.clone()``, ``learner.adapt(loss)``
per inner step, per-task ``(query_loss / T).backward()``; the pattern of learn2learn's
``examples/vision/maml_omniglot.py``).

Protocol (shared with bench_maml.py's own worker): one JSON object per line on stdin,
``{"cmd": "step"}`` -> ``{"seconds": t}``, ``{"cmd": "memory"}`` -> peak/baseline RSS,
``{"cmd": "grads"}`` / ``{"cmd": "grads64"}`` -> every entry of the meta-gradient (float32, and a
float64 copy of the model and batch), ``{"cmd": "quit"}``. ``--check`` only imports learn2learn
and the model and reports versions.

learn2learn's top-level ``__init__`` also imports its dataset modules (torchvision, gym, ...);
PyPI's torchvision wheels are CUDA builds that do not load against a CPU torch, so
:func:`import_l2l` imports ``learn2learn.algorithms`` and ``learn2learn.utils`` without running
that ``__init__`` when the plain import fails. The MAML code itself is unchanged.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path


def import_l2l(src: str | None = None):
    """``(learn2learn.algorithms.MAML, version, how)``.

    ``src``: a folder holding only learn2learn's MAML source (``benchmarks/fetch_learn2learn.sh``),
    imported as the packages ``learn2learn`` and ``learn2learn.algorithms`` without running
    their ``__init__`` files (``maml.py``, ``base_learner.py`` and ``utils`` are unchanged).
    """
    if src:
        import os
        root = os.path.join(os.path.abspath(src), "learn2learn")
        for name, path in (("learn2learn", root),
                           ("learn2learn.algorithms", os.path.join(root, "algorithms"))):
            pkg = types.ModuleType(name)
            pkg.__path__ = [path]
            sys.modules[name] = pkg
        from learn2learn._version import __version__
        from learn2learn.algorithms.maml import MAML
        return MAML, __version__, f"MAML source from {src} (benchmarks/fetch_learn2learn.sh)"
    try:
        import learn2learn  # noqa: F401
        from learn2learn.algorithms import MAML
        return MAML, learn2learn.__version__, "import learn2learn"
    except Exception:  # torchvision/gym missing or broken: load the subpackages directly
        for name in [m for m in sys.modules if m == "learn2learn" or m.startswith("learn2learn.")]:
            del sys.modules[name]
    spec = importlib.util.find_spec("learn2learn")
    if spec is None:
        raise ImportError("learn2learn is not installed in this interpreter")
    pkg = types.ModuleType("learn2learn")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__file__ = spec.origin
    sys.modules["learn2learn"] = pkg
    from learn2learn._version import __version__
    from learn2learn.algorithms import MAML
    return MAML, __version__, "learn2learn.algorithms (top-level __init__ skipped: no torchvision)"


def rss_kib() -> tuple[int, int]:
    """(current VmRSS, peak VmHWM) of this process in KiB, from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def convnet_class() -> type:
    """``maml_probe.models.ConvNet``, imported from this checkout's source (torch is all it needs)."""
    repo = str(Path(__file__).resolve().parents[1])
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from maml_probe.models.cnn import ConvNet
    return ConvNet


def build_convnet(spec: dict):
    """maml_probe's ``ConvNet`` for ``spec`` (variant, depth, ways, filters).

    Args:
        spec: the ``"spec"`` entry of the harness's payload.

    Returns:
        A freshly initialised ``ConvNet`` (load the payload's weights into it).
    """
    return convnet_class()(spec["variant"], spec["depth"], spec["ways"], filters=spec["filters"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--payload", help="torch.save'd dict: spec, state_dict, batch tensors")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--l2l-src", default=None, help="folder from benchmarks/fetch_learn2learn.sh")
    ap.add_argument("--malloc", action="store_true",
                    help="apply maml_probe's glibc malloc thresholds (maml_probe/fast/allocator.py)")
    args = ap.parse_args()
    MAML, version, how = import_l2l(args.l2l_src)
    import torch
    if args.check:  # the model must import too: a worker that cannot build it is no baseline
        model = f"{convnet_class().__module__}.ConvNet"
        print(json.dumps({"learn2learn": version, "torch": torch.__version__, "import": how,
                          "model": model}))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc = False
    if args.malloc:  # the same thresholds as maml_probe's CPU auto path, loaded by file path
        path = Path(__file__).resolve().parents[1] / "maml_probe" / "fast" / "allocator.py"
        spec = importlib.util.spec_from_file_location("_maml_probe_allocator", path)
        alloc = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(alloc)
        malloc = alloc.tune_malloc(force=True)
    payload = torch.load(args.payload, weights_only=False)
    spec = payload["spec"]
    torch.manual_seed(0)
    net = build_convnet(spec)
    net.load_state_dict(payload["state_dict"], strict=True)
    nparams = sum(p.numel() for p in net.parameters())
    device = torch.device(args.device)
    net.to(device)
    sx, sy, qx, qy = (payload[k].to(device) for k in ("support_x", "support_y", "query_x", "query_y"))
    maml = MAML(net, lr=spec["alpha"], first_order=spec.get("first_order", False))
    loss_fn = torch.nn.CrossEntropyLoss()
    T, steps = sx.shape[0], spec["steps"]

    def meta_step(maml=maml, sx=sx, qx=qx):
        maml.zero_grad(set_to_none=True)
        for i in range(T):
            learner = maml.clone()
            for _ in range(steps):
                learner.adapt(loss_fn(learner(sx[i]), sy[i]))
            (loss_fn(learner(qx[i]), qy[i]) / T).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def float64_grads() -> dict:
        """The meta-gradient of a float64 copy of the model on the float64 batch."""
        import copy
        net64 = copy.deepcopy(net).double()
        maml64 = MAML(net64, lr=spec["alpha"], first_order=spec.get("first_order", False))
        meta_step(maml64, sx.double(), qx.double())
        return {k: p.grad.flatten().tolist() for k, p in net64.named_parameters()}

    base_rss, _ = rss_kib()
    print(json.dumps({"ready": True, "params": nparams, "learn2learn": version,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "import": how, "malloc_tuned": malloc}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)["cmd"]
        if cmd == "step":
            t0 = time.perf_counter()
            meta_step()
            out = {"seconds": time.perf_counter() - t0}
        elif cmd == "grads":  # every entry of the meta-gradient, for the agreement check
            meta_step()
            out = {"grads": {k: p.grad.double().flatten().tolist() for k, p in
                             net.named_parameters()}}
        elif cmd == "grads64":
            out = {"grads": float64_grads()}
        elif cmd == "memory":
            if device.type == "cuda":
                out = {"baseline_kib": 0, "peak_kib": torch.cuda.max_memory_allocated(device) // 1024}
            else:
                rss, hwm = rss_kib()
                out = {"baseline_kib": base_rss, "rss_kib": rss, "peak_kib": hwm}
        else:
            break
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
