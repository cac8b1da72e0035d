"""Meta-step benchmark: maml_probe's engines vs learn2learn 0.2.0, side by side.

    python benchmarks/bench_maml.py --threads 1 --update-md BENCHMARKS.md   # BENCHMARKS.md's CPU table
    python benchmarks/bench_maml.py [--repeats 7] [--warmup 2] [--settings cnn-5w1s,scnn-5w1s,...]
                                    [--threads N] [--l2l-python PATH] [--extra ...] [--json FILE]

One *meta-step* = the meta-gradient of a whole meta-batch accumulated into ``.grad``
(``maml_probe.maml.meta_backward``; for learn2learn its documented ``clone()`` / ``adapt()`` /
per-task ``backward()`` loop), second order, no optimizer step - what the paper's Table A3 times.

How it measures (so that ratios mean something on a shared, loaded machine):

* every engine runs in its **own fresh subprocess** (ours in this interpreter, learn2learn in the
  interpreter built by ``benchmarks/build_learn2learn.sh``), all loading the *same* initial
  weights and the *same* meta-batch from one file; learn2learn's worker builds the same
  ``maml_probe.models.ConvNet``, imported from the checkout (it needs only torch) - see
  ``benchmarks/l2l_worker.py``;
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
On CPU the default extras are ``batched:1:1,batched``. Also measured in every CPU run:

* **gradient agreement**: every entry of each of our engines' meta-gradient against
  learn2learn's, in float64 (a float64 copy of the same weights and batch: equality up to
  rounding) and in float32 (the timed setting), as ``max |ours - l2l| / max |l2l|``;
* **achieved GFLOP/s** per engine: the reference loop's FLOPs per meta-step
  (``torch.utils.flop_counter``, counted once per setting and rule) over the median time, beside
  this machine's measured sgemm and convolution rates at the same thread count
  (:func:`floors_worker`), so the distance to the floor is in the table.

``--device cuda`` runs every worker on the GPU (peak memory is then
``torch.cuda.max_memory_allocated``); ``--suite gpu`` is the GPU table of BENCHMARKS.md: every
Table A3 setting at the paper's episode shapes (CNN and SCNN; MAML, KFC, CFC1, CFC10; Omniglot,
CIFAR-FS, mini-ImageNet) plus the 5-way 1-shot one-step row, with ``batched`` (the stacked step
without a CUDA graph) and ``auto+tf32`` (TF32 convolutions) beside ``auto`` and ``loop``.
learn2learn on a machine without a registry: ``--l2l-src .l2l`` after
``benchmarks/fetch_learn2learn.sh``. ``--json FILE`` keeps every measurement;
``--render-json FILE --update-md BENCHMARKS.md`` renders a saved run into the markdown
(``--md-block gpu`` for the GPU block). ``benchmarks/profile_maml.py`` shows where the time goes.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import platform
import select
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
    rules: tuple[str, ...] = ("maml",)       # "kfc" rows are compared with "maml" on the same model
    alphas: tuple[tuple[str, float], ...] = ()  # per-rule adaptation rates (else ``alpha``)

    @property
    def rule(self) -> str:  # the CPU suite's KFC row
        return "kfc" if "kfc" in self.rules else "maml"

    def alpha_of(self, rule: str) -> float:
        return dict(self.alphas).get(rule, self.alpha)


SETTINGS = {
    "cnn-5w1s": Setting("cnn-5w1s", "Omniglot CNN 5w1s, 15 q/class, 2 steps, 8 tasks", 4, 5, 1, 15, 2),
    "scnn-5w1s": Setting("scnn-5w1s", "Omniglot SCNN 5w1s, 15 q/class, 2 steps, 8 tasks", 2, 5, 1, 15, 2),
    "cnn-10w5s": Setting("cnn-10w5s", "Omniglot CNN 10w5s, 5 q/class, 4 steps, 8 tasks", 4, 10, 5, 5, 4),
    "kfc": Setting("kfc", "Omniglot SCNN 5w1s KFC (layers=4, normalize=True) vs MAML", 2, 5, 1, 15, 2,
                   rules=("maml", "kfc")),
}
KFC_KWARGS = {"layers": 4, "normalize": True}
#: Options of the rules a worker can run (the paper's: KFC with 4 layers and norm handling).
RULE_KWARGS = {"maml": ("maml", {}), "kfc": ("kfc", KFC_KWARGS), "cfc1": ("cfc", {"rank": 1}),
               "cfc10": ("cfc", {"rank": 10})}


def _paper_setting(key: str, dataset: str, depth: int, rules: tuple[str, ...]) -> Setting:
    """A Table A3 row at the paper's episode (maml_probe.experiments.settings)."""
    sys.path.insert(0, str(REPO))
    from maml_probe.experiments.settings import ALPHA, PAPER_EPISODES
    ep = PAPER_EPISODES[dataset]
    model = "cnn" if depth == 4 else "scnn"
    names = {"omniglot": "Omniglot", "cifarfs": "CIFAR-FS", "miniimagenet": "mini-ImageNet"}
    title = (f"{names[dataset]} {model.upper()} {ep['ways']}w{ep['shots']}s, {ep['queries']} q/class, "
             f"{ep['steps']} steps, {ep['meta_batch']} tasks")
    alphas = tuple((r, ALPHA[dataset][model if r == "maml" else r.rstrip("0123456789")])
                   for r in rules)
    return Setting(key, title, depth, ep["ways"], ep["shots"], ep["queries"], ep["steps"],
                   ep["meta_batch"], alphas[0][1], dataset, rules, alphas)


