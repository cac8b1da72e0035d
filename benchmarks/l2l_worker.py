"""learn2learn 0.2.0 MAML meta-step worker for benchmarks/bench_maml.py (runs in the l2l venv).

Self-contained (torch + learn2learn only; maml_probe is not importable there). It rebuilds the
model as a plain ``nn.Module`` with the *same* architecture and parameter names as
``maml_probe.models.ConvNet`` (conv3x3 -> BatchNorm(batch statistics) -> ReLU blocks, stride-2
convs, mean over H, W, linear head), loads the very same initial weights and meta-batch that the
harness saved, and times learn2learn's documented meta-training loop (``maml.clone()``,
``learner.adapt(loss)`` per inner step, per-task ``(query_loss / T).backward()``; the pattern of
learn2learn's ``examples/vision/maml_omniglot.py``).

Protocol (shared with bench_maml.py's own worker): one JSON object per line on stdin,
``{"cmd": "step"}`` -> ``{"seconds": t}``, ``{"cmd": "memory"}`` -> peak/baseline RSS,
``{"cmd": "quit"}``. ``--check`` only imports learn2learn and reports its version.

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


def build_convnet(spec: dict):
    """An ``nn.Module`` equal to maml_probe's ConvNet (same parameter names, shapes and forward)."""
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, pool):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
            self.bn = nn.BatchNorm2d(cout, track_running_stats=False)
            self.pool = pool

        def forward(self, x):
            x = F.relu(self.bn(self.conv(x)))
            return F.max_pool2d(x, 2) if self.pool else x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [spec["in_channels"]] + [spec["filters"]] * spec["depth"]
            stride = 1 if spec["pool"] else 2
            self.blocks = nn.Sequential(*[Block(a, b, stride, spec["pool"])
                                          for a, b in zip(ch[:-1], ch[1:])])
            self.fc = nn.Linear(spec["feature_size"], spec["ways"])

        def forward(self, x):
            h = self.blocks(x)
            if spec["pool"]:
                if h.shape[-1] != 5:
                    h = F.adaptive_max_pool2d(h, 5)
                h = h.flatten(1)
            else:
                h = h.mean(dim=(2, 3))
            return self.fc(h)

    return Net()


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
    if args.check:
        print(json.dumps({"learn2learn": version, "torch": torch.__version__, "import": how}))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc = False
    if args.malloc:  # the same thresholds as maml_probe's CPU auto path, loaded by file path
        from pathlib import Path
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

    def meta_step():
        maml.zero_grad(set_to_none=True)
        for i in range(T):
            learner = maml.clone()
            for _ in range(steps):
                learner.adapt(loss_fn(learner(sx[i]), sy[i]))
            (loss_fn(learner(qx[i]), qy[i]) / T).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

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
