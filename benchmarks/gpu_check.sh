#!/usr/bin/env bash
# The GPU check: one command, run in the repository root of a machine with an NVIDIA GPU.
#
#   bash benchmarks/fetch_learn2learn.sh            # once, where a package registry is reachable
#   OUT=runs/gpu_check bash benchmarks/gpu_check.sh
#
# Uses the machine's own python3 with PyTorch and CUDA (PYTHONPATH=., no install), needs no
# registry, and writes everything to $OUT. In order, each step with its own time limit and all
# of them within GPU_CHECK_SECONDS (default 570):
#   1. the CUDA tests: every CUDA path's float64 meta-gradient against the reference loop
#      (tests/test_cuda.py, the CNN with BatchNorm, all six rules), the CUDA episode sampler;
#   2. the meta-step benchmark: every Table A3 setting, ours (auto, loop, batched, auto+tf32)
#      against learn2learn's MAML (from .l2l), round-robin, one process per engine;
#   3. memory: the paper's mini-ImageNet settings inside what a 16 GB card leaves for tensors;
#   4. paper-scale projection: seconds per iteration of every experiment's training runs;
#   5. where a KFC step spends its GPU time (profiler);
#   6. short Omniglot training runs at the paper's episode (E7's MAML and KFC), scored on 600
#      test tasks and written as run folders (benchmarks/gpu_reproduce.py; a longer call of that
#      script made the reference runs in results/)
#      (needs the two Omniglot zips under $MAML_PROBE_DATA_ROOT/omniglot, default data/).
# GPU_CHECK_STEPS picks steps (default: tests,bench,memory,profile,projection,train);
# PYTEST_K (a pytest -k expression), BENCH_SETTINGS and BENCH_RULE_ENGINES narrow steps 1 and 2 (KFC and CFC rows run
# only our auto engine by default: the KFC reference loop takes ~11 s a step on the Omniglot CNN).
# BENCHMARKS.md is then written from the JSON files on any machine:
#   python benchmarks/bench_maml.py --render-json $OUT/bench_gpu.json --update-md BENCHMARKS.md --md-block gpu
#   python benchmarks/paper_scale.py --render $OUT/paper_scale.json --bench $OUT/bench_gpu.json --update-md BENCHMARKS.md
# On a machine whose working tree is copied over (no shared data folder), put the two Omniglot
# zips in data/omniglot/ (ignored by git) and send that folder and .l2l/ along.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DATA=${MAML_PROBE_DATA_ROOT:-data}
BUDGET=${GPU_CHECK_SECONDS:-570}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOG="$OUT/gpu_check.log"
: > "$LOG"

step() {  # step NAME SECONDS COMMAND...: run with min(SECONDS, what is left of the budget)
    local name=$1 limit=$2 left
    shift 2
    left=$((BUDGET - SECONDS - 5))
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped, ${left}s of the budget left" | tee -a "$LOG"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (at ${SECONDS}s, limit ${limit}s)" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "== $name: exit ${PIPESTATUS[0]} (at ${SECONDS}s)" | tee -a "$LOG"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())"
} 2>&1 | tee -a "$LOG"

STEPS=",${GPU_CHECK_STEPS:-tests,bench,memory,profile,projection,train},"
want() { [[ "$STEPS" == *",$1,"* ]]; }
want tests && step "CUDA tests (float64 exactness)" 130 \
    "$PY" -m pytest -q -p no:cacheprovider -m cuda -rs -s ${PYTEST_K:+-k "$PYTEST_K"} \
    tests/test_cuda.py tests/test_data_episodes.py
want bench && step "meta-step benchmark" 200 \
    "$PY" benchmarks/bench_maml.py --suite gpu --device cuda --repeats 3 --warmup 1 \
    --settings "${BENCH_SETTINGS:-og-cnn,mi-cnn,og-cnn-5w1s,og-scnn,mi-scnn,cf-cnn,cf-scnn}" \
    --rule-engines "${BENCH_RULE_ENGINES:-auto}" --step-timeout 60 \
    --l2l-src .l2l --json "$OUT/bench_gpu.json"
want memory && step "16 GB card" 50 \
    "$PY" benchmarks/gpu_memory.py --card-gib 16 --json "$OUT/memory_16gb.json"
want profile && step "profile" 40 "$PY" benchmarks/gpu_profile.py
want projection && step "paper-scale projection" 80 \
    "$PY" benchmarks/paper_scale.py --device cuda --budget-s 60 --json "$OUT/paper_scale.json"
want train && step "Omniglot training" 130 \
    "$PY" benchmarks/gpu_reproduce.py --data-root "$DATA" --out "$OUT/reproduce" \
    --iterations 100 --budget-s 120 --experiments E7 --e7-methods maml,kfc
echo "gpu_check: done in ${SECONDS}s; results in $OUT" | tee -a "$LOG"