def gpu_settings() -> dict[str, Setting]:
    """The GPU suite: every Table A3 setting, and Omniglot CNN 5-way 1-shot with one step."""
    rows = [("og-cnn", "omniglot", 4, ("maml", "kfc")),
            ("og-scnn", "omniglot", 2, ("maml", "kfc", "cfc1", "cfc10")),
            ("cf-cnn", "cifarfs", 4, ("maml", "kfc")),
            ("cf-scnn", "cifarfs", 2, ("maml", "kfc", "cfc1", "cfc10")),
            ("mi-cnn", "miniimagenet", 4, ("maml", "kfc")),
            ("mi-scnn", "miniimagenet", 2, ("maml", "kfc", "cfc1", "cfc10"))]
    out = {key: _paper_setting(key, d, depth, rules) for key, d, depth, rules in rows}
    out["og-cnn-5w1s"] = Setting("og-cnn-5w1s", "Omniglot CNN 5w1s, 15 q/class, 1 step, 32 tasks",
                                 4, 5, 1, 15, 1, tasks=32, alpha=0.5)
    return out


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
    if device.type == "cpu":
        fast.tune_malloc()  # what a training run of ours does at start (TrainConfig.tune_malloc)
    payload = torch.load(args.payload, weights_only=False)
    spec = payload["spec"]
    net = ConvNet(spec["variant"], spec["depth"], spec["ways"])
    net.load_state_dict(payload["state_dict"], strict=True)
    net.to(device)
    name, kwargs = RULE_KWARGS[args.rule]
    rule = make_rule(name, net, spec["alphas"].get(args.rule, spec["alpha"]), **kwargs)
    batch = TaskBatch(payload["support_x"], payload["support_y"], payload["query_x"],
                      payload["query_y"]).to(device)
    spec_impl, _, precision = args.impl.partition("+")
    if precision:
        os.environ["MAML_PROBE_CUDA_PRECISION"] = precision
    impl, *chunks = spec_impl.split(":")
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
        elif cmd == "grads":  # cross-check with learn2learn: every entry of the meta-gradient
            step()
            out = {"grads": {k: p.grad.double().flatten().tolist() for k, p in
                             net.named_parameters()}}
        elif cmd == "grads64":  # the same weights and batch in float64: equality up to rounding
            out = {"grads": float64_grads(net, batch, spec, args, impl)}
        elif cmd == "flops":  # counted once per setting, from the reference loop
            from torch.utils.flop_counter import FlopCounterMode
            with FlopCounterMode(display=False) as counter:
                step()
            out = {"flops": counter.get_total_flops()}
        elif cmd == "memory":
            out = memory_report(device, base_rss)
            out["recordings"] = fast.graphs.describe(net)
        else:
            break
        print(json.dumps(out), flush=True)


