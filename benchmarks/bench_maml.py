"""Meta-step benchmark: maml_probe's engines vs learn2learn 0.2.0, side by side.

    python benchmarks/bench_maml.py [--repeats 7] [--warmup 2] [--settings cnn-5w1s,scnn-5w1s,...]
                                    [--threads N] [--l2l-python PATH] [--update-md BENCHMARKS.md]

One *meta-step* = the meta-gradient of a whole meta-batch accumulated into ``.grad``
(``maml_probe.maml.meta_backward``; for learn2learn its documented ``clone()`` / ``adapt()`` /
per-task ``backward()`` loop), second order, no optimizer step - what the paper's Table A3 times.

How it measures (so that ratios mean something on a shared, loaded machine):

* every engine runs in its **own fresh subprocess** (ours in this interpreter, learn2learn in the
  interpreter built by ``benchmarks/build_learn2learn.sh``), all loading the *same* initial
  weights and the *same* meta-batch from one file; learn2learn's worker rebuilds the model as a
  plain ``nn.Module`` with the same architecture and parameter names (``load_state_dict(strict)``
  checks it) - see ``benchmarks/l2l_worker.py``;
* the workers are stepped **round-robin**: repeat ``r`` of every engine runs back to back, so a
  load spike hits all of them; ``--warmup`` rounds are discarded; we report min and median;
* **peak memory** is the growth of the process's resident set: ``VmHWM`` (peak RSS, from
  ``/proc/self/status``) after all steps minus ``VmRSS`` right before the first step (model and
  data already built). This is the memory the meta-steps themselves needed (activations and
  graphs, plus whatever the allocator kept), not tracemalloc (blind to torch's CPU tensors).

Engines: ``ours auto`` (what ``meta_backward`` does by default here), ``ours loop`` (the
reference engine, ``impl="loop"``; no allocator tuning), ``l2l`` (learn2learn as a user runs
it) and ``l2l+malloc`` (learn2learn with the same glibc malloc thresholds ``auto`` sets, so the
table separates the allocator's share of the gain). ``--extra batched:1:1,batched`` adds our
batched engine one task at a time and all tasks at once (``impl[:chunk[:query chunk]]``).
``--device cuda`` runs every worker on the GPU (peak memory is then
``torch.cuda.max_memory_allocated``). ``benchmarks/profile_maml.py`` shows where the time goes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_L2L = [os.environ.get("L2L_PYTHON", ""), "/tmp/l2l-venv/bin/python"]


@dataclass(frozen=True)
class Setting:
    key: str
    title: str
    depth: int
    ways: int
    shots: int
    queries: int          # per class
    steps: int
    tasks: int = 8
    alpha: float = 0.4
    variant: str = "omniglot"
    rule: str = "maml"    # for the KFC row: "kfc" is compared with "maml" on the same model


SETTINGS = {
    "cnn-5w1s": Setting("cnn-5w1s", "Omniglot CNN 5w1s, 15 q/class, 2 steps, 8 tasks", 4, 5, 1, 15, 2),
    "scnn-5w1s": Setting("scnn-5w1s", "Omniglot SCNN 5w1s, 15 q/class, 2 steps, 8 tasks", 2, 5, 1, 15, 2),
    "cnn-10w5s": Setting("cnn-10w5s", "Omniglot CNN 10w5s, 5 q/class, 4 steps, 8 tasks", 4, 10, 5, 5, 4),
    "kfc": Setting("kfc", "Omniglot SCNN 5w1s KFC (layers=4, normalize=True) vs MAML", 2, 5, 1, 15, 2,
                   rule="kfc"),
}
KFC_KWARGS = {"layers": 4, "normalize": True}


# --------------------------------------------------------------------------------------------
# worker side (ours): runs in a fresh subprocess of this interpreter
# --------------------------------------------------------------------------------------------

def rss_kib() -> tuple[int, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def ours_worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    import torch

    from maml_probe import fast
    from maml_probe.losses import task_loss
    from maml_probe.maml import meta_backward
    from maml_probe.models import ConvNet
    from maml_probe.rules import make_rule
    from maml_probe.tasks.base import TaskBatch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    payload = torch.load(args.payload, weights_only=False)
    spec = payload["spec"]
    net = ConvNet(spec["variant"], spec["depth"], spec["ways"])
    net.load_state_dict(payload["state_dict"], strict=True)
    net.to(device)
    rule = make_rule(args.rule, net, spec["alpha"], **(KFC_KWARGS if args.rule == "kfc" else {}))
    batch = TaskBatch(payload["support_x"], payload["support_y"], payload["query_x"],
                      payload["query_y"]).to(device)
    impl, *chunks = args.impl.split(":")
    if chunks:
        os.environ["MAML_PROBE_TASK_CHUNK"] = chunks[0]
    if len(chunks) > 1:
        os.environ["MAML_PROBE_QUERY_CHUNK"] = chunks[1]
    choice = fast.choose_impl(net, rule, device, loss_fn=task_loss, impl=impl,
                              support_size=batch.support_x.shape[1], steps=spec["steps"],
                              tasks=len(batch))

    def step() -> None:
        net.zero_grad(set_to_none=True)
        rule.zero_grad(set_to_none=True)
        meta_backward(net, rule, batch, steps=spec["steps"], impl=impl)
        sync(device)

    base_rss, _ = rss_kib()
    print(json.dumps({"ready": True, "params": sum(p.numel() for p in net.parameters()),
                      "rule_params": sum(p.numel() for p in rule.parameters()),
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "choice": choice.describe()
                      }), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)["cmd"]
        if cmd == "step":
            t0 = time.perf_counter()
            step()
            out = {"seconds": time.perf_counter() - t0, "malloc_tuned": fast.malloc_tuned()}
        elif cmd == "grads":  # cross-check with learn2learn: the same meta-gradient
            step()
            out = {"grads": {k: p.grad.double().flatten().tolist()[:8] for k, p in
                             net.named_parameters()}}
        elif cmd == "memory":
            out = memory_report(device, base_rss)
        else:
            break
        print(json.dumps(out), flush=True)


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_report(device, base_rss: int) -> dict:
    """Peak RSS growth on CPU; on CUDA the peak of allocated device memory (as if RSS)."""
    import torch
    if device.type == "cuda":
        return {"baseline_kib": 0, "peak_kib": torch.cuda.max_memory_allocated(device) // 1024}
    rss, hwm = rss_kib()
    return {"baseline_kib": base_rss, "rss_kib": rss, "peak_kib": hwm}


# --------------------------------------------------------------------------------------------
# harness side
# --------------------------------------------------------------------------------------------

@dataclass
class Worker:
    label: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    info: dict = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    error: str = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=self.env)
        line = self.proc.stdout.readline()
        if not line:
            self.error = self.proc.stderr.read().strip().splitlines()[-1:] or ["died"]
            self.error = self.error[0]
            self.proc = None
            return
        self.info = json.loads(line)

    def ask(self, cmd: str) -> dict:
        assert self.proc is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label} died: {self.proc.stderr.read()[-2000:]}")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
            self.proc = None


def find_l2l(explicit: str | None) -> str | None:
    for cand in ([explicit] if explicit else DEFAULT_L2L):
        if cand and Path(cand).exists():
            return cand
    return None


def l2l_check(python: str) -> dict | None:
    try:
        out = subprocess.run([python, str(HERE / "l2l_worker.py"), "--check"], capture_output=True,
                             text=True, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except Exception:
        return None


def make_payload(s: Setting, path: Path) -> int:
    sys.path.insert(0, str(REPO))
    import torch

    from maml_probe.models import ConvNet
    torch.manual_seed(0)
    net = ConvNet(s.variant, s.depth, s.ways)
    g = torch.Generator().manual_seed(1)
    shape = net.input_shape
    ns, nq = s.ways * s.shots, s.ways * s.queries
    payload = {
        "spec": {"variant": s.variant, "depth": s.depth, "ways": s.ways, "steps": s.steps,
                 "alpha": s.alpha, "in_channels": shape[0], "filters": net.blocks[0].conv.out_channels,
                 "pool": False, "feature_size": net.feature_size},
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "support_x": torch.randn(s.tasks, ns, *shape, generator=g),
        "support_y": (torch.arange(ns) % s.ways).repeat(s.tasks, 1),
        "query_x": torch.randn(s.tasks, nq, *shape, generator=g),
        "query_y": (torch.arange(nq) % s.ways).repeat(s.tasks, 1),
    }
    torch.save(payload, path)
    return sum(p.numel() for p in net.parameters())


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run_setting(s: Setting, args: argparse.Namespace, l2l_python: str | None, tmp: Path) -> dict:
    payload = tmp / f"{s.key}.pt"
    nparams = make_payload(s, payload)
    base_env = {**os.environ, "PYTHONPATH": str(REPO)}
    base_env.pop("MAML_PROBE_IMPL", None)
    base_env.pop("MAML_PROBE_TASK_CHUNK", None)
    base_env.pop("MAML_PROBE_QUERY_CHUNK", None)
    thr = (["--threads", str(args.threads)] if args.threads else []) + ["--device", args.device]
    me = [sys.executable, str(Path(__file__).resolve()), "--worker", "--payload", str(payload), *thr]
    workers: list[Worker] = []
    rules = ["maml", "kfc"] if s.rule == "kfc" else ["maml"]
    impls = ["auto", "loop"] + list(args.extra)
    for rule in rules:
        for impl in impls:
            label = f"ours {impl}" + (f" {rule}" if s.rule == "kfc" else "")
            env = dict(base_env)
            if impl == "loop":
                env["MAML_PROBE_MALLOC"] = "0"
            workers.append(Worker(label, [*me, "--impl", impl, "--rule", rule], env))
    if s.rule != "kfc" and l2l_python:
        l2l = [l2l_python, str(HERE / "l2l_worker.py"), "--payload", str(payload), *thr]
        workers.append(Worker("l2l", l2l, dict(base_env)))
        workers.append(Worker("l2l+malloc", [*l2l, "--malloc"], dict(base_env)))
    for w in workers:
        w.start()
    live = [w for w in workers if w.proc is not None]
    load_before = loadavg()
    t0 = time.time()
    for r in range(args.warmup + args.repeats):
        for w in live:
            t = w.ask("step")["seconds"]
            if r >= args.warmup:
                w.times.append(t)
    for w in live:
        w.memory = w.ask("memory")
    agreement = None
    ours, l2l = next((w for w in live if w.label == "ours loop"), None), \
        next((w for w in live if w.label == "l2l"), None)
    if ours is not None and l2l is not None:
        a, b = ours.ask("grads")["grads"], l2l.ask("grads")["grads"]
        scale = max(abs(v) for vs in a.values() for v in vs) or 1.0
        agreement = max(abs(x - y) for k in a for x, y in zip(a[k], b[k])) / scale
    for w in live:
        w.stop()
    return {"setting": s, "params": nparams, "workers": workers, "load_before": load_before,
            "device": args.device, "agreement": agreement,
            "load_after": loadavg(), "wall": time.time() - t0}


def _fmt_t(ts: list[float]) -> str:
    return f"{min(ts):.3f} / {statistics.median(ts):.3f}" if ts else "n/a"


def _peak_mib(w: Worker) -> float | None:
    if not w.memory:
        return None
    return (w.memory["peak_kib"] - w.memory["baseline_kib"]) / 1024


def render(results: list[dict], l2l_note: str) -> str:
    mem = "peak RSS growth MiB" if results and results[0].get("device", "cpu") == "cpu" \
        else "peak device memory MiB"
    lines = ["| setting | engine | path | meta-step s (min / median) | ratio to l2l (min / median) "
             f"| {mem} |", "|---|---|---|---|---|---|"]
    kfc_lines, notes = [], []
    for res in results:
        s: Setting = res["setting"]
        ws = {w.label: w for w in res["workers"]}
        ref = ws.get("l2l")
        for w in res["workers"]:
            if w.error:
                lines.append(f"| {s.title} | {w.label} | - | failed: {w.error} | | |")
                continue
            ratio = ""
            if ref is not None and ref.times and w.times and w is not ref:
                ratio = (f"{min(w.times) / min(ref.times):.2f} / "
                         f"{statistics.median(w.times) / statistics.median(ref.times):.2f}")
            peak = _peak_mib(w)
            path = w.info.get("choice", "learn2learn MAML" if w.label.startswith("l2l") else "")
            lines.append(f"| {s.title} | {w.label} | {path} | {_fmt_t(w.times)} | {ratio} | "
                         f"{'' if peak is None else f'{peak:.0f}'} |")
        if s.rule != "kfc" and ref is None:
            lines.append(f"| {s.title} | learn2learn | - | {l2l_note} | | |")
        if res.get("agreement") is not None:
            notes.append(f"{s.title}: learn2learn's meta-gradient vs ours (first 8 entries of "
                         f"every parameter): max difference {res['agreement']:.1e} of the "
                         f"largest entry")
        if s.rule == "kfc":
            for impl in ["auto", "loop"]:
                k, m = ws.get(f"ours {impl} kfc"), ws.get(f"ours {impl} maml")
                if k and m and k.times and m.times:
                    kfc_lines.append(
                        f"| SCNN KFC / SCNN MAML, ours {impl} | {_fmt_t(k.times)} | {_fmt_t(m.times)} | "
                        f"{min(k.times) / min(m.times):.2f} / "
                        f"{statistics.median(k.times) / statistics.median(m.times):.2f} | "
                        f"{k.info.get('rule_params', '')} |")
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(f"- {n}" for n in notes)
    if kfc_lines:
        out += ("\n\n| KFC row | KFC s (min / median) | MAML s (min / median) | ratio (min / median) "
                "| KFC parameters |\n|---|---|---|---|---|\n" + "\n".join(kfc_lines))
    return out


def machine_block(args: argparse.Namespace, results: list[dict], l2l_info: dict | None) -> str:
    import torch
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    loads = ", ".join(f"{r['setting'].key}: {r['load_before']} -> {r['load_after']}" for r in results)
    threads = args.threads or torch.get_num_threads()
    return "\n".join([
        f"- date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {cpu}, {os.cpu_count()} logical CPUs, torch threads {threads}"
        f"{'' if args.device == 'cpu' else ', device ' + _gpu_name(args.device)}; "
        f"load average (1/5/15 min) before -> after each setting: {loads}",
        f"- python {platform.python_version()}, torch {torch.__version__}, learn2learn "
        f"{l2l_info['learn2learn'] + ' (torch ' + l2l_info['torch'] + ')' if l2l_info else 'not available'}",
        f"- repeats: {args.repeats} timed after {args.warmup} warm-up rounds, engines stepped "
        f"round-robin, each in its own process",
    ])


def _gpu_name(device: str) -> str:
    import torch
    return torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="cnn-5w1s,scnn-5w1s,cnn-10w5s,kfc",
                    help=f"comma-separated, from {list(SETTINGS)}")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: default)")
    ap.add_argument("--l2l-python", default=None,
                    help="interpreter with learn2learn (default: $L2L_PYTHON, /tmp/l2l-venv/bin/python)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (each worker on this device)")
    ap.add_argument("--extra", default="",
                    help="more of our engines as impl[:tasks per chunk[:tasks per query pass]], "
                         "e.g. 'batched:1:1,batched'")
    ap.add_argument("--update-md", default=None, help="rewrite the table block of this markdown file")
    # worker mode
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--payload", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--rule", default="maml", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.extra = [e for e in args.extra.split(",") if e]
    if args.worker:
        ours_worker(args)
        return
    keys = [k.strip() for k in args.settings.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    l2l_python = find_l2l(args.l2l_python)
    l2l_info = l2l_check(l2l_python) if l2l_python else None
    how = "bash benchmarks/build_learn2learn.sh  (builds /tmp/l2l-venv from the PyPI sdist)"
    l2l_note = "not available (how to build it: " + how + ")"
    if l2l_info is None:
        print(f"learn2learn: {l2l_note}")
        l2l_python = None
    else:
        print(f"learn2learn: {l2l_info['learn2learn']} at {l2l_python} ({l2l_info['import']})")
    tmp = Path(tempfile.mkdtemp(prefix="bench_maml."))
    results = []
    try:
        for k in keys:
            print(f"[{k}] {SETTINGS[k].title} (load {loadavg()}) ...", flush=True)
            results.append(run_setting(SETTINGS[k], args, l2l_python, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = render(results, l2l_note)
    block = machine_block(args, results, l2l_info)
    print()
    print(block)
    print()
    print(table)
    if args.update_md:
        md = Path(args.update_md)
        text = md.read_text() if md.exists() else "<!-- bench:start -->\n<!-- bench:end -->\n"
        start, end = "<!-- bench:start -->", "<!-- bench:end -->"
        if start not in text or end not in text:
            text += f"\n{start}\n{end}\n"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        md.write_text(f"{head}{start}\n{block}\n\n{table}\n{end}{tail}")
        print(f"\nwrote {md}")


if __name__ == "__main__":
    main()
