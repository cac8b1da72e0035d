"""Episode sampling speed: vectorised ``EpisodeSampler`` vs a per-task Python sampler.

Run: ``python benchmarks/bench_sampling.py [--root DIR] [--cache-dir DIR] [--device cpu]``.

Times one meta-batch of 32 tasks (min / median over repeats, after warm-up) for
Omniglot 5-way 1-shot 15-query (meta-train split, 4400 rotated classes) and mini-ImageNet
5-way 5-shot 15-query (meta-train split; a subset of classes unless a full cache is already
built, or with ``--full-miniimagenet``). The baseline draws each task with ``random.sample``
and stacks images one by one from the same resident uint8 tensor (so both read the same
memory; neither decodes files). It also times one second-order MAML meta-step on the same
Omniglot batch (4-conv CNN, 5-way 1-shot, 2 inner steps, 32 tasks, Adam) with
``maml_probe.maml.meta_backward`` when available, else a self-contained
``functional_call`` + ``autograd.grad(create_graph=True)`` implementation, and reports
sampling time as a fraction of it. Without the real data it falls back to random uint8
data of the same shapes (and says so).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maml_probe.data import EpisodeSampler, FewShotDataset, cache_dir, data_dir  # noqa: E402
from maml_probe.data import cache as cache_mod  # noqa: E402
from maml_probe.data.miniimagenet import find_source, load_miniimagenet  # noqa: E402
from maml_probe.data.omniglot import load_omniglot  # noqa: E402
from maml_probe.tasks.base import TaskBatch  # noqa: E402

TASKS = 32


def naive_sample(data: FewShotDataset, ways: int, shots: int, queries: int, num_tasks: int,
                 rng: random.Random) -> TaskBatch:
    """The straightforward sampler: a Python loop over tasks, classes and images."""
    images = data.images
    sx, sy, qx, qy = [], [], [], []
    for _ in range(num_tasks):
        classes = rng.sample(range(data.num_classes), ways)
        txs, tys, tqx, tqy = [], [], [], []
        for label, c in enumerate(classes):
            picks = rng.sample(range(data.images_per_class), shots + queries)
            for j, i in enumerate(picks):
                img = images[c, i].float() / 255.0
                if j < shots:
                    txs.append(img), tys.append(label)
                else:
                    tqx.append(img), tqy.append(label)
        sx.append(torch.stack(txs)), sy.append(torch.tensor(tys))
        qx.append(torch.stack(tqx)), qy.append(torch.tensor(tqy))
    return TaskBatch(torch.stack(sx), torch.stack(sy), torch.stack(qx), torch.stack(qy))


def timed(fn: Callable[[], object], repeats: int, warmup: int, sync: bool) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


def writable_cache(root: Path, requested: str | None) -> Path:
    path = cache_dir(requested, root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
        return path
    except OSError:
        return Path(tempfile.gettempdir()) / "maml_probe_cache"


def default_root() -> Path:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if os.environ.get("MAML_PROBE_DATA") or (data_dir() / "omniglot").exists():
        return data_dir()
    return shared


def random_dataset(name: str, classes: int, per_class: int, shape: tuple[int, ...]) -> FewShotDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (classes, per_class, *shape), dtype=torch.uint8, generator=g)
    return FewShotDataset(name, "train", images, tuple(map(str, range(classes))))


def load_omniglot_or_random(root: Path, cache: Path) -> tuple[FewShotDataset, str]:
    try:
        start = time.perf_counter()
        d = load_omniglot(root, cache, "train")
        return d, f"real, {'cache hit' if d.info['cache_hit'] else 'cache built'} in {time.perf_counter() - start:.2f} s"
    except FileNotFoundError:
        return random_dataset("omniglot", 4400, 20, (1, 28, 28)), "RANDOM data (real Omniglot not found)"


def load_mini_or_random(root: Path, cache: Path, full: bool, limit: int) -> tuple[FewShotDataset, str]:
    try:
        kind, sources = find_source(root, "train")
    except FileNotFoundError:
        return random_dataset("miniimagenet", 64, 600, (3, 84, 84)), "RANDOM data (real mini-ImageNet not found)"
    key = cache_mod.cache_key("miniimagenet-train-all-84px", sources)
    npy, _ = cache_mod.cache_files(cache, key)
    use_full = full or npy.exists()
    start = time.perf_counter()
    d = load_miniimagenet(root, cache, "train", classes_limit=None if use_full else limit)
    how = "cache hit" if d.info["cache_hit"] else "cache built"
    what = "all 64 train classes" if use_full else f"SUBSET: first {limit} of 64 train classes (no full cache yet)"
    return d, f"real, {what}, {how} in {time.perf_counter() - start:.2f} s"


def meta_step_fn(batch: TaskBatch, device: torch.device) -> tuple[Callable[[], None], str]:
    """One second-order MAML meta-step (2 inner steps) on ``batch``; and what implements it."""
    torch.manual_seed(0)
    try:
        from maml_probe.maml import meta_backward
        from maml_probe.models import build_model
        from maml_probe.rules.base import SGD

        model = build_model("cnn", 5, variant="omniglot").to(device)
        rule = SGD(0.4)
        opt = torch.optim.Adam(list(model.parameters()) + list(rule.parameters()), lr=1e-3)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            meta_backward(model, rule, batch, steps=2)
            opt.step()
        return step, "maml_probe.maml.meta_backward + models.build_model('cnn', variant='omniglot')"
    except ImportError:
        pass
    import torch.nn.functional as F
    from torch import nn
    from torch.func import functional_call

    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1), nn.BatchNorm2d(o, track_running_stats=False), nn.ReLU())
    model = nn.Sequential(block(1, 64), block(64, 64), block(64, 64), block(64, 64),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 5)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        theta = dict(model.named_parameters())
        for i in range(len(batch)):
            p = theta
            for _ in range(2):
                loss = F.cross_entropy(functional_call(model, p, (batch.support_x[i],)), batch.support_y[i])
                grads = torch.autograd.grad(loss, list(p.values()), create_graph=True)
                p = {k: v - 0.4 * g for (k, v), g in zip(p.items(), grads)}
            (F.cross_entropy(functional_call(model, p, (batch.query_x[i],)), batch.query_y[i]) / len(batch)).backward()
        opt.step()
    return step, "benchmark's own functional_call + autograd.grad(create_graph=True) 4-conv net"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", help="data directory (default: $MAML_PROBE_DATA, <project>/data, or ../shared/data)")
    ap.add_argument("--cache-dir", help="cache directory (default: <data dir>/cache if writable, else a temp folder)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--naive-repeats", type=int, default=10)
    ap.add_argument("--meta-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (1 gives stable timings on a shared, busy CPU)")
    ap.add_argument("--full-miniimagenet", action="store_true", help="build the full train cache if missing")
    ap.add_argument("--mini-classes", type=int, default=8, help="classes of the mini-ImageNet subset")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.root) if args.root else default_root()
    cache = writable_cache(root, args.cache_dir)
    device = torch.device(args.device)
    sync = device.type == "cuda"
    print(f"data: {root}\ncache: {cache}\ndevice: {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, meta-batch {TASKS} tasks\n")

    omni, omni_note = load_omniglot_or_random(root, cache)
    mini, mini_note = load_mini_or_random(root, cache, args.full_miniimagenet, args.mini_classes)
    rows, omni_batch, omni_median = [], None, None
    for label, data, note, (n, k, q) in (("Omniglot 5w1s15q", omni, omni_note, (5, 1, 15)),
                                        ("mini-ImageNet 5w5s15q", mini, mini_note, (5, 5, 15))):
        print(f"{label}: {data.num_classes} classes x {data.images_per_class} ({note})")
        sampler = EpisodeSampler(data, n, k, q, device=device)
        gen = torch.Generator().manual_seed(0)
        vec = timed(lambda: sampler.sample(TASKS, gen), args.repeats, 3, sync)
        rng = random.Random(0)
        naive_data = data.to(device)
        nai = timed(lambda: naive_sample(naive_data, n, k, q, TASKS, rng), args.naive_repeats, 1, sync)
        rows.append((label, "vectorised (EpisodeSampler)", vec))
        rows.append((label, "per-task Python loop", nai))
        if omni_batch is None:
            omni_batch = sampler.sample(TASKS, torch.Generator().manual_seed(1))
            omni_median = (statistics.median(vec), statistics.median(nai))

    print("\n| dataset | sampler | min ms / meta-batch | median ms | tasks / s (median) | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for i, (label, name, t) in enumerate(rows):
        med = statistics.median(t)
        base = statistics.median(rows[i + 1][2]) if i % 2 == 0 else med
        print(f"| {label} | {name} | {min(t) * 1e3:.2f} | {med * 1e3:.2f} | {TASKS / med:,.0f} | "
              f"{base / med:.1f}x |")

    step, impl = meta_step_fn(omni_batch, device)
    meta = timed(step, args.meta_repeats, 1, sync)
    meta_med = statistics.median(meta)
    print(f"\nsecond-order MAML meta-step, Omniglot 4-conv CNN, 5-way 1-shot 15 queries, 2 inner "
          f"steps, {TASKS} tasks ({impl}):\n  min {min(meta):.3f} s, median {meta_med:.3f} s")
    print(f"  sampling / meta-step: vectorised {omni_median[0] / meta_med:.2%}, "
          f"per-task loop {omni_median[1] / meta_med:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