def float64_grads(net, batch, spec: dict, args: argparse.Namespace, impl: str) -> dict:
    """Every entry of the meta-gradient of a float64 copy of ``net`` on a float64 ``batch``."""
    import copy

    from maml_probe.maml import meta_backward
    from maml_probe.rules import make_rule
    from maml_probe.tasks.base import TaskBatch

    net64 = copy.deepcopy(net).double()
    net64.zero_grad(set_to_none=True)
    name, kwargs = RULE_KWARGS[args.rule]
    rule64 = make_rule(name, net64, spec["alphas"].get(args.rule, spec["alpha"]), **kwargs).double()
    b64 = TaskBatch(batch.support_x.double(), batch.support_y, batch.query_x.double(),
                    batch.query_y)
    meta_backward(net64, rule64, b64, steps=spec["steps"], impl=impl)
    return {k: p.grad.flatten().tolist() for k, p in net64.named_parameters()}


def floors_worker(args: argparse.Namespace) -> None:
    """This machine's reference rates at the benchmark's thread count (printed as JSON).

    ``sgemm``: a 2048 x 2048 float32 matmul. ``conv``: forward + backward (input and weight
    gradients) of the CNN's stride-2 64-channel 3x3 convolution on a query set
    (75 images of 64 x 14 x 14). FLOPs from ``torch.utils.flop_counter``; best of 5 after warm-up.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if args.threads:
        torch.set_num_threads(args.threads)

    def rate(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        fn()
        best = min(_timed(fn) for _ in range(5))
        return counter.get_total_flops() / best / 1e9

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x = torch.randn(75, 64, 14, 14, requires_grad=True)
    conv = torch.nn.Conv2d(64, 64, 3, stride=2, padding=1)

    def conv_step() -> None:
        conv(x).sum().backward()

    print(json.dumps({"sgemm_gflops": rate(lambda: a @ b), "conv_gflops": rate(conv_step),
                      "threads": torch.get_num_threads()}), flush=True)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_report(device, base_rss: int) -> dict:
    """Peak RSS growth on CPU; on CUDA the peak of allocated device memory (as if RSS)."""
    import torch
    if device.type == "cuda":
        return {"baseline_kib": 0, "peak_kib": torch.cuda.max_memory_allocated(device) // 1024,
                "reserved_kib": torch.cuda.max_memory_reserved(device) // 1024}
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
    rule: str = "maml"
    impl: str = "auto"
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

    def ask(self, cmd: str, timeout: float | None = None) -> dict:
        assert self.proc is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd}) + "\n")
        self.proc.stdin.flush()
        if timeout is not None and not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError(f"{self.label} took over {timeout:.0f} s for {cmd!r}")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label} died: {self.proc.stderr.read()[-2000:]}")
        return json.loads(line)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc = None

    def as_dict(self) -> dict:
        return {"label": self.label, "rule": self.rule, "impl": self.impl, "info": self.info,
                "times": self.times, "memory": self.memory, "error": self.error}

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


def l2l_check(cmd: list[str]) -> dict | None:
    try:
        out = subprocess.run([*cmd, "--check"], capture_output=True, text=True, timeout=120)
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
                 "alpha": s.alpha, "alphas": dict(s.alphas),
                 "filters": net.blocks[0].conv.out_channels},
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


def engines(s: Setting, rule: str, args: argparse.Namespace) -> list[str]:
    """Our engines for ``rule`` in setting ``s``: auto and loop (+ extras) for MAML and KFC;
    ``--rule-engines`` restricts the other rules (CFC rows: auto only)."""
    if rule.startswith("cfc"):
        return ["auto"]
    if rule != "maml" and args.rule_engines:
        return [e for e in args.rule_engines.split(",") if e]
    return ["auto", "loop"] + list(args.extra)


def run_setting(s: Setting, args: argparse.Namespace, l2l_cmd: list[str] | None, tmp: Path) -> dict:
    payload = tmp / f"{s.key}.pt"
    nparams = make_payload(s, payload)
    base_env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("MAML_PROBE_IMPL", "MAML_PROBE_TASK_CHUNK", "MAML_PROBE_QUERY_CHUNK",
                 "MAML_PROBE_CUDA_PRECISION"):
        base_env.pop(name, None)
    thr = (["--threads", str(args.threads)] if args.threads else []) + ["--device", args.device]
    me = [sys.executable, str(Path(__file__).resolve()), "--worker", "--payload", str(payload), *thr]
    workers: list[Worker] = []
    several = len(s.rules) > 1
    for rule in s.rules:
        for impl in engines(s, rule, args):
            label = f"ours {impl}" + (f" {rule}" if several else "")
            env = dict(base_env)
            if impl == "loop":
                env["MAML_PROBE_MALLOC"] = "0"
            workers.append(Worker(label, [*me, "--impl", impl, "--rule", rule], env,
                                  rule=rule, impl=impl))
    if "maml" in s.rules and l2l_cmd:
        l2l = [*l2l_cmd, "--payload", str(payload), *thr]
        workers.append(Worker("l2l", l2l, dict(base_env), rule="maml", impl="l2l"))
        if args.device == "cpu":
            workers.append(Worker("l2l+malloc", [*l2l, "--malloc"], dict(base_env), rule="maml",
                                  impl="l2l+malloc"))
    for w in workers:
        w.start()
    live = [w for w in workers if w.proc is not None]
    load_before = loadavg()
    t0 = time.time()
    for r in range(args.warmup + args.repeats):
        for w in live:
            if w.error:
                continue
            try:
                t = w.ask("step", args.step_timeout)["seconds"]
            except Exception as err:  # a worker that dies (e.g. out of memory) leaves the others
                w.error = f"{type(err).__name__}: {str(err)[-300:]}"
                w.kill()
                continue
            if r >= args.warmup:
                w.times.append(t)
    live = [w for w in live if not w.error]
    for w in live:
        w.memory = w.ask("memory", args.step_timeout)
    flops = {}
    for w in live:  # FLOPs of a meta-step, counted once per rule from the reference loop
        if w.impl == "loop" and args.device == "cpu":
            flops[w.rule] = w.ask("flops", args.step_timeout)["flops"]
    agreement = {}
    ref = next((w for w in live if w.label == "l2l"), None)
    if ref is not None:
        for cmd, dtype in (("grads", "float32"), ("grads64", "float64")):
            b = ref.ask(cmd, args.step_timeout)["grads"]
            scale = max(abs(v) for vs in b.values() for v in vs) or 1.0
            for w in live:
                if w.rule == "maml" and not w.impl.startswith("l2l"):
                    a = w.ask(cmd, args.step_timeout)["grads"]
                    diff = max(abs(x - y) for k in b for x, y in zip(a[k], b[k], strict=True))
                    agreement.setdefault(w.impl, {})[dtype] = diff / scale
            agreement["entries"] = sum(len(v) for v in b.values())
    for w in workers:
        w.stop()
    return {"setting": dataclasses.asdict(s), "params": nparams,
            "workers": [w.as_dict() for w in workers], "load_before": load_before,
            "device": args.device, "agreement": agreement, "flops": flops,
            "load_after": loadavg(), "wall": time.time() - t0}


def _fmt_t(ts: list[float]) -> str:
    return f"{min(ts):.3f} / {statistics.median(ts):.3f}" if ts else "n/a"


def _peak_mib(w: dict) -> float | None:
    if not w["memory"]:
        return None
    return (w["memory"]["peak_kib"] - w["memory"]["baseline_kib"]) / 1024


def _path(w: dict) -> str:
    if w["label"].startswith("l2l"):
        return "learn2learn MAML"
    path = w["info"].get("choice", "")
    recs = (w["memory"] or {}).get("recordings") or []
    if recs:
        r = recs[0]
        how = "captured" if r["captured"] else r["note"]
        path += f"; {how}, {r['chunk']}/{r['tasks']} tasks per pass"
    return path


def _ratio(w: dict, ref: dict | None) -> str:
    """``min / median`` of ``w``'s meta-step time over ``ref``'s."""
    if ref is None or w is ref or not ref["times"] or not w["times"]:
        return ""
    return (f"{min(w['times']) / min(ref['times']):.2f} / "
            f"{statistics.median(w['times']) / statistics.median(ref['times']):.2f}")


def _rates(w: dict, flops: float | None, floors: dict | None) -> str:
    """Achieved GFLOP/s at the median time, and its share of the machine's sgemm and conv rates."""
    if not flops or not w["times"]:
        return " | | "
    gflops = flops / statistics.median(w["times"]) / 1e9
    if not floors:
        return f"{gflops:.1f} | | "
    return (f"{gflops:.1f} | {100 * gflops / floors['sgemm_gflops']:.0f}% | "
            f"{100 * gflops / floors['conv_gflops']:.0f}%")


def render(results: list[dict], l2l_note: str, floors: dict | None = None) -> str:
    """The markdown tables of a run: times, ratios, rates and memory; gradient agreement; KFC."""
    cpu = not results or results[0].get("device", "cpu") == "cpu"
    mem = "peak RSS growth MiB" if cpu else "peak device memory MiB"
    lines = ["| setting | engine | path | meta-step s (min / median) | / l2l (min / median) "
             f"| / l2l+malloc (min / median) | GFLOP/s | % of sgemm | % of conv | {mem} |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    kfc_lines, agree_lines = [], []
    for res in results:
        s = res["setting"]
        ws = {w["label"]: w for w in res["workers"]}
        ref, ref_malloc = ws.get("l2l"), ws.get("l2l+malloc")
        flops = res.get("flops") or {}
        for w in res["workers"]:
            if w["error"]:
                lines.append(f"| {s['title']} | {w['label']} | - | failed: {w['error']} | | | | | | |")
                continue
            peak = _peak_mib(w)
            lines.append(f"| {s['title']} | {w['label']} | {_path(w)} | {_fmt_t(w['times'])} | "
                         f"{_ratio(w, ref)} | {_ratio(w, ref_malloc)} | "
                         f"{_rates(w, flops.get(w['rule']), floors)} | "
                         f"{'' if peak is None else f'{peak:.0f}'} |")
        if "maml" in s["rules"] and ref is None:
            lines.append(f"| {s['title']} | learn2learn | - | {l2l_note} | | | | | | |")
        agree = res.get("agreement") or {}
        for impl, d in agree.items():
            if isinstance(d, dict):
                agree_lines.append(f"| {s['title']} | ours {impl} | {agree.get('entries', '?')} | "
                                   f"{d.get('float64', float('nan')):.1e} | "
                                   f"{d.get('float32', float('nan')):.1e} |")
        if "kfc" in s["rules"]:
            several = len(s["rules"]) > 1
            for impl in ["auto", "loop"]:
                k, m = ws.get(f"ours {impl} kfc"), ws.get(f"ours {impl} maml" if several else "")
                if k and m and k["times"] and m["times"]:
                    kfc_lines.append(
                        f"| {s['title']}, ours {impl} | {_fmt_t(k['times'])} | "
                        f"{_fmt_t(m['times'])} | {min(k['times']) / min(m['times']):.2f} / "
                        f"{statistics.median(k['times']) / statistics.median(m['times']):.2f} | "
                        f"{k['info'].get('rule_params', '')} |")
    out = "\n".join(lines)
    if floors:
        out += (f"\n\nGFLOP/s: the reference loop's FLOPs per meta-step (`torch.utils.flop_counter`, "
                f"counted once per setting and rule; learn2learn does the same computation) over "
                f"the median time. Measured rates of this machine at {floors['threads']} "
                f"thread(s): sgemm (2048 x 2048 float32) {floors['sgemm_gflops']:.1f} GFLOP/s, "
                f"the CNN's stride-2 64-channel 3x3 convolution forward + backward on 75 images "
                f"{floors['conv_gflops']:.1f} GFLOP/s.")
    if agree_lines:
        out += ("\n\nGradient agreement with learn2learn, every entry of the meta-gradient: "
                "max |ours - l2l| / max |l2l| (float64: a float64 copy of the same weights and "
                "batch; float32: the timed setting).\n\n"
                "| setting | engine | entries | float64 | float32 |\n|---|---|---|---|---|\n"
                + "\n".join(agree_lines))
    if kfc_lines:
        out += ("\n\n| KFC row | KFC s (min / median) | MAML s (min / median) | ratio (min / median) "
                "| KFC parameters |\n|---|---|---|---|---|\n" + "\n".join(kfc_lines))
    return out


def measure_floors(args: argparse.Namespace) -> dict | None:
    """:func:`floors_worker` in a fresh process at the benchmark's thread count."""
    thr = ["--threads", str(args.threads)] if args.threads else []
    try:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--floors", *thr],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as err:  # the table is still worth having without the rates
        print(f"machine rates not measured: {err}")
        return None


def cpu_isa() -> str:
    """The vector extensions of this CPU that matter for float32 kernels (from /proc/cpuinfo)."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in
                     Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "?"
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    have = [f for f in wanted if f in flags]
    lacks = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f not in flags]
    return ", ".join(have) + (f"; no {', '.join(lacks)}" if lacks else "")


def machine_info(args: argparse.Namespace, l2l_info: dict | None) -> dict:
    import torch
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu,
            "cpus": os.cpu_count(), "threads": args.threads or torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "device": args.device, "repeats": args.repeats, "warmup": args.warmup,
            "isa": cpu_isa(), "command": "python benchmarks/bench_maml.py " + " ".join(
                a for a in sys.argv[1:]),
            "learn2learn": (f"{l2l_info['learn2learn']} (torch {l2l_info['torch']})"
                            if l2l_info else "not available")}
    if args.device != "cpu" and torch.cuda.is_available():
        dev = torch.device(args.device)
        info.update(gpu=torch.cuda.get_device_name(dev), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1))
    return info


def machine_block(info: dict, results: list[dict]) -> str:
    loads = ", ".join(f"{r['setting']['key']}: {r['load_before']} -> {r['load_after']}"
                      for r in results)
    gpu = (f"; GPU {info['gpu']} ({info['gpu_memory_gib']} GiB), CUDA {info['cuda']}, cuDNN "
           f"{info['cudnn']}" if info.get("gpu") else "")
    isa = f" ({info['isa']})" if info.get("isa") else ""
    command = [f"- command: `{info['command']}`"] if info.get("command") else []
    return "\n".join([
        *command,
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}{isa}, {info['cpus']} logical CPUs, torch threads {info['threads']}"
        f"{gpu}; load average (1/5/15 min) before -> after each setting: {loads}",
        f"- python {info['python']}, torch {info['torch']}, learn2learn {info['learn2learn']}",
        f"- repeats: {info['repeats']} timed after {info['warmup']} warm-up rounds, engines "
        f"stepped round-robin, each in its own process",
    ])


def update_md(path: Path, block: str, name: str) -> None:
    """Rewrite the text between ``<!-- {name}:start -->`` and ``<!-- {name}:end -->``."""
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{block}\n{end}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=["cpu", "gpu"], default="cpu",
                    help="cpu: the CPU table's settings; gpu: Table A3 at the paper's episodes")
    ap.add_argument("--settings", default=None, help="comma-separated keys of the suite (default: all)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: default)")
    ap.add_argument("--l2l-python", default=None,
                    help="interpreter with learn2learn (default: $L2L_PYTHON, /tmp/l2l-venv/bin/python)")
    ap.add_argument("--l2l-src", default=None,
                    help="learn2learn's MAML source from benchmarks/fetch_learn2learn.sh "
                         "(run with this interpreter)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (each worker on this device)")
    ap.add_argument("--extra", default=None,
                    help="more of our engines as impl[:tasks per chunk[:tasks per query pass]][+tf32], "
                         "e.g. 'batched:1:1,batched' (gpu suite default: 'batched,auto+tf32')")
    ap.add_argument("--rule-engines", default="",
                    help="our engines for the rules other than MAML (default: as for MAML)")
    ap.add_argument("--step-timeout", type=float, default=300.0,
                    help="seconds a worker may take for one command before it is stopped")
    ap.add_argument("--json", default=None, help="write every measurement to this file")
    ap.add_argument("--render-json", default=None, help="render a saved --json run and exit")
    ap.add_argument("--update-md", default=None, help="rewrite the table block of this markdown file")
    ap.add_argument("--md-block", default="bench", help="marker name of the block (bench, gpu)")
    # worker mode
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--payload", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--rule", default="maml", help=argparse.SUPPRESS)
    ap.add_argument("--floors", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.extra is None:
        args.extra = "batched,auto+tf32" if args.suite == "gpu" else "batched:1:1,batched"
    args.extra = [e for e in args.extra.split(",") if e]
    if args.worker:
        ours_worker(args)
        return
    if args.floors:
        floors_worker(args)
        return
    if args.l2l_src is None and find_l2l(args.l2l_python) is None and (REPO / ".l2l").is_dir():
        args.l2l_src = str(REPO / ".l2l")  # benchmarks/fetch_learn2learn.sh's folder
    how = "bash benchmarks/build_learn2learn.sh  (builds /tmp/l2l-venv from the PyPI sdist)"
    l2l_note = "not available (how to build it: " + how + ")"
    if args.render_json:
        saved = json.loads(Path(args.render_json).read_text())
        results, info = saved["results"], saved["machine"]
    else:
        suite = gpu_settings() if args.suite == "gpu" else SETTINGS
        keys = [k.strip() for k in (args.settings or ",".join(suite)).split(",") if k.strip()]
        unknown = [k for k in keys if k not in suite]
        if unknown:
            ap.error(f"unknown settings {unknown}; choose from {list(suite)}")
        if args.l2l_src:
            l2l_cmd = [sys.executable, str(HERE / "l2l_worker.py"), "--l2l-src", args.l2l_src]
        else:
            l2l_python = find_l2l(args.l2l_python)
            l2l_cmd = [l2l_python, str(HERE / "l2l_worker.py")] if l2l_python else None
        l2l_info = l2l_check(l2l_cmd) if l2l_cmd else None
        if l2l_info is None:
            print(f"learn2learn: {l2l_note}")
            l2l_cmd = None
        else:
            print(f"learn2learn: {l2l_info['learn2learn']} ({l2l_info['import']})")
        info = machine_info(args, l2l_info)
        if args.device == "cpu":
            info["floors"] = measure_floors(args)
        tmp = Path(tempfile.mkdtemp(prefix="bench_maml."))
        results = []
        try:
            for k in keys:
                print(f"[{k}] {suite[k].title} (load {loadavg()}) ...", flush=True)
                results.append(run_setting(suite[k], args, l2l_cmd, tmp))
                if args.json:  # after every setting: a run cut short keeps what it measured
                    Path(args.json).write_text(json.dumps({"machine": info, "results": results}))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    table = render(results, l2l_note, info.get("floors"))
    block = machine_block(info, results)
    print()
    print(block)
    print()
    print(table)
    if args.update_md:
        update_md(Path(args.update_md), f"{block}\n\n{table}", args.md_block)
        print(f"\nwrote {args.update_md}")


if __name__ == "__main__":
    main()
